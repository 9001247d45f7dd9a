"""Third-party runtimes in a child process: a crash, a hang or a signal costs one failed row, not the export.

The phone and peer runtimes (LiteRT, coremltools, pnnx / ncnn, ExecuTorch, ONNX Runtime's ORT-format
converter) are native code that can segfault, hang, or print hundreds of lines of log. :func:`run_isolated`
runs one runtime's conversion and, when asked, its parity check in a fresh ``python -m export.isolation``
process:

- what the child needs travels through files in a private work folder: ``job.json``; the PyTorch module
  saved as a slimgan checkpoint (safetensors, no pickles); inputs, reference outputs and calibration
  images as ``.npy``;
- the child's stdout and stderr go to ``BUNDLE/logs/<runtime>.log`` (one section appended per run), so
  the runtimes' noise stays out of the terminal; :mod:`faulthandler` writes the Python stack there when a
  fatal signal arrives;
- the child writes ``result.json`` (the :class:`~export.runtimes.base.ConvertResult` and the parity rows,
  or a one-line error) and exits; before each stage (``import``, ``convert``, ``parity``) it notes the
  stage, so a child killed by a signal or stopped at the timeout becomes one failed row naming the
  runtime, the stage, the signal (``SIGSEGV``) or the timeout, and the log file.

The timeout is ``IsolatedJob.timeout_s``, else ``SLIMGAN_RUNTIME_TIMEOUT_S`` (seconds), else
:data:`DEFAULT_TIMEOUT_S`. The child is started in its own session and the whole process group is killed
at the timeout (and when the parent is interrupted), so helper processes (the pnnx executable) go too.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from export.runtimes.base import ConvertResult, Runtime
from slimgan.errors import SlimganError

DEFAULT_TIMEOUT_S = 1800.0
TIMEOUT_ENV = "SLIMGAN_RUNTIME_TIMEOUT_S"
LOG_DIR = "logs"
_REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ParityJob:
    """What the child checks the converted artifacts against: ``reference`` = PyTorch's outputs on ``inputs``.

    ``data_range``: the output range's width (PSNR and the fp32 gate's 8-bit step). ``label``: how rows
    name the model (its role: ``student``, ``teacher``, ``model``).
    """

    inputs: np.ndarray
    reference: np.ndarray
    threads: int = 1
    data_range: float = 2.0
    label: str = "student"


@dataclass(frozen=True)
class IsolatedJob:
    """One child run of runtime ``runtime`` (a registered name, or a :class:`Runtime` whose class the child
    can import and build without arguments) on the bundle folder ``bundle_dir``.

    ``convert``: convert first (from ``onnx_path`` / ``module`` at ``example_shape``, with ``calib`` and
    ``options`` as in :class:`~export.runtimes.base.ConvertContext`); when False, ``converted`` names the
    artifacts already in ``bundle_dir`` to check. ``parity``: also load the artifacts and compare them
    with the reference (:meth:`Runtime.parity_rows`). ``log_name``: the log file's stem under ``logs/``
    (default: the runtime's name); ``log_dir``: where logs go (default ``bundle_dir/logs``).
    """

    runtime: str | Runtime
    bundle_dir: Path
    onnx_path: Path | None = None
    module: Any = None
    example_shape: tuple[int, ...] = ()
    calib: np.ndarray | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    convert: bool = True
    converted: ConvertResult | None = None
    parity: ParityJob | None = None
    timeout_s: float | None = None
    log_name: str | None = None
    log_dir: Path | None = None


@dataclass(frozen=True)
class IsolatedRun:
    """What a child run produced. ``result`` is None and ``error`` one line when it failed; ``rows`` are the
    parity rows measured in the child, or the one failed row that says why (``failure_row``)."""

    runtime: str
    result: ConvertResult | None
    rows: tuple[dict[str, Any], ...]
    error: str | None
    log: Path | None
    stage: str | None = None
    signal: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def timeout_seconds(job: IsolatedJob) -> float:
    if job.timeout_s is not None:
        return float(job.timeout_s)
    try:
        return float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def failure_row(runtime: str, label: str, error: str, log: str | None = None, **extra: Any) -> dict[str, Any]:
    """The one failed parity row for a runtime that could not convert or run (``log``: relative to the bundle)."""
    row: dict[str, Any] = {
        "name": f"{label}: torch vs {runtime}",
        "runtime": runtime,
        "gate": "run",
        "passed": False,
        "verdict": "FAIL",
        "criterion": "the runtime converts the model and runs it in its own process",
        "error": error,
    }
    if log:
        row["log"] = log
    row.update({k: v for k, v in extra.items() if v is not None})
    return row


# ------------------------------------------------------------------------------------------ parent side
def run_isolated(job: IsolatedJob) -> IsolatedRun:
    """Run ``job`` in a child process (see module docstring); never raises for what happens in the child."""
    from export.runtimes import get_runtime

    rt = job.runtime if isinstance(job.runtime, Runtime) else get_runtime(job.runtime)
    name = rt.name
    log_dir = Path(job.log_dir) if job.log_dir is not None else Path(job.bundle_dir) / LOG_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{job.log_name or name}.log"
    label = job.parity.label if job.parity is not None else "student"
    limit = timeout_seconds(job)
    with tempfile.TemporaryDirectory(prefix=f"slimgan-{name}-") as tmp:
        work = Path(tmp)
        try:
            _write_job(work, job, rt)
        except SlimganError as exc:  # e.g. a module not built by create_model cannot be handed over as a checkpoint
            error = f"runtime {name}: the model could not be handed to the child process: {exc}"
            return IsolatedRun(name, None, (failure_row(name, label, error, stage="start"),), error, None, stage="start")
        started = time.monotonic()
        rc, timed_out = _spawn(work, log, job, name, limit)
        elapsed = time.monotonic() - started
        stage = (work / "stage").read_text().strip() if (work / "stage").is_file() else "start"
        result_file = work / "result.json"
        if result_file.is_file() and not timed_out:
            return _read_result(name, json.loads(result_file.read_text()), log, label, _rel(log, job.bundle_dir))
    if timed_out:
        sig, error = None, f"no answer after {limit:g} s while {_doing(stage, name)}; the process was stopped"
    elif rc < 0:
        sig = _signal_name(-rc)
        error = f"the process was killed by {sig} ({signal.strsignal(-rc) or 'signal'}) while {_doing(stage, name)}"
    else:
        sig, error = None, f"the process exited with code {rc} while {_doing(stage, name)}, after {elapsed:.0f} s"
    rel = _rel(log, job.bundle_dir)
    error = f"runtime {name}: {error}; log: {_where(rel)}"
    row = failure_row(name, label, error, rel, stage=stage, signal=sig)
    return IsolatedRun(name, None, (row,), error, log, stage=stage, signal=sig)


def _doing(stage: str, runtime: str) -> str:
    return {"import": f"importing {runtime}'s python package", "convert": "converting", "parity": "running the parity check",
            "load": "loading the model"}.get(stage, "starting")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _where(rel_log: str) -> str:
    """The log as the user will find it: the bundle is still a hidden staging folder while the row is
    written and is renamed into place afterwards, so an absolute path here would name a folder that is gone."""
    return rel_log if Path(rel_log).is_absolute() else f"{rel_log} in the bundle"


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def _write_job(work: Path, job: IsolatedJob, rt: Runtime) -> None:
    spec: dict[str, Any] = {
        "runtime": rt.name,
        "runtime_class": f"{type(rt).__module__}:{type(rt).__qualname__}",
        "sys_path": [p for p in sys.path if p],
        "bundle_dir": str(Path(job.bundle_dir).resolve()),
        "onnx_path": str(Path(job.onnx_path).resolve()) if job.onnx_path is not None else None,
        "example_shape": [int(d) for d in job.example_shape],
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in dict(job.options).items()},
        "convert": bool(job.convert),
        "converted": dataclasses.asdict(job.converted) if job.converted is not None else None,
        "parity": None,
    }
    if job.module is not None:
        from distill.checkpoint import save_checkpoint

        save_checkpoint(job.module, work / "module")
    if job.calib is not None:
        np.save(work / "calib.npy", np.asarray(job.calib, dtype=np.float32))
    if job.parity is not None:
        np.save(work / "inputs.npy", np.asarray(job.parity.inputs, dtype=np.float32))
        np.save(work / "reference.npy", np.asarray(job.parity.reference, dtype=np.float32))
        spec["parity"] = {"threads": int(job.parity.threads), "data_range": float(job.parity.data_range),
                          "label": job.parity.label}
    (work / "job.json").write_text(json.dumps(spec, default=str))


def _spawn(work: Path, log: Path, job: IsolatedJob, name: str, limit: float) -> tuple[int, bool]:
    """Start the child with its output appended to ``log``; returns (exit code, timed out)."""
    env = dict(os.environ)
    # The caller's PYTHONPATH first (as the parent sees it), then this checkout, so the child imports the
    # same slimgan and the same third-party packages.
    env["PYTHONPATH"] = os.pathsep.join([p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p] + [str(_REPO_ROOT)])
    env["PYTHONUNBUFFERED"] = "1"
    what = "convert" if job.convert else "check"
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"\n===== slimgan: {name} {what}{' + parity' if job.parity else ''} in a child process, "
                 f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, timeout {limit:g} s =====\n")
        fh.flush()
        proc = subprocess.Popen([sys.executable, "-m", "export.isolation", str(work)], stdin=subprocess.DEVNULL,
                                stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            return proc.wait(timeout=limit), False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return proc.returncode if proc.returncode is not None else -signal.SIGKILL, True
        except BaseException:  # Ctrl-C in the parent: take the child (and its helpers) down with it
            _kill_group(proc)
            raise
        finally:
            if proc.returncode is not None:
                fh.write(f"===== slimgan: child exited with {proc.returncode} =====\n")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _read_result(runtime: str, data: dict[str, Any], log: Path, label: str, rel_log: str) -> IsolatedRun:
    if data.get("error"):
        error = f"{data['error']} (log: {_where(rel_log)})"
        row = failure_row(runtime, label, error, rel_log, stage=data.get("stage"))
        return IsolatedRun(runtime, None, (row,), error, log, stage=data.get("stage"))
    result = ConvertResult(**{k: (tuple(v) if k in ("files", "rows") else v) for k, v in data["result"].items()})
    rows = tuple({**r, "log": rel_log} for r in data.get("rows", []))
    return IsolatedRun(runtime, result, rows, None, log)


# ------------------------------------------------------------------------------------------- child side
def _stage(work: Path, name: str) -> None:
    (work / "stage").write_text(name)
    print(f"----- stage: {name}", flush=True)


def _runtime_from(spec: dict[str, Any]) -> Runtime:
    """The runtime the parent named: its class, imported and built here (built-in or not)."""
    module, _, qualname = spec["runtime_class"].partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj()


def _child_work(work: Path, spec: dict[str, Any]) -> dict[str, Any]:
    from export.runtimes import ConvertContext

    rt = _runtime_from(spec)
    if rt.module_name:  # the runtime's own package, imported for real: a broken install shows up here
        from export.runtimes.mobile import require_packages

        _stage(work, "import")
        rt.require()
        require_packages(rt, rt.module_name, purpose="loading")
    module = None
    if (work / "module").is_dir():
        from distill.checkpoint import load_checkpoint

        module = load_checkpoint(work / "module").eval()
    if spec["convert"]:
        _stage(work, "convert")
        if hasattr(rt, "require_convert"):
            rt.require_convert()
        calib = np.load(work / "calib.npy") if (work / "calib.npy").is_file() else None
        onnx = Path(spec["onnx_path"]) if spec["onnx_path"] else Path(spec["bundle_dir"]) / "model.onnx"
        ctx = ConvertContext(Path(spec["bundle_dir"]), onnx, module, tuple(spec["example_shape"]), calib, dict(spec["options"]))
        result = rt.convert(ctx)
    else:
        result = ConvertResult(**{k: (tuple(v) if k in ("files", "rows") else v) for k, v in spec["converted"].items()})
    rows: list[dict[str, Any]] = []
    if spec["parity"] is not None:
        _stage(work, "parity")
        p = spec["parity"]
        rows = rt.parity_rows(Path(spec["bundle_dir"]), result, np.load(work / "reference.npy"), np.load(work / "inputs.npy"),
                              threads=p["threads"], data_range=p["data_range"], label=p["label"], module=module)
    return {"result": dataclasses.asdict(result), "rows": rows}


def child_main(argv: list[str]) -> int:
    """``python -m export.isolation WORK``: run the job in ``WORK/job.json``, write ``WORK/result.json``."""
    import faulthandler

    from slimgan.errors import SlimganError

    faulthandler.enable()
    work = Path(argv[0])
    spec = json.loads((work / "job.json").read_text())
    for entry in spec.get("sys_path", []):  # the parent's import path (test helpers, plugins) after ours
        if entry not in sys.path:
            sys.path.append(entry)
    _stage(work, "start")
    try:
        out = _child_work(work, spec)
    except SlimganError as exc:
        out = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    except Exception as exc:  # noqa: BLE001 - any failure of a third-party converter is this runtime's failed row
        traceback.print_exc()
        out = {"error": f"runtime {spec['runtime']}: {type(exc).__name__}: {exc}".splitlines()[0]}
    if "error" in out:
        out["stage"] = (work / "stage").read_text().strip()
        print(f"----- failed: {out['error']}", flush=True)
    tmp = work / "result.json.tmp"
    tmp.write_text(json.dumps(out, default=_json_default))
    tmp.replace(work / "result.json")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
