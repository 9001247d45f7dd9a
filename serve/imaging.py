"""Image decoding with input guards, model-shaped pre/post-processing and encoding. numpy + Pillow only.

Decoding is defensive: only whitelisted formats are opened (sniffed from magic bytes, not from the
client's content type), their container structure is scanned first (:mod:`serve.image_guards`), the
header's width x height is checked against the pixel limit *before* any pixel is decoded (so a
20000 x 20000 PNG bomb costs a few hundred bytes of header parsing), an oversized JPEG is decoded
at the smallest DCT scale that still covers the inference size (``draft``), and any decoder failure
becomes a 400. Inputs are normalised the way a viewer shows them: EXIF orientation applied, 16-bit
greyscale scaled to 8 bits (not clipped), alpha composited on white (``ALPHA_BACKGROUND``).
Translation maps ``x_float = x_uint8 * scale + offset`` (manifest ``preprocessing``) and back
``uint8 = clip((y - offset) / scale)`` (``postprocessing``). Outputs come back at the input's size,
but never larger than the inference size unless the caller asks (``upscale``).
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
from serve.image_guards import check_structure

# Magic bytes -> Pillow format name. Only these are ever handed to a decoder.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
INPUT_MEDIA_TYPES = ("image/png", "image/jpeg", "image/webp", "image/bmp")
ALPHA_BACKGROUND = (255, 255, 255)  # transparent pixels are shown on white, as a browser page does
# Largest side each encoder can write (WebP: 14-bit dimensions; JPEG: 16-bit, less the MCU padding).
MAX_ENCODE_SIDE = {"png": 2**31 - 1, "jpeg": 65500, "webp": 16383}
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


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
    check_structure(data, fmt)
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


def check_aspect(size: tuple[int, int], max_aspect: float) -> None:
    """422 for a needle-shaped image: a 1 x 16,777,216 PNG is a few kB, but shrinking its long side
    needs a resampling table as large as that side times the shrink factor, for no real photograph."""
    width, height = size
    if max(width, height) > max_aspect * min(width, height):
        raise ApiError(
            422, f"image is {width}x{height}: its sides differ more than {max_aspect:g} times; crop or pad it first"
        )


def resize_cost(src: tuple[int, int], dst: tuple[int, int], support: float = 2.0) -> int:
    """Memory of a resize from ``src`` to ``dst`` (W, H), in RGB pixels, for a pixel budget.

    Pillow resamples width first, through an intermediate image of ``dst`` W x ``src`` H, then height,
    and precomputes one row of kernel taps (8-byte doubles) per output column and row; a tap row is
    ``2 * ceil(support * shrink) + 1`` long, so shrinking a long side costs that side, not only W x H.
    ``support`` is the kernel's half-width (BICUBIC: 2).
    """
    if src == dst:
        return 0
    (sw, sh), (dw, dh) = src, dst

    def taps(n_in: int, n_out: int) -> int:
        return 0 if n_in == n_out else n_out * (2 * math.ceil(support * max(1.0, n_in / n_out)) + 1)

    coefficients = 8 * (taps(sw, dw) + taps(sh, dh))
    return dw * sh + dw * dh + coefficients // 3


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


# Sides a dynamic graph is fed (before rounding up to the model's size multiple): inputs are padded up to
# the next one, so the runtime sees a few dozen shapes rather than one per client size, and its
# per-shape state (compiled kernels, memory plans) stops growing with the number of distinct sizes.
SIDE_BUCKETS = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)


def bucket_side(side: int, multiple: int, max_side: int) -> int:
    """The smallest bucket at least ``side``, as a multiple of ``multiple``; never past ``max_side``
    rounded up to the multiple."""
    top = math.ceil(max(side, max_side) / multiple) * multiple
    for bucket in SIDE_BUCKETS:
        if bucket >= side:
            return min(top, math.ceil(bucket / multiple) * multiple)
    return math.ceil(side / multiple) * multiple


def model_input_size(
    width: int, height: int, pre: Preprocessing, fixed_size: tuple[int, int] | None, max_side: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """((W, H) after resizing, (W, H) after padding) for an input image of ``width`` x ``height``.

    A static graph gets exactly ``fixed_size`` (H, W). A dynamic graph keeps the size, shrunk so the
    longer side is at most ``max_side``, then each side padded up to its bucket (:data:`SIDE_BUCKETS`,
    rounded to a multiple of ``size_multiple``; at least ``max(16, size_multiple)`` so the encoder's
    downsampling never reaches zero).
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
    pw = max(floor, bucket_side(w, m, max_side))
    ph = max(floor, bucket_side(h, m, max_side))
    return (w, h), (pw, ph)


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1-8; 1 when absent or unreadable).

    Read from the raw block only: ``Image.getexif`` on a PNG decodes the whole image to look for an
    eXIf chunk after the pixel data, which must not happen before the decode budget is held.
    """
    raw = image.info.get("exif")
    if not raw:
        return 1
    try:
        exif = Image.Exif()
        exif.load(raw)
        value = exif.get(0x0112, 1)
    except Exception:  # a malformed EXIF block is ignored, as viewers do
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def displayed_size(image: Image.Image) -> tuple[int, int]:
    """(W, H) of ``image`` as shown, after its EXIF orientation."""
    w, h = image.size
    return (h, w) if exif_orientation(image) in (5, 6, 7, 8) else (w, h)


def draft_for_model(
    image: Image.Image, pre: Preprocessing, fixed_size: tuple[int, int] | None, max_side: int
) -> tuple[int, int] | None:
    """Ask a JPEG to decode at the smallest DCT scale (1/2, 1/4, 1/8) still covering the model's input.

    Call before the pixels are decoded. Returns the (W, H) the client sent (oriented) when the
    drafted image no longer shows it, else None.
    """
    if image.format != "JPEG":
        return None
    original = displayed_size(image)  # a JPEG's EXIF precedes its pixels, so this reads no pixel
    (w, h), _ = model_input_size(original[0], original[1], pre, fixed_size, max_side)
    if original != image.size:
        w, h = h, w
    image.draft("L" if pre.color == "L" else "RGB", (w, h))
    return original


def _to_8bit(image: Image.Image) -> Image.Image:
    """Any decoded mode -> ``L``, ``RGB``, ``LA`` or ``RGBA`` (alpha kept for compositing after the resize)."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        # 16-bit samples: scale 0..65535 onto 0..255 (Pillow's convert("L") would clip them to white)
        arr = np.asarray(image).astype(np.float32)
        return Image.fromarray(np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8), mode="L")
    if "transparency" in image.info and image.mode in ("P", "L", "RGB"):
        return image.convert("RGBA")
    if image.mode == "PA":
        return image.convert("RGBA")
    if image.mode in ("L", "RGB", "LA", "RGBA"):
        return image
    return image.convert("L" if image.mode == "1" else "RGB")


