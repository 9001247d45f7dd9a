"""Bounded HTTP load test of ``slimgan serve``, next to the raw in-process ONNX Runtime throughput.

    python -m benchmarks.load_test --bundle BUNDLE [--requests 160] [--concurrency 1 2 4 8]
    python -m benchmarks.load_test --bundle BUNDLE --url http://127.0.0.1:8000 --model NAME

Without ``--url`` it starts ``slimgan serve BUNDLE`` on a free loopback port, waits for
``/v2/health/ready``, runs, and stops the server. Requests only ever go to loopback (other hosts are
refused), each concurrency level sends exactly ``--requests`` requests, and the whole run stops after
``--max-seconds``. The client is a minimal keep-alive HTTP/1.1 writer on asyncio streams, so it costs
the server's CPU as little as possible.

Throughput on a shared machine swings with background load, so the report also gives CPU time per
image, which does not: the server process's CPU per request next to raw ORT's CPU per image.

Reported per concurrency: throughput (requests/s), p50/p90/p99 latency, non-2xx and 5xx counts, and
the ratio to the raw ONNX Runtime throughput of the same bundle (batch 1, same intra-op threads),
measured in-process with :func:`export.runtimes.timing.time_session` right before each level (so both see
the same background load), with idle intra-op threads spinning (ONNX Runtime's default) and
sleeping (the server's and export's setting); the ratio uses the faster of the two.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from export.manifest import Manifest
from export.runtimes.onnxruntime import session_options
from export.runtimes.timing import summarize_times, time_session


@dataclass
class LevelResult:
    concurrency: int
    requests: int
    ok: int
    non_2xx: int
    server_errors: int
    seconds: float
    throughput: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    raw_ort_images_per_s: float = 0.0  # measured just before this level, faster session setup
    server_cpu_ms_per_request: float | None = None  # from /proc when this script started the server
    ratio_to_raw: float | None = None


def check_loopback(url: str) -> tuple[str, int]:
    """(host, port) of ``url``; refuses anything that is not a loopback address."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parsed.scheme != "http" or not loopback:
        raise SystemExit(f"load_test only targets http://127.0.0.1 or localhost, not {url!r}")
    return host, parsed.port or 80


def request_payload(manifest: Manifest, res: int) -> tuple[str, str, bytes]:
    """(path suffix, content type, body) of one request for this bundle."""
    if manifest.task == "generate":
        return "generate", "application/json", json.dumps({"seed": 1, "count": 1}).encode()
    from PIL import Image

    yy, xx = np.mgrid[0:res, 0:res]
    rgb = np.stack(
        [xx * 255 // max(1, res - 1), yy * 255 // max(1, res - 1), (xx + yy) * 127 // max(1, res - 1)], -1
    )
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8), "RGB").save(buf, format="PNG")
    return "translate", "image/png", buf.getvalue()


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    chunked = False
    for line in lines[1:]:
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "content-length":
            length = int(value.strip())
        elif key == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def run_level(
    host: str,
    port: int,
    path: str,
    content_type: str,
    body: bytes,
    concurrency: int,
    total: int,
    deadline: float,
) -> tuple[list[float], list[int], float]:
    """Send ``total`` requests from ``concurrency`` keep-alive connections; latencies (ms) and statuses."""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nAccept: image/png\r\n\r\n"
    ).encode() + body
    remaining = [total]
    latencies: list[float] = []
    statuses: list[int] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while remaining[0] > 0 and time.monotonic() < deadline:
                remaining[0] -= 1
                t0 = time.perf_counter()
                writer.write(request)
                await writer.drain()
                status = await asyncio.wait_for(
                    _read_response(reader), timeout=max(1.0, deadline - time.monotonic())
                )
                latencies.append((time.perf_counter() - t0) * 1000.0)
                statuses.append(status)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses, time.perf_counter() - start


