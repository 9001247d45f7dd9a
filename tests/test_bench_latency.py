"""`slimgan bench latency`: the three output files, skip reasons, speedup next to MAC ratio, roofline."""

from __future__ import annotations

import json

import pytest

from benchmarks import roofline
from benchmarks.devices import DEVICES, get_device
from benchmarks.latency import LatencyConfig
from distill.errors import ConfigError
from slimgan.cli import main
from tests.bench_helpers import make_bundle

FAST = ["--res", "32", "--min-runs", "10", "--min-time", "0.05", "--warmup", "0.02"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    teacher = make_bundle(root, "teacher", ngf=8)
    student = make_bundle(root, "student", ngf=4, checkpoint=False, fp16=True, openvino=True)
    return teacher, student


def test_latency_writes_json_md_png_with_speedup_and_skip_reasons(bundles, tmp_path, capsys) -> None:
    teacher, student = bundles
    out = tmp_path / "lat"
    code = main(["bench", "latency", "--models", str(student), "--teacher", str(teacher),
                 "--backends", "torch,ort,ort-fp16,ort-int8,openvino,openvino-int8,cuda,trt", "--threads", "1,2", "--batch", "1,2",
                 *FAST, "--out", str(out)])
    assert code == 0
    report = json.loads((out / "latency.json").read_text())
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "latency.md").read_text()

    env = report["environment"]
    assert env["cpu_model"] and env["onnxruntime"] and "CPUExecutionProvider" in env["onnxruntime_providers"]
    cells = {(r["model"], r["backend"], r["threads"], r["batch"]): r for r in report["results"]}
    for key in [("teacher", "torch", 1, 1), ("teacher", "ort", 2, 2), ("student", "ort", 1, 2),
                ("student", "ort-fp16", 1, 1), ("student", "openvino", 1, 2), ("student", "openvino", 2, 1)]:
        r = cells[key]
        assert r["runs"] >= 10
        assert r["min_ms"] <= r["median_ms"] <= r["p90_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["throughput_ips"] == pytest.approx(1000.0 / r["mean_ms"] * r["batch"])
    assert ("student", "torch", 1, 1) not in cells  # its checkpoint is absent

    reasons = {(s["model"], s["backend"]): s["reason"] for s in report["skipped"]}
    assert "not on this machine" in reasons[("student", "torch")]
    assert "no int8 model" in reasons[("teacher", "ort-int8")]
    assert "fp16" in reasons[("teacher", "ort-fp16")]
    assert "no openvino model" in reasons[("teacher", "openvino")]  # the bundle's own IR, never one built here
    assert "no openvino-int8 model" in reasons[("student", "openvino-int8")]
    assert cells[("student", "openvino", 1, 1)]["provider"].startswith("openvino")
    for backend in ("cuda", "trt"):
        assert reasons[("teacher", backend)] and reasons[("student", backend)]
    printed = capsys.readouterr().out
    assert "Skipped:" in printed and reasons[("teacher", "trt")] in printed

    # speedup = teacher median / student median on the same cell; MAC ratio from the graphs
    models = report["models"]
    assert models["teacher"]["macs"] == models["teacher"]["manifest_macs"]  # ONNX costing == torch counter
    mac_ratio = models["teacher"]["macs"] / models["student"]["macs"]
    assert mac_ratio > 2
    s = cells[("student", "ort", 2, 1)]
    assert s["speedup"] == pytest.approx(cells[("teacher", "ort", 2, 1)]["median_ms"] / s["median_ms"])
    assert s["mac_ratio"] == pytest.approx(mac_ratio)
    assert "speedup" in md and "MAC ratio" in md and f"{mac_ratio:.2f}x" in md


def test_latency_predictions_are_labelled_predicted(bundles, tmp_path) -> None:
    teacher, student = bundles
    out = tmp_path / "pred"
    assert main(["bench", "latency", str(student), "--teacher", str(teacher), "--backends", "ort",
                 "--threads", "1", *FAST, "--predict", "orin-nano,phone-cpu", "--out", str(out)]) == 0
    report = json.loads((out / "latency.json").read_text())
    preds = report["predictions"]
    assert {p["device"] for p in preds} == {"orin-nano", "phone-cpu"}
    assert all(p["label"] == "predicted" and p["predicted_ms"] > 0 for p in preds)
    host = report["calibration"]["host"]["1"]
    assert host["peak_gflops"] > 0 and host["bandwidth_gbs"] > 0
    assert "(predicted)" in (out / "latency.md").read_text()
    # a slimmer model is predicted faster on every device, by one efficiency for both, validated here
    by = {(p["model"], p["device"]): p["predicted_ms"] for p in preds}
    assert by[("student", "orin-nano")] < by[("teacher", "orin-nano")]
    assert by[("student", "phone-cpu")] < by[("teacher", "phone-cpu")]
    assert 0 < report["calibration"]["efficiency"] <= 1
    assert {v["model"] for v in report["calibration"]["validation"]} == {"teacher", "student"}
    assert "measured / predicted" in (out / "latency.md").read_text()


def test_unknown_backend_and_device_are_user_errors(bundles, tmp_path, capsys) -> None:
    teacher, _ = bundles
    assert main(["bench", "latency", str(teacher), "--backends", "tpu", "--out", str(tmp_path)]) == 2
    assert "unknown backend 'tpu'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="choose from"):
        get_device("pixel-9")
    with pytest.raises(ConfigError):
        LatencyConfig(batches=[0])


def test_onnx_layer_costs_match_torch_mac_counter(tmp_path) -> None:
    from distill.checkpoint import load_checkpoint
    from distill.profile import count_macs, example_input

    for name, res, kwargs in [("unet", 128, {"arch": "unet_128", "ngf": 2}),
                              ("dcgan", 32, {"arch": "dcgan", "ngf": 4, "nz": 8})]:
        bundle = make_bundle(tmp_path, name, res=res, **kwargs)
        model = load_checkpoint(tmp_path / f"{name}_ckpt")
        x = example_input(model, res)
        costs = roofline.layer_costs(bundle / "model.onnx", tuple(x.shape))
        assert roofline.total_macs(costs) == count_macs(model, x)
        assert all(c.bytes >= 0 for c in costs) and sum(c.weight_bytes for c in costs) > 0


def test_roofline_formula_and_device_table() -> None:
    # compute side: 2e9 FLOP / 1e12 = 2 ms; memory side: 1e9 B / 1e11 = 10 ms -> memory-bound, 10 ms
    assert roofline.ideal_time_s(10**9, 10**9, 1e12, 1e11) == pytest.approx(0.010)
    assert roofline.bound(10**9, 10**9, 1e12, 1e11) == "memory"
    assert roofline.bound(10**10, 10**6, 1e12, 1e11) == "compute"
    costs = [roofline.LayerCost("conv", "Conv", macs=10**9, weight_bytes=0, activation_bytes=10**6),
             roofline.LayerCost("add", "Add", macs=0, weight_bytes=0, activation_bytes=10**9)]
    assert roofline.total_macs(costs) == 10**9 and roofline.total_bytes(costs) == 10**9 + 10**6
    pred = roofline.predict(10**9, 10**9, "phone-cpu", efficiency=0.5, threads=2)
    phone = DEVICES["phone-cpu"]
    expected = max(2e9 / (phone.peak_gflops["fp32"] * 1e9 / 2), 1e9 / 25.6e9)
    assert pred["ideal_ms"] == pytest.approx(expected * 1e3)
    assert pred["predicted_ms"] == pytest.approx(pred["ideal_ms"] / 0.5) and pred["label"] == "predicted"
    # an efficiency above 1 (a model "faster than ideal") is capped: nothing is predicted above peak
    assert roofline.predict(10**9, 10**9, "phone-cpu", efficiency=1.7)["efficiency"] == 1.0
    assert {"jetson-nano", "xavier-nx", "orin-nano", "orin-agx", "phone-cpu"} <= set(DEVICES)


@pytest.mark.parametrize("device", sorted(DEVICES))
def test_roofline_is_monotone_capped_at_peak_and_thread_scaling_is_capped(device) -> None:
    import random

    rng = random.Random(0)
    dev = DEVICES[device]
    for _ in range(300):
        eff = rng.uniform(0.01, 1.5)
        t_macs, t_bytes = rng.randint(10**6, 10**11), rng.randint(10**5, 10**10)
        s_macs, s_bytes = rng.randint(1, t_macs), rng.randint(1, t_bytes)  # smaller in both
        for precision in dev.peak_gflops:
            for threads in ([1, 2, 4, 8] if dev.kind == "cpu" else [None]):
                t = roofline.predict(t_macs, t_bytes, dev, eff, precision=precision, threads=threads)
                s = roofline.predict(s_macs, s_bytes, dev, eff, precision=precision, threads=threads)
                assert s["predicted_ms"] <= t["predicted_ms"]
                for p, macs in ((t, t_macs), (s, s_macs)):
                    flops = 2 * macs / (p["predicted_ms"] / 1e3)
                    assert flops <= dev.peak(precision, threads) * (1 + 1e-9)
        if dev.kind == "cpu":
            one = roofline.predict(t_macs, t_bytes, dev, eff, threads=1)["predicted_ms"]
            for threads in (2, 4, 16):
                many = roofline.predict(t_macs, t_bytes, dev, eff, threads=threads)["predicted_ms"]
                assert one / many <= min(threads, dev.cores) * (1 + 1e-9)


def test_roofline_calibration_is_one_capped_efficiency_and_validates_on_the_host() -> None:
    host = {"peak_gflops": 100.0, "bandwidth_gbs": 10.0}
    # ideal = max(2e9/1e11, 1e8/1e10) = 20 ms; measured 40 ms -> 0.5; a second cell at 0.25
    eff = roofline.calibrate([(10**9, 10**8, 40.0, host), (10**9, 10**8, 80.0, host)])
    assert eff == pytest.approx(0.375)
    assert roofline.calibrate([(10**9, 10**8, 5.0, host)]) == 1.0  # "faster than ideal" is capped
    rows = roofline.validate([{"model": "m", "threads": 1, "macs": 10**9, "bytes": 10**8, "measured_ms": 40.0,
                               "host": host}], 0.5)
    assert rows[0]["predicted_ms"] == pytest.approx(40.0) and rows[0]["measured_over_predicted"] == pytest.approx(1.0)


def test_mac_ratio_follows_the_manifest_convention_at_the_bench_resolution(tmp_path) -> None:
    """Bundles from `slimgan export` (MACs counted at 32 px) benchmarked at 64 px: MACs scale by 4 and
    the ratio matches speed.json's convention (ConvTranspose by output size), not the graph's arithmetic."""
    from benchmarks.latency import benchmark_latency
    from distill import create_model, save_checkpoint
    from export.bundle import export_bundle
    from export.manifest import Manifest

    t_ck = save_checkpoint(create_model("resnet_6blocks", ngf=8), tmp_path / "t")
    s_ck = save_checkpoint(create_model("mobile_resnet_9blocks", ngf=4), tmp_path / "s")
    export_bundle(t_ck, tmp_path / "teacher", res=32, check=False)
    export_bundle(s_ck, tmp_path / "student", res=32, check=False)
    cfg = LatencyConfig(backends=["ort"], threads=[1], res=64, min_runs=10, min_time_s=0.05, warmup_s=0.02)
    report = benchmark_latency([tmp_path / "student"], tmp_path / "lat", cfg, teacher=tmp_path / "teacher")
    t_m, s_m = Manifest.load(tmp_path / "teacher"), Manifest.load(tmp_path / "student")
    assert s_m.macs_input_shape == [1, 3, 32, 32]
    assert report["models"]["student"]["macs"] == 4 * s_m.macs
    assert report["models"]["teacher"]["macs"] == 4 * t_m.macs
    row = next(r for r in report["results"] if r["model"] == "student")
    assert row["mac_ratio"] == pytest.approx(t_m.macs / s_m.macs, rel=1e-6)
    # the executed graph does less arithmetic than the papers' count (transposed convs by input size)
    assert report["models"]["student"]["graph_macs"] < report["models"]["student"]["macs"]
