"""INT8 for CPU / mobile: ONNX Runtime static quantization in QDQ format, calibrated on real inputs.

Calibration inputs come from a dataset folder (``--calib DIR``: images, searched recursively, resized
to the checked shape and mapped to [-1, 1] exactly as the server preprocesses them) or, for latent
generators, from N(0, 1). Weights are quantized per channel (symmetric int8), activations per tensor
(uint8, MinMax calibration).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from slimgan.errors import DatasetError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
MAX_CALIB_IMAGES = 32


def calibration_files(folder: str | Path, limit: int = MAX_CALIB_IMAGES) -> list[Path]:
    """The first ``limit`` images under ``folder`` (sorted, recursive); DatasetError when there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"--calib folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise DatasetError(f"--calib folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def load_calibration_images(folder: str | Path, channels: int, height: int, width: int, limit: int = MAX_CALIB_IMAGES,
                            value_range: tuple[float, float] | list[float] = (-1.0, 1.0)) -> np.ndarray:
    """Up to ``limit`` images under ``folder`` as a float32 array (N, C, H, W) in ``value_range``.

    Paired pix2pix images (A|B side by side, width = 2 x height) contribute their left half, the input.
    """
    from PIL import Image, UnidentifiedImageError

    files = calibration_files(folder, limit)
    lo, hi = float(value_range[0]), float(value_range[1])
    arrays = []
    for path in files:
        try:
            with Image.open(path) as img:
                img = img.convert("RGB" if channels == 3 else "L")
                if img.width == 2 * img.height:
                    img = img.crop((0, 0, img.height, img.height))
                img = img.resize((width, height), Image.BICUBIC)
                arr = np.asarray(img, dtype=np.float32)
        except (UnidentifiedImageError, OSError) as exc:
            raise DatasetError(f"cannot read calibration image {path}: {exc}") from exc
        if arr.ndim == 2:
            arr = arr[:, :, None]
        arrays.append(arr.transpose(2, 0, 1) * ((hi - lo) / 255.0) + lo)
    return np.stack(arrays).astype(np.float32)


class _Reader:
    """``onnxruntime.quantization.CalibrationDataReader`` over an array of single-sample batches."""

    def __init__(self, input_name: str, samples: np.ndarray):
        self._it: Iterator[np.ndarray] = iter(samples)
        self.input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        sample = next(self._it, None)
        return None if sample is None else {self.input_name: sample[None].astype(np.float32)}

    def rewind(self) -> None:  # pragma: no cover - not used by MinMax
        raise NotImplementedError


def quantize_int8(src: str | Path, dst: str | Path, samples: np.ndarray, input_name: str = "input") -> Path:
    """Statically quantize ``src`` to QDQ int8 at ``dst`` using ``samples`` (N, ...) for calibration."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from export.library_logs import library_logs_to

    reader = _Reader(input_name, samples)
    with library_logs_to(Path(dst).parent / "logs" / "int8-onnxruntime.log"):
        quantize_static(
            str(src),
            str(dst),
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
        )
    return Path(dst)
