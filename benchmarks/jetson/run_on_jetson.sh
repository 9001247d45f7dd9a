#!/usr/bin/env bash
# Benchmark slimgan bundles on a Jetson with TensorRT (trtexec), writing the same latency.json schema as
# `slimgan bench latency`. Copy the slimgan repository (or at least distill/, export/, benchmarks/) and
# the bundle directories to the device, then run for example:
#
#   benchmarks/jetson/run_on_jetson.sh --teacher bundles/teacher bundles/student --res 256 --fp16 --out results/
#
# Needs JetPack (TensorRT's trtexec in /usr/src/tensorrt/bin), python3 and numpy; torch is not needed.
# The power mode (nvpmodel -q) and clock state (jetson_clocks --show) are recorded, not changed: set them
# first (e.g. `sudo nvpmodel -m 0 && sudo jetson_clocks`) so that runs are comparable.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$PATH:/usr/src/tensorrt/bin"
exec python3 "$here/jetson_bench.py" "$@"
