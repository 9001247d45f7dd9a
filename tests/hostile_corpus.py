"""A corpus of hostile inputs for the server and the artifact readers, built from scratch (no files fetched).

- :func:`image_cases`: decompression bombs, structure bombs and malformed files in every accepted
  format (PNG, JPEG, WebP, BMP), refused formats, and well-formed awkward inputs (16-bit, alpha,
  palette transparency, EXIF rotation, CMYK) that must answer 200.
- :func:`json_cases`: hostile ``generate`` bodies (deep nesting, huge numbers, wrong types, big strings).
- :func:`large_uploads`: 4096 x 4096 images in several formats for the concurrency and memory check.
- :func:`tampered_bundles`: copies of a good bundle with one lie each, which ``slimgan serve`` must refuse.

``python tests/hostile_corpus.py OUT_DIR [--bundle GOOD_BUNDLE]`` writes the corpus to disk
(``images/``, ``json/``, ``bundles/``, ``cases.json`` with the expected status codes).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

OK = frozenset({200})


@dataclass(frozen=True)
class Case:
    """One request: ``body`` sent to ``route`` as ``content_type`` (``multipart`` wraps it as field ``image``)."""

    name: str
    body: bytes
    content_type: str
    expect: frozenset[int]
    route: str = "translate"
    params: dict[str, str] = field(default_factory=dict)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _noise(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2, "CMYK": 4}[mode]
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.frombytes(mode, size, arr.tobytes())


def _gradient(size: int) -> Image.Image:
    """A smooth ``size`` x ``size`` RGB image: large when decoded, small when compressed."""
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    arr = np.stack([np.broadcast_to(ramp, (size, size)), np.broadcast_to(ramp[:, None], (size, size)),
                    np.full((size, size), 128, np.float32)], axis=-1)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` zeros: tens of kB, gigapixels when decoded."""
    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png_chunk_bomb(chunks: int = 200_000) -> bytes:
    """A 16 x 16 PNG with ``chunks`` empty ancillary chunks before its data (Pillow walks each in Python)."""
    good = _encode(_noise((16, 16)), "PNG")
    head, rest = good[:33], good[33:]  # signature + IHDR, then IDAT/IEND
    return head + _png_chunk(b"zzZz", b"") * chunks + rest


def png_16bit_grey() -> bytes:
    """A 16-bit greyscale ramp: must be scaled to 8 bits, not clipped to white."""
    arr = np.linspace(0, 65535, 64 * 64).astype(np.uint16).reshape(64, 64)
    return _encode(Image.frombytes("I;16", (64, 64), arr.astype("<u2").tobytes()), "PNG")


