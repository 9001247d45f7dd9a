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

from serve.cli import run_serve
from serve.settings import ServeSettings
from slimgan.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "serve" / "Dockerfile"
# compose service -> the base image its build arguments select
IMAGES = {
    "serve-cpu": "python:3.11-slim",
    "serve-tensorrt": "nvcr.io/nvidia/tensorrt:",
    "serve-jetson": "nvcr.io/nvidia/l4t-",
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


def build_args(instrs: list[tuple[str, str]], given: dict[str, str]) -> dict[str, str]:
    """Every ARG's value: the build argument given, else its default."""
    args = {}
    for keyword, rest in instrs:
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = given.get(name, default.strip('"'))
    return args


def expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), text)


def env_vars(instrs: list[tuple[str, str]], args: dict[str, str]) -> dict[str, str]:
    env = {}
    for keyword, rest in instrs:
        if keyword == "ENV":
            for key, value in re.findall(r"(\w+)=('[^']*'|\"[^\"]*\"|\S+)", rest):
                env[key] = expand(value.strip("'\""), args)
    return env


def compose_services() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]


def test_one_dockerfile_serves_every_image() -> None:
    """The serving images share one Dockerfile; no other Dockerfile under docker/ duplicates it."""
    assert sorted(p.relative_to(DOCKER).as_posix() for p in DOCKER.rglob("Dockerfile*")) == ["serve/Dockerfile"]
    services = compose_services()
    assert set(IMAGES) <= set(services)
    for name in IMAGES:
        assert services[name]["build"]["dockerfile"] == "docker/serve/Dockerfile", name


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_is_consistent_with_repo_and_cli(image: str) -> None:
    instrs = instructions(DOCKERFILE)
    service = compose_services()[image]
    args = build_args(instrs, {k: str(v) for k, v in service["build"].get("args", {}).items()})
    froms = [expand(rest, args) for keyword, rest in instrs if keyword == "FROM"]
    assert len(froms) == 1 and froms[0].startswith(IMAGES[image]), froms
    for keyword, rest in instrs:
        if keyword == "COPY":
            *sources, _dest = rest.split()
            for src in sources:
                assert (ROOT / src).exists(), f"{image}: COPY {src} does not exist"
                # the server imports neither the training side nor the benchmarks
                assert src.split("/")[0] not in ("distill", "benchmarks", "tests"), f"{image} copies {src}"
        if keyword == "RUN":
            assert not re.search(r"\btorch\b", expand(rest, args)), f"{image} installs torch"
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
    parsed = build_parser().parse_args(entrypoint[1:] + cmd)
    assert parsed.func is run_serve
    env = env_vars(instrs, args)
    assert env["SLIMGAN_PORT"] in health  # the probe targets the port the server binds
    settings_env = {k[len("SLIMGAN_") :].lower(): v for k, v in env.items() if k.startswith("SLIMGAN_")}
    settings = ServeSettings(
        **{k: json.loads(v) if v.startswith("[") else v for k, v in settings_env.items()}
    )
    assert settings.host == "0.0.0.0" and settings.bundles == ["/models"]
    assert settings.backend == ("auto" if image == "serve-cpu" else "tensorrt")


def test_compose_services_point_at_existing_dockerfiles() -> None:
    for name, service in compose_services().items():
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


def test_serve_runs_from_the_image_packages_alone(tmp_path: Path) -> None:
    """What the image copies (slimgan/, export/, serve/) serves a real bundle with distill absent."""
    import shutil
    import sysconfig

    import httpx

    sys.path.insert(0, str(Path(__file__).parent))
    from serve_bundles import build_bundle, free_port, wait_ready

    bundle = build_bundle(tmp_path / "b" / "pix", "mobile_resnet_9blocks", name="pix", res=32, ngf=4)
    app = tmp_path / "app"
    for package in ("slimgan", "export", "serve"):
        shutil.copytree(ROOT / package, app / package, ignore=shutil.ignore_patterns("__pycache__"))
    # -S: no site processing, so the editable install (which maps distill/ back into the repository) is
    # not active; the installed wheels are reached through PYTHONPATH, as in the image.
    env = {"PYTHONPATH": f"{app}:{sysconfig.get_paths()['purelib']}", "PATH": "/usr/bin:/bin"}
    probe = subprocess.run([sys.executable, "-S", "-c", "import distill"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0 and "No module named 'distill'" in probe.stderr
    port = free_port()
    serve = "import sys; from slimgan.cli import main; sys.exit(main(sys.argv[1:]))"
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-S", "-c", serve, "serve", str(bundle), "--backend", "onnxruntime",
                                 "--port", str(port), "--log-level", "warning"],
                                env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, timeout_s=90, proc=proc)
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (20, 12), (10, 200, 30)).save(buf, format="PNG")
        response = httpx.post(f"{base}/v2/models/pix/translate", content=buf.getvalue(),
                              headers={"content-type": "image/png"}, timeout=30)
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()