class RawOrt:
    """The bundle's fp32 model in this process, with and without intra-op spinning."""

    def __init__(self, bundle: Path, manifest: Manifest, res: int, threads: int) -> None:
        import onnxruntime as ort

        self.sessions = {}
        for label, spinning in (("spinning", True), ("no_spinning", False)):
            # spinning=False is the server's setting: idle intra-op threads sleep instead of spinning
            options = session_options(threads, spinning=spinning)
            self.sessions[label] = ort.InferenceSession(
                str(manifest.model_path(bundle, "fp32")),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
        self.manifest = manifest
        self.res = res

    def example(self, batch: int) -> np.ndarray:
        if self.manifest.task == "generate":
            shape = [batch, *[int(d) for d in self.manifest.input.shape[1:]]]
            return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        return np.zeros((batch, 3, self.res, self.res), dtype=np.float32)

    def cpu_ms_per_image(self, runs: int = 30) -> float:
        """CPU milliseconds (all threads of this process) per batch-1 run with the server's options."""
        session = self.sessions["no_spinning"]
        feed = {session.get_inputs()[0].name: self.example(1)}
        session.run(None, feed)
        t0 = time.process_time()
        for _ in range(runs):
            session.run(None, feed)
        return (time.process_time() - t0) / runs * 1000.0

    def throughput(self, batch: int = 1, seconds: float = 1.5) -> dict[str, float]:
        """Images/s of ``session.run`` per session setup (trtexec-style timing)."""
        x = self.example(batch)
        out = {}
        for label, session in self.sessions.items():
            name = session.get_inputs()[0].name
            stats = time_session(
                lambda s=session, n=name: s.run(None, {n: x}), warmup_s=0.3, min_runs=10, min_time_s=seconds
            )
            out[label] = float(stats["throughput"]) * batch
        return out


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle: Path, port: int, threads: int, extra: list[str]) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "slimgan.cli",
        "serve",
        str(bundle),
        "--port",
        str(port),
        "--threads",
        str(threads),
        "--log-level",
        "warning",
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_ready(base: str, proc: subprocess.Popen | None, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(base + "/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{base} did not become ready within {timeout_s:g} s")


def cpu_ms(before: float | None, proc: subprocess.Popen | None, requests: int) -> float | None:
    if before is None or proc is None or not requests:
        return None
    after = process_cpu_s(proc.pid)
    return None if after is None else (after - before) / requests * 1000.0


def run_load_test(
    bundle: Path,
    url: str | None = None,
    model: str | None = None,
    concurrency: tuple[int, ...] = (1, 2, 4, 8),
    requests: int = 160,
    res: int = 64,
    threads: int = 0,
    max_seconds: float = 300.0,
    server_args: tuple[str, ...] = (),
) -> dict:
    """Measure the server at each concurrency and the raw ORT throughput; returns a JSON-able report."""
    manifest = Manifest.load(bundle)
    threads = threads or os.cpu_count() or 1
    proc = None
    if url is None:
        url = f"http://127.0.0.1:{free_port()}"
        proc = start_server(bundle, int(url.rsplit(":", 1)[1]), threads, list(server_args))
    host, port = check_loopback(url)
    try:
        wait_ready(url, proc)
        name = model
        if name is None:
            with urllib.request.urlopen(url + "/v2/models", timeout=5) as r:
                name = json.load(r)["models"][0]["name"]
        suffix, content_type, body = request_payload(manifest, res)
        path = f"/v2/models/{name}/{suffix}"
        deadline = time.monotonic() + max_seconds
        # warm the connection path once
        asyncio.run(run_level(host, port, path, content_type, body, 1, 5, deadline))
        levels = []
        raw_ort = RawOrt(bundle, manifest, res, threads)
        for c in concurrency:
            # paired measurement: raw ORT right before the level, under the same background load
            raw_now = max(raw_ort.throughput().values())
            cpu_before = process_cpu_s(proc.pid) if proc is not None else None
            lat, statuses, seconds = asyncio.run(
                run_level(host, port, path, content_type, body, c, requests, deadline)
            )
            if not lat:
                break
            stats = summarize_times(lat)
            levels.append(
                LevelResult(
                    concurrency=c,
                    requests=len(statuses),
                    ok=sum(200 <= s < 300 for s in statuses),
                    non_2xx=sum(not 200 <= s < 300 for s in statuses),
                    server_errors=sum(s >= 500 for s in statuses),
                    seconds=seconds,
                    throughput=len(statuses) / seconds,
                    p50_ms=stats["median_ms"],
                    p90_ms=stats["p90_ms"],
                    p99_ms=stats["p99_ms"],
                    raw_ort_images_per_s=raw_now,
                    ratio_to_raw=len(statuses) / seconds / raw_now,
                    server_cpu_ms_per_request=cpu_ms(cpu_before, proc, len(statuses)),
                )
            )
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    raw1 = raw_ort.throughput(seconds=2.0)
    raw_cpu = raw_ort.cpu_ms_per_image()
    raw8 = raw_ort.throughput(batch=8, seconds=2.0)
    return {
        "bundle": str(bundle),
        "model": name,
        "task": manifest.task,
        "res": res,
        "threads": threads,
        "raw_ort_batch1_images_per_s": raw1,
        "raw_ort_batch8_images_per_s": raw8,
        "raw_ort_cpu_ms_per_image": raw_cpu,
        "levels": [asdict(level) for level in levels],
    }


def format_report(report: dict) -> str:
    lines = [
        f"bundle {report['bundle']} ({report['task']}, {report['res']} px, {report['threads']} threads)",
        "raw in-process ONNX Runtime after the run, images/s: batch 1 "
        + ", ".join(f"{k} {v:.1f}" for k, v in report["raw_ort_batch1_images_per_s"].items())
        + "; batch 8 "
        + ", ".join(f"{k} {v:.1f}" for k, v in report["raw_ort_batch8_images_per_s"].items()),
        "x raw = req/s over raw batch-1 images/s measured just before that level (faster session setup)",
        f"CPU per image: raw ORT {report['raw_ort_cpu_ms_per_image']:.2f} ms; server (whole process, per request): "
        + ", ".join(
            f"c{lv['concurrency']} {lv['server_cpu_ms_per_request']:.2f} ms"
            for lv in report["levels"]
            if lv["server_cpu_ms_per_request"] is not None
        ),
        f"{'conc':>4} {'req':>5} {'2xx':>5} {'5xx':>4} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'raw/s':>7} {'x raw':>6}",
    ]
    for lv in report["levels"]:
        lines.append(
            f"{lv['concurrency']:>4} {lv['requests']:>5} {lv['ok']:>5} {lv['server_errors']:>4} {lv['throughput']:>8.1f} "
            f"{lv['p50_ms']:>8.2f} {lv['p90_ms']:>8.2f} {lv['p99_ms']:>8.2f} {lv['raw_ort_images_per_s']:>7.1f} {lv['ratio_to_raw']:>6.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bundle", type=Path, required=True, help="bundle directory (also used for raw ORT timing)"
    )
    parser.add_argument("--url", help="an already running server on loopback (default: start one)")
    parser.add_argument("--model", help="model name on that server (default: the first listed)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--requests", type=int, default=160, help="requests per concurrency level")
    parser.add_argument("--res", type=int, default=64, help="input image side for translate bundles")
    parser.add_argument(
        "--threads", type=int, default=0, help="ORT intra-op threads for server and raw (0 = cores)"
    )
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop the whole run after this long")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("server_args", nargs=argparse.REMAINDER, help="after --: extra slimgan serve flags")
    args = parser.parse_args(argv)
    extra = [a for a in args.server_args if a != "--"]
    report = run_load_test(
        args.bundle,
        args.url,
        args.model,
        tuple(args.concurrency),
        args.requests,
        args.res,
        args.threads,
        args.max_seconds,
        tuple(extra),
    )
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
