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

from distill.checkpoint import atomic_write, read_training_state, save_checkpoint
from distill.engine.builders import latent_size
from distill.engine.config import RunConfig, load_config, resolve_path, save_config, to_dict
from distill.engine.data import BatchStream, build_split, ensure_data, eval_batches
from distill.engine.device import DeviceContext, init_distributed, resolve_device
from distill.engine.evaluate import evaluate, pick_best_metric, write_sample_grid
from distill.engine.factory import build_method, check_method
from distill.engine.layout import (  # noqa: F401  (names the run layout; kept importable from the loop)
    STATE_NAME,
    checkpoint_dir_name,
    checkpoint_dir_role,
    run_role,
    trained_generator_dir,
)
from distill.engine.report import write_run_plots
from distill.engine.run_lock import RunLock
from distill.errors import ConfigError
from distill.progress import Progress
from distill.safe_yaml import read_yaml

log = logging.getLogger(__name__)

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


def _prepare(config: RunConfig, out: Path, config_dir: Path | None, rt: DeviceContext, kind: str) -> dict[str, Path]:
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
    rt = DeviceContext(dev, amp=config.train.amp) if distributed else _LocalRuntime(dev, config.train.amp)
    lock = RunLock(out, what=f"slimgan {kind}") if rt.is_main else None
    if lock is not None:
        lock.acquire()  # before anything is written: a second run on this --out stops here
    try:
        result = _run(config, out, rt, resume, kind, config_dir, stop_at, role or run_role(kind))
    finally:
        if lock is not None:
            lock.release()
    if rt.is_main:
        write_run_plots(out)
    return result


class _LocalRuntime(DeviceContext):
    """A runtime that ignores any process group (the nested teacher run)."""

    def __init__(self, device: torch.device, amp: bool):
        super().__init__(device, amp)
        self.distributed, self.rank, self.world = False, 0, 1


def _run(config: RunConfig, out: Path, rt: DeviceContext, resume: bool, kind: str,
         config_dir: Path | None, stop_at: int | None, role: str) -> dict[str, Any]:
    tc = config.train
    if tc.steps < 1:
        raise ConfigError(f"train.steps must be >= 1, got {tc.steps}")
    lr_factor(tc.lr_policy, tc.steps, tc.decay_start)  # a bad policy is refused before anything runs
    check_method(config)  # before data is made or a teacher is trained
    paths = _prepare(config, out, config_dir, rt, kind)
    return Trainer(config, out, rt, kind, role, paths).run(resume, stop_at)


