"""Build tiny serving bundles (model.onnx + manifest.json) from zoo models for the serve tests.

Uses ``export.bundle.export_bundle`` (the library side of ``slimgan export``) when it imports;
otherwise exports with ``torch.onnx.export`` and writes the manifest by hand (same schema). Tests may import torch;
the server under test never does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from export.manifest import Manifest, Postprocessing, Preprocessing, TensorSpec


def _manifest(
    name: str,
    task: str,
    arch: str,
    kwargs: dict[str, Any],
    inp: TensorSpec,
    out: TensorSpec,
    pre: Preprocessing,
    **extra: Any,
) -> Manifest:
    return Manifest(
        name=name,
        task=task,
        arch=arch,
        input=inp,
        output=out,
        preprocessing=pre,
        postprocessing=Postprocessing(),
        opset=17,
        files={"fp32": "model.onnx"},
        source_checkpoint="",
        source_sha256="",
        macs=0,
        params=0,
        arch_kwargs=kwargs,
        **extra,
    )


def build_bundle(out: Path, arch: str, name: str | None = None, res: int = 64, **kwargs: Any) -> Path:
    """Export ``create_model(arch, **kwargs)`` to ``out`` as a bundle and return ``out``.

    Goes through ``slimgan export``'s library function (checkpoint -> :func:`export.bundle.export_bundle`,
    checks skipped for speed) when it is available, so the server is tested on real bundles.
    """
    from distill import create_model, save_checkpoint

    name = name or out.name
    try:
        from export.bundle import export_bundle
    except ImportError:
        return _torch_bundle(out, arch, name, res, **kwargs)
    checkpoint = out.parent / "checkpoints" / name  # the manifest is named after the checkpoint
    save_checkpoint(create_model(arch, **kwargs), checkpoint)
    export_bundle(checkpoint, out, res=res, check=False)
    return out


def _torch_bundle(out: Path, arch: str, name: str, res: int, **kwargs: Any) -> Path:
    """Fallback: ``torch.onnx.export`` plus a hand-written manifest of the same schema."""
    import torch

    from distill import create_model, model_info

    info = model_info(arch)
    model = create_model(arch, **kwargs).eval()
    out.mkdir(parents=True, exist_ok=True)
    if info.task == "generate":
        nz = int(model.slimgan_config["kwargs"].get("nz", 100))
        size = int(model.slimgan_config["kwargs"].get("image_size", res))
        example = torch.randn(1, nz)
        axes = {"z": {0: "batch"}, "output": {0: "batch"}}
        inp = TensorSpec("z", ["batch", nz], value_range=None, distribution="normal")
        outspec = TensorSpec("output", ["batch", 3, size, size], value_range=[-1.0, 1.0])
        pre = Preprocessing(latent_size=nz)
        manifest = _manifest(name, "generate", arch, model.slimgan_config["kwargs"], inp, outspec, pre)
        names = (["z"], ["output"])
    else:
        example = torch.rand(1, 3, res, res) * 2 - 1
        axes = {
            "input": {0: "batch", 2: "height", 3: "width"},
            "output": {0: "batch", 2: "height", 3: "width"},
        }
        inp = TensorSpec("input", ["batch", 3, "height", "width"], value_range=[-1.0, 1.0])
        outspec = TensorSpec("output", ["batch", 3, "height", "width"], value_range=[-1.0, 1.0])
        pre = Preprocessing(size_multiple=max(4, int(info.size_multiple)))
        manifest = _manifest(
            name, "translate", arch, model.slimgan_config["kwargs"], inp, outspec, pre, dynamic_spatial=True
        )
    with torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            str(out / "model.onnx"),
            input_names=names[0] if info.task == "generate" else ["input"],
            output_names=["output"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    manifest.save(out)
    return out


def dummy_bundle(out: Path, task: str, name: str | None = None, nz: int = 16, size: int = 32) -> Path:
    """A manifest-only bundle for the dummy backend (no ONNX file is needed)."""
    out.mkdir(parents=True, exist_ok=True)
    name = name or out.name
    if task == "generate":
        manifest = _manifest(
            name,
            "generate",
            "dcgan",
            {"nz": nz},
            TensorSpec("z", ["batch", nz], value_range=None, distribution="normal"),
            TensorSpec("output", ["batch", 3, size, size]),
            Preprocessing(latent_size=nz),
        )
    else:
        manifest = _manifest(
            name,
            "translate",
            "mobile_resnet_9blocks",
            {},
            TensorSpec("input", ["batch", 3, "height", "width"]),
            TensorSpec("output", ["batch", 3, "height", "width"]),
            Preprocessing(size_multiple=4),
            dynamic_spatial=True,
        )
    manifest.save(out)
    return out


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit grayscale PNG of ``width`` x ``height`` zeros (a few tens of kB; gigapixels decoded)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def manifest_json(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "manifest.json").read_text())


def free_port() -> int:
    """A free TCP port on loopback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, timeout_s: float = 60.0, proc: Any = None) -> None:
    """Poll ``/v2/health/ready`` until 200; fail early when ``proc`` (a server subprocess) has exited."""
    import time

    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.stdout.read().decode() if proc.stdout else ''}")
        try:
            if httpx.get(base + "/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"server at {base} did not become ready in {timeout_s:g} s")


def serve_in_thread(app: Any):
    """A real uvicorn server for ``app`` on a free loopback port, in a thread; yields its base URL."""
    import contextlib
    import threading

    import uvicorn

    @contextlib.contextmanager
    def running():
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, timeout_s=30)
            yield base
        finally:
            server.should_exit = True
            thread.join(timeout=30)

    return running()