def _flatten_alpha(image: Image.Image) -> Image.Image:
    if image.mode not in ("LA", "RGBA"):
        return image
    background = Image.new("RGBA", image.size, (*ALPHA_BACKGROUND, 255))
    return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """A decoded image of any mode as 8-bit RGB: 16-bit samples scaled (not clipped), alpha composited on the
    service's background."""
    return _flatten_alpha(_to_8bit(image)).convert("RGB")


def output_size(original: tuple[int, int], inference: tuple[int, int], upscale: bool) -> tuple[int, int]:
    """The (W, H) a translation is answered at: ``original``, shrunk (keeping its aspect) so its longer
    side does not pass the inference size's longer side unless ``upscale``."""
    if upscale:
        return original
    limit = max(inference)
    if max(original) <= limit:
        return original
    s = limit / max(original)
    return max(1, round(original[0] * s)), max(1, round(original[1] * s))


def prepare_translate(
    image: Image.Image,
    pre: Preprocessing,
    fixed_size: tuple[int, int] | None,
    max_side: int,
    original: tuple[int, int] | None = None,
    upscale: bool = False,
) -> tuple[np.ndarray, Restore]:
    """Image -> model input ``(1, C, H, W)`` float32, plus what :func:`restore_translate` needs.

    ``original`` is the (W, H) the client sent when ``image`` was drafted smaller (see
    :func:`draft_for_model`); by default it is ``image``'s own size after EXIF orientation.
    """
    color = "L" if pre.color == "L" else "RGB"
    image = load_image(image)
    orientation = exif_orientation(image)
    swap = orientation in (5, 6, 7, 8)
    if original is None:
        original = (image.size[1], image.size[0]) if swap else image.size
    (w, h), (pw, ph) = model_input_size(original[0], original[1], pre, fixed_size, max_side)
    image = _to_8bit(image)
    stored = (h, w) if swap else (w, h)  # resize before rotating and compositing: both then touch few pixels
    if image.size != stored:
        image = image.resize(stored, Image.Resampling.BICUBIC)
    if orientation != 1:
        image = image.transpose(_TRANSPOSE[orientation])
    image = _flatten_alpha(image).convert(color)
    arr = np.array(image, dtype=np.float32)  # (H, W) or (H, W, C), writable
    del image
    if arr.ndim == 2:
        arr = arr[:, :, None]
    arr *= np.float32(pre.scale)
    arr += np.float32(pre.offset)
    if (pw, ph) != (w, h):
        arr = np.pad(arr, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    tensor = np.ascontiguousarray(arr.transpose(2, 0, 1)[None])  # (1, C, H, W)
    return tensor, Restore(original=output_size(original, (w, h), upscale), resized=(w, h), color=color)


def to_uint8(output: np.ndarray, post: Postprocessing) -> np.ndarray:
    """Model output ``(C, H, W)`` -> ``(H, W, C)`` uint8 via ``clip((y - offset) / scale)``, rounded or truncated."""
    lo, hi = (post.clip or [-math.inf, math.inf])[:2]
    y = np.clip(output.astype(np.float32, copy=False), lo, hi)  # the one float copy; the rest in place
    # Multiplying by 1/scale (127.5 exactly for [-1, 1]) rounds once, like the reference's (y + 1) / 2 * 255,
    # so truncation lands on the same grey level.
    y -= np.float32(post.offset)
    y *= np.float32(1.0 / post.scale)
    if getattr(post, "rounding", "round") == "truncate":
        np.floor(y, out=y)
    else:
        np.rint(y, out=y)
    np.clip(y, 0, 255, out=y)
    return y.astype(np.uint8).transpose(1, 2, 0)


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
    """Encode as ``png`` (lossless, deterministic), ``jpeg`` or ``webp`` (quality 90).

    422 when the image is larger than the format can hold (WebP: 16383 px a side).
    """
    limit = MAX_ENCODE_SIDE.get(fmt)
    if limit is not None and max(image.size) > limit:
        raise ApiError(
            422,
            f"a {image.size[0]}x{image.size[1]} image cannot be encoded as {fmt} (at most {limit} px a side); "
            "ask for png",
        )
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
