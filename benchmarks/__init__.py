"""Benchmark scripts (speed and memory, issue 8); not tests. Results go to docs/benchmarks.md with --write."""
