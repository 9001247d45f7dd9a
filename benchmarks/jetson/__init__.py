"""On-device benchmark for Jetson boards (``run_on_jetson.sh`` -> ``jetson_bench.py``)."""
