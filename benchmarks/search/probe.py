"""Which architecture choices buy latency on a runtime: plain ONNX exports timed beside the reference.

    python -m benchmarks.search.probe --runtime openvino --threads 1 --res 256 --out benchmarks/results/search_probe.json

Each variant is ``searchable_resnet`` with some arguments changed from the reference's (``mobile_resnet_9blocks``
at ngf 16, layer for layer); all are exported plainly and timed in alternating blocks with the reference
(:func:`benchmarks.search.latency.plain_side_by_side`). BatchNorm running statistics are set to non-trivial
values so that nothing is folded away as an identity. Used to pick the default search space.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

VARIANTS: dict[str, dict] = {
    "batchnorm (folded)": {"norm": "batch"},
    "resize+conv up-sampling": {"upsample": "resize"},
    "batchnorm + resize+conv": {"norm": "batch", "upsample": "resize"},
    "batchnorm + 6 blocks": {"norm": "batch", "blocks": [64] * 6},
    "batchnorm + inner width 32": {"norm": "batch", "blocks": [32] * 9},
    "batchnorm + dense blocks, trunk 32, inner 16": {"norm": "batch", "block": "dense", "trunk": 32, "blocks": [16] * 9},
    "stem 8, down 16, up 16/8 (instance)": {"stem": 8, "down": 16, "up": [16, 8]},
    "batchnorm + stem 8, down 16, up 16/8": {"norm": "batch", "stem": 8, "down": 16, "up": [16, 8]},
    "batchnorm + stem 8 + up 16/8 + 6 blocks": {"norm": "batch", "stem": 8, "down": 16, "up": [16, 8], "blocks": [64] * 6},
}


def main(argv: list[str] | None = None) -> int:
    import torch

    from benchmarks.search.latency import plain_side_by_side
    from distill.registry import create_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runtime", default="openvino", choices=["openvino", "onnxruntime"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--res", type=int, default=256)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    models = {}
    for name, kwargs in VARIANTS.items():
        model = create_model("searchable_resnet", **kwargs).eval()
        for bn in model.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.running_mean.normal_(0, 0.1)
                bn.running_var.uniform_(0.5, 2.0)
        models[name] = model
    models["reference: mobile_resnet_9blocks ngf 16"] = create_model("mobile_resnet_9blocks", ngf=16)
    with tempfile.TemporaryDirectory() as tmp:
        result = plain_side_by_side(args.runtime, args.threads, args.res, models, Path(tmp), rounds=4, min_time_s=0.4)
    result["variants"] = VARIANTS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name in models:
        print(f"{name:48s} {result[name]['median_ms']:8.2f} ms  x{result[name]['speedup_vs_reference']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
