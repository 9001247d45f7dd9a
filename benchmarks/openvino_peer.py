"""slimgan's student against the free peer: a plain ``torch.onnx.export`` compiled by OpenVINO's defaults.

    python -m benchmarks.openvino_peer BUNDLE [--teacher TEACHER_BUNDLE] [--threads 1,2] [--res 256]
        [--rounds 5] [--out benchmarks/results/openvino_peer.json]

The peer is what a user gets without slimgan: ``torch.onnx.export(model, x, path)`` of the bundle's
source checkpoint (the default exporter; the TorchScript one, ``dynamo=False``, when onnxscript is not
installed), no simplification, no rewrites, compiled by ``openvino.Core().compile_model(path, "CPU",
{"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": n})`` with everything else at OpenVINO's
defaults (on CPUs with bf16 units that includes bf16 inference). slimgan's side is the bundle's preferred
runtime (``manifest.json`` ``preferred_runtime``) loaded through :mod:`export.runtimes` exactly as
``slimgan serve --backend auto`` loads it. With ``--teacher`` the teacher bundle's fp32 graph runs on the
same runtime, with the same settings, for the teacher/student speedup.

For each thread count every graph is timed interleaved round by round (:func:`export.speed.interleaved`),
so load from other processes hits all alike. ``ratio = peer median / slimgan median`` (>= 1: slimgan is
at least as fast).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def plain_export(checkpoint: str | Path, path: Path, res: int) -> str:
    """The peer's graph: torch.onnx.export with its defaults. Returns which exporter ran."""
    import torch

    from distill.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint).eval()
    x = torch.rand(1, 3, res, res) * 2 - 1
    try:
        import onnxscript  # noqa: F401 - the default (dynamo) exporter needs it
    except ImportError:
        torch.onnx.export(model, (x,), str(path), dynamo=False)
        return "torch.onnx.export(dynamo=False) (onnxscript not installed)"
    torch.onnx.export(model, (x,), str(path))
    return "torch.onnx.export (default exporter)"


def _preferred_session(bundle: Path, threads: int, runtime: str | None = None) -> tuple[Any, str]:
    from export.manifest import Manifest
    from export.runtimes import get_runtime

    manifest = Manifest.load(bundle)
    name = runtime or manifest.preferred_runtime or "onnxruntime"
    role = {"onnxruntime": "fp32", "openvino": "openvino", "tensorrt": "plan"}[name]
    opts = {}
    precision = (manifest.runtimes.get(role) or {}).get("precision")
    if name == "openvino" and precision in ("f32", "bf16", "f16"):
        opts["precision"] = precision
    return get_runtime(name).load(manifest.model_path(bundle, role), threads=threads, **opts), name


def _teacher_session(bundle: Path, runtime: str, threads: int, student_bundle: Path, tmp: Path) -> Any:
    """The teacher's fp32 graph on the student's runtime with the student's settings."""
    from export.manifest import Manifest
    from export.runtimes import ConvertContext, get_runtime

    manifest = Manifest.load(bundle)
    student = Manifest.load(student_bundle)
    if runtime == "openvino":
        if "openvino" in manifest.files:
            path = manifest.model_path(bundle, "openvino")
        else:
            get_runtime("openvino").convert(ConvertContext(tmp, manifest.model_path(bundle, "fp32")))
            path = tmp / "model.xml"
        precision = (student.runtimes.get("openvino") or {}).get("precision")
        return get_runtime("openvino").load(path, threads=threads, **({"precision": precision} if precision else {}))
    return get_runtime(runtime).load(manifest.model_path(bundle, "fp32"), threads=threads)


def run(bundle: Path, teacher: Path | None, threads_list: list[int], res: int, rounds: int, block_s: float) -> dict[str, Any]:
    import openvino as ov

    from export.manifest import Manifest
    from export.runtimes.openvino import precision_name
    from export.speed import interleaved

    manifest = Manifest.load(bundle)
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, res, res)).astype(np.float32)
    report: dict[str, Any] = {"bundle": str(bundle), "teacher": str(teacher) if teacher else None, "res": res, "rounds": rounds,
                              "versions": {"openvino": ov.get_version(), "python": platform.python_version()}, "by_threads": {}}
    with tempfile.TemporaryDirectory(prefix="slimgan-peer-") as tmp:
        peer_path = Path(tmp) / "plain.onnx"
        report["peer_export"] = plain_export(manifest.source_checkpoint, peer_path, res)
        core = ov.Core()
        for threads in threads_list:
            config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads)}
            peer = core.compile_model(str(peer_path), "CPU", config)
            request = peer.create_infer_request()
            session, runtime = _preferred_session(bundle, threads)
            fns = {"peer": lambda r=request: r.infer({0: x}), "slimgan": lambda s=session: s.run(x)}
            if teacher is not None:
                t_dir = Path(tmp) / f"teacher{threads}"
                t_dir.mkdir()
                t_session = _teacher_session(teacher, runtime, threads, bundle, t_dir)
                fns["teacher"] = lambda s=t_session: s.run(x)
            stats = interleaved(fns, rounds=rounds, min_time_s=block_s)
            entry = {
                "peer_median_ms": stats["peer"]["median_ms"],
                "peer_precision": precision_name(peer.get_property("INFERENCE_PRECISION_HINT")),
                "slimgan_runtime": runtime,
                "slimgan_median_ms": stats["slimgan"]["median_ms"],
                "slimgan": session.describe(),
                "ratio": stats["peer"]["median_ms"] / stats["slimgan"]["median_ms"],
            }
            if teacher is not None:
                entry["teacher_median_ms"] = stats["teacher"]["median_ms"]
                entry["speedup"] = stats["teacher"]["median_ms"] / stats["slimgan"]["median_ms"]
                entry["peer_speedup"] = stats["teacher"]["median_ms"] / stats["peer"]["median_ms"]
            report["by_threads"][str(threads)] = entry
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="student bundle (slimgan export)")
    parser.add_argument("--teacher", type=Path, help="teacher bundle: teacher/student speedup on the same runtime")
    parser.add_argument("--threads", type=_int_list, default=[1, 2], help="comma list (default 1,2)")
    parser.add_argument("--res", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=float, default=0.5, help="seconds per graph per round")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    args = parser.parse_args(argv)
    report = run(args.bundle, args.teacher, args.threads, args.res, args.rounds, args.block)
    for n, e in report["by_threads"].items():
        line = (f"{n} thread(s): peer (plain export, OpenVINO defaults, {e['peer_precision']}) {e['peer_median_ms']:.2f} ms, "
                f"slimgan ({e['slimgan_runtime']} {e['slimgan'].get('precision', '')}) {e['slimgan_median_ms']:.2f} ms, "
                f"ratio {e['ratio']:.3f}")
        if "speedup" in e:
            line += f"; teacher {e['teacher_median_ms']:.1f} ms, speedup {e['speedup']:.2f}x (peer {e['peer_speedup']:.2f}x)"
        print(line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
