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
student's D), ``teacher_discriminator`` (D̄, frozen, updated or online), ``gan_mode``,
``conditional``, ``device``, ``extras`` (scratch shared by terms within a step) and
``optimize(loss, optimizer)`` (AMP + DDP aware backward/step for ``aux_step``).

**One step of the default method** (``method: {name: generator}``, :mod:`distill.engine.methods`):

1. online teacher only: teacher step (its own D step, then G_t step with ``teacher.loss`` terms),
   for the main teacher and each ``teacher.extra`` one (OMGD's wide + deep teachers);
2. forward: ``teacher_out = G_t(x)`` (no grad) and ``student_out = G_s(x)``, features tapped;
   extra online teachers' outputs go to ``ctx.extras["extra_teacher_outs"]``; with
   ``teacher.eval_every`` G_t is the best evaluated snapshot (crd §4.1), once there is one;
3. D step (when ``discriminator`` is configured): ``gan_mode`` loss on real vs detached fake
   (plus gradient penalty for wgangp); D̄ too when ``teacher.train_discriminator`` is set;
4. ``aux_step(ctx)`` of each active term;
5. student step: ``L_G = Σ w_i · term_i(ctx)`` (formula printed at start), Adam, linear LR decay.

After each step the loop calls ``method.after_step(done, held_out)`` on every rank (teacher
evaluation and selection every ``teacher.eval_every`` steps; logged as ``teacher_eval_*``).

**Methods** replace the whole step when loss terms are not enough (CycleGAN's two generators):
subclass :class:`distill.engine.methods.TrainingMethod` and decorate with
``@register_method("name")``; recipes pick one with ``method: {name: ..., **kwargs}``.

**Running**: :func:`distill.engine.loop.run_training` (``slimgan train`` / ``slimgan distill``)
resolves a :class:`~distill.engine.config.RunConfig`, makes missing synthetic data and teachers,
and writes ``config.yaml``, ``metrics.csv``, ``samples/``, ``student/``, ``best/`` and
``state.pt`` into the run directory (rank 0 only under ``torchrun``).
"""

from distill.engine.context import StepContext

__all__ = ["StepContext"]
