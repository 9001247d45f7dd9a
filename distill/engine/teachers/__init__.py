"""The teacher side of the ``generator`` method: what the student learns from, chosen once from ``teacher.mode``.

- :class:`NoTeacher` (``none``): teacher training, or a student trained from scratch.
- :class:`OfflineTeacher` (``offline``): a frozen G_t and/or D̄ read from checkpoints. D̄ is frozen,
  or (``teacher.train_discriminator``) updated on the steps where a student term reads it.
- :class:`OnlineTeachers` (``online``): a list of teachers trained alongside the student, each an
  :class:`OnlineTeacher` with its generator(s), discriminator(s), objective and best snapshot:
  :class:`TermsTeacher` (one generator and its loss terms: pix2pix-style, OMGD's wide and deep
  teachers) or :class:`CycleTeacher` (a CycleGAN pair on unpaired data). The first is the main
  teacher: its G_t(x) is ``ctx.teacher_out`` and its discriminator is D̄, updated with the teacher
  and frozen for the student (crd §3.3); the others' outputs reach the output-level terms through
  ``ctx.extras["extra_teacher_outs"]``.

Every side answers the same calls, so the student step never asks which one it has: ``train_step``
(online teachers learn), ``fill(ctx)`` (G_t(x), its features, D̄ into the step context),
``discriminator_step`` (an updated offline D̄), ``after_step`` (teacher selection).
"""

from __future__ import annotations

from pathlib import Path

from distill.engine.config import RunConfig
from distill.engine.device import DeviceContext
from distill.engine.teachers.base import (
    MODES,
    TARGET_MODES,
    NoTeacher,
    TeacherSide,
    eval_forward,
    is_paired,
    train_forward,
)
from distill.engine.teachers.cyclegan import CycleTeacher
from distill.engine.teachers.offline import OfflineTeacher
from distill.engine.teachers.online import OnlineTeachers, selection_metric
from distill.engine.teachers.online_unit import OnlineTeacher, TermsTeacher
from distill.errors import ConfigError
from distill.losses import teacher_needed

__all__ = ["MODES", "TARGET_MODES", "CycleTeacher", "NoTeacher", "OfflineTeacher", "OnlineTeacher", "OnlineTeachers",
           "TeacherSide", "TermsTeacher", "build_teacher_side", "check_teacher_config", "eval_forward", "is_paired",
           "selection_metric", "train_forward"]


def build_teacher_side(config: RunConfig, rt: DeviceContext, paths: dict[str, Path]) -> TeacherSide:
    """The side ``teacher.mode`` names."""
    mode = config.teacher.mode
    if mode not in MODES:
        raise ConfigError(f"teacher.mode must be offline, online or none, got {mode!r}")
    if mode == "none":
        return NoTeacher(config, rt)
    if mode == "offline":
        return OfflineTeacher(config, rt, paths)
    return OnlineTeachers(config, rt, paths)


def check_teacher_config(config: RunConfig, has_generator: bool | None = None) -> None:
    """What can be refused before anything is built or trained (called by the loop at start).

    ``has_generator``: whether the built side has a G_t (None: judged from the recipe alone).
    """
    tcfg = config.teacher
    if tcfg.mode not in MODES:
        raise ConfigError(f"teacher.mode must be offline, online or none, got {tcfg.mode!r}")
    online = tcfg.mode == "online"
    if not online and (tcfg.extra or tcfg.eval_every or tcfg.cyclegan is not None):
        raise ConfigError("teacher.extra, teacher.eval_every and teacher.cyclegan need teacher.mode: online (teachers "
                          f"trained with the student); teacher.mode is {tcfg.mode!r}")
    if tcfg.eval_every < 0:
        raise ConfigError(f"teacher.eval_every must be >= 0 (0: no teacher selection), got {tcfg.eval_every}")
    if tcfg.update_every < 1:
        raise ConfigError(f"teacher.update_every must be >= 1 (1: the teachers step with every student step), "
                          f"got {tcfg.update_every}")
    if online and tcfg.eval_every:
        selection_metric(config, cyclegan=tcfg.cyclegan is not None)
    has_g = has_generator if has_generator is not None else tcfg.mode != "none" and tcfg.use_generator and bool(
        tcfg.checkpoint or (tcfg.auto and tcfg.auto.recipe) or (online and tcfg.model is not None))
    paired = is_paired(config)
    for i, spec in enumerate(config.loss):
        if teacher_needed(spec, paired) and not has_g:
            data = "paired" if paired else "unpaired"
            raise ConfigError(f"loss.{i} ({spec.get('name')!r}) needs a teacher generator on {data} data "
                              f"(data.layout {config.data.layout}); set teacher.checkpoint, teacher.auto or an "
                              "online teacher.model")
    if online and tcfg.cyclegan is not None and tcfg.loss:
        raise ConfigError("teacher.cyclegan trains the teacher by the cycle objective; remove teacher.loss")
    if online and tcfg.cyclegan is None and not tcfg.loss:
        raise ConfigError("teacher.mode online needs teacher.loss terms (e.g. adv + l1_target), or teacher.cyclegan "
                          "for a CycleGAN teacher on unpaired data")
    if online:
        for i, spec in enumerate(tcfg.loss if tcfg.cyclegan is None else []):
            if teacher_needed(spec, paired):
                raise ConfigError(f"teacher.loss.{i} ({spec.get('name')!r}) compares with a teacher; an online "
                                  "teacher learns from the data (e.g. adv + l1_target)")
