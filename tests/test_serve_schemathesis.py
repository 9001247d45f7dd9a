"""Property-based API conformance: schemathesis drives the live server from its own OpenAPI spec.

A real uvicorn server (dummy backend) runs on loopback in a thread; every operation is exercised with
a bounded number of generated examples and checked for 5xx, undocumented status codes, content types
and response schemas.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis", minversion="4.0")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from serve_bundles import dummy_bundle, serve_in_thread  # noqa: E402

from serve.app import create_app  # noqa: E402
from serve.settings import ServeSettings  # noqa: E402

API_KEY = "schemathesis-key"


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("schema")
    bundles = [
        dummy_bundle(root / "pix", "translate", name="pix"),
        dummy_bundle(root / "gen", "generate", name="gen"),
    ]
    app = create_app(
        ServeSettings(
            bundles=[str(b) for b in bundles],
            backend="dummy",
            max_count=4,
            api_key=API_KEY,
            max_body_bytes=1 << 20,
            max_pixels=1 << 20,
        )
    )
    with serve_in_thread(app) as base:
        yield base


def _operations(base: str) -> list:
    schema = schemathesis.openapi.from_url(base + "/openapi.json", headers={"X-API-Key": API_KEY})
    return [result.ok() for result in schema.get_all_operations()]


def test_api_conforms_to_its_openapi_spec(live_url: str) -> None:
    """Each operation: 25 generated cases (derandomized), every default check of schemathesis.

    The server requires an API key, so the ``ignored_auth`` check also verifies that requests
    without it are refused.
    """
    operations = _operations(live_url)
    labels = {op.label for op in operations}
    assert {"POST /v2/models/{name}/translate", "POST /v2/models/{name}/generate", "GET /metrics"} <= labels
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    for operation in operations:
        # A binary body is schema-valid yet rarely a decodable image; 400 is the right answer there.
        excluded = [positive_data_acceptance] if operation.label.endswith("/translate") else []

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: object) -> None:
            skip = list(excluded)  # noqa: B023
            body = getattr(case, "body", None)
            if isinstance(body, dict) and body.get("truncation") is not None:
                # schema-valid, but only StyleGAN2 bundles have a truncation input; the others answer 422
                skip.append(positive_data_acceptance)
            case.call_and_validate(headers={"X-API-Key": API_KEY}, excluded_checks=skip)

        check()
    import httpx

    metrics = httpx.get(live_url + "/metrics", headers={"X-API-Key": API_KEY}).text
    assert 'route="/v2/models/{name}/generate"' in metrics and 'code="401"' in metrics
    assert (
        'slimgan_request_success_total{code="200",method="POST",route="/v2/models/{name}/generate"}'
        in metrics
    )
    assert 'code="500"' not in metrics


def test_spec_is_served(live_url: str, tmp_path: Path) -> None:
    import httpx

    assert httpx.get(live_url + "/openapi.json").status_code == 401  # the schema lists the models: behind the key
    spec = httpx.get(live_url + "/openapi.json", headers={"X-API-Key": API_KEY}).json()
    assert spec["openapi"].startswith("3.")
    assert "/v2/models/{name}/translate" in spec["paths"]
