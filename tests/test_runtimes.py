"""The runtime layer: registry, one-line availability, real ONNX Runtime / OpenVINO sessions, NNCF INT8."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from distill import create_model
from distill.errors import MissingDependencyError, SlimganError
from export.onnx_export import export_onnx
from export.parity import compare
from export.runtimes import ConvertContext, available_runtimes, get_runtime, runtime_names

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny mobile generator, its PyTorch outputs and its exported ONNX (the graph slimgan ships)."""
    torch.manual_seed(0)
    model = create_model("mobile_resnet_9blocks", ngf=4).eval()
    root = tmp_path_factory.mktemp("rt")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    export_onnx(model, root / "model.onnx", torch.from_numpy(x[:1].copy()))
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    return root, x, ref


def test_registry_names_and_unknown_runtime() -> None:
    names = runtime_names()
    assert {"onnxruntime", "openvino", "tensorrt"} <= set(names)
    assert {"onnxruntime", "openvino"} <= set(available_runtimes())
    with pytest.raises(SlimganError, match="unknown runtime 'nope'; choose one of: .*onnxruntime.*openvino"):
        get_runtime("nope")
    with pytest.raises(SlimganError, match="did you mean 'openvino'"):
        get_runtime("openvin")
    # one registry with a duplicate check: a second runtime of a taken name is refused
    from export.runtimes import register_runtime

    with pytest.raises(SlimganError, match="runtime 'onnxruntime' is registered twice"):
        register_runtime(type(get_runtime("onnxruntime"))())


def test_tensorrt_unavailable_is_one_line_naming_the_extra() -> None:
    rt = get_runtime("tensorrt")
    ok, reason = rt.available()
    if ok:
        pytest.skip("TensorRT and a GPU are present")
    assert "\n" not in reason and "slimgan[trt]" in reason and "tensorrt" in reason
    with pytest.raises(MissingDependencyError, match="slimgan\\[trt\\]"):
        rt.load("model.plan")


def test_openvino_ir_matches_pytorch_and_onnxruntime(tiny) -> None:
    root, x, ref = tiny
    ov = get_runtime("openvino")
    bundle = root / "ov"
    bundle.mkdir()
    result = ov.convert(ConvertContext(bundle, root / "model.onnx"))
    assert result.files == ("model.xml", "model.bin") and all((bundle / f).is_file() for f in result.files)
    assert result.precision == "f32" and not result.rows  # no parity inputs: auto ships f32, unchecked
    session = ov.load(bundle / "model.xml", threads=1, precision="f32")
    out = session.run(x)
    assert out.shape == ref.shape and out.dtype == np.float32
    assert compare("ov", out, ref, "fp32")["passed"]
    ort_out = get_runtime("onnxruntime").load(root / "model.onnx", threads=1).run(x)
    assert np.max(np.abs(out - ort_out)) < 1e-4
    info = session.describe()
    assert info["runtime"] == "openvino" and info["threads"] == 1 and info["precision"] == "f32" and info["version"]
    # the CPU's own choice (bf16 on AVX512-BF16/AMX CPUs) is reported as such
    native = ov.load(bundle / "model.xml", threads=1)
    assert native.precision in ("f32", "bf16", "f16")
    assert compare("ov native", native.run(x), ref, "bf16")["psnr_db"] > 35


def test_openvino_session_serves_other_sizes_and_batches(tiny) -> None:
    root, _, _ = tiny
    bundle = root / "ov2"
    bundle.mkdir()
    get_runtime("openvino").convert(ConvertContext(bundle, root / "model.onnx"))
    session = get_runtime("openvino").load(bundle / "model.xml", threads=1, precision="f32")
    for shape in [(1, 3, 32, 32), (3, 3, 40, 48)]:
        y = session.run(np.zeros(shape, np.float32))
        assert y.shape == shape


def test_runtime_layer_imports_no_torch(tiny) -> None:
    """serve/ uses the layer: listing, availability, loading and running must not load torch."""
    root, _, _ = tiny
    bundle = root / "ov3"
    bundle.mkdir()
    get_runtime("openvino").convert(ConvertContext(bundle, root / "model.onnx"))
    script = textwrap.dedent(
        f"""
        import sys, numpy as np
        from export.runtimes import available_runtimes, get_runtime, runtime_names
        names = runtime_names()
        for name in names:
            get_runtime(name).available()
        x = np.zeros((1, 3, 32, 32), np.float32)
        a = get_runtime("onnxruntime").load({str(root / "model.onnx")!r}, threads=1).run(x)
        b = get_runtime("openvino").load({str(bundle / "model.xml")!r}, threads=1).run(x)
        assert a.shape == b.shape == (1, 3, 32, 32)
        assert "torch" not in sys.modules, "torch was imported"
        print("ok", ",".join(names))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok")


def test_nncf_int8_ir(tiny) -> None:
    pytest.importorskip("nncf", reason="the openvino-int8 extra (NNCF) is not installed")
    from export.runtimes.openvino_int8 import quantize_ir

    root, x, ref = tiny
    bundle = root / "q"
    bundle.mkdir()
    get_runtime("openvino").convert(ConvertContext(bundle, root / "model.onnx"))
    calib = np.random.default_rng(1).uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32)
    written = quantize_ir(bundle / "model.xml", bundle / "model.int8.xml", calib)
    assert written == ["model.int8.xml", "model.int8.bin"]
    assert "FakeQuantize" in (bundle / "model.int8.xml").read_text()  # really quantised
    out = get_runtime("openvino").load(bundle / "model.int8.xml", threads=1, precision="f32").run(x)
    row = compare("int8", out, ref, "int8")
    assert row["passed"] and row["psnr_db"] > 15  # int8 of an untrained net: coarse, but the same picture


def test_nncf_needs_calibration(tiny) -> None:
    pytest.importorskip("nncf")
    from export.runtimes.openvino_int8 import quantize_ir

    root, _, _ = tiny
    with pytest.raises(SlimganError, match="calib"):
        quantize_ir(root / "missing.xml", root / "q.xml", None)
