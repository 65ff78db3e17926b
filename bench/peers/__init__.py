"""The peers' workload scripts; each runs under its own virtual environment.

They import nothing from `bench`: `python bench/peers/<name>_peer.py --workload W1 --size 100
--workdir DIR` runs one repetition and prints one line `BENCH_RESULT {json}`.
"""
