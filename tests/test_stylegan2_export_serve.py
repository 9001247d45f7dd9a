"""StyleGAN2 export (truncation ψ as a graph input, mean w and noise inside) and serving with truncation.

A tiny trained-looking generator (its mean w tracked over a few training-mode forwards) goes through
``slimgan export`` into a bundle; the ONNX graph must match PyTorch at several ψ, keep ψ an input in
the fp16 graph too, and ``slimgan serve``'s app on a real uvicorn loopback server must give the same
bytes for the same (seed, truncation) and a different image for a different truncation.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import torch
from serve_bundles import build_bundle, serve_in_thread

from distill import create_model, save_checkpoint

KW = {"image_size": 16, "channels": 8, "nz": 8, "n_mlp": 2}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from slimgan.cli import main

    root = tmp_path_factory.mktemp("sg2")
    torch.manual_seed(0)
    g = create_model("stylegan2", **KW)
    with torch.no_grad():
        g.train()
        for _ in range(4):
            g(torch.randn(32, 8))  # track a non-zero mean w
        for conv in [g.conv1, *g.convs]:
            conv.noise.weight.fill_(0.3)  # make the fixed noise visible in the output
    g.eval()
    save_checkpoint(g, root / "sg2")
    out = root / "bundle"
    assert main(["export", str(root / "sg2"), "--out", str(out), "--fp16", "--speed-rounds", "1", "--json"]) == 0
    return root / "sg2", out


def _ort(path: Path, z: np.ndarray, psi: np.ndarray | None) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"input": z} if psi is None else {"input": z, "truncation": psi}
    return sess.run(None, feed)[0]


def test_onnx_graph_matches_torch_at_every_truncation(bundle: tuple[Path, Path]) -> None:
    from distill import load_checkpoint

    ckpt, out = bundle
    g = load_checkpoint(ckpt)
    assert g.mean_w.abs().sum() > 0
    z = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    for psi in (0.0, 0.5, 0.7, 1.0):
        t = np.array([[psi], [psi], [1.0]], dtype=np.float32)
        with torch.no_grad():
            ref = g(torch.from_numpy(z), truncation=torch.from_numpy(t)).numpy()
        np.testing.assert_allclose(_ort(out / "model.onnx", z, t), ref, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        plain = g(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(_ort(out / "model.onnx", z, None), plain, atol=1e-4, rtol=1e-4)  # default ψ = 1
    # the fp16 graph keeps ψ an input: feeding ψ = 0 gives the mean image, not the untruncated one
    centre = _ort(out / "model.fp16.onnx", z, np.zeros((3, 1), np.float32))
    assert np.abs(centre[0] - centre[1]).max() < 2e-2 and np.abs(centre - plain).max() > 0.05


def test_bundle_reports_truncation_parity_and_states_the_noise(bundle: tuple[Path, Path]) -> None:
    _, out = bundle
    parity = json.loads((out / "parity.json").read_text())
    names = [r["name"] for r in parity["rows"]]
    assert "student: torch vs onnx fp32, truncation 0.7" in names and parity["passed"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["controls"]["truncation"]["input"] == "truncation"
    assert manifest["controls"]["noise"].startswith("fixed")
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]  # ψ is an input with a default
    assert [i.name for i in sess.get_overridable_initializers()] == ["truncation"]


def test_serve_generate_with_seed_and_truncation(bundle: tuple[Path, Path], tmp_path: Path) -> None:
    from serve.app import create_app
    from serve.settings import ServeSettings

    _, out = bundle
    dcgan = build_bundle(tmp_path / "dc", "dcgan", ngf=4, nz=8, image_size=16)
    app = create_app(ServeSettings(bundles=[str(out), str(dcgan)], backend="onnxruntime", max_delay_ms=1))
    with serve_in_thread(app) as base:
        url = f"{base}/v2/models/sg2/generate"

        def post(body: dict, target: str = url) -> httpx.Response:
            return httpx.post(target, json=body, timeout=60)

        a, b = post({"seed": 3, "truncation": 0.7}), post({"seed": 3, "truncation": 0.7})
        assert a.status_code == 200 and a.headers["content-type"] == "image/png"
        assert a.content == b.content
        c = post({"seed": 3, "truncation": 0.2})
        assert c.status_code == 200 and c.content != a.content
        assert post({"seed": 4, "truncation": 0.7}).content != a.content
        assert post({"seed": 3}).content == post({"seed": 3, "truncation": 1.0}).content
        grid = post({"seed": 3, "truncation": 0.7, "count": 2})
        assert grid.status_code == 200
        assert post({"seed": 3, "truncation": 5}).status_code == 422
        other = post({"seed": 3, "truncation": 0.7}, f"{base}/v2/models/dc/generate")
        assert other.status_code == 422 and "truncation" in other.json()["error"]
        assert httpx.get(f"{base}/v2/models/sg2", timeout=30).json()["manifest"]["controls"]["truncation"]
