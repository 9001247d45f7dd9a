"""The training loop: one explicit loop for teacher training and every distillation method.

``run_training(config, out)`` does, in order: join the process group (torchrun), make missing
synthetic data and teachers, build the method, restore ``state.pt`` on ``resume``, then::

    for step in range(start, train.steps):
        logs = method.train_step(stream.batch(step), step)   # terms, D step, aux steps, G step
        schedulers.step()                                      # linear decay to zero
        method.after_step(step + 1, held_out)                 # e.g. online-teacher selection
        every log_every: metrics.csv row; every eval_every: held-out metrics and best/;
        every sample_every: samples/step_XXXXXX.png; every save_every: the checkpoints and state.pt

The trained generator is saved under its role: ``RUN/teacher/`` for ``slimgan train``,
``RUN/student/`` for ``slimgan distill`` (the role is also in its provenance).
Only rank 0 writes. Ctrl-C finishes the current step, saves ``state.pt`` and the checkpoints, and
exits; ``--resume`` continues at the same step with the same batches, RNG and optimiser state.
"""

from __future__ import annotations

import csv
import logging
import math
import random
import signal
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from distill.checkpoint import read_training_state, save_checkpoint
from distill.engine.builders import latent_size
from distill.engine.config import RunConfig, load_config, resolve_path, save_config, to_dict
from distill.engine.data import BatchStream, build_split, ensure_data, eval_batches
from distill.engine.evaluate import evaluate, pick_best_metric, write_sample_grid
from distill.engine.methods import build_method, check_method
from distill.engine.run_lock import RunLock
from distill.engine.runtime import Runtime, init_distributed, resolve_device
from distill.errors import ConfigError
from distill.progress import Progress
from distill.safe_yaml import read_yaml

log = logging.getLogger(__name__)

STATE_NAME = "state.pt"


def run_role(kind: str) -> str:
    """What the generator a run trains is: ``slimgan train`` makes teachers, ``slimgan distill`` students."""
    return "teacher" if kind == "train" else "student"


def checkpoint_dir_role(name: str, role: str) -> str:
    """The role recorded for the checkpoint a method names ``name`` in a run whose generator is ``role``."""
    if "discriminator" in name:
        return "discriminator"
    if name.startswith("teacher"):
        return "teacher"
    return role


def checkpoint_dir_name(name: str, role: str) -> str:
    """The run sub-directory for method checkpoint ``name``: the trained generator (``student``) is named by its role."""
    return role if name == "student" else name


def trained_generator_dir(run: str | Path) -> Path:
    """The generator checkpoint of a finished run: ``RUN/teacher`` (train), ``RUN/student`` (distill).

    Runs made before checkpoints were named by role kept a teacher in ``RUN/student``; that is found too.
    """
    run = Path(run)
    for name in ("teacher", "student"):
        if (run / name / "config.json").is_file():
            return run / name
    return run / "teacher"


LR_POLICIES = ("linear", "constant")


def lr_factor(policy: str, steps: int, decay_start: int | None):
    """The LR factor of ``train.lr_policy``: ``linear`` (:func:`linear_decay`) or ``constant`` (1)."""
    if policy not in LR_POLICIES:
        raise ConfigError(f"train.lr_policy must be one of {', '.join(LR_POLICIES)}, got {policy!r}")
    return linear_decay(steps, decay_start) if policy == "linear" else _constant


def _constant(step: int) -> float:
    return 1.0


def linear_decay(steps: int, decay_start: int | None):
    """LR factor: 1 until ``decay_start`` (default steps // 2), then linearly to 0 at ``steps``."""
    start = steps // 2 if decay_start is None else decay_start

    def factor(step: int) -> float:
        if step < start:
            return 1.0
        return max(0.0, (steps - step) / max(1, steps - start))

    return factor


