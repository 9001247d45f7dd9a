"""Static checks of docker/: the images cannot be built here, so check what can be checked.

Paths that the Dockerfiles copy exist, each image runs as a non-root user with a HEALTHCHECK on
``/v2/health/ready``, installs no torch, and its ENTRYPOINT/CMD and ``SLIMGAN_*`` variables are
accepted by the real ``slimgan`` parser and :class:`ServeSettings`. The serve path also starts
with torch and the training-side packages made unimportable, as in the CPU image.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from slimgan.cli import build_parser
from serve.cli import run_serve
from serve.settings import ServeSettings

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
IMAGES = {
    "serve-cpu": "python:3.11-slim",
    "serve-tensorrt": "nvcr.io/nvidia/tensorrt:",
    "jetson": "nvcr.io/nvidia/l4t-",
}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def env_vars(instrs: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for keyword, rest in instrs:
        if keyword == "ENV":
            for key, value in re.findall(r"(\w+)=('[^']*'|\"[^\"]*\"|\S+)", rest):
                env[key] = value.strip("'\"")
    return env


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_is_consistent_with_repo_and_cli(image: str) -> None:
    path = DOCKER / image / "Dockerfile"
    assert path.is_file()
    instrs = instructions(path)
    assert instrs[0][0] == "FROM" and instrs[0][1].startswith(IMAGES[image])
    for keyword, rest in instrs:
        if keyword == "COPY":
            *sources, _dest = rest.split()
            for src in sources:
                assert (ROOT / src).exists(), f"{image}: COPY {src} does not exist"
        if keyword == "RUN":
            assert not re.search(r"\btorch\b", rest), f"{image} installs torch"
    users = [rest for keyword, rest in instrs if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    health = " ".join(rest for keyword, rest in instrs if keyword == "HEALTHCHECK")
    assert "/v2/health/ready" in health
    health_cmd = json.loads(health[health.index("CMD") + 3 :])
    compile(health_cmd[-1], "healthcheck", "exec")  # the probe is valid Python
    entrypoint = json.loads(next(rest for keyword, rest in instrs if keyword == "ENTRYPOINT"))
    cmd = json.loads(next(rest for keyword, rest in instrs if keyword == "CMD"))
    assert entrypoint == ["slimgan", "serve"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'slimgan = "slimgan.cli:main"' in pyproject
    args = build_parser().parse_args(entrypoint[1:] + cmd)
    assert args.func is run_serve
    env = env_vars(instrs)
    assert env["SLIMGAN_PORT"] in health  # the probe targets the port the server binds
    settings_env = {k[len("SLIMGAN_") :].lower(): v for k, v in env.items() if k.startswith("SLIMGAN_")}
    settings = ServeSettings(
        **{k: json.loads(v) if v.startswith("[") else v for k, v in settings_env.items()}
    )
    assert settings.host == "0.0.0.0" and settings.bundles == ["/models"]


def test_compose_services_point_at_existing_dockerfiles() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert {"serve-cpu", "serve-tensorrt"} <= set(compose["services"])
    for name, service in compose["services"].items():
        context = (DOCKER / service["build"]["context"]).resolve()
        assert (context / service["build"]["dockerfile"]).is_file(), name
        args = build_parser().parse_args(["serve", *service["command"]])
        assert args.func is run_serve and args.bundles
        fields = set(ServeSettings.model_fields)
        for key in service.get("environment", {}):
            assert key.startswith("SLIMGAN_") and key[len("SLIMGAN_") :].lower() in fields, key


def test_serving_requirements_exclude_torch() -> None:
    lines = (DOCKER / "requirements-serve.txt").read_text().splitlines()
    reqs = [
        re.split(r"[\[<>=;\s]", line.strip())[0]
        for line in lines
        if line.strip() and not line.startswith("#")
    ]
    assert "torch" not in reqs and {"fastapi", "uvicorn", "pydantic-settings", "prometheus-client"} <= set(
        reqs
    )


def test_serve_path_starts_without_training_packages(tmp_path: Path) -> None:
    """The image installs only docker/requirements-serve.txt: block the rest and build the real app."""
    bundle = tmp_path / "gen"
    sys.path.insert(0, str(Path(__file__).parent))
    from serve_bundles import dummy_bundle

    dummy_bundle(bundle, "generate")
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys
        BLOCKED = {{"torch", "torchvision", "scipy", "matplotlib", "onnx", "onnxsim", "safetensors", "tqdm"}}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError("not in the serving image: " + name)
        sys.meta_path.insert(0, Block())
        from slimgan.cli import build_parser
        args = build_parser().parse_args(["serve", {str(bundle)!r}, "--backend", "dummy"])
        from serve.cli import settings_from_args
        from serve.app import create_app
        import serve.backends.onnxruntime_backend, serve.backends.dummy
        app = create_app(settings_from_args(args))
        assert "torch" not in sys.modules
        print("ok", len(app.routes))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
