"""``slimgan serve --backend openvino`` and ``--backend auto`` on real exported bundles, torch-free."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import httpx
import pytest
from PIL import Image
from serve_bundles import free_port, wait_ready
from test_serve_e2e import start_server, stop

from distill import create_model, save_checkpoint
from export.bundle import export_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ovserve")
    ckpt = save_checkpoint(create_model("mobile_resnet_9blocks", ngf=4), root / "ckpt" / "mobile")
    out = root / "mobile"
    result = export_bundle(ckpt, out, res=32, speed_rounds=1, speed_block_s=0.05)
    assert result.ok
    return out


def _png(size: int) -> bytes:
    buf = io.BytesIO()
    Image.radial_gradient("L").resize((size, size)).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def _serve(args: list[str]) -> tuple[str, subprocess.Popen]:
    port = free_port()
    proc = start_server(args, port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc=proc)
    except BaseException:
        stop(proc)
        raise
    return base, proc


def _translate_and_libraries(base: str, proc: subprocess.Popen) -> str:
    r = httpx.post(base + "/v2/models/mobile/translate", files={"image": ("x.png", _png(40), "image/png")}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (40, 40)
    return Path(f"/proc/{proc.pid}/maps").read_text() if Path(f"/proc/{proc.pid}/maps").exists() else ""


def test_backend_openvino_answers_translate_without_torch(bundle) -> None:
    base, proc = _serve([str(bundle), "--backend", "openvino", "--threads", "1"])
    try:
        models = httpx.get(base + "/v2/models").json()["models"]
        assert models[0]["backend"] == "openvino"
        mapped = _translate_and_libraries(base, proc)
        if mapped:
            assert "libopenvino" in mapped
            assert "libtorch" not in mapped and "torch/_C" not in mapped
    finally:
        stop(proc)


def test_backend_auto_follows_the_preferred_runtime(bundle, tmp_path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    speed = json.loads((bundle / "speed.json").read_text())
    assert manifest["preferred_runtime"] == speed["runtime"]  # the measured winner is recorded
    # A copy of the bundle whose preferred runtime is OpenVINO, and one whose IR is not listed.
    prefer_ov = tmp_path / "ov" / "mobile"
    no_ir = tmp_path / "noir" / "mobile"
    for target, edit in ((prefer_ov, {"preferred_runtime": "openvino"}), (no_ir, {"preferred_runtime": "openvino"})):
        target.mkdir(parents=True)
        for f in bundle.iterdir():
            (target / f.name).write_bytes(f.read_bytes())
        data = {**manifest, **edit}
        if target is no_ir:
            data["files"] = {"fp32": "model.onnx"}
        (target / "manifest.json").write_text(json.dumps(data))
    base, proc = _serve([str(prefer_ov)])  # auto is the default
    try:
        assert httpx.get(base + "/v2/models").json()["models"][0]["backend"] == "openvino"
        mapped = _translate_and_libraries(base, proc)
        if mapped:
            assert "libopenvino" in mapped and "libtorch" not in mapped
    finally:
        stop(proc)
    base, proc = _serve([str(no_ir), "--backend", "auto"])
    try:
        assert httpx.get(base + "/v2/models").json()["models"][0]["backend"] == "onnxruntime"
        _translate_and_libraries(base, proc)
    finally:
        stop(proc)
