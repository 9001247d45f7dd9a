"""``ExportConfig``: every option of ``slimgan export`` in one frozen value (the CLI builds it).

:meth:`ExportConfig.create` takes the keyword options the library has always taken and resolves them
once: ``--targets`` sets ``fp16`` / ``int8`` / ``trt`` / ``openvino`` and adds the phone runtimes,
``--res`` becomes height and width, ``--batch`` becomes ``(min, opt, max)``. Bad values raise
:class:`ConfigError` in one line before any work. :meth:`ExportConfig.require` checks the installed
requirements (TensorRT and a GPU for ``--trt``, each phone target's converter) the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimgan.errors import ConfigError

DEFAULT_OPSET = 17
# One intra-op thread for the checks and the side-by-side speed measurement: the edge setting, and the
# one where a slim student's latency is stable run to run (figures: benchmarks/results/export_threads.md).
# speed.json also reports the all-cores setting under ``by_threads``.
SPEED_THREADS = 1
OPENVINO_PRECISIONS = ("auto", "f32", "bf16")


def parse_batch(spec: str | None) -> tuple[int, int, int]:
    """``MIN:OPT:MAX`` (or a single number) -> (min, opt, max); default 1:1:8."""
    if not spec:
        return 1, 1, 8
    parts = spec.split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError as exc:
        raise ConfigError(f"--batch {spec!r}: expected MIN:OPT:MAX integers, e.g. 1:4:8") from exc
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not (1 <= values[0] <= values[1] <= values[2]):
        raise ConfigError(f"--batch {spec!r}: expected MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX")
    return values[0], values[1], values[2]


@dataclass(frozen=True)
class ExportConfig:
    """Resolved export options (see the ``slimgan export`` flags of the same names).

    ``targets``: the ``--targets`` list as resolved (``onnx`` first), empty when not given.
    ``teacher_bundle``: a bundle of the teacher exported with the same options; when set, the speed
    check times that bundle's graphs instead of exporting the teacher again.
    """

    teacher: Path | None = None
    height: int | None = None
    width: int | None = None
    batch: tuple[int, int, int] = (1, 1, 8)
    opset: int = DEFAULT_OPSET
    fp16: bool = False
    int8: bool = False
    calib: Path | None = None
    trt: bool = False
    triton: Path | None = None
    threads: int = SPEED_THREADS
    check: bool = True
    speed_rounds: int = 5
    speed_block_s: float = 0.5
    optimize: bool = True
    openvino: bool = True
    openvino_precision: str = "auto"
    targets: tuple[str, ...] = ()
    teacher_bundle: Path | None = None

    @classmethod
    def create(cls, *, res: int | None = None, height: int | None = None, width: int | None = None,
               batch: str | tuple[int, int, int] | None = None, targets: str | list[str] | None = None,
               **options: Any) -> ExportConfig:
        """The config for ``export_bundle``'s keyword options (validated and resolved; see module doc)."""
        from export.targets import parse_targets

        chosen = tuple(parse_targets(targets))
        if chosen:
            options["fp16"] = options.get("fp16", False) or "fp16" in chosen
            options["int8"] = options.get("int8", False) or "int8" in chosen
            options["trt"] = options.get("trt", False) or "tensorrt" in chosen
            options["openvino"] = "openvino" in chosen
        precision = options.get("openvino_precision", "auto")
        if precision not in OPENVINO_PRECISIONS:
            raise ConfigError(f"--openvino-precision {precision!r}: choose one of {', '.join(OPENVINO_PRECISIONS)}")
        if res is not None and (height is not None or width is not None):
            raise ConfigError("give either --res or --height/--width, not both")
        height = height or res
        for key in ("teacher", "calib", "triton", "teacher_bundle"):
            if options.get(key) is not None:
                options[key] = Path(options[key])
        options["threads"] = int(options.get("threads") or SPEED_THREADS)
        unknown = sorted(set(options) - set(cls.__dataclass_fields__))
        if unknown:
            raise TypeError(f"export_bundle() got an unexpected keyword argument {unknown[0]!r}")
        return cls(height=height, width=width or res or height, batch=batch if isinstance(batch, tuple) else parse_batch(batch),
                   targets=chosen, **options)

    def require(self) -> None:
        """Fail in one line, before any work, when a requested artifact's tools are not installed here."""
        from export.targets import require_phone_targets

        if self.targets:
            require_phone_targets(list(self.targets))
        if self.trt:
            from export.tensorrt_engine import require_tensorrt

            require_tensorrt()
