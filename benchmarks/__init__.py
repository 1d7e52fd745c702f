"""Benchmark scripts (speed and memory); not tests. Results go to docs/benchmarks.md with --write."""
