"""A lock file on a run directory, so that two runs cannot write one ``--out`` at the same time.

Two runs on one directory would both write ``state.pt``, ``metrics.csv`` and the checkpoints, and
neither would notice. :class:`RunLock` creates ``RUN/.slimgan.lock`` atomically (``O_CREAT | O_EXCL``)
holding the owner's PID, host, command and start time, and removes it on release (the ``with`` block
ends, normally or by an exception, Ctrl-C included). A lock left by a process that no longer
exists (killed with SIGKILL, a machine that rebooted) is stale: the next run takes it over and
says so. A lock held by a live process fails with one line naming that process.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from distill.errors import SlimganError

log = logging.getLogger(__name__)

LOCK_NAME = ".slimgan.lock"


class RunLockedError(SlimganError):
    """The run directory is held by another live process."""


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def read_lock(directory: str | Path) -> dict[str, Any] | None:
    """The lock's contents, or None when the directory is not locked (or the file is unreadable)."""
    path = Path(directory) / LOCK_NAME
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class RunLock:
    """``with RunLock(out): ...`` holds ``out/.slimgan.lock`` for the block's duration."""

    def __init__(self, directory: str | Path, what: str = ""):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.what = what or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200]
        self.held = False

    def _holder(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(), "command": self.what,
                "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}

    def acquire(self) -> RunLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # create; or take over a stale lock and create again
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = read_lock(self.directory) or {}
                pid = int(other.get("pid") or 0)
                same_host = other.get("host") in (None, socket.gethostname())
                if pid and (_alive(pid) or not same_host):
                    where = "" if same_host else f" on {other.get('host')}"
                    raise RunLockedError(
                        f"run directory {self.directory} is in use by PID {pid}{where} "
                        f"({other.get('command') or 'another slimgan run'}, started {other.get('started', '?')}); "
                        f"wait for it, stop it, or pick another --out (lock file {self.path})"
                    ) from None
                log.warning("taking over the stale lock %s (PID %s is not running)", self.path, pid or "?")
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(self._holder(), fh)
            self.held = True
            return self
        raise RunLockedError(f"could not lock {self.directory}: {self.path} keeps reappearing")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        other = read_lock(self.directory) or {}
        if other.get("pid") == os.getpid():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
