"""Structural checks on client image bytes before Pillow sees them, and the decode budget.

Pillow parses container structure in Python: JPEG markers before the first scan, PNG chunks, BMP
RLE runs. A file made of millions of empty segments or chunks therefore costs seconds of interpreter
time (holding the GIL) and hundreds of MB before a single pixel is decoded. These scans walk the same
structure with bounded loops (or C-speed regex searches) and refuse what no real encoder writes:

- JPEG: bytes after SOI must be markers; at most ``MAX_JPEG_SEGMENTS`` header segments and
  ``MAX_JPEG_HEADER_BYTES`` of them before the first scan, and at most ``MAX_JPEG_SCANS`` scans
  (progressive files have about 10; each extra scan re-decodes the whole image in libjpeg).
- PNG: at most ``MAX_PNG_CHUNKS`` chunks (libpng writes 8 KiB IDATs: 2,048 for 16 MiB).
- BMP: only uncompressed (``BI_RGB``) and bit-field layouts; RLE4/RLE8 are decoded by Pillow in
  Python (12 s for 17 kB) and embedded JPEG/PNG are refused as well.
- WebP: the RIFF size must match the bytes sent.

:class:`PixelBudget` bounds the pixels being decoded at once (counted as the full-size copies each
decoder holds, :func:`decode_cost`), so decoder memory is set by configuration
(``decode_budget_pixels``), not by how many uploads arrive together.
"""

from __future__ import annotations

import asyncio
import re
import struct
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from serve.errors import ApiError

MAX_JPEG_SEGMENTS = 512
MAX_JPEG_HEADER_BYTES = 4 * 1024 * 1024  # EXIF, XMP and a multi-segment ICC profile fit easily
MAX_JPEG_SCANS = 100
MAX_PNG_CHUNKS = 8192

# Markers without a length field: TEM, RSTn, SOI, EOI.
_STANDALONE = {0x01, *range(0xD0, 0xD8), 0xD8, 0xD9}
_SOS = 0xDA
# In entropy-coded data 0xFF is followed by 0x00 (stuffing) or a restart marker; anything else is a marker.
_MARKER_IN_SCAN = re.compile(rb"\xff(?=[\xc0-\xcf\xda-\xfe])")
_SOS_IN_SCAN = re.compile(rb"\xff\xda")

# BMP compression codes: 0 BI_RGB, 3 BI_BITFIELDS, 6 BI_ALPHABITFIELDS are raw; the rest are refused.
_BMP_COMPRESSION = {1: "RLE8", 2: "RLE4", 4: "embedded JPEG", 5: "embedded PNG"}
_BMP_RAW = {0, 3, 6}


# Full-size copies of the pixels a decoder holds at its peak, per format: Pillow's WebP path has
# libwebp's canvas, a bytes copy of it and the image; the others decode straight into the image.
DECODE_COPIES = {"WEBP": 3}


def decode_cost(fmt: str | None, size: tuple[int, int]) -> int:
    """What decoding an image of ``size`` (after any draft) costs against a :class:`PixelBudget`."""
    return size[0] * size[1] * DECODE_COPIES.get(fmt or "", 1)


def check_structure(data: bytes, fmt: str) -> None:
    """Refuse ``data`` (already sniffed as ``fmt``) when its structure is malformed or absurd.

    400: malformed. 413: more segments, chunks or scans than any real encoder writes.
    415: a BMP compression this server does not decode.
    """
    if fmt == "JPEG":
        _check_jpeg(data)
    elif fmt == "PNG":
        _check_png(data)
    elif fmt == "BMP":
        _check_bmp(data)
    elif fmt == "WEBP":
        _check_webp(data)


