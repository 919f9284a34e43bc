"""Benchmark suite for tabby_async: run with ``python -m benchmarks``."""
