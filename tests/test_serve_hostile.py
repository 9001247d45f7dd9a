"""A hostile corpus (tests/hostile_corpus.py) against a real ``slimgan serve`` process.

Every request answers 200 or 4xx, never 5xx; a health probe running beside each request answers
within 0.5 s; 16 concurrent 4096 x 4096 uploads keep the server's peak RSS (VmHWM) under 1 GB;
tampered bundles stop ``slimgan serve`` with one line and no traceback.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hostile_corpus import Case, image_cases, json_cases, large_uploads, tampered_bundles
from serve_bundles import build_bundle, free_port, wait_ready
from test_serve_e2e import slimgan_cmd, start_server, stop

PROBE_LIMIT_S = 0.5
RSS_LIMIT_KB = 1024 * 1024


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("hostile")
    pix = build_bundle(root / "pix", "mobile_resnet_9blocks", name="pix", res=64, ngf=4)
    gen = build_bundle(root / "gen", "dcgan", name="gen", nz=16, ngf=4, image_size=32)
    return pix, gen


@pytest.fixture(scope="module")
def server(bundles: tuple[Path, Path]) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    proc = start_server([str(b) for b in bundles], port)  # default limits: what a user runs
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc=proc)
        yield base, proc
    finally:
        stop(proc)


class Prober:
    """Polls ``/v2/health/live`` in a thread while a block runs; records each probe's latency."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._probed = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    code = client.get(self.base + "/v2/health/live").status_code
                    if code != 200:
                        self.failures.append(f"live answered {code}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"live probe failed: {exc!r}")
                with self._probed:
                    self.latencies.append(time.perf_counter() - t0)
                    self._probed.notify_all()
                self._stop.wait(0.02)

    def _wait_for_probes(self, count: int) -> None:
        with self._probed:
            self._probed.wait_for(lambda: len(self.latencies) >= count, timeout=30)

    def __enter__(self) -> Prober:
        self._thread.start()
        self._wait_for_probes(1)  # the prober is running before the request starts
        return self

    def __exit__(self, *exc: object) -> None:
        self._wait_for_probes(len(self.latencies) + 1)  # and one more probe is answered after it
        self._stop.set()
        self._thread.join(timeout=10)


def send(client: httpx.Client, base: str, case: Case, model: str) -> httpx.Response:
    url = f"{base}/v2/models/{model}/{case.route}"
    if case.content_type == "multipart":
        return client.post(url, params=case.params, files={"image": ("upload", case.body, "image/png")})
    return client.post(url, params=case.params, content=case.body, headers={"content-type": case.content_type})


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def test_hostile_corpus_never_5xx_and_health_stays_fast(server: tuple[str, subprocess.Popen]) -> None:
    base, proc = server
    results, slow = {}, {}
    cases = image_cases() + json_cases()
    with httpx.Client(timeout=60.0) as client:
        for case in cases:
            with Prober(base) as probe:
                response = send(client, base, case, "pix" if case.route == "translate" else "gen")
            results[case.name] = response.status_code
            assert response.headers["content-type"].startswith("image/" if response.status_code == 200 else "app")
            if response.status_code != 200:
                assert set(response.json()) == {"error"}, response.text
            assert not probe.failures, (case.name, probe.failures)
            if max(probe.latencies) >= PROBE_LIMIT_S:
                slow[case.name] = max(probe.latencies)
    wrong = {
        name: code
        for name, code in results.items()
        if code not in next(c for c in cases if c.name == name).expect
    }
    assert not wrong, f"unexpected status codes: {wrong}"
    assert all(code < 500 for code in results.values()), results
    assert not slow, f"health probes over {PROBE_LIMIT_S} s during: {slow}"
    assert proc.poll() is None


def test_awkward_inputs_are_normalised(server: tuple[str, subprocess.Popen]) -> None:
    import io

    import numpy as np
    from hostile_corpus import jpeg_exif_rotated, png_16bit_grey
    from PIL import Image

    base, _ = server
    with httpx.Client(timeout=30.0) as client:
        rotated = client.post(f"{base}/v2/models/pix/translate", content=jpeg_exif_rotated(),
                              headers={"content-type": "image/jpeg"})
        assert Image.open(io.BytesIO(rotated.content)).size == (32, 48)  # stored 48 x 32, EXIF orientation 6
        big = client.post(f"{base}/v2/models/pix/translate", content=large_uploads(2048)[1][1],
                          headers={"content-type": "image/jpeg"})
        assert Image.open(io.BytesIO(big.content)).size == (1024, 1024)  # not enlarged past the inference size
    from export.manifest import Preprocessing
    from serve.imaging import prepare_translate

    grey = Image.open(io.BytesIO(png_16bit_grey()))
    tensor, _ = prepare_translate(grey, Preprocessing(color="L"), None, 1024)
    pixels = (tensor[0, 0] + 1) * 127.5
    assert pixels.min() < 1 and pixels.max() > 254 and 100 < float(np.median(pixels)) < 155  # a ramp, not white
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    tensor, _ = prepare_translate(rgba, Preprocessing(), None, 1024)
    assert np.allclose(tensor, 1.0)  # fully transparent black is shown on the white background


def test_concurrent_4096_uploads_bound_memory_and_keep_health_fast(server: tuple[str, subprocess.Popen]) -> None:
    base, proc = server
    uploads = large_uploads(4096)
    jobs = [uploads[i % len(uploads)] for i in range(16)]

    def post(job: tuple[str, bytes, str]) -> int:
        with httpx.Client(timeout=120.0) as client:
            return client.post(f"{base}/v2/models/pix/translate", content=job[1],
                               headers={"content-type": job[2]}).status_code

    with Prober(base) as probe, concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(post, jobs))
    peak = peak_rss_kb(proc.pid)
    latencies = sorted(probe.latencies)
    print(f"16 x 4096^2: codes {sorted(set(codes))}, peak RSS {peak / 1024:.0f} MiB, {len(latencies)} probes, "
          f"p95 {latencies[int(0.95 * len(latencies))]:.3f} s, max {latencies[-1]:.3f} s")
    # 429 (decode budget busy past the deadline, with Retry-After) is allowed on a slow machine, 5xx never
    assert set(codes) <= {200, 429} and codes.count(200) >= 8, codes
    assert not probe.failures, probe.failures
    assert peak < RSS_LIMIT_KB, f"server peak RSS {peak / 1024:.0f} MiB"
    # Every core is busy decoding and inferring here; on a shared 2-core machine the kernel can still
    # delay the event loop now and then, so the bound is held by 95% of probes and 4x for the slowest.
    assert latencies[int(0.95 * len(latencies))] < PROBE_LIMIT_S, latencies[-20:]
    assert latencies[-1] < 4 * PROBE_LIMIT_S, latencies[-20:]


def test_tampered_bundles_stop_serve_with_one_line(bundles: tuple[Path, Path], tmp_path: Path) -> None:
    tampered = tampered_bundles(bundles[0], tmp_path / "tampered")

    def serve(bundle: Path) -> tuple[int, str]:
        cmd = [*slimgan_cmd(), "serve", str(bundle), "--port", str(free_port()), "--log-level", "warning"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        return result.returncode, result.stdout + result.stderr

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        outcomes = dict(zip(tampered, pool.map(serve, tampered.values()), strict=True))
    for name, (code, output) in outcomes.items():
        lines = output.strip().splitlines()
        assert code != 0, f"{name}: served a tampered bundle"
        assert len(lines) == 1 and "Traceback" not in output, f"{name}: {output}"
        assert str(tampered[name]) in lines[0], f"{name}: the error does not name the bundle: {lines[0]}"