def png_palette_transparency() -> bytes:
    image = _noise((48, 40)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return _encode(image, "PNG", transparency=0)


def jpeg_segment_bomb(size: int = 2 * 1024 * 1024) -> bytes:
    """SOI, then ``size`` bytes of empty APP0 segments (4 bytes each), then a real image."""
    real = _encode(_noise((16, 16)), "JPEG")
    return b"\xff\xd8" + b"\xff\xe0\x00\x02" * (size // 4) + real[2:]


def jpeg_junk_after_soi(size: int = 2 * 1024 * 1024) -> bytes:
    return b"\xff\xd8" + os.urandom(size).replace(b"\xff", b"\x00")


def jpeg_huge_header(width: int = 65000, height: int = 65000) -> bytes:
    """A baseline JPEG whose SOF claims ``width`` x ``height`` (4.2 gigapixels)."""
    real = bytearray(_encode(_noise((16, 16)), "JPEG"))
    pos = real.find(b"\xff\xc0")
    struct.pack_into(">HH", real, pos + 5, height, width)
    return bytes(real)


def jpeg_scan_bomb(scans: int = 500) -> bytes:
    """A real JPEG with ``scans`` extra empty scans before EOI (each re-runs libjpeg over the image)."""
    real = _encode(_noise((64, 64)), "JPEG", progressive=True)
    sos = real[real.find(b"\xff\xda") :][:14]  # marker, length, one scan header
    return real[:-2] + (sos + b"\x00" * 16) * scans + b"\xff\xd9"


def jpeg_exif_rotated() -> bytes:
    """48 x 32 stored, EXIF orientation 6: shown (and answered) as 32 x 48."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(_noise((48, 32)), "JPEG", exif=exif.tobytes())


def webp_lossless(size: int = 4096) -> bytes:
    """A flat lossless WebP: a few hundred bytes that decode to ``size``**2 pixels."""
    return _encode(Image.new("RGB", (size, size), (30, 160, 90)), "WEBP", lossless=True)


def webp_huge_canvas(side: int = 16383) -> bytes:
    """A VP8X header claiming a ``side`` x ``side`` canvas, with no image data."""
    vp8x = struct.pack("<I", 0) + (side - 1).to_bytes(3, "little") + (side - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def bmp_rle(bits: int = 8, width: int = 4000, height: int = 4000) -> bytes:
    """An RLE8/RLE4 BMP: long runs of one colour (Pillow decodes RLE in Python)."""
    runs = b""
    run = bytes([255, 1]) if bits == 8 else bytes([255, 0x11])
    per_row = run * (width // 255) + b"\x00\x00"  # end of line
    runs = per_row * height + b"\x00\x01"  # end of bitmap
    palette = b"\x00\x00\x00\x00" + b"\xff\xff\xff\x00" + b"\x00" * 4 * ((1 << bits) - 2)
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, 1 if bits == 8 else 2, len(runs), 2835, 2835,
                       1 << bits, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(runs), 0, 0, offset) + info + palette + runs


def bmp_huge_header(width: int = 50000, height: int = 50000) -> bytes:
    real = bytearray(_encode(_noise((8, 8)), "BMP"))
    struct.pack_into("<ii", real, 18, width, height)
    return bytes(real)


def image_cases() -> list[Case]:
    """Every hostile or awkward image, with the status codes that are acceptable for it."""
    png = _encode(_noise((64, 48)), "PNG")
    jpeg = _encode(_noise((64, 48)), "JPEG")
    webp = _encode(_noise((64, 48)), "WEBP")
    bmp = _encode(_noise((64, 48)), "BMP")
    bad_crc = bytearray(png)
    bad_crc[29] ^= 0xFF  # inside the IHDR CRC
    refused = frozenset({400, 413, 415})
    cases = [
        Case("png_bomb_20000x20000", png_bomb(), "image/png", frozenset({413})),
        Case("png_chunk_bomb", png_chunk_bomb(), "image/png", frozenset({413})),
        Case("png_truncated", png[: len(png) // 2], "image/png", frozenset({400})),
        Case("png_bad_crc", bytes(bad_crc), "image/png", frozenset({400})),
        Case("png_16bit_grey", png_16bit_grey(), "image/png", OK),
        Case("png_rgba", _encode(_noise((64, 48), "RGBA"), "PNG"), "image/png", OK),
        Case("png_la", _encode(_noise((40, 40), "LA"), "PNG"), "image/png", OK),
        Case("png_palette_trns", png_palette_transparency(), "image/png", OK),
        Case("png_multipart", png, "multipart", OK),
        Case("jpeg_segment_bomb", jpeg_segment_bomb(), "image/jpeg", frozenset({413})),
        Case("jpeg_junk_after_soi", jpeg_junk_after_soi(), "image/jpeg", frozenset({400})),
        Case("jpeg_huge_header", jpeg_huge_header(), "image/jpeg", frozenset({413})),
        Case("jpeg_scan_bomb", jpeg_scan_bomb(), "image/jpeg", frozenset({413})),
        Case("jpeg_truncated", jpeg[: len(jpeg) // 2], "image/jpeg", frozenset({400})),
        Case("jpeg_exif_rotated", jpeg_exif_rotated(), "image/jpeg", OK),
        Case("jpeg_cmyk", _encode(_noise((40, 40), "CMYK"), "JPEG"), "image/jpeg", OK),
        Case("jpeg_grey", _encode(_noise((40, 40), "L"), "JPEG"), "image/jpeg", OK),
        Case("webp_lossless_4096", webp_lossless(), "image/webp", OK),
        Case("webp_huge_canvas", webp_huge_canvas(), "image/webp", frozenset({400, 413})),
        Case("webp_truncated", webp[: len(webp) // 2], "image/webp", frozenset({400})),
        Case("webp_rgba", _encode(_noise((40, 40), "RGBA"), "WEBP", lossless=True), "image/webp", OK),
        Case("bmp_rle8", bmp_rle(8), "image/bmp", frozenset({415})),
        Case("bmp_rle4", bmp_rle(4), "image/bmp", frozenset({415})),
        Case("bmp_huge_header", bmp_huge_header(), "image/bmp", frozenset({413})),
        Case("bmp_truncated", bmp[: len(bmp) // 2], "image/bmp", frozenset({400})),
        Case("bmp_rgba", _encode(_noise((40, 40), "RGBA"), "BMP"), "image/bmp", OK),
        Case("gif", _encode(_noise((16, 16)).convert("P"), "GIF"), "image/gif", frozenset({415})),
        Case("gif_as_octet_stream", _encode(_noise((16, 16)).convert("P"), "GIF"), "application/octet-stream",
             frozenset({400})),
        Case("tiff", _encode(_noise((16, 16)), "TIFF"), "application/octet-stream", frozenset({400})),
        Case("svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>', "application/octet-stream", frozenset({400})),
        Case("empty", b"", "image/png", frozenset({400})),
        Case("random_bytes", os.urandom(4096), "application/octet-stream", frozenset({400})),
        Case("wrong_content_type", png, "text/plain", frozenset({415})),
        Case("over_body_limit", b"\x89PNG\r\n\x1a\n" + b"\x00" * (17 * 1024 * 1024), "image/png", frozenset({413})),
        # answered at the input's size, 20000 px wide: more than WebP holds
        Case("wide_strip_as_webp", _encode(Image.new("RGB", (20000, 400)), "PNG"), "image/png", frozenset({422}),
             params={"format": "webp", "upscale": "true"}),
        # sides 64:1, the most accepted: answered at the inference size, which WebP holds
        Case("wide_strip_as_png", _encode(Image.new("RGB", (6400, 100)), "PNG"), "image/png", OK,
             params={"format": "webp"}),
        # a needle: shrinking its long side would need a resampling table as long as that side
        Case("needle_strip", _encode(Image.new("RGB", (20000, 1)), "PNG"), "image/png", frozenset({422})),
        Case("bad_format_param", png, "image/png", frozenset({422}), params={"format": "gif"}),
    ]
    assert all(c.expect <= refused | OK | {422} for c in cases)
    return cases


def json_cases() -> list[Case]:
    """Hostile ``generate`` bodies; only the plain one may answer 200."""
    bad = frozenset({422})
    bodies = {
        "valid": (b'{"seed": 3, "count": 2}', OK),
        "deep_nesting": (b"[" * 100_000 + b"]" * 100_000, bad),
        "deep_object": (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, bad),
        "huge_seed": (b'{"seed": 1' + b"0" * 5000 + b"}", bad),
        "huge_count": (b'{"count": 1000000000}', bad),
        "zero_count": (b'{"count": 0}', bad),
        "negative_seed": (b'{"seed": -1}', bad),
        "string_seed": (b'{"seed": "seven"}', bad),
        "float_count": (b'{"count": 2.5}', bad),
        "nan": (b'{"seed": NaN}', bad),
        "extra_field": (b'{"seed": 1, "evil": true}', bad),
        "bad_format": (b'{"format": "gif"}', bad),
        "big_string": (b'{"format": "' + b"x" * (1024 * 1024) + b'"}', bad),
        "not_json": (b"seed=1", bad),
        "empty": (b"", bad),
        "array": (b"[1, 2, 3]", bad),
        "utf16": ('{"seed": 1}'.encode("utf-16"), bad),
    }
    cases = [Case(f"json_{name}", body, "application/json", expect, route="generate")
             for name, (body, expect) in bodies.items()]
    cases.append(Case("json_wrong_content_type", b'{"seed": 1}', "text/plain", frozenset({415}), route="generate"))
    return cases


def large_uploads(size: int = 4096) -> list[tuple[str, bytes, str]]:
    """(name, bytes, content type) of ``size``**2 images in each accepted format that compresses them."""
    image = _gradient(size)
    return [
        ("png", _encode(image, "PNG", compress_level=1), "image/png"),
        ("jpeg", _encode(image, "JPEG", quality=90), "image/jpeg"),
        ("webp", webp_lossless(size), "image/webp"),
        ("png_rgba", _encode(image.convert("RGBA"), "PNG", compress_level=1), "image/png"),
    ]


def _edit_manifest(bundle: Path, edit) -> None:
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def tampered_bundles(good: Path, out: Path) -> dict[str, Path]:
    """Copies of ``good`` (a translate bundle with ``model.onnx``), each with one lie; name -> directory."""
    out.mkdir(parents=True, exist_ok=True)
    secret = out / "outside.onnx"
    shutil.copy(good / "model.onnx", secret)  # a valid model, but outside the bundle

    def setter(*keys, value):
        def edit(data):
            node = data
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            node[keys[-1]] = value

        return edit

    edits = {
        "absolute_path": setter("files", "fp32", value=str(secret.resolve())),
        "dotdot_path": setter("files", "fp32", value="../outside.onnx"),
        "missing_model": setter("files", "fp32", value="nothere.onnx"),
        "string_scale": setter("preprocessing", "scale", value="0.0078"),
        "string_opset": setter("opset", value="17"),
        "files_list": setter("files", value=["model.onnx"]),
        "shape_not_list": setter("input", "shape", value="batch,3,h,w"),
        "absurd_fixed_size": setter("preprocessing", "fixed_size", value=[100000, 100000]),
        "absurd_shape": setter("input", "shape", value=["batch", 3, 100000, 100000]),
        "nan_offset": setter("postprocessing", "offset", value=float("nan")),
        "bool_max_batch": setter("max_batch", value=True),
        "string_format_version": setter("format_version", value="1"),
        "unknown_task": setter("task", value="classify"),
        "channels_lie": setter("input", "shape", value=["batch", 1, "height", "width"]),
        "rank_lie": setter("output", "shape", value=["batch", 3, "height"]),
        "unknown_field": setter("served_by", value="someone else"),
        "string_runtime_files": setter("runtimes", "onnxruntime", value={"files": "model.onnx"}),
        "checksum_not_hex": setter("checksums", "model.onnx", value="not a sha256"),
        "checksum_escapes": setter("checksums", "../outside.onnx", value="0" * 64),
        "checksum_of_missing_file": setter("checksums", "gone.bin", value="0" * 64),
    }
    bundles: dict[str, Path] = {}
    for name, edit in edits.items():
        bundle = out / name
        shutil.copytree(good, bundle)
        _edit_manifest(bundle, edit)
        bundles[name] = bundle
    symlinked = out / "symlinked_model"
    shutil.copytree(good, symlinked)
    (symlinked / "model.onnx").unlink()
    (symlinked / "model.onnx").symlink_to(secret.resolve())
    bundles["symlinked_model"] = symlinked
    corrupt = out / "corrupt_model"
    shutil.copytree(good, corrupt)
    (corrupt / "model.onnx").write_bytes(b"\x08\x07" + os.urandom(2048))
    bundles["corrupt_model"] = corrupt
    edited = out / "checksum_mismatch"  # a valid model, but not the one the manifest vouches for
    shutil.copytree(good, edited)
    (edited / "model.onnx").write_bytes((good / "model.onnx").read_bytes() + b"\0")
    bundles["checksum_mismatch"] = edited
    truncated = out / "truncated_model"
    shutil.copytree(good, truncated)
    model = (good / "model.onnx").read_bytes()
    (truncated / "model.onnx").write_bytes(model[: len(model) // 2])
    bundles["truncated_model"] = truncated
    for name, text in {"manifest_not_json": "{not json", "manifest_deep": "[" * 100_000}.items():
        bundle = out / name
        shutil.copytree(good, bundle)
        (bundle / "manifest.json").write_text(text)
        bundles[name] = bundle
    return bundles


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("usage: python tests/hostile_corpus.py OUT_DIR [--bundle GOOD_BUNDLE]", file=sys.stderr)
        return 2
    out = Path(argv[0])
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "json").mkdir(parents=True, exist_ok=True)
    index = {}
    for case in image_cases() + json_cases():
        folder = "images" if case.route == "translate" else "json"
        path = out / folder / case.name
        path.write_bytes(case.body)
        index[case.name] = {"file": str(path.relative_to(out)), "route": case.route,
                            "content_type": case.content_type, "params": case.params, "expect": sorted(case.expect)}
    (out / "cases.json").write_text(json.dumps(index, indent=2) + "\n")
    if "--bundle" in argv:
        tampered_bundles(Path(argv[argv.index("--bundle") + 1]), out / "bundles")
    print(f"wrote {len(index)} cases to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
