"""Latency and quality benchmarks, device profiles and a roofline predictor (``slimgan bench``).

- :mod:`benchmarks.latency`: trtexec-style latency of exported bundles per backend/threads/batch.
- :mod:`benchmarks.quality`: the `bench quality` harness (metrics from :mod:`distill.metrics`) and an mIoU hook.
- :mod:`benchmarks.roofline` / :mod:`benchmarks.devices`: roofline predictions (MACs and bytes against a device's peaks, one calibrated efficiency) for edge devices.
- ``benchmarks/jetson/``: a script to run on a Jetson that writes the same ``latency.json``.
"""
