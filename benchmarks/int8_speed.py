"""INT8 paths of a bundle on real images: PSNR / SSIM against the fp32 PyTorch student, and speed.

    python -m benchmarks.int8_speed BUNDLE --images DIR [--limit 16] [--threads 1] [--rounds 5] [--out FILE]

``BUNDLE`` exported with ``--int8 --calib CALIB_DIR`` (ONNX Runtime's QDQ ``model.int8.onnx`` and, with the
``openvino-int8`` extra, NNCF's ``model.int8.xml``). ``--images`` should be other images than the
calibration ones; they are read and resized exactly as calibration images are
(:func:`export.int8.load_calibration_images`). Quality: every artifact's outputs against the bundle's
source checkpoint in fp32 PyTorch on those images (PSNR / SSIM over the whole set, data range 2).
Speed: for each runtime, its fp32 artifact (as shipped: OpenVINO at its recorded precision) and its INT8
one timed interleaved at batch 1 (:func:`export.speed.interleaved`); ``speedup = fp32 median / int8
median`` on the same runtime. The faster INT8 path is named.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def _artifacts(bundle: Path, manifest: Any) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """name -> (runtime, file role, load options beyond the bundle's own) for every fp32 / int8 artifact."""
    out = {}
    for name, runtime, role in (("onnxruntime fp32", "onnxruntime", "fp32"), ("onnxruntime int8", "onnxruntime", "int8"),
                                ("openvino fp32", "openvino", "openvino"), ("openvino int8", "openvino", "openvino-int8")):
        if role in manifest.files:
            out[name] = (runtime, role, {})
    if "openvino" in manifest.files and (manifest.runtimes.get("openvino") or {}).get("precision") not in (None, "f32"):
        out["openvino f32"] = ("openvino", "openvino", {"precision": "f32"})  # true fp32 beside the reduced default
    return out


def run(bundle: Path, images: Path, limit: int, threads: int, rounds: int, block_s: float) -> dict[str, Any]:
    import torch

    from distill.checkpoint import load_checkpoint
    from export.int8 import load_calibration_images
    from export.manifest import Manifest
    from export.parity import compare
    from export.runtimes import get_runtime
    from export.speed import interleaved

    manifest = Manifest.load(bundle)
    model = load_checkpoint(manifest.source_checkpoint).eval()
    res = manifest.macs_input_shape[-1] if manifest.macs_input_shape else 256
    x = load_calibration_images(images, 3, res, res, limit=limit)
    with torch.no_grad():
        ref = np.concatenate([model(torch.from_numpy(x[i:i + 1])).numpy() for i in range(len(x))])
    report: dict[str, Any] = {"bundle": str(bundle), "images": str(images), "count": len(x), "res": res, "threads": threads,
                              "quality": {}, "speed": {}}
    sessions = {}
    for name, (runtime, role, opts) in _artifacts(bundle, manifest).items():
        session = get_runtime(runtime).load_from_bundle(bundle, manifest, role, threads=threads, **opts)
        out = np.concatenate([session.run(x[i:i + 1]) for i in range(len(x))])
        row = compare(name, out, ref, "info")
        report["quality"][name] = {"psnr_db": row["psnr_db"], "ssim": row["ssim"], "max_abs": row["max_abs"],
                                   "precision": session.describe().get("precision", "fp32" if "fp32" in name else "int8")}
        sessions[name] = session
    one = x[:1]
    stats = interleaved({n: (lambda s=s: s.run(one)) for n, s in sessions.items()}, rounds=rounds, min_time_s=block_s)
    for name, st in stats.items():
        report["speed"][name] = {"median_ms": st["median_ms"], "p90_ms": st["p90_ms"], "runs": st["runs"]}
    paths = {}
    for runtime in ("onnxruntime", "openvino"):
        fp32, int8 = report["speed"].get(f"{runtime} fp32"), report["speed"].get(f"{runtime} int8")
        if fp32 and int8:
            paths[runtime] = {"int8_speedup_vs_fp32": fp32["median_ms"] / int8["median_ms"], "int8_median_ms": int8["median_ms"],
                              "fp32_precision": report["quality"][f"{runtime} fp32"]["precision"],
                              "psnr_db_vs_fp32_torch": report["quality"][f"{runtime} int8"]["psnr_db"]}
            if f"{runtime} f32" in report["speed"]:
                paths[runtime]["int8_speedup_vs_f32"] = report["speed"][f"{runtime} f32"]["median_ms"] / int8["median_ms"]
    report["int8"] = paths
    if paths:
        report["faster_int8"] = min(paths, key=lambda k: paths[k]["int8_median_ms"])
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--images", type=Path, required=True, help="real images, not the calibration ones")
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=float, default=0.5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    report = run(args.bundle, args.images, args.limit, args.threads, args.rounds, args.block)
    for name, q in report["quality"].items():
        s = report["speed"][name]
        print(f"{name:<18} {q['precision']:<5} PSNR {q['psnr_db']:7.2f} dB  SSIM {q['ssim']:.4f}  median {s['median_ms']:8.2f} ms")
    for runtime, p in report["int8"].items():
        vs_f32 = f", {p['int8_speedup_vs_f32']:.2f}x its f32 speed" if "int8_speedup_vs_f32" in p else ""
        print(f"{runtime}: int8 {p['int8_speedup_vs_fp32']:.2f}x the shipped fp32 artifact's speed ({p['fp32_precision']}){vs_f32}, "
              f"PSNR {p['psnr_db_vs_fp32_torch']:.2f} dB")
    if "faster_int8" in report:
        print(f"faster INT8 path: {report['faster_int8']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
