"""One bundle schema: ``export.manifest.Manifest`` types every field and serve loads bundles through it;
``checksums`` are verified at start-up; a checkpoint given to ``serve`` names ``slimgan export``; the
multipart parser does bounded work on any body."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import httpx
import pytest
from serve_bundles import build_bundle

from export.manifest import Manifest, ManifestError
from serve.bundle_validation import validate_bundle
from serve.errors import ApiError
from serve.multipart import parse_form
from slimgan.cli import main
from slimgan.errors import ConfigError


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("schema") / "pix", "mobile_resnet_9blocks", name="pix", res=32, ngf=4)


def edited(bundle: Path, dst: Path, edit) -> Path:
    shutil.copytree(bundle, dst)
    data = json.loads((dst / "manifest.json").read_text())
    edit(data)
    (dst / "manifest.json").write_text(json.dumps(data))
    return dst


def test_exported_manifest_loads_strictly_and_round_trips(bundle: Path) -> None:
    manifest = Manifest.load(bundle)
    assert manifest.checksums and set(manifest.files.values()) <= set(manifest.checksums)
    assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest
    assert validate_bundle(bundle) == manifest


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d: d.update(extra=1), "unknown manifest field 'extra'"),
        (lambda d: d["runtimes"].update(openvino={"precision": 32}), "'runtimes.openvino.precision' must be"),
        (lambda d: d["runtimes"].update(ort={"files": "model.onnx"}), "'runtimes.ort.files' must be a list"),
        (lambda d: d.update(controls={"truncation": {"input": "t", "shape": [1, 1], "default": 9.0}}),
         "'controls.truncation.default'"),
        (lambda d: d.update(controls={"warp": 1}), "unknown manifest field 'controls.warp'"),
        (lambda d: d["preprocessing"].update(scale="0.0078"), "'preprocessing.scale' must be a finite number"),
        (lambda d: d["checksums"].update({"model.onnx": "x" * 64}), "'checksums' entry 'model.onnx' must be a sha256"),
        (lambda d: d["files"].update(fp32="../x.onnx"), "'files' entry 'fp32' must be a relative path"),
        (lambda d: d.pop("opset"), "missing manifest field 'opset'"),
    ],
)
def test_strict_load_names_the_field(bundle: Path, tmp_path: Path, edit, needle: str) -> None:
    bad = edited(bundle, tmp_path / "bad", edit)
    with pytest.raises(ManifestError, match=needle.replace("(", r"\(").replace(".", r"\.")) as refused:
        validate_bundle(bad)
    assert isinstance(refused.value, ConfigError) and str(bad) in str(refused.value)


def test_checksums_are_verified_and_old_bundles_warned(bundle: Path, tmp_path: Path, caplog) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(bundle, changed)
    with (changed / "model.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ConfigError, match=r"model\.onnx does not match its sha256"):
        validate_bundle(changed)
    gone = tmp_path / "gone"
    shutil.copytree(bundle, gone)
    (gone / "parity.json").unlink()
    with pytest.raises(ConfigError, match=r"'checksums\.parity\.json' 'parity\.json' is missing"):
        validate_bundle(gone)
    old = edited(bundle, tmp_path / "old", lambda d: d.pop("checksums"))
    with caplog.at_level(logging.WARNING):
        assert validate_bundle(old).checksums == {}
    assert "no checksums" in caplog.text


def test_serve_of_a_checkpoint_names_slimgan_export(tmp_path: Path, capsys) -> None:
    from distill import create_model, save_checkpoint

    checkpoint = save_checkpoint(create_model("mobile_resnet_9blocks", ngf=4), tmp_path / "ckpt")
    assert main(["serve", str(checkpoint)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "slimgan export" in err[0] and str(checkpoint) in err[0], err
    pth = tmp_path / "latest_net_G.pth"
    pth.write_bytes(b"not really")
    assert main(["serve", str(pth)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "slimgan import" in err[0], err


def test_multipart_parser_reads_what_clients_send_and_bounds_spam() -> None:
    request = httpx.Request("POST", "http://x/", files={"image": ("a.png", b"\x89PNG\r\n--x\r\n")},
                            data={"format": "webp"})
    body = request.read()
    parts = {p.name: p for p in parse_form(body, request.headers["content-type"])}
    assert parts["image"].data == b"\x89PNG\r\n--x\r\n" and parts["image"].filename == "a.png"
    assert parts["format"].data == b"webp" and parts["format"].filename is None
    spam = b"\r\n--a-" * (15 * 1024 * 1024 // 6)
    for boundary in ("a-b", "a-", "a-" * 30 + "z"):
        t0 = time.perf_counter()
        with pytest.raises(ApiError) as refused:
            parse_form(b"--" + boundary.encode() + spam, f"multipart/form-data; boundary={boundary}")
        assert 400 <= refused.value.status < 500 and time.perf_counter() - t0 < 0.5
    with pytest.raises(ApiError, match="boundary"):
        parse_form(b"", "multipart/form-data; boundary=" + "b" * 71)
