"""Image decoding with input guards, model-shaped pre/post-processing and encoding. numpy + Pillow only.

Decoding is defensive: only whitelisted formats are opened (sniffed from magic bytes, not from the
client's content type), the header's width x height is checked against the pixel limit *before*
any pixel is decoded (so a 20000 x 20000 PNG bomb costs a few hundred bytes of header parsing), and
any decoder failure becomes a 400. Translation maps ``x_float = x_uint8 * scale + offset``
(manifest ``preprocessing``) and back ``uint8 = clip((y - offset) / scale)`` (``postprocessing``).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from export.manifest import Postprocessing, Preprocessing
from serve.errors import ApiError

# Magic bytes -> Pillow format name. Only these are ever handed to a decoder.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
INPUT_MEDIA_TYPES = ("image/png", "image/jpeg", "image/webp", "image/bmp")


def sniff_format(data: bytes) -> str | None:
    """The whitelisted format ``data`` starts like, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data.startswith(b"BM") and len(data) >= 26:
        return "BMP"
    return None


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Check format and header dimensions of ``data``; returns the image with no pixel decoded yet.

    400: empty or not a whitelisted image. 413: more than ``max_pixels`` pixels.
    """
    if not data:
        raise ApiError(400, "empty image: the request carried no bytes")
    fmt = sniff_format(data)
    if fmt is None:
        raise ApiError(400, f"not a supported image; send one of {', '.join(ALLOWED_FORMATS)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])  # reads the header only
    except Image.DecompressionBombError as exc:
        raise ApiError(413, f"image exceeds the pixel limit: {exc}") from exc
    except Exception as exc:  # any decoder error on client bytes is the client's 400, never a 500
        raise ApiError(400, f"cannot read the {fmt} image: {exc}") from exc
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ApiError(400, f"image has an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ApiError(413, f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    return image


def load_image(image: Image.Image) -> Image.Image:
    """Decode the pixels (first frame) of an image from :func:`open_image`; 400 when truncated or corrupt."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except Image.DecompressionBombError as exc:
        raise ApiError(413, f"image exceeds the pixel limit: {exc}") from exc
    except Exception as exc:  # truncated data, bad CRC, bad Huffman table, ...: all client errors
        raise ApiError(400, f"truncated or corrupt {image.format} image: {exc}") from exc
    return image


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """:func:`open_image` then :func:`load_image`."""
    return load_image(open_image(data, max_pixels))


@dataclass(frozen=True)
class Restore:
    """How to turn the model's output back into an image of the request's size."""

    original: tuple[int, int]  # (W, H) of the request image
    resized: tuple[int, int]  # (W, H) fed to the model before padding
    color: str


def model_input_size(
    width: int, height: int, pre: Preprocessing, fixed_size: tuple[int, int] | None, max_side: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """((W, H) after resizing, (W, H) after padding) for an input image of ``width`` x ``height``.

    A static graph gets exactly ``fixed_size`` (H, W). A dynamic graph keeps the size, shrunk so the
    longer side is at most ``max_side``, then padded up to a multiple of ``size_multiple`` (and to at
    least ``max(16, size_multiple)`` so the encoder's downsampling never reaches zero).
    """
    if fixed_size is not None:
        fh, fw = fixed_size
        return (fw, fh), (fw, fh)
    w, h = width, height
    if max(w, h) > max_side:
        s = max_side / max(w, h)
        w, h = max(1, round(w * s)), max(1, round(h * s))
    m = max(1, int(pre.size_multiple))
    floor = max(16, m)
    pw = max(floor, math.ceil(w / m) * m)
    ph = max(floor, math.ceil(h / m) * m)
    return (w, h), (pw, ph)


def prepare_translate(
    image: Image.Image, pre: Preprocessing, fixed_size: tuple[int, int] | None, max_side: int
) -> tuple[np.ndarray, Restore]:
    """Image -> model input ``(1, C, H, W)`` float32, plus what :func:`restore_translate` needs."""
    color = "L" if pre.color == "L" else "RGB"
    original = image.size
    image = image.convert(color)
    (w, h), (pw, ph) = model_input_size(original[0], original[1], pre, fixed_size, max_side)
    if (w, h) != original:
        image = image.resize((w, h), Image.Resampling.BICUBIC)
    arr = np.asarray(image, dtype=np.float32)  # (H, W) or (H, W, C)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    arr = arr * np.float32(pre.scale) + np.float32(pre.offset)
    if (pw, ph) != (w, h):
        arr = np.pad(arr, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    tensor = np.ascontiguousarray(arr.transpose(2, 0, 1)[None])  # (1, C, H, W)
    return tensor, Restore(original=original, resized=(w, h), color=color)


def to_uint8(output: np.ndarray, post: Postprocessing) -> np.ndarray:
    """Model output ``(C, H, W)`` -> ``(H, W, C)`` uint8 via ``clip((y - offset) / scale)``, rounded or truncated."""
    lo, hi = (post.clip or [-math.inf, math.inf])[:2]
    y = np.clip(output.astype(np.float32, copy=False), lo, hi)
    # Multiplying by 1/scale (127.5 exactly for [-1, 1]) rounds once, like the reference's (y + 1) / 2 * 255,
    # so truncation lands on the same grey level.
    y = (y - np.float32(post.offset)) * np.float32(1.0 / post.scale)
    y = np.floor(y) if getattr(post, "rounding", "round") == "truncate" else np.rint(y)
    return np.clip(y, 0, 255).astype(np.uint8).transpose(1, 2, 0)


def array_to_image(pixels: np.ndarray, color: str) -> Image.Image:
    """``(H, W, C)`` uint8 -> PIL image in ``color`` (``RGB`` or ``L``)."""
    if pixels.shape[2] == 1:
        image = Image.fromarray(pixels[:, :, 0], mode="L")
    else:
        image = Image.fromarray(pixels[:, :, :3], mode="RGB")
    return image if image.mode == color else image.convert(color)


def restore_translate(output: np.ndarray, post: Postprocessing, restore: Restore) -> Image.Image:
    """Model output ``(C, H', W')`` -> image at the request's original size (crop padding, undo resize)."""
    pixels = to_uint8(output, post)
    w, h = restore.resized
    pixels = pixels[:h, :w]
    image = array_to_image(np.ascontiguousarray(pixels), "L" if post.color == "L" else "RGB")
    if image.size != restore.original:
        image = image.resize(restore.original, Image.Resampling.BICUBIC)
    return image


def latents_for(seed: int, count: int, shape: tuple[int, ...]) -> np.ndarray:
    """``(count, *shape)`` float32 latents; row ``i`` is N(0, 1) drawn from seed ``seed + i`` alone."""
    rows = [np.random.default_rng(seed + i).standard_normal(shape, dtype=np.float32) for i in range(count)]
    return np.stack(rows)


def make_grid(images: list[Image.Image]) -> Image.Image:
    """Tile images (same size) into a near-square grid, row-major."""
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    grid = Image.new(images[0].mode, (cols * w, rows * h))
    for i, image in enumerate(images):
        grid.paste(image, ((i % cols) * w, (i // cols) * h))
    return grid


def encode_image(image: Image.Image, fmt: str) -> bytes:
    """Encode as ``png`` (lossless, deterministic), ``jpeg`` or ``webp`` (quality 90)."""
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG", compress_level=1)
    elif fmt == "jpeg":
        image.save(buf, format="JPEG", quality=90)
    elif fmt == "webp":
        image.save(buf, format="WEBP", quality=90, method=4)
    else:
        raise ApiError(422, f"unknown format {fmt!r}; use png, jpeg or webp")
    return buf.getvalue()
