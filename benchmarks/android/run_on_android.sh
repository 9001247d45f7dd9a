#!/usr/bin/env bash
# Benchmark slimgan bundles on an Android phone over adb with the runtimes' own tools (LiteRT benchmark_model,
# ncnn benchncnn, ExecuTorch executor_runner), writing the same latency.json schema as `slimgan bench latency`.
# Run it on the computer the phone is connected to (USB debugging on), for example:
#
#   benchmarks/android/run_on_android.sh --teacher bundles/teacher bundles/student --tools ~/android-tools \
#       --backends tflite,ncnn,executorch --threads 1,2,4 --out results/android/
#
# The bundles need the phone artifacts: slimgan export CKPT --res 256 --targets tflite,ncnn,executorch --out BUNDLE.
# --tools holds the arm64-v8a builds of benchmark_model (LiteRT's prebuilt android_aarch64 benchmark tool),
# benchncnn (ncnn's android build, benchmark/benchncnn) and executor_runner (ExecuTorch built with
# -DEXECUTORCH_BUILD_XNNPACK=ON; pass --executorch-runner xnn_executor_runner if that is its name).
# Needs python3, numpy and adb on this computer; torch is not needed. The phone's model, SoC, Android version,
# core clocks and battery temperature are recorded; let the phone cool down between runs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec python3 "$here/android_bench.py" "$@"
