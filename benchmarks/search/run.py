"""``slimgan search``: supernet -> evaluation without retraining -> measured latency -> evolution -> choice
-> fine-tuning -> ``pareto.json`` / ``pareto.png`` / ``best/``.

The reference is ``mobile_resnet_9blocks`` at ngf 16. Its layers are a sub-network of the search space
(``searchable_resnet`` with the default arguments), so it is trained exactly as every candidate is: as a
sub-network of the same supernet, scored with the supernet's weights, and fine-tuned with the same
steps, data and seed as the chosen student. Its latency is measured with the real ``mobile_resnet_9blocks``
graph, interleaved with every candidate.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.search.latency import LatencyMeter, load_table
from benchmarks.search.report import plot_pareto, write_summary
from slimgan.errors import ConfigError

REFERENCE_ARCH = {"arch": "mobile_resnet_9blocks", "kwargs": {"ngf": 16}}


class Log:
    def __init__(self, enabled: bool):
        self.enabled, self.t0 = enabled, time.perf_counter()

    def __call__(self, msg: str) -> None:
        if self.enabled:
            print(f"[search {time.perf_counter() - self.t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

    def every(self, label: str, every: int):
        def report(step: int, total: int, loss: float) -> None:
            if step == 1 or step % every == 0 or step == total:
                self(f"{label} step {step}/{total} l1={loss:.4f}")
        return report


def load_teacher(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    from distill.checkpoint import load_checkpoint, read_checkpoint_config
    from distill.registry import model_info

    config = read_checkpoint_config(path)
    info = model_info(config["arch"])
    if info.task != "translate" or info.input_kind != "image":
        raise ConfigError(f"--teacher {path}: {config['arch']} is a {info.task} model; search needs an image-to-image teacher")
    teacher = load_checkpoint(path)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher, config


def _channels(teacher: torch.nn.Module, config: dict[str, Any]) -> tuple[int, int]:
    kw = config["kwargs"]
    return int(kw.get("input_nc", 3)), int(kw.get("output_nc", 3))


def _scorer(supernet, pairs, meter: LatencyMeter, res: int, log: Log, failures: list[dict[str, Any]]):
    from distill.profile import count_macs, count_params
    from distill.search.space import arch_key, to_kwargs
    from distill.search.train import score_subnet

    def score(genes: dict[str, Any]) -> dict[str, Any] | None:
        model, fidelity = score_subnet(supernet, genes, pairs)
        key = arch_key(genes, supernet.space.max_depth)
        try:
            lat = meter.measure(model, key)
        except Exception as exc:  # noqa: BLE001 - export or the runtime refused it: not a candidate that can ship
            failures.append({"config": to_kwargs(genes, supernet.space.max_depth), "error": f"{type(exc).__name__}: {exc}"[:400]})
            log("candidate dropped, the export path failed: " + " ".join(failures[-1]["error"].split())[:200])
            return None
        row = {"config": to_kwargs(genes, supernet.space.max_depth), "macs": count_macs(model, res=res),
               "params": count_params(model), **lat, "latency": lat["relative_latency"],
               "psnr_teacher": round(fidelity, 3)}
        log(f"candidate {row['config']['block']}/{row['config']['upsample']}/{row['config']['norm']} "
            f"depth {len(row['config']['blocks'])}: {row['latency_ms']:.2f} ms "
            f"(x{row['latency']:.3f} of reference), psnr_teacher {row['psnr_teacher']:.2f} dB")
        return row

    return score


def _seeds(space) -> list[dict[str, Any]]:
    """The reference first, then its corners: the same widths with each cheaper categorical choice."""
    from distill.search.space import REFERENCE_GENES

    seeds = [dict(REFERENCE_GENES)]
    for gene, value in (("norm", "batch"), ("upsample", "resize"), ("block", "dense")):
        if value in getattr(space, gene):
            seeds.append({**REFERENCE_GENES, gene: value})
    return seeds


def run_search(args: Any) -> dict[str, Any]:
    from distill.search.data import PhotoPairs
    from distill.search.recipe import load_recipe
    from distill.search.space import REFERENCE_GENES
    from distill.search.supernet import Supernet
    from distill.search.train import train_supernet

    log, times = Log(not args.no_progress), {}
    recipe = load_recipe(args.config, quick=args.quick)
    if not recipe.space.contains(REFERENCE_GENES):
        raise ConfigError("the search space must contain the reference (mobile_resnet_9blocks ngf 16: stem 16, down 32, "
                          "trunk 64, nine blocks of inner width 64, up 32/16, separable, deconv, instance)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(recipe.supernet.seed)
    teacher, tconfig = load_teacher(args.teacher)
    input_nc, output_nc = _channels(teacher, tconfig)
    meter = _meter(args, recipe, out, input_nc)  # first: a missing runtime fails before any training
    t = time.perf_counter()
    pairs = PhotoPairs.build(teacher, args.photos, args.res, recipe.data.holdout_every, recipe.data.max_photos)
    times["teacher_outputs_s"] = round(time.perf_counter() - t, 1)
    log(f"{len(pairs.train_x)} training photos, {len(pairs.val_x)} held out; teacher outputs in {times['teacher_outputs_s']} s")
    supernet = Supernet(recipe.space, input_nc, output_nc)
    t = time.perf_counter()
    sn_report = train_supernet(supernet, pairs, recipe.supernet, log.every("supernet", 50))
    times["supernet_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    rows, ref_row, chosen_row = _search(args, recipe, supernet, pairs, meter, log)
    times["search_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    finals = _finetune_choice(recipe, supernet, pairs, rows, chosen_row, ref_row, log, args.budget_ms is not None)
    chosen_row = finals["chosen"]["row"]
    times["finetune_s"] = round(time.perf_counter() - t, 1)
    _save(out, finals, args, tconfig, recipe)
    plain = _plain_check(args, finals, out, log)
    report = write_summary(out, args, recipe, {"rows": rows, "ref_row": ref_row, "chosen_row": chosen_row,
                                               "finals": finals, "meter": meter, "supernet": sn_report, "pairs": pairs,
                                               "times": times, "t0": log.t0, "plain": plain})
    plot_pareto(report, out / "pareto.png")
    shutil.rmtree(out / "graphs", ignore_errors=True)  # every candidate's exported graphs; the cache keeps the timings
    log(f"chosen: x{1 / report['chosen']['relative_latency']:.2f} faster than the reference, psnr_teacher "
        f"{report['chosen']['psnr_teacher']:.2f} vs {report['reference']['psnr_teacher']:.2f} dB; wrote {out}")
    return report


def _meter(args: Any, recipe, out: Path, input_nc: int) -> LatencyMeter:
    from distill.registry import create_model

    reference = create_model(REFERENCE_ARCH["arch"], input_nc=input_nc, output_nc=3, **REFERENCE_ARCH["kwargs"])
    cache = Path(args.latency_cache) if args.latency_cache else out / "latency_cache.json"
    return LatencyMeter(args.runtime, args.threads, args.res, reference, out / "graphs", cache,
                        table=load_table(args.latency_table), rounds=recipe.latency.rounds,
                        min_time_s=recipe.latency.min_time_s, input_nc=input_nc)


def _search(args, recipe, supernet, pairs, meter, log):
    from distill.search.evolve import choose, evolve
    from distill.search.space import REFERENCE_GENES, arch_key

    score = _scorer(supernet, pairs, meter, args.res, log, meter.failures)
    deadline = time.perf_counter() + (recipe.search.time_limit_s or float("inf"))
    ref_key = arch_key(REFERENCE_GENES, recipe.space.max_depth)
    state: dict[str, Any] = {}

    def feasible(row: dict[str, Any]) -> bool:
        ref = state.get("ref")
        return ref is None or row["psnr_teacher"] >= ref["psnr_teacher"] - recipe.search.tolerance_db

    def on_generation(gen: int, rows: list[dict[str, Any]]) -> None:
        state["ref"] = next(r for r in rows if r["key"] == ref_key)
        log(f"generation {gen}: {len(rows)} architectures scored")

    rows = evolve(recipe.space, score, population=recipe.search.population, generations=recipe.search.generations,
                  rng=random.Random(recipe.search.seed), seeds=_seeds(recipe.space), feasible=feasible,
                  on_generation=on_generation, should_stop=lambda: time.perf_counter() > deadline)
    ref_row = next(r for r in rows if r["key"] == ref_key)
    budget = None
    if args.budget_ms is not None:
        budget = args.budget_ms / meter.reference_ms()
    chosen = choose(rows, ref_row, recipe.search.tolerance_db, budget=budget)
    return rows, ref_row, chosen


def _finetune_choice(recipe, supernet, pairs, rows, chosen_row, ref_row, log, budget: bool) -> dict[str, Any]:
    """Fine-tune the reference, then the chosen sub-network alike (same steps, data, seed).

    Without --budget-ms, a chosen student that ends more than ``search.final_tolerance_db`` below the
    fine-tuned reference is replaced by the fastest candidate whose supernet score is higher by the
    missing margin, up to ``search.retries`` times; every attempt is reported.
    """
    from distill.search.train import finetune, psnr_teacher, recalibrate

    def tune(row: dict[str, Any], role: str) -> dict[str, Any]:
        model = recalibrate(supernet.extract(row["genes"]), pairs, seed=recipe.finetune.seed)
        report = finetune(model, pairs, recipe.finetune, log.every(f"fine-tune {role}", 100))
        fidelity = round(psnr_teacher(model, pairs), 3)
        log(f"fine-tuned {role}: psnr_teacher {fidelity:.2f} dB ({report['steps']} steps)")
        return {"model": model, "report": report, "psnr_teacher": fidelity, "row": row}

    reference = tune(ref_row, "reference")
    tol, attempts, row = recipe.search.final_tolerance_db, [], chosen_row
    for _ in range(recipe.search.retries + 1):
        result = reference if row["key"] == ref_row["key"] else tune(row, "chosen")
        attempts.append(result)
        missing = reference["psnr_teacher"] - result["psnr_teacher"] - tol
        if budget or missing <= 0:
            break
        better = [r for r in rows if r["psnr_teacher"] >= row["psnr_teacher"] + missing and r["key"] != row["key"]]
        if not better:
            break
        row = min(better, key=lambda r: r["relative_latency"])
        log(f"chosen is {missing + tol:.2f} dB below the fine-tuned reference; trying the next candidate")
    ok = [a for a in attempts if a["psnr_teacher"] >= reference["psnr_teacher"] - tol]
    final = min(ok, key=lambda a: a["row"]["relative_latency"]) if ok else max(attempts, key=lambda a: a["psnr_teacher"])
    summary = [{"config": a["row"]["config"], "relative_latency": a["row"]["relative_latency"],
                "psnr_teacher_supernet": a["row"]["psnr_teacher"], "psnr_teacher": a["psnr_teacher"]} for a in attempts]
    return {"chosen": final, "reference": reference, "attempts": summary}


def _plain_check(args: Any, finals: dict[str, Any], out: Path, log: Log) -> dict[str, Any] | None:
    """best/ beside mobile_resnet_9blocks ngf 16 as plain ONNX on the runtime's defaults (ONNX runtimes only)."""
    from benchmarks.search.latency import ONNX_TARGETS, plain_side_by_side
    from distill.checkpoint import load_checkpoint
    from distill.registry import create_model

    if args.runtime not in ONNX_TARGETS:
        return None
    best = load_checkpoint(out / "best")
    ref = create_model(REFERENCE_ARCH["arch"], input_nc=best.slimgan_config["kwargs"]["input_nc"], **REFERENCE_ARCH["kwargs"])
    check = plain_side_by_side(args.runtime, args.threads, args.res, {"chosen": best, "reference": ref}, out / "graphs")
    log(f"plain ONNX on {args.runtime} defaults, {args.threads} thread(s): chosen {check['chosen']['median_ms']:.2f} ms, "
        f"reference {check['reference']['median_ms']:.2f} ms, x{check['speedup']:.2f}")
    return check


