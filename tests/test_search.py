"""slimgan search (issue 22): the searchable zoo model, the supernet, the search space, the choice rule,
and the whole command on a tiny teacher and generated photos (real OpenVINO timings, real export)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distill.checkpoint import load_checkpoint, save_checkpoint
from distill.errors import ConfigError
from distill.registry import create_model
from distill.search.evolve import choose, evolve, pareto_front
from distill.search.recipe import load_recipe, quick_recipe
from distill.search.space import REFERENCE_GENES, SearchSpace, arch_key, to_kwargs
from distill.search.supernet import Supernet

SLIMGAN = shutil.which("slimgan")
CMD = [SLIMGAN] if SLIMGAN else [sys.executable, "-m", "slimgan.cli"]

TINY_SPACE = {"stem": [4, 16], "down": [8, 32], "trunk": [16, 64], "inner": [16, 64], "depth": [2, 9],
              "up1": [8, 32], "up2": [4, 16]}


def test_searchable_default_is_mobile_resnet_ngf16_layer_for_layer():
    torch.manual_seed(0)
    ref = create_model("mobile_resnet_9blocks", ngf=16).eval()
    model = create_model("searchable_resnet").eval()
    ref_state, state = ref.state_dict(), model.state_dict()
    assert [tuple(v.shape) for v in ref_state.values()] == [tuple(v.shape) for v in state.values()]
    model.load_state_dict(dict(zip(state, ref_state.values(), strict=True)))
    x = torch.rand(2, 3, 48, 64) * 2 - 1
    assert torch.equal(ref(x), model(x))


def test_searchable_rejects_bad_choices_in_one_line():
    with pytest.raises(ConfigError, match="norm 'group'"):
        create_model("searchable_resnet", norm="group")
    with pytest.raises(ConfigError, match="up="):
        create_model("searchable_resnet", up=[8])


def test_supernet_extract_computes_what_the_supernet_computes():
    torch.manual_seed(0)
    space = SearchSpace.from_dict(TINY_SPACE)
    net = Supernet(space)
    for bn in net.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):  # non-trivial affine parameters, so slicing mistakes show
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.normal_()
    rng = random.Random(1)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    seen = set()
    for genes in [dict(REFERENCE_GENES)] + [space.sample(rng) for _ in range(10)]:
        model = net.extract(genes).train()  # train mode: BatchNorm on batch statistics, as in the supernet
        assert model.slimgan_config["arch"] == "searchable_resnet"
        torch.testing.assert_close(model(x), net(x, genes), rtol=0, atol=1e-6)
        seen.add((genes["block"], genes["upsample"], genes["norm"]))
    assert len(seen) >= 4


def test_space_samples_mutations_and_reference_stay_inside():
    space = SearchSpace()
    assert space.contains(REFERENCE_GENES)
    ref_model = create_model("searchable_resnet", **to_kwargs(REFERENCE_GENES))
    default = create_model("searchable_resnet")
    assert [v.shape for v in ref_model.state_dict().values()] == [v.shape for v in default.state_dict().values()]
    rng = random.Random(0)
    keys = set()
    for _ in range(50):
        a, b = space.sample(rng), space.sample(rng)
        child = space.mutate(space.crossover(a, b, rng), rng)
        assert space.contains(a) and space.contains(child)
        keys.add(arch_key(child))
    assert len(keys) > 40
    with pytest.raises(ConfigError, match="no gene 'width'"):
        SearchSpace.from_dict({"width": [1]})
    with pytest.raises(ConfigError, match="norm"):
        SearchSpace.from_dict({"norm": ["layer"]})


def _row(name, latency, psnr):
    return {"key": name, "latency": latency, "psnr_teacher": psnr}


def test_pareto_front_and_choice_rules():
    rows = [_row("ref", 1.0, 20.0), _row("fast_bad", 0.4, 18.0), _row("fast_ok", 0.6, 19.8),
            _row("slow_good", 1.3, 20.5), _row("dominated", 0.9, 19.0)]
    assert [r["key"] for r in pareto_front(rows)] == ["fast_bad", "fast_ok", "ref", "slow_good"]
    ref = rows[0]
    assert choose(rows, ref, tolerance_db=0.3)["key"] == "fast_ok"
    assert choose(rows, ref, tolerance_db=0.1)["key"] == "ref"
    assert choose(rows, ref, budget=0.95)["key"] == "fast_ok"
    assert choose(rows, ref, budget=0.1)["key"] == "fast_bad"  # nothing fits: the fastest


def test_evolve_scores_each_architecture_once_and_skips_refused_ones():
    space = SearchSpace.from_dict(TINY_SPACE)
    calls: list[str] = []

    def score(genes):
        calls.append(arch_key(genes))
        if genes["upsample"] == "resize" and genes["norm"] == "batch":
            return None
        kw = to_kwargs(genes)
        return {"latency": kw["stem"] + kw["trunk"] + len(kw["blocks"]), "psnr_teacher": float(sum(kw["blocks"]))}

    rows = evolve(space, score, population=6, generations=2, rng=random.Random(0), seeds=[dict(REFERENCE_GENES)])
    assert len(calls) == len(set(calls))
    assert len(rows) >= 6
    assert all(not (r["genes"]["upsample"] == "resize" and r["genes"]["norm"] == "batch") for r in rows)
    assert any(r["key"] == arch_key(REFERENCE_GENES) for r in rows)


def test_recipe_files(tmp_path):
    assert quick_recipe().smoke_test and not load_recipe(None).smoke_test
    good = tmp_path / "r.yaml"
    good.write_text("supernet: {steps: 7}\nsearch: {population: 9}\nspace: {depth: [6, 9]}\n")
    recipe = load_recipe(good)
    assert (recipe.supernet.steps, recipe.search.population, recipe.space.depth) == (7, 9, (6, 9))
    bad = tmp_path / "bad.yaml"
    bad.write_text("supernet: {stepz: 7}\n")
    with pytest.raises(ConfigError, match="stepz"):
        load_recipe(bad)
    for path in sorted(Path(__file__).parents[1].glob("configs/search/*.yaml")):
        load_recipe(path)  # every shipped recipe loads


def _tiny_setup(root: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    teacher = create_model("resnet_6blocks", ngf=4)
    save_checkpoint(teacher, root / "teacher", provenance={"role": "teacher"})
    rng = np.random.default_rng(0)
    for i in range(8):
        yy, xx = np.mgrid[0:72, 0:96]
        img = np.stack([(np.sin(xx / (5 + i) + i) + 1) * 110, (np.cos(yy / (7 + i)) + 1) * 100,
                        rng.uniform(0, 255, (72, 96))], -1)
        sub = root / "photos" / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(sub / f"p{i}.png")
    recipe = root / "tiny.yaml"
    recipe.write_text(
        "supernet: {steps: 6, batch: 2, crop: 32}\nfinetune: {steps: 3, batch: 2, crop: 32}\n"
        "search: {population: 6, generations: 1}\ndata: {holdout_every: 4}\nlatency: {rounds: 1, min_time_s: 0.02}\n"
        f"space: {json.dumps(TINY_SPACE)}\n")
    return root / "teacher", recipe


def run_cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*CMD, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_search_end_to_end_then_export(tmp_path):
    pytest.importorskip("openvino")
    teacher, recipe = _tiny_setup(tmp_path)
    out = tmp_path / "S"
    proc = run_cli("search", "--teacher", str(teacher), "--photos", str(tmp_path / "photos"), "--runtime", "openvino",
                   "--threads", "1", "--res", "64", "--quick", "--config", str(recipe), "--no-progress", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "pareto.json").read_text())
    assert report["runtime"] == "openvino" and report["threads"] == 1 and report["smoke_test"] is True
    assert len(report["candidates"]) + len(report["dropped"]) >= 8
    for row in [*report["candidates"], report["reference"], report["chosen"]]:
        for key in ("config", "macs", "params", "latency_ms", "psnr_teacher"):
            assert row[key] is not None, key
        assert row["latency_ms"] > 0 and row["macs"] > 0
    assert report["reference"]["arch"] == "mobile_resnet_9blocks"
    chosen = report["chosen"]
    assert chosen["relative_latency"] <= 1.0
    assert chosen["psnr_teacher_supernet"] >= report["reference"]["psnr_teacher_supernet"] - 0.3
    assert (out / "pareto.png").stat().st_size > 1000
    plain = report["plain_onnx_check"]  # best/ and mobile_resnet_9blocks ngf 16 as plain ONNX, side by side
    assert plain["chosen"]["median_ms"] > 0 and plain["reference"]["median_ms"] > 0
    assert plain["speedup"] == pytest.approx(plain["reference"]["median_ms"] / plain["chosen"]["median_ms"], rel=1e-2)
    best = load_checkpoint(out / "best")
    assert best.slimgan_config["kwargs"]["blocks"] == chosen["config"]["blocks"]
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert best(x).shape == x.shape
    assert load_checkpoint(out / "reference").slimgan_config["arch"] == "mobile_resnet_9blocks"
    bundle = tmp_path / "B"
    proc = run_cli("export", str(out / "best"), "--teacher", str(teacher), "--res", "64", "--out", str(bundle))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (bundle / "model.onnx").is_file()
    _serve_and_translate(bundle)


def _serve_and_translate(bundle: Path) -> None:
    """``slimgan serve`` takes the searched student's bundle unchanged and translates a photo with it."""
    import io

    import httpx
    from serve_bundles import free_port, wait_ready
    from test_serve_e2e import start_server, stop

    port = free_port()
    server = start_server([str(bundle)], port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc=server)
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
        (name,) = [m["name"] for m in httpx.get(base + "/v2/models").json()["models"]]
        r = httpx.post(f"{base}/v2/models/{name}/translate",
                       files={"image": ("x.png", buf.getvalue(), "image/png")}, timeout=60)
        assert r.status_code == 200, r.text[:500]
        assert Image.open(io.BytesIO(r.content)).size == (64, 64)
    finally:
        stop(server)


