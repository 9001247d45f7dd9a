"""One export for both models: the teacher's own bundle and the student bundle timed against it.

Serving or benchmarking the teacher needs a bundle of it; :func:`export_pair` writes it first with the
same options (resolution, fp16 / int8 / TensorRT, threads), then the student's, whose speed check times
the teacher bundle's own graphs (exported once, reused by every runtime), so that
``slimgan export STUDENT --teacher TEACHER --teacher-bundle DIR`` gives both.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from export.bundle import ExportResult, export_bundle
from export.config import ExportConfig


def export_pair(student: str | Path, out: str | Path, teacher: str | Path, teacher_out: str | Path,
                config: ExportConfig | None = None, **options: Any) -> tuple[ExportResult, ExportResult]:
    """The teacher alone into ``teacher_out``, then ``student`` into ``out`` against it; returns (student, teacher)."""
    if Path(teacher_out).resolve() == Path(out).resolve():
        from slimgan.errors import ConfigError

        raise ConfigError(f"--teacher-bundle {teacher_out} is the student bundle's folder; give another folder")
    cfg = config if config is not None else ExportConfig.create(**options)
    teacher_result = export_bundle(teacher, teacher_out, dataclasses.replace(cfg, teacher=None, teacher_bundle=None))
    student_cfg = dataclasses.replace(cfg, teacher=Path(teacher), teacher_bundle=Path(teacher_out))
    student_result = export_bundle(student, out, student_cfg)
    return student_result, teacher_result