class Trainer:
    """One run's training: the method with its data, LR schedules and held-out batches; the step loop;
    evaluation with the ``best/`` checkpoint; and :meth:`save` / :meth:`restore` of ``state.pt``, so an
    interrupted run resumes where it stopped with the same random streams."""

    def __init__(self, config: RunConfig, out: Path, rt: DeviceContext, kind: str, role: str,
                 paths: dict[str, Path]) -> None:
        self.config, self.out, self.rt, self.kind, self.role = config, out, rt, kind, role
        tc = config.train
        torch.manual_seed(tc.seed)
        random.seed(tc.seed)
        train_set = build_split(config.data, paths["data"], "train", tc.seed)
        self.method = build_method(config, rt, paths)
        nz = latent_size(self.method.generator)
        self.stream = BatchStream(train_set, tc.batch_size, tc.seed, rt.rank, rt.world, nz, config.data.max_train)
        self.held_out = self._held_out(paths, nz)
        self.method.setup(self.stream.batch(0))
        self.method.build_optimizers()
        factor = lr_factor(tc.lr_policy, tc.steps, tc.decay_start)
        fixed = self.method.fixed_lr()  # e.g. VEM's energy network: a fixed Adam learning rate
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, _constant if k in fixed else factor)
                           for k, o in self.method.optimizers().items()}
        self.state_path = out / STATE_NAME
        self.best_value: float | None = None
        self.best_name = config.eval.best_metric
        self.stop_requested = False
        self.metrics_log: MetricsLog | None = None

    def _held_out(self, paths: dict[str, Path], nz: int | None) -> list:
        try:
            test_set = build_split(self.config.data, paths["data"], "test", self.config.train.seed)
        except Exception as exc:  # noqa: BLE001 - a dataset without a test split trains without evaluation
            log.warning("no held-out split (%s); evaluation is skipped", exc)
            return []
        return eval_batches(test_set, self.config.eval.num, self.config.eval.batch_size, nz)

    # -- state.pt -------------------------------------------------------------------------------------
    def restore(self) -> int:
        """Load ``state.pt`` (modules, optimisers, schedules, AMP scaler, RNG, best); returns its step."""
        if not self.state_path.is_file():
            raise ConfigError(f"--resume: {self.state_path} does not exist")
        state = read_training_state(self.state_path, self.rt.device)
        for name, module in self.method.modules().items():
            if name in state["modules"]:
                module.load_state_dict(state["modules"][name])
        for name, opt in self.method.optimizers().items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sch in self.schedulers.items():
            sch.load_state_dict(state["schedulers"][name])
        self.rt.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        self.best_value = state.get("best")
        log.info("resumed from %s at step %d", self.state_path, int(state["step"]))
        return int(state["step"])

    def save(self, step: int) -> None:
        """The method's checkpoints (named by role) and ``state.pt``, each written whole or not at all."""
        if not self.rt.is_main:
            return
        method, out = self.method, self.out
        prov = {"step": step, "run": str(out), **method.provenance()}
        for name, module in method.checkpoints().items():  # a discriminator also records its objective
            save_checkpoint(module, out / checkpoint_dir_name(name, self.role), provenance={
                **prov, "role": checkpoint_dir_role(name, self.role), **getattr(module, "slimgan_provenance", {})})
        state = {
            "step": step,
            "modules": {k: m.state_dict() for k, m in method.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in method.optimizers().items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scaler": self.rt.scaler.state_dict(),
            "rng": _rng_state(),
            "best": self.best_value,
        }
        atomic_write(self.state_path, lambda tmp: torch.save(state, tmp))

    # -- one step -------------------------------------------------------------------------------------
    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out metrics (main rank); a new best is saved to ``best/``."""
        if not self.rt.is_main or not self.held_out:
            return {}
        metrics = evaluate(self.method, self.held_out, self.rt.device, self.config.eval.inception_weights)
        self.best_name, mode = pick_best_metric(self.best_name, metrics)
        value = metrics.get(self.best_name)
        if value is not None and math.isfinite(value) and (
            self.best_value is None or (value > self.best_value if mode == "max" else value < self.best_value)
        ):
            self.best_value = value
            save_checkpoint(self.method.generator, self.out / "best", provenance={
                "step": step, self.best_name: value, **self.method.provenance(), "role": self.role})
        return {f"eval_{k}": v for k, v in metrics.items()}

    def _record(self, done: int, logs: dict[str, float], selection: dict[str, float], started: float) -> None:
        """Main rank, after step ``done``: evaluation, the metrics row, sample grids, periodic saves."""
        tc = self.config.train
        is_last = done == tc.steps
        row = {**logs, **selection}
        if (tc.eval_every and done % tc.eval_every == 0) or is_last:
            row.update(self.evaluate(done))
        if (tc.log_every and done % tc.log_every == 0) or is_last or len(row) > len(logs):
            row["lr"] = next(iter(self.schedulers.values())).get_last_lr()[0] if self.schedulers else 0.0
            row["time_s"] = time.perf_counter() - started
            self.metrics_log.write(done, row)
        if ((tc.sample_every and done % tc.sample_every == 0) or is_last) and self.held_out:
            write_sample_grid(self.method, self.held_out[0], self.out / "samples" / f"step_{done:06d}.png",
                              self.rt.device, self.config.eval.num_samples, step=done, metrics=row,
                              generator_label=self.role, title=f"{self.out.name} ({self.kind})")
        if tc.save_every and done % tc.save_every == 0 and not is_last:
            self.save(done)

    def _stop_agreed(self) -> bool:
        """Whether any rank was asked to stop (Ctrl-C), agreed across the process group."""
        flag = self.stop_requested
        if self.rt.distributed:
            t = torch.tensor([float(flag)], device=self.rt.device if self.rt.device.type == "cuda" else "cpu")
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

    def _loop(self, start: int, end: int, bar: Progress | None) -> tuple[int, bool]:
        """Steps ``start`` .. ``end``; returns (the step reached, whether a stop was requested)."""
        started = time.perf_counter()
        for step in range(start, end):
            logs = self.method.train_step(self.stream.batch(step), step)
            self.rt.end_step()
            for s in self.schedulers.values():
                s.step()
            done = step + 1
            selection = self.method.after_step(done, self.held_out)  # every rank: e.g. online-teacher selection
            if self.rt.is_main:
                self._record(done, logs, selection, started)
                if bar is not None:
                    bar.update(done, logs)
            if self._stop_agreed():
                return done, True
        return end, False

    # -- the run --------------------------------------------------------------------------------------
    def _on_sigint(self, signum, frame) -> None:  # first Ctrl-C: finish the step and save; second: abort
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested = True
        log.warning("interrupt: finishing step, then saving %s (press Ctrl-C again to abort)", self.state_path)

    def run(self, resume: bool, stop_at: int | None) -> dict[str, Any]:
        tc, rt = self.config.train, self.rt
        start = self.restore() if resume else 0
        if not resume:
            torch.manual_seed(tc.seed + 1)  # the stream of dropout / noise, identical after a resume
        self.metrics_log = MetricsLog(self.out / "metrics.csv", resume) if rt.is_main else None
        if self.metrics_log is not None:
            self.metrics_log.truncate(start)
            save_config(self.config, self.out / "config.yaml")
            log.info("%s", self.method.formula())
        previous = signal.getsignal(signal.SIGINT)
        try:
            signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread
            previous = None
        end = tc.steps if stop_at is None else min(tc.steps, stop_at)
        bar = Progress(tc.steps, start, desc=self.out.name, log_every=tc.log_every) if rt.is_main and tc.progress else None
        step, interrupted = start, False
        try:
            step, interrupted = self._loop(start, end, bar)
        finally:
            if bar is not None:
                bar.close()
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        self.save(step if interrupted or end < tc.steps else tc.steps)
        if self.metrics_log is not None:
            self.metrics_log.close()
        rt.barrier()
        if interrupted:
            log.warning("saved a resumable state at step %d in %s; continue with --resume", step, self.state_path)
            raise KeyboardInterrupt
        final = self.metrics_log.rows[-1] if self.metrics_log is not None and self.metrics_log.rows else {}
        return {"step": step, "metrics": {k: float(v) for k, v in final.items() if v not in ("", None)},
                "best": self.best_value, "best_metric": self.best_name, "out": str(self.out)}
