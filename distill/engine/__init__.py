"""The training engine: one explicit loop (:mod:`distill.engine.loop`) that methods plug into.

Plug-in interface
=================

**Loss terms** (``distill/losses/*.py``; base class :class:`distill.losses.base.LossTerm`)::

    from distill.losses.base import LossTerm, register_loss

    @register_loss("my_term")                 # usable as {name: my_term, weight: 2.0, k: v} in YAML
    class MyTerm(LossTerm):
        def __init__(self, k: float = 1.0):   # every YAML key but name/weight/start/stop lands here
            super().__init__()
        def student_layers(self): return ["model.12"]    # tapped by forward hooks ...
        def teacher_layers(self): return ["model.12"]    # ... into ctx.student_feats / teacher_feats
        def setup(self, ctx): ...                        # once, first batch: build 1x1 adapters here
        def forward(self, ctx) -> Tensor: ...            # unweighted scalar; the engine applies weight
        def aux_optimizers(self): return {"ebm": self.opt}   # own optimisers, saved in state.pt
        def aux_step(self, ctx) -> dict: ...             # own update, before the student step
        def student_parameters(self): ...                # params trained with G_s (default: all)

Dropping the file into ``distill/losses/`` registers it (the package imports all its modules).
A term's parameters (adapters, energy nets) live in the distiller and ``state.pt``, never in the
saved student checkpoint.

**The step context** :class:`~distill.engine.context.StepContext` (``ctx``) holds ``step``,
``real_a`` (input image or latent z), ``real_b`` (target / real images or None), ``paired``,
``student``, ``teacher`` (unwrapped modules), ``student_out`` (with grad), ``teacher_out``
(no grad), ``student_feats`` / ``teacher_feats`` (path -> tensor), ``discriminator`` (the
student's D), ``teacher_discriminator`` (D̄, frozen while the student's terms run) with its
``teacher_gan_mode`` / ``teacher_conditional``, ``gan_mode``, ``conditional``, ``device``,
``extras`` (scratch shared by terms within a step) and ``optimize(loss, optimizer)`` (AMP + DDP
aware backward/step for ``aux_step``).

**The teacher side** (:mod:`distill.engine.teachers`) is one object chosen from ``teacher.mode``:
``none``; ``offline`` (frozen G_t from ``teacher.checkpoint``, D̄ from ``teacher.discriminator``,
its objective read from its checkpoint; D̄ frozen, or updated on the steps where a term reads it);
``online`` (a list of teachers trained with the student: one generator with ``teacher.loss`` terms
and its D, or a CycleGAN pair with ``teacher.cyclegan``, plus ``teacher.extra`` ones; each with its
best snapshot when ``teacher.eval_every`` selects).

**One step of the default method** (``method: {name: generator}``, :mod:`distill.engine.methods`):

1. ``teacher.train_step``: online teachers take their step (their D, then G_t; a CycleGAN pair its
   G step and pooled D step), every ``teacher.update_every`` student steps;
2. forward: ``teacher.fill(ctx)`` puts G_t(x) (the online teachers' train-mode output of that
   step, or the kept best snapshot's), its features, the extra teachers' outputs
   (``ctx.extras["extra_teacher_outs"]``) and D̄ into the context; ``student_out = G_s(x)``;
3. D step (when ``discriminator`` is configured): ``gan_mode`` loss on real vs detached fake
   (plus gradient penalty for wgangp); an updated offline D̄ too, while a term reads it;
4. ``aux_step(ctx)`` of each active term;
5. student step: ``L_G = Σ w_i · term_i(ctx)`` (formula printed at start), Adam, ``train.lr_policy``
   (aux optimisers with ``aux_lr_schedule = "fixed"`` keep their learning rate).

After each step the loop calls ``method.after_step(done, held_out)`` on every rank (teacher
evaluation and selection every ``teacher.eval_every`` steps; logged as ``teacher_eval_*``).
Recipes are checked before anything runs (``check_method``: unknown keys, terms that need a
teacher the recipe does not have on its data, selection metrics the run cannot compute).
Networks are built by :mod:`distill.engine.builders`.

**Methods** replace the whole step when loss terms are not enough (CycleGAN's two generators):
subclass :class:`distill.engine.methods.TrainingMethod` and decorate with
``@register_method("name")``; recipes pick one with ``method: {name: ..., **kwargs}``.

**Running**: :func:`distill.engine.loop.run_training` (``slimgan train`` / ``slimgan distill``)
resolves a :class:`~distill.engine.config.RunConfig`, makes missing synthetic data and teachers,
and writes ``config.yaml``, ``metrics.csv``, ``samples/``, ``student/``, ``best/`` and
``state.pt`` into the run directory (rank 0 only under ``torchrun``).
"""

from distill.losses.context import StepContext

__all__ = ["StepContext"]
