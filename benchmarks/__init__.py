"""Benchmark and measurement scripts, run as modules: `python -m benchmarks.<name>`."""
