"""Profile Switchboard's W1 with cProfile across every thread of the process.

The engine advances runs on its own threads, which a profiler of the calling thread never
sees: `threading.setprofile` gives every thread started afterwards its own profiler, and
their statistics are merged. Time spent blocked waiting for work (a lock or condition, a
sleep) is reported apart from the top entries, since it is idle time, not cost.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

from bench.workloads import Workload, drive, open_client

IDLE = (
    "acquire' of '_thread.lock",
    "acquire' of '_thread.RLock",
    "_acquire_restore' of '_thread.RLock",
    "get' of '_queue.SimpleQueue",
    "time.sleep",
    "select.",
)


@dataclass(frozen=True, slots=True)
class Entry:
    function: str
    calls: int
    own_seconds: float
    cumulative_seconds: float


@dataclass(frozen=True, slots=True)
class Profile:
    mode: str
    runs: int
    steps: int
    seconds: float
    top: list[Entry]
    top_cumulative: list[Entry]
    idle_seconds: float
    dump: str


def _label(key: tuple[str, int, str]) -> str:
    filename, line, function = key
    if filename == "~":
        return function
    parts = filename.replace(os.sep, "/").split("/")
    for anchor in ("switchboard", "core", "providers", "bench", "lib"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + (1 if anchor == "lib" else 0) :]
            break
    return f"{'/'.join(parts[-3:])}:{line}({function})"


def profile_w1(mode: str, workdir: str, runs: int = 10, size: int = 100, top: int = 15) -> Profile:
    """Run `runs` W1 chains one after another on one client under cProfile."""
    profilers: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_thread_profiler(frame: FrameType, event: str, arg: Any) -> None:
        profiler = cProfile.Profile()
        with lock:
            profilers.append(profiler)
        profiler.enable()

    workload = Workload("W1", "chain", size)
    with open_client(mode, os.path.join(workdir, f"profile-{mode}")) as client:
        drive(client, workload)  # warm up (imports, lazy setup) before anything is profiled
    main = cProfile.Profile()
    threading.setprofile(start_thread_profiler)
    try:
        with open_client(mode, os.path.join(workdir, f"profile-{mode}")) as client:
            main.enable()
            started = time.perf_counter()
            for _ in range(runs):
                drive(client, workload)
            seconds = time.perf_counter() - started
            main.disable()
    finally:
        threading.setprofile(None)
    stats = pstats.Stats(main)
    for profiler in profilers:
        stats.add(profiler)
    dump = os.path.join(workdir, f"profile-w1-{mode}.pstats")
    os.makedirs(workdir, exist_ok=True)
    stats.dump_stats(dump)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    entries = [
        Entry(_label(key), int(value[1]), float(value[2]), float(value[3]))
        for key, value in raw.items()
    ]
    idle = [entry for entry in entries if any(mark in entry.function for mark in IDLE)]
    busy = [entry for entry in entries if entry not in idle]
    busy.sort(key=lambda entry: entry.own_seconds, reverse=True)
    return Profile(
        mode=mode,
        runs=runs,
        steps=runs * size,
        seconds=seconds,
        top=busy[:top],
        top_cumulative=sorted(
            (
                entry
                for entry in busy
                if entry.function.startswith(("switchboard/", "providers/"))
                and entry.calls >= runs * size
            ),
            key=lambda entry: entry.cumulative_seconds,
            reverse=True,
        )[:top],
        idle_seconds=sum(entry.own_seconds for entry in idle),
        dump=dump,
    )
