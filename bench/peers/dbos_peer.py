"""DBOS Transact 3.4.0 running the bench workloads (one repetition per process).

Written as its docs teach: `@DBOS.workflow` calling `@DBOS.step` functions, the SQLite
system database named by `system_database_url`, `DBOS.start_workflow` for concurrent runs,
and a registered queue to fan steps out from a workflow (W3).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import time
from importlib.metadata import version
from typing import Any

from dbos import DBOS, DBOSConfig, WorkflowHandle

FANOUT_QUEUE = "fanout"


@DBOS.step()
def inc(x: int) -> int:
    return x + 1


@DBOS.workflow()
def chain(n: int) -> int:
    x = 0
    for _ in range(n):
        x = inc(x)
    return x


@DBOS.workflow()
def fan_out(n: int) -> int:
    queue = DBOS.retrieve_queue(FANOUT_QUEUE)
    assert queue is not None
    handles = [queue.enqueue(inc, i) for i in range(n)]
    return sum(handle.get_result() for handle in handles)


def run(workload: str, size: int, runs: int, workdir: str) -> dict[str, Any]:
    db_path = os.path.join(workdir, "dbos.sqlite")
    config: DBOSConfig = {
        "name": "bench",
        "system_database_url": f"sqlite:///{db_path}",
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    try:
        if workload == "W3":
            DBOS.register_queue(FANOUT_QUEUE)
        started = time.perf_counter()
        if workload == "W3":
            outputs = [DBOS.start_workflow(fan_out, size).get_result()]
            expected = size * (size + 1) // 2
        else:
            handles: list[WorkflowHandle[int]] = [
                DBOS.start_workflow(chain, size) for _ in range(runs)
            ]
            outputs = [handle.get_result() for handle in handles]
            expected = size
        seconds = time.perf_counter() - started
    finally:
        DBOS.destroy()
    with sqlite3.connect(db_path) as db:
        journal = db.execute("PRAGMA journal_mode").fetchone()[0]
    return {
        "seconds": seconds,
        "steps": runs * size,
        "ok": True,
        "wrong_outputs": sum(output != expected for output in outputs),
        "settings": f"SQLite system database, journal_mode={journal}"
        + (", queue polling_interval_sec=1.0 (default)" if workload == "W3" else ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", required=True, choices=["W1", "W2", "W3", "W4"])
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1, help="concurrent runs (W2)")
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    result = run(args.workload, args.size, args.runs, args.workdir)
    result["version"] = version("dbos")
    result["python"] = sys.version.split()[0]
    result["sqlite"] = sqlite3.sqlite_version
    print("BENCH_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
