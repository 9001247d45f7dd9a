"""Training progress that hides nothing: every logged term, on a terminal and in a log file.

On a terminal a tqdm bar carries the loss terms in its postfix. Every term is shown when they fit
the terminal's width; when they do not, the total (``G_total``, and ``D``) is always shown and the
other terms rotate through the remaining space, with ``[k/n]`` saying which group is on screen.
When the output is not a terminal (a CI log, ``> run.log``, ``nohup``) a bar's ``\\r`` redraws
would pile up in the file, so instead one plain line is written every ``log_every`` steps (and at
the last step) with every term, the rate and the time left.
``enabled=False`` (``--no-progress``, ``train.progress: false``) shows nothing.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import IO, Any

# Shown first and never rotated out: the objective the optimiser sees, and the discriminator's.
PINNED = ("G_total", "D")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_terms(logs: dict[str, Any]) -> list[str]:
    """``name=value`` strings, pinned totals first, then the rest in logging order."""
    pinned = [k for k in PINNED if k in logs]
    rest = [k for k in logs if k not in pinned]
    return [f"{k}={_fmt(logs[k])}" for k in pinned + rest]


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """``update(step, logs)`` after each step; ``close()`` at the end (also a context manager)."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", enabled: bool = True, log_every: int = 10,
                 stream: IO[str] | None = None, tty: bool | None = None, width: int | None = None):
        self.total, self.step, self.desc = int(total), int(initial), desc
        self.enabled = enabled
        self.log_every = max(1, int(log_every or 1))
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(tty if tty is not None else getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self._start, self._start_step = time.perf_counter(), int(initial)
        self._rotation = 0
        self.bar = None
        if self.enabled and self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.step, desc=desc, dynamic_ncols=True, leave=False,
                            file=self.stream)

    # -- the terminal bar --------------------------------------------------------------------------
    def _columns(self) -> int:
        return self.width or shutil.get_terminal_size((100, 20)).columns

    def postfix(self, logs: dict[str, Any]) -> str:
        """The bar's postfix: every term when it fits in the width left by the bar, else a rotating group."""
        terms = format_terms(logs)
        room = max(24, self._columns() - len(self.desc) - 60)  # tqdm's bar, counts and rate take ~60 columns
        if len(", ".join(terms)) <= room:
            return ", ".join(terms)
        pinned = [t for t in terms if t.split("=", 1)[0] in PINNED]
        rest = [t for t in terms if t not in pinned]
        groups: list[list[str]] = []
        for t in rest:
            budget = room - len(", ".join(pinned)) - 10
            if groups and len(", ".join(groups[-1] + [t])) <= budget:
                groups[-1].append(t)
            else:
                groups.append([t])
        group = groups[self._rotation % len(groups)] if groups else []
        self._rotation += 1
        marker = [f"[{(self._rotation - 1) % len(groups) + 1}/{len(groups)}]"] if len(groups) > 1 else []
        return ", ".join(pinned + group + marker)

    # -- plain lines -------------------------------------------------------------------------------
    def line(self, step: int, logs: dict[str, Any]) -> str:
        """One plain progress line: step, every term, rate and time left."""
        elapsed = time.perf_counter() - self._start
        done = step - self._start_step
        rate = done / elapsed if elapsed > 0 and done > 0 else 0.0
        left = (self.total - step) / rate if rate > 0 else 0.0
        pct = 100.0 * step / max(self.total, 1)
        head = f"{self.desc + ' ' if self.desc else ''}step {step}/{self.total} ({pct:.0f}%)"
        tail = f"{rate:.2f} steps/s, {_duration(elapsed)} elapsed, {_duration(left)} left"
        return "  ".join([head, " ".join(format_terms(logs)), tail])

    def update(self, step: int, logs: dict[str, Any]) -> None:
        """Record that ``step`` (1-based count of finished steps) is done with these ``logs``."""
        advanced, self.step = step - self.step, step
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(advanced)
            self.bar.set_postfix_str(self.postfix(logs), refresh=False)
        elif step % self.log_every == 0 or step == self.total:
            print(self.line(step, logs), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
