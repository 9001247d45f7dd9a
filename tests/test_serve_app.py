"""In-process tests of the HTTP API on the dummy backend: routes, error mapping, limits, metrics, OpenAPI."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from serve_bundles import dummy_bundle, png_bomb

from serve.app import create_app
from serve.settings import ServeSettings


def png_bytes(
    width: int, height: int, color: tuple[int, int, int] = (200, 40, 10), mode: str = "RGB"
) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height), color if mode == "RGB" else color[0]).save(buf, format="PNG")
    return buf.getvalue()


def wait_ready(client: TestClient, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get("/v2/health/ready").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError("server never became ready")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return dummy_bundle(root / "pix", "translate", name="pix"), dummy_bundle(
        root / "gen", "generate", name="gen"
    )


def make_client(bundles: tuple[Path, Path], **overrides: object) -> TestClient:
    settings = ServeSettings(bundles=[str(b) for b in bundles], backend="dummy", **overrides)
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(bundles: tuple[Path, Path]) -> Iterator[TestClient]:
    with make_client(bundles, max_body_bytes=200_000, max_pixels=512 * 512, max_count=9) as c:
        wait_ready(c)
        yield c


def test_health_and_model_listing(client: TestClient) -> None:
    assert client.get("/v2/health/live").json()["status"] == "live"
    assert client.get("/v2/health/ready").json() == {
        "status": "ready",
        "models": {"pix": "ready", "gen": "ready"},
    }
    models = {m["name"]: m["task"] for m in client.get("/v2/models").json()["models"]}
    assert models == {"pix": "translate", "gen": "generate"}
    detail = client.get("/v2/models/pix").json()
    assert detail["task"] == "translate" and detail["manifest"]["name"] == "pix"
    assert "source_checkpoint" not in detail["manifest"]


def test_translate_multipart_and_raw_keep_size_and_invert(client: TestClient) -> None:
    data = png_bytes(37, 23)
    r = client.post("/v2/models/pix/translate", files={"image": ("a.png", data, "image/png")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    out = Image.open(io.BytesIO(r.content))
    assert out.size == (37, 23)
    # the dummy backend negates x in [-1, 1], i.e. 255 - pixel
    assert np.abs(np.asarray(out, dtype=int) - (255 - np.array([200, 40, 10]))).max() <= 1
    raw = client.post("/v2/models/pix/translate", content=data, headers={"content-type": "image/png"})
    assert raw.status_code == 200 and raw.content == r.content


@pytest.mark.parametrize(
    ("query", "accept", "media"),
    [
        ("?format=jpeg", None, "image/jpeg"),
        ("", "image/webp", "image/webp"),
        ("", "image/jpeg;q=0.5, image/webp;q=0.9", "image/webp"),
        ("", "text/html", "image/png"),
    ],
)
def test_translate_output_format(client: TestClient, query: str, accept: str | None, media: str) -> None:
    headers = {"content-type": "image/png", **({"accept": accept} if accept else {})}
    r = client.post(f"/v2/models/pix/translate{query}", content=png_bytes(16, 16), headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == media
    assert Image.open(io.BytesIO(r.content)).format == media.split("/")[1].upper()


def test_generate_is_deterministic_and_seeded(client: TestClient) -> None:
    body = {"seed": 7, "count": 1}
    a = client.post("/v2/models/gen/generate", json=body)
    b = client.post("/v2/models/gen/generate", json=body)
    c = client.post("/v2/models/gen/generate", json={"seed": 8})
    assert a.status_code == 200 and a.headers["content-type"] == "image/png"
    assert a.content == b.content != c.content
    assert Image.open(io.BytesIO(a.content)).size == (32, 32)


def test_generate_grid_and_multipart(client: TestClient) -> None:
    grid = client.post("/v2/models/gen/generate", json={"seed": 7, "count": 4, "format": "webp"})
    assert grid.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(grid.content)).size == (64, 64)
    multi = client.post("/v2/models/gen/generate", json={"seed": 7, "count": 3, "layout": "multipart"})
    assert multi.headers["content-type"].startswith("multipart/mixed; boundary=")
    msg = message_from_bytes(
        b"Content-Type: " + multi.headers["content-type"].encode() + b"\r\n\r\n" + multi.content
    )
    parts = [p.get_payload(decode=True) for p in msg.get_payload()]
    assert len(parts) == 3
    single = client.post("/v2/models/gen/generate", json={"seed": 8}).content
    assert parts[1] == single  # image i of seed s is the image of seed s + i


def test_bad_inputs_get_json_4xx_and_server_stays_live(client: TestClient) -> None:
    png = png_bytes(40, 40)
    cases = [
        ({"files": {"image": ("a.txt", b"just some text\n", "text/plain")}}, "pix/translate", 400),
        ({"content": png[: len(png) // 2], "headers": {"content-type": "image/png"}}, "pix/translate", 400),
        ({"content": png_bomb(20000, 20000), "headers": {"content-type": "image/png"}}, "pix/translate", 413),
        ({"files": {"image": ("e.png", b"", "image/png")}}, "pix/translate", 400),
        ({"content": b"", "headers": {"content-type": "image/png"}}, "pix/translate", 400),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, "pix/translate", 415),
        ({"files": {"other": ("a.png", png, "image/png")}}, "pix/translate", 422),
        ({"content": png, "headers": {"content-type": "image/png"}}, "nope/translate", 404),
        ({"content": png, "headers": {"content-type": "image/png"}}, "gen/translate", 400),
        ({"content": b"x" * 200_001, "headers": {"content-type": "image/png"}}, "pix/translate", 413),
        ({"content": png_bytes(600, 600), "headers": {"content-type": "image/png"}}, "pix/translate", 413),
        ({"content": b'{"seed": ', "headers": {"content-type": "application/json"}}, "gen/generate", 422),
        ({"json": {"seed": -1}}, "gen/generate", 422),
        ({"json": {"seed": 1, "count": 10}}, "gen/generate", 422),
        ({"json": {"seed": 1, "count": 0}}, "gen/generate", 422),
        ({"json": {"seed": 1, "format": "gif"}}, "gen/generate", 422),
        ({"json": {"seed": 1, "colour": "red"}}, "gen/generate", 422),
        ({"content": b"seed=1", "headers": {"content-type": "text/plain"}}, "gen/generate", 415),
        ({"json": {"seed": 1}}, "nope/generate", 404),
    ]
    for kwargs, route, status in cases:
        r = client.post(f"/v2/models/{route}", **kwargs)
        assert r.status_code == status, (route, status, r.status_code, r.text)
        assert set(r.json()) == {"error"} and r.json()["error"]
    r = client.post("/v2/models/pix/translate?format=gif", content=png, headers={"content-type": "image/png"})
    assert r.status_code == 422 and "error" in r.json()
    assert client.get("/nowhere").status_code == 404 and "error" in client.get("/nowhere").json()
    assert client.get("/v2/health/live").status_code == 200
    assert (
        client.post(
            "/v2/models/pix/translate", content=png, headers={"content-type": "image/png"}
        ).status_code
        == 200
    )


def test_corrupt_jpeg_and_webp_are_400(client: TestClient) -> None:
    for fmt in ("JPEG", "WEBP", "BMP"):
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), (1, 2, 3)).save(buf, format=fmt)
        data = buf.getvalue()
        good = client.post("/v2/models/pix/translate", content=data, headers={"content-type": "image/png"})
        assert good.status_code == 200, fmt
        cut = client.post(
            "/v2/models/pix/translate",
            content=data[: len(data) // 3],
            headers={"content-type": "application/octet-stream"},
        )
        assert cut.status_code == 400, (fmt, cut.status_code, cut.text)


def test_metrics_count_requests_inferences_and_executions(client: TestClient) -> None:
    client.post("/v2/models/gen/generate", json={"seed": 1, "count": 3})
    client.post("/v2/models/nope/generate", json={"seed": 1})
    text = client.get("/metrics").text
    assert (
        'slimgan_request_success_total{code="200",method="POST",route="/v2/models/{name}/generate"}' in text
    )
    assert (
        'slimgan_request_failure_total{code="404",method="POST",route="/v2/models/{name}/generate"}' in text
    )
    values = {}
    for line in text.splitlines():
        if line.startswith(
            ('slimgan_inference_count_total{model="gen"}', 'slimgan_execution_count_total{model="gen"}')
        ):
            values[line.split("{")[0]] = float(line.rsplit(" ", 1)[1])
    assert values["slimgan_inference_count_total"] >= values["slimgan_execution_count_total"] + 2
    for name in (
        "slimgan_queue_depth",
        "slimgan_queue_duration_seconds_bucket",
        "slimgan_compute_duration_seconds_bucket",
    ):
        assert name in text


def test_openapi_documents_image_types_and_error_schema(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    translate = spec["paths"]["/v2/models/{name}/translate"]["post"]
    assert {"multipart/form-data", "image/png", "image/jpeg", "image/webp"} <= set(
        translate["requestBody"]["content"]
    )
    assert {"image/png", "image/jpeg", "image/webp"} <= set(translate["responses"]["200"]["content"])
    for code in ("400", "413", "415", "422", "503", "504"):
        ref = translate["responses"][code]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorResponse")
    assert spec["components"]["schemas"]["ErrorResponse"]["required"] == ["error"]
    assert "security" not in translate and "securitySchemes" not in spec.get("components", {})  # no key set
    generate = spec["paths"]["/v2/models/{name}/generate"]["post"]
    assert "seed" in generate["requestBody"]["content"]["application/json"]["schema"]["properties"]


def test_index_page_is_served(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'id="translate"' in r.text and "/v2/models" in r.text


def test_api_key_and_cors(bundles: tuple[Path, Path]) -> None:
    with make_client(bundles, api_key="s3cret", cors=["https://app.example"]) as c:
        wait_ready(c)
        assert c.get("/v2/health/live").status_code == 200  # health stays open
        assert c.get("/v2/models").status_code == 401
        assert c.get("/v2/models", headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.get("/metrics").status_code == 401
        assert c.get("/v2/models", headers={"X-API-Key": "s3cret"}).status_code == 200
        r = c.post("/v2/models/gen/generate", json={"seed": 1}, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200
        pre = c.options(
            "/v2/models", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
        )
        assert pre.headers.get("access-control-allow-origin") == "https://app.example"


def test_full_queue_is_503_with_retry_after_and_timeout_is_504(bundles: tuple[Path, Path]) -> None:
    import concurrent.futures

    with make_client(bundles, queue=1, max_batch=1, dummy_delay_ms=300, timeout_s=5) as c:
        wait_ready(c)

        def call(seed: int) -> object:
            return c.post("/v2/models/gen/generate", json={"seed": seed})

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(call, range(6)))
        codes = sorted(r.status_code for r in responses)
        assert 200 in codes and 503 in codes and set(codes) <= {200, 503}, codes
        full = next(r for r in responses if r.status_code == 503)
        assert full.headers["retry-after"] == "1" and "queue" in full.json()["error"]
    with make_client(bundles, dummy_delay_ms=400, timeout_s=0.1) as c:
        wait_ready(c)
        r = c.post("/v2/models/gen/generate", json={"seed": 1})
        assert r.status_code == 504 and "error" in r.json()
        assert c.get("/v2/health/live").status_code == 200


def test_ready_is_503_until_models_are_warm(bundles: tuple[Path, Path]) -> None:
    from serve.served_model import ServedModel

    original = ServedModel.load

    def slow_load(self: ServedModel) -> None:
        time.sleep(0.5)
        original(self)

    ServedModel.load = slow_load
    try:
        with make_client(bundles) as c:
            first = c.get("/v2/health/ready")
            assert first.status_code == 503 and first.headers["retry-after"] == "1"
            assert c.get("/v2/health/live").status_code == 200
            busy = c.post("/v2/models/gen/generate", json={"seed": 1})
            assert busy.status_code == 503
            wait_ready(c)
            assert c.post("/v2/models/gen/generate", json={"seed": 1}).status_code == 200
    finally:
        ServedModel.load = original


def test_settings_come_from_environment(monkeypatch: pytest.MonkeyPatch, bundles: tuple[Path, Path]) -> None:
    monkeypatch.setenv("SLIMGAN_BUNDLES", f'["{bundles[0]}"]')
    monkeypatch.setenv("SLIMGAN_MAX_BATCH", "3")
    monkeypatch.setenv("SLIMGAN_BACKEND", "dummy")
    monkeypatch.setenv("SLIMGAN_API_KEY", "k")
    settings = ServeSettings()
    assert settings.bundles == [str(bundles[0])] and settings.max_batch == 3 and settings.api_key == "k"
    with TestClient(create_app()) as c:
        wait_ready(c)
        assert c.get("/v2/models/pix", headers={"X-API-Key": "k"}).json()["max_batch"] == 3
