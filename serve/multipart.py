"""A bounded ``multipart/form-data`` parser for an upload already read into memory (run it in a thread).

python-multipart walks the body a byte at a time in Python; a body of boundary-prefix spam (``\\r\\n--a-``
repeated) keeps it busy for seconds. This parser finds delimiters with ``bytes.find`` (C speed, linear
in the body) and refuses what no browser or HTTP library sends before scanning far:

- the boundary must be 1-70 characters of RFC 2046's set;
- the body must open with the first delimiter within ``MAX_PREAMBLE`` bytes;
- at most ``max_parts`` parts, each with at most ``MAX_PART_HEADER`` bytes of headers.

Malformed bodies are 400, too many parts 413. Parts come back as :class:`Part` (field name, file name,
content type, bytes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from serve.errors import ApiError

MAX_PREAMBLE = 1024
MAX_PART_HEADER = 8 * 1024
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")
_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def boundary_of(content_type: str) -> bytes:
    """The ``boundary`` parameter of a multipart content type (400 when absent or not RFC 2046)."""
    params = {k.lower(): v for k, v in _PARAM.findall(content_type)}
    boundary = params.get("boundary", "")
    if boundary.startswith('"') and boundary.endswith('"') and len(boundary) >= 2:
        boundary = boundary[1:-1]
    if not _BOUNDARY.match(boundary):
        raise ApiError(400, "multipart body needs a boundary of 1-70 RFC 2046 characters")
    return boundary.encode("ascii")


def _part_headers(block: bytes) -> tuple[str, str | None, str | None]:
    """(field name, file name, content type) from one part's header block."""
    name = filename = ctype = None
    for line in block.split(b"\r\n"):
        key, sep, value = line.partition(b":")
        if not sep:
            raise ApiError(400, "malformed multipart part header")
        text = value.decode("latin-1").strip()
        key = key.strip().lower()
        if key == b"content-disposition":
            params = {k.lower(): v.strip('"') for k, v in _PARAM.findall(";" + text.partition(";")[2])}
            name, filename = params.get("name"), params.get("filename")
        elif key == b"content-type":
            ctype = text
    if name is None:
        raise ApiError(400, "multipart part without a Content-Disposition name")
    return name, filename, ctype


def parse_form(body: bytes, content_type: str, max_parts: int = 8) -> list[Part]:
    """The parts of ``body``; bounded work whatever the bytes are."""
    boundary = boundary_of(content_type)
    opening = b"--" + boundary
    start = body.find(opening, 0, MAX_PREAMBLE + len(opening))
    if start < 0:
        raise ApiError(400, "multipart body does not start with its boundary")
    delimiter = b"\r\n" + opening
    pos = start + len(opening)
    parts: list[Part] = []
    while True:
        if body.startswith(b"--", pos):
            return parts  # the closing delimiter
        eol = body.find(b"\r\n", pos, pos + 128)  # transport padding after a delimiter is short
        if eol < 0:
            raise ApiError(400, "malformed multipart delimiter line")
        head_end = body.find(b"\r\n\r\n", eol, eol + MAX_PART_HEADER)
        if head_end < 0:
            raise ApiError(400, f"multipart part headers missing or over {MAX_PART_HEADER} bytes")
        if len(parts) >= max_parts:
            raise ApiError(413, f"multipart body has more than {max_parts} parts")
        name, filename, ctype = _part_headers(body[eol + 2 : head_end])
        data_start = head_end + 4
        end = body.find(delimiter, data_start)
        if end < 0:
            raise ApiError(400, "multipart body ends without its closing boundary")
        parts.append(Part(name, filename, ctype, body[data_start:end]))
        pos = end + len(delimiter)
