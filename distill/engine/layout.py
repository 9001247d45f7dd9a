"""Where a run keeps what: its checkpoint sub-directories, named by role, and its training state."""

from __future__ import annotations

from pathlib import Path

STATE_NAME = "state.pt"


def run_role(kind: str) -> str:
    """What the generator a run trains is: ``slimgan train`` makes teachers, ``slimgan distill`` students."""
    return "teacher" if kind == "train" else "student"


def checkpoint_dir_role(name: str, role: str) -> str:
    """The role recorded for the checkpoint a method names ``name`` in a run whose generator is ``role``."""
    if "discriminator" in name:
        return "discriminator"
    if name.startswith("teacher"):
        return "teacher"
    return role


def checkpoint_dir_name(name: str, role: str) -> str:
    """The run sub-directory for method checkpoint ``name``: the trained generator (``student``) is named by its role."""
    return role if name == "student" else name


def trained_generator_dir(run: str | Path) -> Path:
    """The generator checkpoint of a finished run: ``RUN/teacher`` (train), ``RUN/student`` (distill).

    Runs made before checkpoints were named by role kept a teacher in ``RUN/student``; that is found too.
    """
    run = Path(run)
    for name in ("teacher", "student"):
        if (run / name / "config.json").is_file():
            return run / name
    return run / "teacher"