@pytest.mark.slow
def test_latency_meter_caches_by_architecture(tmp_path):
    pytest.importorskip("openvino")
    from benchmarks.search.latency import LatencyMeter

    ref = create_model("mobile_resnet_9blocks", ngf=4)
    cache = tmp_path / "cache.json"
    meter = LatencyMeter("openvino", 1, 32, ref, tmp_path / "g", cache, rounds=1, min_time_s=0.01)
    cand = create_model("searchable_resnet", stem=4, down=8, trunk=16, blocks=[8, 8], up=[8, 4], norm="batch")
    first = meter.measure(cand, "k1")
    assert first["latency_source"] == "measured" and first["latency_ms"] > 0 and first["reference_ms_window"] > 0
    again = LatencyMeter("openvino", 1, 32, ref, tmp_path / "g", cache, rounds=1, min_time_s=0.01)
    second = again.measure(cand, "k1")
    assert second["latency_source"] == "cache" and second["latency_ms"] == first["latency_ms"]
    assert again.measured == 0
    # a device's table stands in for the host where it has the architecture
    from benchmarks.search.latency import load_table

    config = {"stem": 4, "down": 8, "trunk": 16, "blocks": [8, 8], "up": [8, 4], "block": "separable",
              "upsample": "deconv", "norm": "batch"}
    table_file = tmp_path / "device.json"
    table_file.write_text(json.dumps({"reference_ms": 40.0, "entries": [{"config": config, "latency_ms": 10.0}]}))
    table = load_table(table_file)
    key = json.dumps(config, sort_keys=True, separators=(",", ":"))
    device = LatencyMeter("openvino", 1, 32, ref, tmp_path / "g", tmp_path / "c2.json", table=table)
    row = device.measure(cand, key)
    assert row["latency_source"] == "table" and row["relative_latency"] == 0.25 and device.measured == 0
    table_file.write_text("{}")
    with pytest.raises(ConfigError, match="latency table"):
        load_table(table_file)


