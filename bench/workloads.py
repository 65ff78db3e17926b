"""The workloads, and Switchboard running them on the local provider.

Every task body is `x + 1`, so what is measured is the orchestrator. A workload is timed
from the first `client.start` until every run is complete; building the client and
creating the SQLite file are outside the timing. `python -m bench.workloads ...` runs one
repetition and prints one line `BENCH_RESULT {json}`, the same protocol the peers' scripts
speak (`bench/peers/`).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import switchboard as sb

RESULT_PREFIX = "BENCH_RESULT "
MODES = ("memory", "sqlite")

app = sb.App("bench")


@app.task
def inc(x: int) -> int:
    return x + 1


@app.workflow
def chain(ctx: sb.Context, n: int) -> int:
    x = 0
    for _ in range(n):
        x = inc(x)
    return x


@app.workflow
def fan_out(ctx: sb.Context, n: int) -> int:
    return sum(ctx.parallel(*(ctx.call(inc, i) for i in range(n))))


@dataclass(frozen=True, slots=True)
class Workload:
    """`runs` concurrent runs of a chain of `size` steps, or one fan-out of `size` tasks."""

    key: str
    shape: str
    size: int
    runs: int = 1

    @property
    def steps(self) -> int:
        return self.runs * self.size

    @property
    def name(self) -> str:
        if self.key == "W4":
            return f"W4 chain of {self.size}"
        if self.key == "W2":
            return f"W2 {self.runs} runs x {self.size} steps"
        if self.key == "W3":
            return f"W3 fan-out of {self.size}"
        return f"W1 chain of {self.size}"


def workloads(smoke: bool = False) -> list[Workload]:
    """The workloads of issue 7, or tiny ones that only show the bench still works."""
    if smoke:
        return [
            Workload("W1", "chain", 5),
            Workload("W2", "chain", 3, runs=4),
            Workload("W3", "fan_out", 5),
            *(Workload("W4", "chain", size) for size in (2, 4, 8)),
        ]
    return [
        Workload("W1", "chain", 100),
        Workload("W2", "chain", 10, runs=200),
        Workload("W3", "fan_out", 1000),
        *(Workload("W4", "chain", size) for size in (10, 100, 1000)),
    ]


# -- Switchboard -------------------------------------------------------------------------------


@contextlib.contextmanager
def open_client(mode: str, workdir: str) -> Iterator[sb.Client]:
    """A fresh client: in memory, or on a new SQLite file (WAL, synchronous=full)."""
    if mode == "memory":
        with sb.local(app) as client:
            yield client
        return
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    with sb.local(app, path=os.path.join(workdir, "runs.db"), synchronous="full") as client:
        yield client


def drive(client: sb.Client, workload: Workload) -> tuple[float, int]:
    """Start every run of `workload`, wait for all of them; the seconds taken and how many
    runs returned a wrong output."""
    if workload.shape == "fan_out":
        target: Any = fan_out
        expected = workload.size * (workload.size + 1) // 2
    else:
        target = chain
        expected = workload.size
    started = time.perf_counter()
    run_ids = [client.start(target, workload.size) for _ in range(workload.runs)]
    outputs = [client.wait(run_id).output for run_id in run_ids]
    seconds = time.perf_counter() - started
    return seconds, sum(output != expected for output in outputs)


def kind_of(partition: str, key: str) -> str:
    """What a state record is: a history entry, a claim-check chunk, or the partition's
    name with the run ids left out (the run index, the app's secret, ...)."""
    if key.startswith("h/"):
        return "history entry"
    if key.startswith("b/"):
        return "blob chunk"
    return partition.split(".", 1)[0]


class WriteCounter:
    """Counts the state store's `put` calls by key kind, and the SQLite commits when the
    store is SQLite (queue sends and state writes share that file's transactions)."""

    def __init__(self, client: sb.Client) -> None:
        self.puts: collections.Counter[str] = collections.Counter()
        self.bytes = 0
        store: Any = client.runtime.store
        put = store.put

        def counting_put(partition: str, key: str, value: bytes, **kwargs: Any) -> str:
            self.puts[kind_of(partition, key)] += 1
            self.bytes += len(value)
            return str(put(partition, key, value, **kwargs))

        store.put = counting_put
        # One BEGIN IMMEDIATE ... COMMIT per batch of writers (group commit): count batches.
        self.commits: int | None = None
        database = getattr(store, "_db", None)
        commit = getattr(database, "_commit", None)
        if commit is not None:
            self.commits = 0

            def counting_commit(*args: Any, **kwargs: Any) -> None:
                self.commits = (self.commits or 0) + 1
                commit(*args, **kwargs)

            database._commit = counting_commit  # type: ignore[union-attr]


def run_switchboard(
    mode: str, workload: Workload, workdir: str, count_writes: bool = False
) -> dict[str, Any]:
    """One repetition of `workload` on a fresh client; the JSON-ready result."""
    with open_client(mode, workdir) as client:
        counter = WriteCounter(client) if count_writes else None
        seconds, wrong = drive(client, workload)
        result: dict[str, Any] = {
            "seconds": seconds,
            "steps": workload.steps,
            "ok": True,
            "wrong_outputs": wrong,
        }
        if counter is not None:
            result["puts"] = sum(counter.puts.values())
            result["puts_by_kind"] = dict(counter.puts)
            result["bytes"] = counter.bytes
            if mode == "sqlite" and counter.commits is not None:
                result["commits"] = counter.commits
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one repetition of one workload on Switchboard")
    parser.add_argument("--mode", required=True, choices=MODES)
    parser.add_argument("--workload", required=True, choices=["W1", "W2", "W3", "W4"])
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--count-writes", action="store_true")
    args = parser.parse_args(argv)
    shape = "fan_out" if args.workload == "W3" else "chain"
    workload = Workload(args.workload, shape, args.size, args.runs)
    result = run_switchboard(args.mode, workload, args.workdir, args.count_writes)
    result["python"] = sys.version.split()[0]
    result["sqlite"] = sqlite3.sqlite_version
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
