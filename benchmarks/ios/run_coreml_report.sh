#!/usr/bin/env bash
# Core ML performance report of slimgan bundles on a Mac (load time, prediction latency and compute-unit
# mapping per compute-unit setting), written as latency.json like `slimgan bench latency`. For example:
#
#   benchmarks/ios/run_coreml_report.sh --teacher bundles/teacher bundles/student --out results/coreml/
#
# The bundles need model.mlpackage: slimgan export CKPT --res 256 --targets coreml --out BUNDLE.
# Needs macOS 14+ and python3 with coremltools, numpy and pillow (pip install coremltools pillow numpy).
# For an iPhone, use Xcode's performance report as README.md beside this script describes.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec python3 "$here/coreml_report.py" "$@"
