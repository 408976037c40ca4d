"""Benchmarks of minitnet (pytest-benchmark); see README.md."""