@pytest.mark.slow
def test_search_bad_photos_folder_is_one_line(tmp_path):
    teacher, _ = _tiny_setup(tmp_path)
    proc = run_cli("search", "--teacher", str(teacher), "--photos", str(tmp_path / "nope"), "--runtime", "openvino",
                   "--quick", "--out", str(tmp_path / "S"))
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.strip().splitlines() if "Warning" not in ln and not ln.startswith(" ")]
    assert lines[-1].startswith("slimgan search: error:") and "nope" in lines[-1]


def test_photo_pairs_split_subset_and_recalibration(tmp_path):
    from distill.search.data import PhotoPairs
    from distill.search.train import psnr_teacher, recalibrate

    teacher_dir, _ = _tiny_setup(tmp_path)
    teacher = load_checkpoint(teacher_dir)
    pairs = PhotoPairs.build(teacher, tmp_path / "photos", res=32, holdout_every=4, max_photos=6)
    assert len(pairs.train_x) + len(pairs.val_x) == 6 and len(pairs.val_x) == 1
    assert {Path(f).parent.name for f in pairs.train_files} == {"a", "b"}  # the subset spans both folders
    assert pairs.val_x.shape[-2:] == (32, 32) and pairs.val_y.shape == pairs.val_x.shape
    x, y = pairs.batch(random.Random(0), 3, 16)
    assert x.shape == y.shape == (3, 3, 16, 16)
    assert psnr_teacher(teacher, pairs) == 100.0  # the teacher against itself: capped, not inf
    model = create_model("searchable_resnet", stem=4, down=8, trunk=8, blocks=[8], up=[8, 4], norm="batch")
    recalibrate(model, pairs, batches=2, batch=2, crop=16)
    bn = model.stem.norm
    assert not model.training and int(bn.num_batches_tracked) == 2
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))


@pytest.mark.slow
def test_search_missing_runtime_fails_before_training(tmp_path):
    from export.runtimes import get_runtime

    ok, _ = get_runtime("tflite").available()
    if ok:
        pytest.skip("LiteRT is installed here; this checks the message when it is not")
    teacher, _ = _tiny_setup(tmp_path)
    proc = run_cli("search", "--teacher", str(teacher), "--photos", str(tmp_path / "photos"), "--runtime", "tflite",
                   "--quick", "--res", "64", "--out", str(tmp_path / "S"))
    assert proc.returncode == 2
    last = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("slimgan search")][-1]
    assert "tflite" in last and "pip install" in last
    assert not (tmp_path / "S" / "pareto.json").exists()
