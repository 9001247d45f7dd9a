"""``slimgan bench distill --task translation``: a real (frozen) teacher, photos, pseudo-pairs, swd, paired intervals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.report import paired_interval, vs_baseline
from benchmarks.time_budget import JobCost, curve_points, fit_steps, makespan
from benchmarks.translation_bench import (
    MIN_BUDGET_STEPS,
    CropSampler,
    apply_colour_map,
    baseline_vs_identity,
    crop_target_psnr,
    fit_colour_map,
    format_translation_table,
    load_photo,
    predict,
    score,
    split_photos,
)
from distill.checkpoint import load_checkpoint, save_checkpoint
from distill.metrics.swd import laplacian_pyramid, sliced_wasserstein_distance
from distill.registry import create_model
from slimgan.cli import main


def _photos(root: Path, n: int = 8) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        h, w = (40, 52) if i % 2 else (52, 40)
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([(xx * (i + 2) * 3) % 256, (yy * 5 + i * 20) % 256, ((xx + yy) * 2) % 256], -1)
        img = np.clip(img + rng.integers(0, 30, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"p{i}.{'png' if i % 3 else 'jpg'}")
    return root


def _teacher(path: Path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(create_model("resnet_9blocks", ngf=4), path, {"role": "teacher"})


def test_swd_is_zero_on_itself_and_grows_with_the_difference() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(6, 3, 48, 40, generator=gen) * 2 - 1
    assert sliced_wasserstein_distance(a, a)["swd"] == 0.0
    near = (a + 0.05 * torch.randn(a.shape, generator=gen)).clamp(-1, 1)
    far = (a + 0.5 * torch.randn(a.shape, generator=gen)).clamp(-1, 1)
    d_near, d_far = sliced_wasserstein_distance(a, near), sliced_wasserstein_distance(a, far)
    assert 0 < d_near["swd"] < d_far["swd"]
    assert len(d_near["swd_levels"]) == 2  # 40 -> 20 (the next halving is below 16)
    assert sliced_wasserstein_distance(a, far) == d_far  # fixed seed: the same number twice
    # a Laplacian pyramid adds back up to the image
    bands = laplacian_pyramid(a, 3)
    up = bands[-1]
    for band in reversed(bands[:-1]):
        up = torch.nn.functional.interpolate(up, size=band.shape[-2:], mode="bilinear", align_corners=False) + band
    assert torch.allclose(up, a, atol=1e-5)


def test_paired_interval_is_the_t_interval_of_the_differences() -> None:
    diff, ci = paired_interval([3.0, 4.0, 8.0], [1.0, 1.0, 1.0])  # differences 2, 3, 7
    assert diff == pytest.approx(4.0)
    half = 4.303 * np.std([2, 3, 7], ddof=1) / math.sqrt(3)
    assert ci == pytest.approx([4.0 - half, 4.0 + half])
    row = {"per_seed": [{"seed": s, "swd": v} for s, v in zip((0, 1, 2), (5.0, 5.5, 4.8), strict=True)]}
    base = {"per_seed": [{"seed": s, "swd": v} for s, v in zip((0, 1, 2), (7.0, 7.2, 7.1), strict=True)]}
    cmp = vs_baseline(row, base, "swd")
    assert cmp["diff"] < 0 and cmp["ci95"][1] < 0 and cmp["beats"] and not cmp["higher_is_better"]
    assert vs_baseline(base, row, "swd")["beats"] is False


def test_split_is_deterministic_or_the_folders_given(tmp_path) -> None:
    photos = _photos(tmp_path / "p", 10)
    a, b = split_photos(photos, 0.2), split_photos(photos, 0.2)
    assert a["test_files"] == b["test_files"] and len(a["test_files"]) == 2 and len(a["train_files"]) == 8
    assert not set(a["test_files"]) & set(a["train_files"])
    given = tmp_path / "given"
    for split, names in (("train", ["p0.jpg", "p1.png", "p2.png"]), ("test", ["p4.png", "p5.png"])):
        (given / split).mkdir(parents=True)
        for n in names:
            (given / split / n).write_bytes((photos / n).read_bytes())
    s = split_photos(given, 0.2)
    assert s["test_files"] == ["test/p4.png", "test/p5.png"] and len(s["train_files"]) == 3
    assert "train/ and test/" in s["how"]
    cyclegan = tmp_path / "horse2zebra"  # a CycleGAN dataset: the A side, never the B photos
    for split, names in (("trainA", ["p0.jpg", "p1.png"]), ("testA", ["p2.png", "p4.png"]),
                         ("trainB", ["p5.png", "p7.png"]), ("testB", ["p8.png", "p9.jpg"])):
        (cyclegan / split).mkdir(parents=True)
        for n in names:
            (cyclegan / split / n).write_bytes((photos / n).read_bytes())
    s = split_photos(cyclegan, 0.2)
    assert s["train_files"] == ["trainA/p0.jpg", "trainA/p1.png"] and s["test_files"] == ["testA/p2.png", "testA/p4.png"]
    # large folders are cut to a fixed sample, and the split says so
    c, d = split_photos(photos, 0.2, max_train=5, max_test=2), split_photos(photos, 0.2, max_train=5, max_test=2)
    assert c["train_files"] == d["train_files"] and len(c["train_files"]) == 5
    assert set(c["train_files"]) <= set(a["train_files"]) and c["test_files"] == a["test_files"]
    assert c["available"] == {"train": 8, "test": 2} and "capped to 5 of 8 training" in c["how"]
    assert "capped" not in a["how"]


def test_crop_target_psnr_sees_context_outside_the_crop() -> None:
    x = torch.rand(3, 48, 64) * 2 - 1
    pointwise = torch.nn.Conv2d(3, 3, 1)  # no context: a crop's target is the crop of the whole output
    with torch.no_grad():
        items = [{"input": x, "target": pointwise(x[None])[0].clamp(-1, 1)}]  # targets are clamped
        assert crop_target_psnr(pointwise, items, 24) > 90
        norm = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.InstanceNorm2d(3))
        items = [{"input": x, "target": norm(x[None])[0].clamp(-1, 1)}]
    assert crop_target_psnr(norm, items, 24) < 60  # per-image statistics differ between crop and photo
    assert crop_target_psnr(norm, items, 64) is None  # no photo larger than the crop


def test_colour_map_recovers_an_affine_recolouring_and_nothing_spatial() -> None:
    gen = torch.Generator().manual_seed(0)
    mix = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.5]], dtype=torch.float64)
    shift = torch.tensor([0.05, -0.02, 0.1], dtype=torch.float64)

    def recolour(x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(3, -1).T.double() @ mix.T + shift).T.reshape(x.shape).float()

    photos = [torch.rand(3, 12, 16, generator=gen) * 1.6 - 0.8 for _ in range(4)]
    weights = fit_colour_map([{"input": x, "target": recolour(x)} for x in photos])
    assert torch.allclose(weights[:3], mix.T, atol=1e-6) and torch.allclose(weights[3], shift, atol=1e-6)
    held_out = torch.rand(3, 8, 8, generator=gen) * 1.6 - 0.8
    assert torch.allclose(apply_colour_map(weights, held_out), recolour(held_out), atol=1e-5)
    # a spatial change (a shift by one pixel) is not a recolouring: the map cannot reproduce it
    spatial = [{"input": x, "target": x.roll(1, -1)} for x in photos]
    fitted = apply_colour_map(fit_colour_map(spatial), held_out)
    assert score([fitted], [held_out.roll(1, -1)])["psnr_teacher"] < 15


def test_rows_of_a_seed_see_the_same_crops() -> None:
    items = [{"input": torch.rand(3, 40, 52), "target": torch.rand(3, 40, 52), "feats": {"f": torch.rand(8, 10, 13)}}
             for _ in range(3)]
    a, b = CropSampler(items, 16, 4, seed=1), CropSampler(items, 16, 4, seed=1)
    for _ in range(3):
        (xa, ya, fa), (xb, yb, fb) = a(), b()
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(fa["f"], fb["f"])
        assert xa.shape == (4, 3, 16, 16) and fa["f"].shape == (4, 8, 4, 4)  # features cut at 1/4 resolution
    assert not torch.equal(CropSampler(items, 16, 4, seed=2)()[0], CropSampler(items, 16, 4, seed=1)()[0])


@pytest.mark.slow
def test_translation_bench_end_to_end(tmp_path, capsys) -> None:
    teacher = _teacher(tmp_path / "teacher")
    photos = _photos(tmp_path / "photos")
    out = tmp_path / "r" / "T.json"
    assert main(["bench", "distill", "--task", "translation", "--teacher", str(teacher), "--photos", str(photos),
                 "--quick", "--steps", "3", "--res", "32", "--seeds", "0", "1", "--methods", "l1,feature,crd,vem",
                 "--work", str(tmp_path / "w"), "--no-progress", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    setup = report["setup"]
    assert setup["teacher"]["params"] == sum(p.numel() for p in load_checkpoint(teacher).parameters())
    assert setup["res"] == 32 and setup["train_images"] + setup["test_images"] == 8
    assert setup["feature_layers"] == ["model.9", "model.12", "model.15", "model.18"]
    assert setup["student"]["norm"] == "batch" and math.isfinite(setup["crop_target_psnr"])
    assert "budget" not in setup  # --steps without --time-budget trains the steps asked for
    assert report["smoke_test"] is True and "SMOKE TEST" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").stat().st_size > 0
    rows = {r["method"]: r for r in report["rows"]}
    assert list(rows) == ["l1", "feature", "crd", "vem"]
    for name, row in rows.items():
        for metric in ("psnr_teacher", "ssim_teacher", "swd"):
            assert math.isfinite(row[metric]) and math.isfinite(row[metric + "_std"]), (name, metric)
        assert [p["seed"] for p in row["per_seed"]] == [0, 1] and len(row["curves"]) == 2
        assert row["curves"][0]["curve"][-1][0] == 3
        if name == "l1":
            assert "vs_baseline" not in row
            continue
        for metric, cmp in row["vs_baseline"].items():
            lo, hi = cmp["ci95"]
            good = lo > 0 if cmp["higher_is_better"] else hi < 0
            assert cmp["beats"] is good and lo <= cmp["diff"] <= hi, (name, metric)
    # the reported score is that seed's saved student on the held-out photos, re-computed here
    test = [load_photo(photos / f, 32) for f in setup["test_files"]]
    t = load_checkpoint(teacher)
    with torch.no_grad():
        targets = [t(x[None])[0].clamp(-1, 1) for x in test]
    student = load_checkpoint(rows["crd"]["checkpoints"][1])
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in student.modules())
    again = score(predict(student, test), targets)
    assert rows["crd"]["per_seed"][1]["psnr_teacher"] == pytest.approx(again["psnr_teacher"], abs=1e-4)
    assert rows["crd"]["per_seed"][1]["swd"] == pytest.approx(again["swd"], rel=1e-4)
    assert report["identity"]["psnr_teacher"] == pytest.approx(score(test, targets)["psnr_teacher"], abs=1e-4)
    colour = report["colour_map"]
    weights = torch.tensor(colour["weights"], dtype=torch.float64)
    mapped = [apply_colour_map(weights, x) for x in test]
    assert colour["psnr_teacher"] == pytest.approx(score(mapped, targets)["psnr_teacher"], abs=1e-3)
    assert "| colour map (affine RGB" in out.with_suffix(".md").read_text()
    check = report["baseline_vs_identity"]
    assert check["diff_db"] == pytest.approx(rows["l1"]["psnr_teacher"] - report["identity"]["psnr_teacher"], abs=1e-3)
    assert check["learned"] is (check["diff_db"] >= 3.0)
    flagged = "have not learned the teacher's mapping" in out.with_suffix(".md").read_text()
    assert flagged is not check["learned"]
    # a baseline below the input + 3 dB is flagged in the table, one above it is not
    low = {**report, "rows": [{**rows["l1"], "psnr_teacher": report["identity"]["psnr_teacher"] + 2.9},
                              *report["rows"][1:]]}
    low["baseline_vs_identity"] = baseline_vs_identity(low)
    assert low["baseline_vs_identity"]["learned"] is False
    assert "have not learned the teacher's mapping" in format_translation_table(low)
    low["rows"][0]["psnr_teacher"] += 0.2
    low["baseline_vs_identity"] = baseline_vs_identity(low)
    assert "have not learned" not in format_translation_table(low)


def test_seeds_in_parallel_processes_score_as_one_process(tmp_path) -> None:
    teacher = _teacher(tmp_path / "teacher")
    photos = _photos(tmp_path / "photos")
    args = ["bench", "distill", "--task", "translation", "--teacher", str(teacher), "--photos", str(photos), "--quick",
            "--steps", "2", "--res", "32", "--seeds", "0", "1", "--methods", "l1", "--no-progress"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' setting, so both runs do the same arithmetic
    try:
        assert main([*args, "--jobs", "1", "--work", str(tmp_path / "w1"), "--out", str(tmp_path / "one.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert main([*args, "--jobs", "2", "--work", str(tmp_path / "w2"), "--out", str(tmp_path / "two.json")]) == 0
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert one["setup"]["workers"] == 1 and two["setup"]["workers"] == 2 and two["setup"]["torch_threads"] == 1
    for a, b in zip(one["rows"][0]["per_seed"], two["rows"][0]["per_seed"], strict=True):
        assert a["seed"] == b["seed"] and a["psnr_teacher"] == pytest.approx(b["psnr_teacher"], abs=1e-5)
    assert (tmp_path / "w2" / "seed1" / "l1" / "model.safetensors").is_file()
    assert not (tmp_path / "w2" / "teacher_outputs.pt").exists()  # the workers' cache is removed


def test_translation_cli_errors_are_one_line(tmp_path, capsys) -> None:
    out = str(tmp_path / "x.json")
    assert main(["bench", "distill", "--task", "translation", "--photos", str(tmp_path), "--out", out]) == 2
    assert "needs --teacher" in capsys.readouterr().err
    teacher = _teacher(tmp_path / "teacher")
    assert main(["bench", "distill", "--task", "translation", "--teacher", str(teacher), "--out", out]) == 2
    assert "needs --photos" in capsys.readouterr().err
    photos = _photos(tmp_path / "photos", 3)
    assert main(["bench", "distill", "--task", "translation", "--teacher", str(teacher), "--photos", str(photos),
                 "--methods", "l1,bogus", "--out", out]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main(["bench", "distill", "--task", "translation", "--teacher", str(teacher), "--photos",
                 str(tmp_path / "none"), "--out", out]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["bench", "distill", "--task", "translation", "--teacher", str(teacher), "--photos", str(photos),
                 "--max-train-photos", "1", "--out", out]) == 2
    assert "--max-train-photos must be at least 2, got 1" in capsys.readouterr().err
    assert main(["bench", "distill", "--task", "translation", "--teacher", str(teacher), "--photos", str(photos),
                 "--batch", "0", "--out", out]) == 2
    assert "--batch must be at least 1, got 0" in capsys.readouterr().err


def test_student_norm_instance_trains_the_cyclegan_layout(tmp_path) -> None:
    teacher = _teacher(tmp_path / "teacher")
    photos = _photos(tmp_path / "photos")
    out = tmp_path / "n.json"
    assert main(["bench", "distill", "--task", "translation", "--teacher", str(teacher), "--photos", str(photos),
                 "--quick", "--steps", "2", "--res", "32", "--seeds", "1", "--methods", "l1", "--jobs", "1",
                 "--student-norm", "instance", "--batch", "3", "--work", str(tmp_path / "w"), "--no-progress",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["setup"]["student"]["norm"] == "instance" and report["setup"]["scale"]["batch"] == 3
    student = load_checkpoint(report["rows"][0]["checkpoints"][0])
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in student.modules())
    assert "Student norm: instance." in out.with_suffix(".md").read_text()


def test_makespan_replays_the_pool_and_fit_steps_takes_the_largest_that_fits() -> None:
    assert makespan([3, 3, 2, 2, 2], 2) == 7  # 3|3, then 2 on each, then the last 2 on the first free
    assert makespan([3, 3, 2, 2, 2], 1) == 12 and makespan([5, 1, 1], 3) == 5
    assert curve_points(1000, 100) == 11 and curve_points(1001, 100) == 12 and curve_points(4, 4) == 2
    jobs = [JobCost(fixed_s=2.0, sec_per_step=0.5, eval_s=0.1), JobCost(2.0, 0.1, 0.1), JobCost(2.0, 0.1, 0.1)]
    every = lambda n: max(1, n // 10)  # noqa: E731
    wall = lambda n: makespan([j.seconds(n, every(n)) for j in jobs], 2)  # noqa: E731
    assert fit_steps(jobs, 2, 1000, 10_000, every) == (1000, pytest.approx(wall(1000)))
    steps, predicted = fit_steps(jobs, 2, 1000, 200.0, every)
    assert 100 <= steps < 1000 and steps % 10 == 0 and predicted == pytest.approx(wall(steps))
    assert wall(steps) <= 200.0 < wall(steps + 10)
    small, _ = fit_steps(jobs, 2, 1000, 20.0, every)
    assert 0 < small < 100 and wall(small) <= 20.0 < wall(small + 1)  # under 100 steps: not rounded
    assert fit_steps(jobs, 2, 1000, 1.0, every)[0] == 0


def test_time_budget_lowers_every_row_to_the_steps_that_fit(tmp_path, capsys) -> None:
    teacher = _teacher(tmp_path / "teacher")
    photos = _photos(tmp_path / "photos")
    out = tmp_path / "b.json"
    args = ["bench", "distill", "--task", "translation", "--teacher", str(teacher), "--photos", str(photos), "--quick",
            "--res", "32", "--seeds", "1", "--methods", "l1,feature", "--jobs", "1", "--no-progress",
            "--work", str(tmp_path / "w"), "--steps", "1000000"]
    assert main([*args, "--time-budget", "0.75", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    budget, scale = report["setup"]["budget"], report["setup"]["scale"]
    assert budget["lowered"] is True and budget["requested_steps"] == 1_000_000
    assert MIN_BUDGET_STEPS <= budget["steps"] == scale["steps"] < 1_000_000
    assert budget["predicted_wall_s"] <= 45.0 and set(budget["calibration"]) == {"l1", "feature"}
    for row in report["rows"]:  # every row trained the lowered count
        assert [c["curve"][-1][0] for c in row["curves"]] == [budget["steps"]]
    assert f"only {budget['steps']} of the 1000000 steps a row fit" in out.with_suffix(".md").read_text()
    assert not (tmp_path / "w" / "calibration").exists()  # the calibration students are not results
    # a budget that leaves no steps is one line, before any row trains
    capsys.readouterr()
    assert main([*args, "--time-budget", "0.2", "--out", str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--time-budget 0.2 min leaves 0 of 1000000 steps a row" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "none.json").exists()
    assert main([*args, "--time-budget", "-1", "--out", str(tmp_path / "neg.json")]) == 2
    assert "--time-budget must be 0 (no budget) or more minutes, got -1" in capsys.readouterr().err


def test_unet_teacher_photos_cut_to_its_size_step_and_the_feature_row_left_out(tmp_path) -> None:
    torch.manual_seed(0)
    teacher = save_checkpoint(create_model("unet_128", ngf=4), tmp_path / "unet", {"role": "teacher"})
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):  # 150 x 200 at --res 128 is 128 x 170, cut to 128 x 128
        Image.fromarray(rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    out = tmp_path / "u.json"
    assert main(["bench", "distill", "--task", "translation", "--teacher", str(teacher), "--photos", str(photos),
                 "--quick", "--res", "128", "--steps", "2", "--seeds", "1", "--jobs", "1", "--work", str(tmp_path / "w"),
                 "--no-progress", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["method"] for r in report["rows"]] == ["l1", "vem"]  # the default rows less feature
    assert "unet_128" in report["setup"]["rows_left_out"]["feature"]
    assert "multiple of 128" in report["setup"]["res_rule"]
    assert report["setup"]["crop_target_psnr"] is None  # the 32 px crops are no input for a 128-step teacher
    assert load_photo(photos / "0.png", 128, 128).shape == (3, 128, 128)
    assert "Row left out: feature: the teacher (unet_128)" in out.with_suffix(".md").read_text()


def test_translation_teacher_errors_name_the_fix(tmp_path, capsys) -> None:
    photos = _photos(tmp_path / "photos", 4)
    torch.manual_seed(0)
    unet = save_checkpoint(create_model("unet_128", ngf=4), tmp_path / "unet", {"role": "teacher"})
    dcgan = save_checkpoint(create_model("dcgan", nz=16, ngf=4, image_size=32), tmp_path / "dcgan", {"role": "teacher"})
    base = ["bench", "distill", "--task", "translation", "--photos", str(photos), "--quick", "--out",
            str(tmp_path / "x.json")]
    assert main([*base, "--teacher", str(unet)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--res 64 is smaller than the teacher's size step" in err and "pass --res 128" in err and "\n" not in err
    assert main([*base, "--teacher", str(unet), "--res", "128", "--methods", "l1,feature"]) == 2
    assert "--methods feature: the teacher (unet_128)" in capsys.readouterr().err
    assert main([*base, "--teacher", str(dcgan)]) == 2
    assert "use --task unconditional" in capsys.readouterr().err
    assert main([*base, "--teacher", str(unet), "--res", "128", "--crop", "30"]) == 2
    assert "--crop 30 is not a multiple of 4" in capsys.readouterr().err
    assert main(["bench", "distill", "--task", "translation", "--teacher", str(unet), "--photos", str(photos),
                 "--seeds", "0", "--out", str(tmp_path / "x.json")]) == 2
    assert "`--seeds 1` trains seed 0 alone" in capsys.readouterr().err


def test_load_photo_scales_16_bit_samples_and_composites_alpha(tmp_path) -> None:
    grey16 = np.full((40, 48), 32896, dtype=np.uint16)  # 32896 / 257 = 128 in 8 bits
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    x = load_photo(tmp_path / "g16.png", 32)
    assert x.shape == (3, 32, 36) and float(x.mean()) == pytest.approx(128 / 127.5 - 1, abs=0.01)  # not white
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red, half of it transparent
    rgba[:, :20, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "a.png")
    y = load_photo(tmp_path / "a.png", 40)
    assert y.shape == (3, 40, 40) and float(y[0, :, :20].mean()) == pytest.approx(1.0)
    assert not torch.allclose(y[:, :, 30:], y[:, :, :10])  # the transparent half is the background, not red
