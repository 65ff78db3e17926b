"""Switchboard's benchmark harness: the same workloads on Switchboard and its peers.

`.venv/bin/python -m bench.run` measures everything and writes `bench/RESULTS.md`.
"""