def _save(out: Path, finals: dict[str, Any], args: Any, tconfig: dict[str, Any], recipe) -> None:
    from distill.checkpoint import WEIGHTS_NAME, file_sha256, save_checkpoint
    from distill.registry import create_model

    teacher_sha = file_sha256(Path(args.teacher) / WEIGHTS_NAME)
    common = {"role": "student", "teacher": str(args.teacher), "teacher_sha256": teacher_sha, "method": "slimgan search",
              "runtime": args.runtime, "threads": args.threads, "smoke_test": recipe.smoke_test}
    save_checkpoint(finals["chosen"]["model"], out / "best", provenance={**common, "search_role": "chosen"})
    # The reference as the zoo's own mobile_resnet_9blocks (its layers map one to one, in order).
    ref = finals["reference"]["model"]
    mobile = create_model(REFERENCE_ARCH["arch"], input_nc=tconfig["kwargs"].get("input_nc", 3), **REFERENCE_ARCH["kwargs"])
    if [tuple(v.shape) for v in mobile.state_dict().values()] == [tuple(v.shape) for v in ref.state_dict().values()]:
        mobile.load_state_dict(dict(zip(mobile.state_dict(), ref.state_dict().values(), strict=True)))
        save_checkpoint(mobile, out / "reference", provenance={**common, "search_role": "reference"})


def main(args: Any) -> int:
    report = run_search(args)
    print(json.dumps({k: report[k] for k in ("runtime", "threads", "smoke_test")} |
                     {"chosen": {k: report["chosen"][k] for k in ("config", "latency_ms", "psnr_teacher")},
                      "reference": {k: report["reference"][k] for k in ("latency_ms", "psnr_teacher")},
                      "out": str(args.out)}, indent=1))
    return 0
