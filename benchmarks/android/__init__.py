"""On-device latency over adb (see android_bench.py)."""
