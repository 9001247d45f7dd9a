"""One export for both models: the student bundle (timed against its teacher) and the teacher's own bundle.

Serving or benchmarking the teacher needs a bundle of it; :func:`export_pair` writes it with the same
options (resolution, fp16 / int8 / TensorRT, threads) right after the student's, so that
``slimgan export STUDENT --teacher TEACHER --teacher-bundle DIR`` gives both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from export.bundle import ExportResult, export_bundle


def export_pair(student: str | Path, out: str | Path, teacher: str | Path, teacher_out: str | Path,
                **options: Any) -> tuple[ExportResult, ExportResult]:
    """``export_bundle(student, out, teacher=teacher, **options)``, then the teacher alone into ``teacher_out``."""
    if Path(teacher_out).resolve() == Path(out).resolve():
        from slimgan.errors import ConfigError

        raise ConfigError(f"--teacher-bundle {teacher_out} is the student bundle's folder; give another folder")
    student_result = export_bundle(student, out, teacher=teacher, **options)
    teacher_result = export_bundle(teacher, teacher_out, **options)
    return student_result, teacher_result
