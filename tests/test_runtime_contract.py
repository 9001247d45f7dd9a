"""The runtime contract, on every registered runtime: convert -> parity -> load_from_bundle -> run.

One tiny generator is exported to ONNX once; each runtime converts it into a fresh bundle folder and
must return a :class:`ConvertResult` naming files that exist, leave the context it was given unchanged,
produce passing parity rows against PyTorch, and load its artifact back through ``load_from_bundle``
with the manifest entries export would write, giving the same pictures. A runtime whose extra is not
installed here (or that cannot convert or run on this machine) is skipped with its own reason.
"""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest
import torch

from distill import create_model
from export.onnx_export import export_onnx
from export.parity import compare, failed_rows
from export.runtimes import BundleFiles, ConvertContext, ConvertResult, get_runtime, runtime_names

SHAPE = (1, 3, 32, 32)
EXPLICIT = [("onnxruntime", {}), ("onnxruntime", {"precision": "fp16"}), ("onnxruntime", {"precision": "int8"}),
            ("openvino", {}), ("openvino", {"precision": "f32"}), ("openvino", {"int8": True})]
CASES = EXPLICIT + [(name, {}) for name in runtime_names() if name not in {n for n, _ in EXPLICIT}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    torch.manual_seed(0)
    model = create_model("resnet_6blocks", ngf=2).eval()
    x = np.random.default_rng(0).uniform(-1, 1, (2, *SHAPE[1:])).astype(np.float32)
    export_onnx(model, root / "model.onnx", torch.from_numpy(x[:1]), optimize=False)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    calib = np.random.default_rng(1).uniform(-1, 1, (4, *SHAPE[1:])).astype(np.float32)
    return root, model, x, ref, calib


def _skip_unless_ready(rt, options: dict) -> None:
    problem = rt.convert_problem(options)
    if problem:
        pytest.skip(problem)
    runs_here = getattr(rt, "runs_here", None)
    if runs_here is not None and not runs_here()[0]:
        pytest.skip(runs_here()[1])


@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}" for n, o in CASES])
def test_convert_load_parity_contract(name, options, tiny, tmp_path) -> None:
    root, model, x, ref, calib = tiny
    rt = get_runtime(name)
    _skip_unless_ready(rt, options)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copy(root / "model.onnx", bundle / "model.onnx")
    if options.get("int8") and name == "openvino":  # NNCF quantises the bundle's fp32 IR
        rt.convert(ConvertContext(bundle, bundle / "model.onnx"))
    ctx = ConvertContext(bundle, bundle / "model.onnx", model, SHAPE, calib, dict(options))
    before = copy.deepcopy(ctx.options)

    result = rt.convert(ctx)

    assert isinstance(result, ConvertResult) and result.files, result
    assert all((bundle / f).exists() for f in result.files), result.files
    assert ctx.options == before, "convert must hand its result back, not through the shared context"
    rows = list(result.rows) or rt.parity_rows(bundle, result, ref[:1], x[:1], label="student", threads=1)
    assert rows and not failed_rows(rows), rows
    assert all(r["name"].startswith("student: torch vs ") for r in rows)

    roles = rt.file_roles(result)
    role = next(r for r, f in roles.items() if f == result.files[0])
    manifest = BundleFiles({"fp32": "model.onnx", **roles}, {role: {"precision": result.precision}})
    session = rt.load_from_bundle(bundle, manifest, role, threads=1)
    try:
        out = session.run(x[:1])
        described = session.describe()
    finally:
        session.close()
    gate = rows[0]["gate"] if rows[0]["gate"] in ("fp32", "fp16", "bf16", "int8") else "fp16"
    assert not failed_rows([compare("loaded", out, ref[:1], gate)])
    assert described.get("runtime") and described.get("file") == result.files[0]
