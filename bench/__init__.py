"""Shipyard benchmarks: `python -m bench` (or `make bench`).

Each benchmark is a module under `bench/` exposing an async `run(config) -> BenchResult`,
registered by name in `bench.__main__.BENCHMARKS`.
"""