def _check_jpeg(data: bytes) -> None:
    pos, segments, end = 2, 0, len(data)
    while True:
        if pos >= end:
            raise ApiError(400, "truncated JPEG: no scan (SOS) before the end of the file")
        if data[pos] != 0xFF:
            raise ApiError(400, f"malformed JPEG: byte {pos} is 0x{data[pos]:02x}, not a marker")
        fill = pos
        while pos < end and data[pos] == 0xFF:
            pos += 1
        if pos - fill > 64:
            raise ApiError(400, f"malformed JPEG: {pos - fill} fill bytes at byte {fill}")
        if pos >= end:
            raise ApiError(400, "truncated JPEG: the file ends inside a marker")
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            if marker in (0xD8, 0xD9):
                raise ApiError(400, f"malformed JPEG: marker 0xff{marker:02x} before the first scan")
            continue
        if pos + 2 > end:
            raise ApiError(400, "truncated JPEG: the file ends inside a segment length")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise ApiError(400, f"malformed JPEG: segment 0xff{marker:02x} at byte {pos - 2} has length {length}")
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise ApiError(413, f"JPEG has more than {MAX_JPEG_SEGMENTS} header segments")
        pos += length
        if pos > MAX_JPEG_HEADER_BYTES:
            raise ApiError(413, f"JPEG header segments exceed {MAX_JPEG_HEADER_BYTES} bytes")
        if marker == _SOS:
            break
    scan_markers = 0
    for _ in _MARKER_IN_SCAN.finditer(data, pos):
        scan_markers += 1
        if scan_markers > MAX_JPEG_SEGMENTS:
            raise ApiError(413, f"JPEG has more than {MAX_JPEG_SEGMENTS} segments between its scans")
    scans = 1 + sum(1 for _ in _SOS_IN_SCAN.finditer(data, pos))
    if scans > MAX_JPEG_SCANS:
        raise ApiError(413, f"JPEG has {scans} scans; at most {MAX_JPEG_SCANS} are accepted")


def _check_png(data: bytes) -> None:
    pos, chunks, end = 8, 0, len(data)
    while pos + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise ApiError(413, f"PNG has more than {MAX_PNG_CHUNKS} chunks")
        pos += 12 + length
        if kind == b"IEND":
            return
    # Truncated files are left to the decoder, which answers 400 with its own reason.


def _check_bmp(data: bytes) -> None:
    if len(data) < 18:
        raise ApiError(400, "truncated BMP header")
    (header_size,) = struct.unpack_from("<I", data, 14)
    if header_size < 40:
        return  # OS/2 BITMAPCOREHEADER: no compression field, always raw
    if len(data) < 34:
        raise ApiError(400, "truncated BMP header")
    (compression,) = struct.unpack_from("<I", data, 30)
    if compression not in _BMP_RAW:
        kind = _BMP_COMPRESSION.get(compression, f"compression {compression}")
        raise ApiError(415, f"compressed BMP ({kind}) is not accepted; send an uncompressed BMP, PNG or WebP")


def _check_webp(data: bytes) -> None:
    (riff_size,) = struct.unpack_from("<I", data, 4)
    if riff_size + 8 > len(data):
        raise ApiError(400, f"truncated WebP: the RIFF header declares {riff_size + 8} bytes, {len(data)} were sent")


class PixelBudget:
    """A FIFO semaphore weighted by pixels (or bytes): at most ``capacity`` units are held at once.

    A request wanting more than the whole budget waits for all of it (it then runs alone). Waiting
    longer than ``timeout_s`` answers ``status`` (429 by default) with ``Retry-After``: the server is
    up and answering, the client sent more large work at once than it is configured to hold, and
    should slow down.
    """

    def __init__(self, capacity: int, retry_after_s: int = 1, status: int = 429,
                 what: str = "the decoder", unit: str = "pixels") -> None:
        self.capacity = max(1, int(capacity))
        self.in_use = 0
        self.retry_after_s = retry_after_s
        self.status = status
        self.what = what
        self.unit = unit
        self._waiters: deque[tuple[int, asyncio.Future]] = deque()

    def _grant(self) -> None:
        while self._waiters:
            cost, future = self._waiters[0]
            if future.done():  # timed out or cancelled
                self._waiters.popleft()
                continue
            if self.in_use + cost > self.capacity:
                return
            self._waiters.popleft()
            self.in_use += cost
            future.set_result(None)

    async def acquire(self, amount: int, timeout_s: float) -> int:
        """Wait for ``amount`` units (capped at the capacity); returns what :meth:`release` gives back."""
        cost = min(max(1, int(amount)), self.capacity)
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((cost, future))
        self._grant()
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if future.done() and not future.cancelled():
                self.in_use -= cost  # granted just as the wait ended: give it back
            else:
                future.cancel()
            self._grant()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise ApiError(
                self.status,
                f"{self.what} is busy with {self.in_use} {self.unit} (budget {self.capacity}); retry later",
                {"Retry-After": str(self.retry_after_s)},
            ) from exc
        return cost

    def release(self, cost: int) -> None:
        self.in_use -= cost
        self._grant()

    @asynccontextmanager
    async def hold(self, amount: int, timeout_s: float) -> AsyncIterator[None]:
        cost = await self.acquire(amount, timeout_s)
        try:
            yield
        finally:
            self.release(cost)