class MetricsLog:
    """``metrics.csv``: one row per logging step; the header grows when new columns appear."""

    def __init__(self, path: Path, resume: bool):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if resume and path.is_file():
            with path.open() as fh:
                self.rows = list(csv.DictReader(fh))
        self.columns: list[str] = list(self.rows[0].keys()) if self.rows else ["step"]
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(path.parent / "tensorboard"))
        except ImportError:
            log.debug("tensorboard is not installed; metrics go to %s only", path)

    def truncate(self, step: int) -> None:
        """Drop rows past ``step`` (left by a run that died after its last state.pt)."""
        self.rows = [r for r in self.rows if int(r["step"]) <= step]

    def write(self, step: int, values: dict[str, float]) -> None:
        row = {"step": step, **{k: f"{v:.6g}" for k, v in values.items()}}
        new = [k for k in row if k not in self.columns]
        self.columns += new
        if self.rows and self.rows[-1].get("step") == str(step):
            self.rows[-1].update({k: str(v) for k, v in row.items()})
        else:
            self.rows.append({k: str(v) for k, v in row.items()})
        with self.path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns, restval="")
            writer.writeheader()
            writer.writerows(self.rows)
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _prepare(config: RunConfig, out: Path, config_dir: Path | None, rt: Runtime, kind: str) -> dict[str, Path]:
    """Resolve paths; make the synthetic data and train missing teachers (rank 0, others wait)."""
    paths: dict[str, Path] = {}
    if not config.data.root:
        raise ConfigError("data.root is missing; name the dataset folder (or a cache folder with data.synth)")
    paths["data"] = resolve_path(config.data.root, out, config_dir)
    if config.student.init:
        paths["student_init"] = resolve_path(config.student.init, out, config_dir)
    if config.discriminator is not None and config.discriminator.init:
        paths["discriminator_init"] = resolve_path(config.discriminator.init, out, config_dir)
    if rt.is_main:
        ensure_data(config.data, paths["data"])
    tcfg = config.teacher
    if tcfg.mode == "none":
        if kind == "distill":
            raise ConfigError("slimgan distill needs a teacher: set teacher.checkpoint, teacher.discriminator or teacher.auto")
        rt.barrier()
        return paths
    teacher = resolve_path(tcfg.checkpoint, out, config_dir) if tcfg.checkpoint else None
    teacher_d = resolve_path(tcfg.discriminator, out, config_dir) if tcfg.discriminator else None
    wants_g = tcfg.use_generator and tcfg.mode == "offline"
    missing = (wants_g and (teacher is None or not teacher.is_dir())) or (teacher_d is not None and not teacher_d.is_dir())
    if tcfg.auto is not None and tcfg.auto.recipe:
        auto_out = resolve_path(tcfg.auto.out, out, config_dir)
        teacher = teacher or trained_generator_dir(auto_out)
        if not tcfg.discriminator and not tcfg.use_generator:
            teacher_d = auto_out / "discriminator"
        missing = (wants_g and not teacher.is_dir()) or (teacher_d is not None and not teacher_d.is_dir())
        if missing and rt.is_main:
            _train_teacher(config, auto_out, config_dir, paths["data"])
    elif missing and kind == "distill" and wants_g:
        raise ConfigError(f"teacher checkpoint {teacher} does not exist; train one (slimgan train) or add teacher.auto")
    rt.barrier()
    for name, p in (("teacher", teacher if tcfg.use_generator else None), ("teacher_discriminator", teacher_d)):
        if p is not None:
            if not p.is_dir():
                raise ConfigError(f"{name.replace('_', ' ')} checkpoint {p} does not exist")
            paths[name] = p
    if config.student.prune is not None:  # student.init from the teacher's kept channels (slimgan prune)
        from distill.prune import ensure_pruned_init

        if rt.is_main:
            ensure_pruned_init(config.student, paths, config_dir)
        rt.barrier()
    return paths


