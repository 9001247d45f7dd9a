"""ONNX export of every zoo architecture (fp32 parity), the fp16 converter and the runtime helpers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from distill.profile import example_input
from distill.registry import create_model, list_models, model_info
from export.fp16 import convert_to_fp16, fp16_node_precisions
from export.onnx_export import export_onnx, run_onnx
from export.parity import compare
from export.runtimes.onnxruntime import make_session
from export.runtimes.timing import time_session

TINY = {
    "resnet_9blocks": {"ngf": 4},
    "resnet_6blocks": {"ngf": 4},
    "mobile_resnet_9blocks": {"ngf": 4},
    "unet_128": {"ngf": 4},
    "unet_256": {"ngf": 4},
    "unet_deepest_256": {"ngf": 1},
    "dcgan": {"ngf": 4, "nz": 16, "image_size": 16},
    "sngan": {"ngf": 8, "nz": 16, "image_size": 16},
    "basic": {"ndf": 4},
    "n_layers": {"ndf": 4},
    "dcgan_discriminator": {"ndf": 4, "image_size": 16},
    "sngan_discriminator": {"ndf": 8, "image_size": 16},
    "sub_mobile_resnet_9blocks": {"config": "4_4_8_4_8_8_4_4"},
    "legacy_sub_mobile_resnet_9blocks": {"config": "4_4_4_8_4_4"},
    "inception_9blocks": {"ngf": 4, "channels_reduction_factor": 2, "kernel_sizes": [1, 3]},
    "mobile_resnet_deepest": {"ngf": 4},
    "transformer_net": {"ngf": 4},
    "stylegan2": {"image_size": 16, "channels": 8, "nz": 8, "n_mlp": 1},
    "stylegan2_discriminator": {"image_size": 16, "channels": 8},
}


def _tiny(name: str) -> torch.nn.Module:
    return create_model(name, **TINY.get(name, {})).eval()


def _res(name: str) -> int:
    return max(32, model_info(name).size_multiple)


@pytest.mark.parametrize("name", [n for n in list_models() if not n.startswith("test_")])
def test_every_zoo_model_exports_with_fp32_parity(name: str, tmp_path) -> None:
    info = model_info(name)
    model = _tiny(name)
    x = example_input(model, _res(name), batch=2)  # images in [-1, 1] or latents N(0, 1)
    exported = export_onnx(model, tmp_path / "m.onnx", x[:1], input_kind=info.input_kind)
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")), full_check=True)
    assert exported.input_shape[0] == "batch"
    with torch.no_grad():
        ref = model(x).numpy()
    row = compare(name, run_onnx(tmp_path / "m.onnx", x.numpy()), ref, "fp32")
    assert row["passed"], row
    assert row["nan"] == 0 and row["inf"] == 0


@pytest.mark.parametrize("name", ["resnet_6blocks"])
def test_dynamic_spatial_axes_run_at_other_sizes(name: str, tmp_path) -> None:
    model = _tiny(name)
    step = model_info(name).size_multiple
    res = _res(name)
    exported = export_onnx(model, tmp_path / "m.onnx", example_input(model, res), input_kind="image")
    assert exported.dynamic_spatial and exported.input_shape[2:] == ["height", "width"]
    x = torch.rand(3, 3, res + step, res + 2 * step) * 2 - 1
    with torch.no_grad():
        ref = model(x).numpy()
    assert compare("other size", run_onnx(tmp_path / "m.onnx", x.numpy()), ref, "fp32")["passed"]


def test_export_uses_eval_mode_for_batchnorm_and_dropout(tmp_path) -> None:
    model = create_model("unet_128", ngf=4, use_dropout=True)
    model.train()  # the classic pix2pix bug: exporting in training mode
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x = example_input(model, 128, batch=2)
    export_onnx(model, tmp_path / "m.onnx", x[:1], input_kind="image")
    assert model.training, "export must restore the caller's mode"
    model.eval()
    with torch.no_grad():
        ref = model(x).numpy()
    assert compare("eval", run_onnx(tmp_path / "m.onnx", x.numpy()), ref, "fp32")["passed"]
    ops = {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "Dropout" not in ops


def test_fp16_keeps_instance_norm_and_io_in_fp32_and_passes(tmp_path) -> None:
    model = _tiny("mobile_resnet_9blocks")
    x = example_input(model, 32, batch=2)
    export_onnx(model, tmp_path / "m.onnx", x[:1], input_kind="image")
    fp16 = convert_to_fp16(onnx.load(str(tmp_path / "m.onnx")))
    onnx.checker.check_model(fp16, full_check=True)
    precisions = fp16_node_precisions(fp16)
    assert precisions["InstanceNormalization"] == {"float32": 41}
    assert set(precisions["Conv"]) == {"float16"}
    io = list(fp16.graph.input) + list(fp16.graph.output)
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in io)
    out = make_session(fp16.SerializeToString()).run(None, {"input": x.numpy()})[0]
    assert out.dtype == np.float32
    with torch.no_grad():
        ref = model(x).numpy()
    row = compare("fp16", out, ref, "fp16")
    assert row["passed"], row
    assert row["max_abs"] > 0  # it really ran in half precision


def test_fp16_instance_norm_in_half_precision_would_overflow() -> None:
    """Why the block list exists: a 64x64 plane's sum of squares exceeds the fp16 range."""
    plane = np.full((64, 64), 8.0, dtype=np.float16)
    assert not np.isfinite(np.sum(plane * plane, dtype=np.float16))
    assert np.isfinite(np.sum(plane.astype(np.float32) ** 2))


def test_time_session_reports_trtexec_statistics() -> None:
    stats = time_session(lambda: sum(range(1000)), warmup_s=0.0, min_runs=12, min_time_s=0.0)
    assert stats["runs"] == 12
    assert stats["min_ms"] <= stats["median_ms"] <= stats["p90_ms"] <= stats["p95_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    assert stats["throughput"] == pytest.approx(1000.0 / stats["mean_ms"])
