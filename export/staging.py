"""Atomic bundles: an export is written into a hidden sibling folder and renamed into place.

``slimgan export --out B`` writes ``.B.tmp-<pid>`` next to ``B``; only when every file (models,
``parity.json``, ``speed.json``, ``manifest.json`` last) is written is it published: an existing ``B``
is renamed aside to ``.B.old-<pid>``, the new folder renamed to ``B``, the old one deleted. A process
killed at any moment (SIGKILL included) therefore leaves ``B`` as the old bundle, whole, or no ``B``
(killed between the two renames, the old bundle waits in ``.B.old-<pid>``); never a mix. The next
export of ``B`` removes the leftovers of dead exports. serve loads the folder it is given, never a
hidden sibling.

An :class:`OSError` while writing (a full disk, a read-only folder) becomes :class:`ExportIOError`: one
line naming the bundle path and the errno, with the partial folder removed.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from slimgan.errors import ConfigError, SlimganError

TMP_TAG = "tmp"
OLD_TAG = "old"
LOW_SPACE_BYTES = 1 << 20


class ExportIOError(SlimganError):
    """The bundle could not be written (disk full, no permission...): one line with the path and errno."""


def sibling(out: Path, tag: str, pid: int | None = None) -> Path:
    return out.parent / f".{out.name}.{tag}-{os.getpid() if pid is None else pid}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(out: Path) -> list[Path]:
    """Remove the temporary and set-aside siblings of ``out`` left by exports that are no longer running."""
    removed = []
    for tag in (TMP_TAG, OLD_TAG):
        for path in out.parent.glob(f".{out.name}.{tag}-*"):
            pid = path.name.rsplit("-", 1)[-1]
            if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def _check_target(out: Path) -> None:
    """``out`` may be new, an empty folder or a bundle (it is replaced); anything else is not ours to delete."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise ConfigError(f"--out {out} is a folder that is not a slimgan bundle; give a new or empty folder, or a bundle to replace")


def publish(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` to ``out``, replacing an existing ``out`` (see module docstring)."""
    old = None
    if out.exists():
        old = sibling(out, OLD_TAG)
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def io_error(exc: BaseException, tmp: Path, out: Path) -> ExportIOError | None:
    """The one-line error for a failed write (paths inside ``tmp`` named as they would be in ``out``), or
    None when ``exc`` is not one. Some writers (OpenVINO's serializer) report a full disk as their own
    error type: a folder with less than 1 MiB free is reported as ENOSPC."""
    if isinstance(exc, OSError) and exc.errno is not None:
        path = Path(exc.filename) if exc.filename else _last_written(tmp)
        return ExportIOError(f"cannot write {_shown(path, tmp, out)}: [Errno {exc.errno}] {os.strerror(exc.errno)}")
    try:
        free = shutil.disk_usage(out.parent).free
    except OSError:
        return None
    if free < LOW_SPACE_BYTES and not isinstance(exc, SlimganError):
        path = _shown(_last_written(tmp), tmp, out)
        return ExportIOError(f"cannot write {path}: [Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}")
    return None


def _last_written(tmp: Path) -> Path:
    """The file written last in ``tmp`` (a write error without a file name was about it), else ``tmp``."""
    try:
        files = [p for p in tmp.rglob("*") if p.is_file()]
        return max(files, key=lambda p: p.stat().st_mtime_ns) if files else tmp
    except OSError:
        return tmp


def _shown(path: Path, tmp: Path, out: Path) -> Path:
    """``path`` as the user knows it: inside ``out``, not the temporary sibling."""
    return out / path.relative_to(tmp) if path.is_relative_to(tmp) else path


@contextmanager
def staged_bundle(out: str | Path) -> Iterator[Path]:
    """Yield the temporary folder to write the bundle into; publish it as ``out`` when the block succeeds.

    On any failure the temporary folder is removed and ``out`` is left as it was.
    """
    out = Path(out).absolute()
    _check_target(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(out)
        tmp = sibling(out, TMP_TAG)
        tmp.mkdir()
    except OSError as exc:
        raise io_error(exc, out.parent, out) from None  # type: ignore[misc]
    try:
        yield tmp
        publish(tmp, out)
    except BaseException as exc:
        error = io_error(exc, tmp, out) if isinstance(exc, Exception) else None
        shutil.rmtree(tmp, ignore_errors=True)
        if error is not None:
            raise error from None
        raise