def _train_teacher(config: RunConfig, auto_out: Path, config_dir: Path | None, data_root: Path) -> None:
    """Run the ``teacher.auto`` recipe into ``auto_out`` (on this run's data when ``share_data``)."""
    auto = config.teacher.auto
    recipe = resolve_path(auto.recipe, auto_out, config_dir)
    if not recipe.is_file():
        raise ConfigError(f"teacher.auto.recipe {recipe} does not exist")
    raw = read_yaml(recipe) or {}
    if auto.share_data:
        raw["data"] = {**to_dict(config.data), "root": str(data_root)}
    overrides = list(auto.set) + ([f"train.steps={auto.steps}"] if auto.steps is not None else [])
    sub = load_config(raw=raw, overrides=overrides)
    log.info("teacher checkpoint missing: training it with %s for %d steps into %s", recipe, sub.train.steps, auto_out)
    run_training(sub, auto_out, kind="train", config_dir=recipe.parent, distributed=False)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def run_training(config: RunConfig, out: str | Path, *, resume: bool = False, device: str | None = None,
                 kind: str = "distill", config_dir: str | Path | None = None, stop_at: int | None = None,
                 distributed: bool = True, role: str | None = None) -> dict[str, Any]:
    """Train per ``config`` into ``out``. Returns ``{"step", "metrics", "best", "out"}``.

    ``stop_at`` ends the run after that many steps with a resumable ``state.pt`` (as Ctrl-C does).
    ``role``: what the trained generator is (default: ``teacher`` for ``kind="train"``, else
    ``student``); a small model trained from scratch as a baseline is a ``student`` trained by
    ``kind="train"``. It names the checkpoint directory and is recorded in its provenance.
    """
    if role is not None and role not in ("teacher", "student"):
        raise ConfigError(f"role must be teacher or student, got {role!r}")
    out = Path(out)
    config_dir = Path(config_dir) if config_dir else None
    if distributed:
        init_distributed(device or config.train.device)
    dev = resolve_device(device or config.train.device)
    if dist.is_available() and dist.is_initialized() and dev.type == "cuda":
        dev = torch.device("cuda", torch.cuda.current_device())
    rt = Runtime(dev, amp=config.train.amp) if distributed else _LocalRuntime(dev, config.train.amp)
    lock = RunLock(out, what=f"slimgan {kind}") if rt.is_main else None
    if lock is not None:
        lock.acquire()  # before anything is written: a second run on this --out stops here
    try:
        result = _run(config, out, rt, resume, kind, config_dir, stop_at, role or run_role(kind))
    finally:
        if lock is not None:
            lock.release()
    if rt.is_main:
        _write_run_plots(out)
    return result


def _write_run_plots(out: Path) -> None:
    """``loss_curves.png`` and a labelled ``samples.png`` for the finished run (``slimgan plot RUN``)."""
    from distill.plots import plot_run

    try:
        plot_run(out)
    except Exception as exc:  # noqa: BLE001 - a picture that cannot be drawn must not fail a finished run
        log.warning("could not draw the run's plots (%s); `slimgan plot %s` retries", exc, out)


class _LocalRuntime(Runtime):
    """A runtime that ignores any process group (the nested teacher run)."""

    def __init__(self, device: torch.device, amp: bool):
        super().__init__(device, amp)
        self.distributed, self.rank, self.world = False, 0, 1


