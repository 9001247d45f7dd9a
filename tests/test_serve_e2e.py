"""End to end: real bundles exported from zoo models, a real ``slimgan serve`` process on loopback.

Covers the acceptance checks: translate keeps 64 x 64, generate is byte-identical per seed, bad inputs
get 4xx while the server stays live, /metrics answers, 160 requests at concurrency 8 give no 5xx, the
process never maps libtorch, and SIGTERM lets in-flight requests finish.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from serve_bundles import build_bundle, dummy_bundle, free_port, png_bomb, wait_ready

from benchmarks.load_test import run_level


def slimgan_cmd() -> list[str]:
    script = Path(sys.executable).parent / "slimgan"
    return [str(script)] if script.exists() else [sys.executable, "-m", "slimgan.cli"]


def start_server(args: list[str], port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *slimgan_cmd(),
            "serve",
            *args,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout=10)
    return proc.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen]]:
    root = tmp_path_factory.mktemp("e2e")
    pix = build_bundle(root / "mobile", "mobile_resnet_9blocks", name="mobile", res=64, ngf=16)
    gen = build_bundle(root / "dcgan", "dcgan", name="dcgan", nz=64, ngf=16, image_size=64)
    port = free_port()
    proc = start_server([str(pix), str(gen)], port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc=proc)
        yield base, proc
    finally:
        stop(proc)


def png_bytes(size: int) -> bytes:
    buf = io.BytesIO()
    Image.radial_gradient("L").resize((size, size)).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def test_translate_and_generate(server: tuple[str, subprocess.Popen]) -> None:
    base, _ = server
    models = {m["name"]: m["task"] for m in httpx.get(base + "/v2/models").json()["models"]}
    assert models == {"mobile": "translate", "dcgan": "generate"}
    r = httpx.post(
        base + "/v2/models/mobile/translate", files={"image": ("x.png", png_bytes(64), "image/png")}
    )
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (64, 64)
    odd = httpx.post(
        base + "/v2/models/mobile/translate",
        content=png_bytes(50)[:],
        headers={"content-type": "image/png", "accept": "image/jpeg"},
    )
    assert odd.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(odd.content)).size == (
        50,
        50,
    )
    a = httpx.post(base + "/v2/models/dcgan/generate", json={"seed": 1234})
    b = httpx.post(base + "/v2/models/dcgan/generate", json={"seed": 1234})
    assert a.status_code == b.status_code == 200 and a.content == b.content
    assert Image.open(io.BytesIO(a.content)).size == (64, 64)
    assert httpx.post(base + "/v2/models/dcgan/generate", json={"seed": 1235}).content != a.content
    # batched together with other requests, a seed still gives the same bytes
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        seeds = [1234, 1, 2, 1234, 3, 4, 1234, 5]
        batch = list(
            pool.map(lambda s: httpx.post(base + "/v2/models/dcgan/generate", json={"seed": s}), seeds)
        )
    assert all(r.content == a.content for r, s in zip(batch, seeds, strict=True) if s == 1234)


def test_bad_inputs_are_4xx_and_server_stays_live(server: tuple[str, subprocess.Popen]) -> None:
    base, proc = server
    png = png_bytes(64)
    cases = {
        "text file": dict(files={"image": ("notes.txt", b"hello, not an image\n", "text/plain")}),
        "truncated png": dict(content=png[: len(png) // 2], headers={"content-type": "image/png"}),
        "png bomb": dict(content=png_bomb(20000, 20000), headers={"content-type": "image/png"}),
        "empty file": dict(files={"image": ("empty.png", b"", "image/png")}),
    }
    for label, kwargs in cases.items():
        r = httpx.post(base + "/v2/models/mobile/translate", **kwargs)
        assert 400 <= r.status_code < 500 and "error" in r.json(), label
        assert httpx.get(base + "/v2/health/live").status_code == 200, label
    bad_json = httpx.post(
        base + "/v2/models/dcgan/generate",
        content=b'{"seed": 1,',
        headers={"content-type": "application/json"},
    )
    assert bad_json.status_code == 422
    unknown = httpx.post(
        base + "/v2/models/nope/translate", content=png, headers={"content-type": "image/png"}
    )
    assert unknown.status_code == 404
    assert httpx.get(base + "/v2/health/live").status_code == 200 and proc.poll() is None


def test_metrics_and_load_without_5xx(server: tuple[str, subprocess.Popen]) -> None:
    base, _ = server
    port = int(base.rsplit(":", 1)[1])
    latencies, statuses, _ = asyncio.run(
        run_level(
            "127.0.0.1",
            port,
            "/v2/models/mobile/translate",
            "image/png",
            png_bytes(64),
            8,
            160,
            time.monotonic() + 120,
        )
    )
    assert len(statuses) == 160 and all(s == 200 for s in statuses), sorted(set(statuses))
    text = httpx.get(base + "/metrics").text
    counts = {}
    for line in text.splitlines():
        for key in ("slimgan_inference_count_total", "slimgan_execution_count_total"):
            if line.startswith(key + '{model="mobile"}'):
                counts[key] = float(line.rsplit(" ", 1)[1])
    assert counts["slimgan_inference_count_total"] >= 160
    assert counts["slimgan_execution_count_total"] < counts["slimgan_inference_count_total"]  # batches formed
    assert (
        'slimgan_request_success_total{code="200",method="POST",route="/v2/models/{name}/translate"}' in text
    )


def test_server_process_never_loads_torch(server: tuple[str, subprocess.Popen]) -> None:
    _, proc = server
    maps = Path(f"/proc/{proc.pid}/maps")
    if not maps.exists():
        pytest.skip("no /proc on this platform")
    mapped = maps.read_text()
    assert "onnxruntime" in mapped  # the check looks at the right process
    assert "libtorch" not in mapped and "torch/_C" not in mapped


def test_sigterm_finishes_in_flight_requests(tmp_path: Path) -> None:
    bundle = dummy_bundle(tmp_path / "gen", "generate", name="gen")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(
        [str(bundle), "--backend", "dummy", "--dummy-delay-ms", "250", "--max-batch", "1"], port
    )
    try:
        wait_ready(base, proc=proc)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [
                pool.submit(httpx.post, base + "/v2/models/gen/generate", json={"seed": i}, timeout=30)
                for i in range(4)
            ]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if 'slimgan_queue_depth{model="gen"} 2.0' in httpx.get(base + "/metrics").text:
                    break
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            codes = [f.result().status_code for f in futures]
        assert codes == [200, 200, 200, 200]
        # uvicorn re-raises the signal once shutdown is complete
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        stop(proc)


def test_tensorrt_backend_refuses_cleanly_without_tensorrt(tmp_path: Path) -> None:
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    bundle = dummy_bundle(tmp_path / "pix", "translate")
    result = subprocess.run(
        [*slimgan_cmd(), "serve", str(bundle), "--backend", "tensorrt"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "tensorrt" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="needs a CUDA GPU")
@pytest.mark.gpu
def test_onnxruntime_cuda_provider_serves(tmp_path: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu not installed")
    bundle = build_bundle(tmp_path / "pix", "mobile_resnet_9blocks", ngf=4)
    port = free_port()
    proc = start_server([str(bundle), "--device", "cuda"], port)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc=proc)
        r = httpx.post(
            f"http://127.0.0.1:{port}/v2/models/pix/translate",
            content=png_bytes(64),
            headers={"content-type": "image/png"},
        )
        assert r.status_code == 200
    finally:
        stop(proc)


def test_env_var_configures_cli(tmp_path: Path) -> None:
    bundle = dummy_bundle(tmp_path / "gen", "generate", name="gen")
    port = free_port()
    env = {**os.environ, "SLIMGAN_API_KEY": "k3y", "SLIMGAN_BACKEND": "dummy"}
    proc = subprocess.Popen(
        [*slimgan_cmd(), "serve", str(bundle), "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc=proc)
        assert httpx.get(base + "/v2/models").status_code == 401
        assert httpx.get(base + "/v2/models", headers={"X-API-Key": "k3y"}).status_code == 200
    finally:
        stop(proc)
