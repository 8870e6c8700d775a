"""Benchmarks anyone can rerun: `./dev bench` (see bench/README.md)."""