def _run(config: RunConfig, out: Path, rt: Runtime, resume: bool, kind: str,
         config_dir: Path | None, stop_at: int | None, role: str) -> dict[str, Any]:
    tc = config.train
    if tc.steps < 1:
        raise ConfigError(f"train.steps must be >= 1, got {tc.steps}")
    factor = lr_factor(tc.lr_policy, tc.steps, tc.decay_start)
    check_method(config)  # before data is made or a teacher is trained
    paths = _prepare(config, out, config_dir, rt, kind)

    torch.manual_seed(tc.seed)
    random.seed(tc.seed)
    train_set = build_split(config.data, paths["data"], "train", tc.seed)
    method = build_method(config, rt, paths)
    nz = latent_size(method.generator)
    stream = BatchStream(train_set, tc.batch_size, tc.seed, rt.rank, rt.world, nz, config.data.max_train)
    try:
        test_set = build_split(config.data, paths["data"], "test", tc.seed)
    except Exception as exc:  # noqa: BLE001 - a dataset without a test split trains without evaluation
        log.warning("no held-out split (%s); evaluation is skipped", exc)
        test_set = None
    held_out = eval_batches(test_set, config.eval.num, config.eval.batch_size, nz) if test_set is not None else []

    method.setup(stream.batch(0))
    method.build_optimizers()
    fixed = method.fixed_lr()  # e.g. VEM's energy network: a fixed Adam learning rate
    schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, _constant if k in fixed else factor)
                  for k, o in method.optimizers().items()}

    start, best_value = 0, None
    state_path = out / STATE_NAME
    if resume:
        if not state_path.is_file():
            raise ConfigError(f"--resume: {state_path} does not exist")
        state = read_training_state(state_path, rt.device)
        for name, module in method.modules().items():
            if name in state["modules"]:
                module.load_state_dict(state["modules"][name])
        for name, opt in method.optimizers().items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sch in schedulers.items():
            sch.load_state_dict(state["schedulers"][name])
        rt.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        start, best_value = int(state["step"]), state.get("best")
        log.info("resumed from %s at step %d", state_path, start)
    else:
        torch.manual_seed(tc.seed + 1)  # the stream of dropout / noise, identical after a resume

    metrics_log = MetricsLog(out / "metrics.csv", resume) if rt.is_main else None
    if metrics_log is not None:
        metrics_log.truncate(start)
        save_config(config, out / "config.yaml")
        log.info("%s", method.formula())
    best_name = config.eval.best_metric

    def save(step: int, final: bool = False) -> None:
        if not rt.is_main:
            return
        prov = {"step": step, "run": str(out), **method.provenance()}
        for name, module in method.checkpoints().items():  # a discriminator also records its objective
            save_checkpoint(module, out / checkpoint_dir_name(name, role), provenance={
                **prov, "role": checkpoint_dir_role(name, role), **getattr(module, "slimgan_provenance", {})})
        state = {
            "step": step,
            "modules": {k: m.state_dict() for k, m in method.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in method.optimizers().items()},
            "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
            "scaler": rt.scaler.state_dict(),
            "rng": _rng_state(),
            "best": best_value,
        }
        tmp = state_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(state_path)

    def run_eval(step: int) -> dict[str, float]:
        nonlocal best_value, best_name
        if not rt.is_main or not held_out:
            return {}
        metrics = evaluate(method, held_out, rt.device, config.eval.inception_weights)
        best_name, mode = pick_best_metric(best_name, metrics)
        value = metrics.get(best_name)
        if value is not None and math.isfinite(value) and (
            best_value is None or (value > best_value if mode == "max" else value < best_value)
        ):
            best_value = value
            save_checkpoint(method.generator, out / "best", provenance={
                "step": step, best_name: value, **method.provenance(), "role": role})
        return {f"eval_{k}": v for k, v in metrics.items()}

    stop_requested = {"flag": False}
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):  # first Ctrl-C: finish the step and save; second: abort
        if stop_requested["flag"]:
            raise KeyboardInterrupt
        stop_requested["flag"] = True
        log.warning("interrupt: finishing step, then saving %s (press Ctrl-C again to abort)", state_path)

    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread
        previous = None
    end = tc.steps if stop_at is None else min(tc.steps, stop_at)
    bar = Progress(tc.steps, start, desc=out.name, log_every=tc.log_every) if rt.is_main and tc.progress else None
    step, interrupted, t0 = start, False, time.perf_counter()
    try:
        for step in range(start, end):
            logs = method.train_step(stream.batch(step), step)
            rt.end_step()
            for s in schedulers.values():
                s.step()
            done = step + 1
            is_last = done == tc.steps
            selection = method.after_step(done, held_out)  # every rank: e.g. online-teacher selection
            if rt.is_main:
                row = {**logs, **selection}
                if (tc.eval_every and done % tc.eval_every == 0) or is_last:
                    row.update(run_eval(done))
                if (tc.log_every and done % tc.log_every == 0) or is_last or len(row) > len(logs):
                    row["lr"] = next(iter(schedulers.values())).get_last_lr()[0] if schedulers else 0.0
                    row["time_s"] = time.perf_counter() - t0
                    metrics_log.write(done, row)
                if (tc.sample_every and done % tc.sample_every == 0) or is_last:
                    if held_out:
                        write_sample_grid(method, held_out[0], out / "samples" / f"step_{done:06d}.png", rt.device,
                                          config.eval.num_samples, step=done, metrics=row,
                                          generator_label=role, title=f"{out.name} ({kind})")
                if tc.save_every and done % tc.save_every == 0 and not is_last:
                    save(done)
                if bar is not None:
                    bar.update(done, logs)
            flag = stop_requested["flag"]
            if rt.distributed:
                t = torch.tensor([float(flag)], device=rt.device if rt.device.type == "cuda" else "cpu")
                dist.all_reduce(t, op=dist.ReduceOp.MAX)
                flag = bool(t.item())
            if flag:
                interrupted = True
                step = done
                break
        else:
            step = end
    finally:
        if bar is not None:
            bar.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    save(step if interrupted or end < tc.steps else tc.steps)
    if metrics_log is not None:
        metrics_log.close()
    rt.barrier()
    if interrupted:
        log.warning("saved a resumable state at step %d in %s; continue with --resume", step, state_path)
        raise KeyboardInterrupt
    final = metrics_log.rows[-1] if metrics_log is not None and metrics_log.rows else {}
    return {"step": step, "metrics": {k: float(v) for k, v in final.items() if v not in ("", None)},
            "best": best_value, "best_metric": best_name, "out": str(out)}
