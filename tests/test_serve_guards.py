"""Server rules that need no live process: API-key settings, name collisions, health without leaks,
the decode budget, and the structure scans on each format."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hostile_corpus import bmp_rle, jpeg_junk_after_soi, jpeg_scan_bomb, jpeg_segment_bomb, png_chunk_bomb
from serve_bundles import dummy_bundle

from distill.errors import ConfigError
from serve.app import create_app
from serve.errors import ApiError
from serve.image_guards import PixelBudget, check_structure
from serve.served_model import build_models
from serve.settings import ServeSettings
from slimgan.cli import main


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("guards")
    return dummy_bundle(root / "pix", "translate"), dummy_bundle(root / "gen", "generate")


@pytest.mark.parametrize("key", ["", "clé", " padded "])
def test_unusable_api_keys_are_refused_at_start(bundles: tuple[Path, Path], key: str, capsys) -> None:
    with pytest.raises(ValueError, match="api_key"):
        ServeSettings(bundles=[str(bundles[0])], api_key=key, backend="dummy")
    assert main(["serve", str(bundles[0]), "--backend", "dummy", "--api-key", key]) == 2
    assert "--api-key" in capsys.readouterr().err


def test_names_may_not_collide(bundles: tuple[Path, Path]) -> None:
    pix, gen = bundles
    with pytest.raises(ConfigError, match="already taken"):
        build_models(ServeSettings(bundles=[str(pix), f"pix={gen}"], backend="dummy"))
    with pytest.raises(ConfigError, match="given twice"):
        build_models(ServeSettings(bundles=[str(pix), f"other={pix}"], backend="dummy"))
    assert set(build_models(ServeSettings(bundles=[str(pix), f"g2={gen}"], backend="dummy"))) == {"pix", "g2"}


def wait_until_ready(client: TestClient, timeout_s: float = 30.0) -> None:
    """Models load in a worker thread after start-up; wait for it (a loaded machine can take a while)."""
    import time

    deadline = time.monotonic() + timeout_s
    while client.get("/v2/health/ready").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)


def test_with_a_key_schema_docs_and_health_do_not_list_models(bundles: tuple[Path, Path]) -> None:
    app = create_app(ServeSettings(bundles=[str(b) for b in bundles], backend="dummy", api_key="s3cret"))
    with TestClient(app) as client:
        for path in ("/openapi.json", "/docs"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"X-API-Key": "s3cret"}).status_code == 200, path
        wait_until_ready(client)
        for path in ("/v2/health/live", "/v2/health/ready"):
            response = client.get(path)
            assert response.status_code == 200 and "pix" not in response.text and "gen" not in response.text
    with TestClient(create_app(ServeSettings(bundles=[str(bundles[0])], backend="dummy"))) as client:
        assert client.get("/openapi.json").status_code == 200
        wait_until_ready(client)
        assert client.get("/v2/health/ready").json()["models"] == {"pix": "ready"}


def test_health_does_not_leak_load_errors(bundles: tuple[Path, Path], tmp_path: Path) -> None:
    app = create_app(ServeSettings(bundles=[str(bundles[0])], backend="dummy"))
    model = app.state.server.models["pix"]

    def broken() -> None:
        raise RuntimeError(f"cannot open {tmp_path}/secret/model.onnx: protobuf parsing failed")

    model.load = broken  # a load failure in the lifespan, as a multi-worker child would meet it
    with TestClient(app) as client:
        live, ready = client.get("/v2/health/live"), client.get("/v2/health/ready")
    assert live.status_code == 200 and ready.status_code == 503
    for response in (live, ready):
        assert str(tmp_path) not in response.text and "protobuf" not in response.text


def test_pixel_budget_bounds_pixels_in_flight() -> None:
    async def scenario() -> tuple[int, list[int]]:
        budget = PixelBudget(100)
        peak, codes = 0, []

        async def job(pixels: int, timeout: float) -> None:
            nonlocal peak
            try:
                async with budget.hold(pixels, timeout):
                    peak = max(peak, budget.in_use)
                    await asyncio.sleep(0.05)
                codes.append(200)
            except ApiError as exc:
                codes.append(exc.status)

        await asyncio.gather(*(job(60, 5) for _ in range(4)), job(1000, 5))  # 1000 clamps to the whole budget
        assert budget.in_use == 0
        await asyncio.gather(job(100, 5), job(100, 0.01))
        return peak, codes

    peak, codes = asyncio.run(scenario())
    assert peak <= 100 and codes[:5] == [200] * 5 and sorted(codes[5:]) == [200, 429]


@pytest.mark.parametrize(
    ("data", "fmt", "status"),
    [
        (jpeg_segment_bomb(64 * 1024), "JPEG", 413),
        (jpeg_junk_after_soi(4096), "JPEG", 400),
        (jpeg_scan_bomb(200), "JPEG", 413),
        (png_chunk_bomb(10_000), "PNG", 413),
        (bmp_rle(8, 64, 64), "BMP", 415),
        (bmp_rle(4, 64, 64), "BMP", 415),
    ],
)
def test_structure_scans_refuse_before_decoding(data: bytes, fmt: str, status: int) -> None:
    with pytest.raises(ApiError) as info:
        check_structure(data, fmt)
    assert info.value.status == status
