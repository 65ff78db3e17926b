"""py-orchestrate 1.0.2 running the bench workloads (one repetition per process).

Written as its README teaches: `@activity` functions called by their global name from a
`@workflow`, an `Orchestrator` on a fresh SQLite file, `invoke_workflow` to start runs and
`get_workflow_status` to see them finish. It has no way to run activities in parallel
inside a workflow, so W3 is not offered. It instruments activities by rebinding the
workflow module's globals, so concurrent runs (W2) can record steps under the wrong run or
not at all; the result says how many step records and wrong outputs there were.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sqlite3
import sys
import time
from importlib.metadata import version
from typing import Any

from py_orchestrate import Orchestrator, activity, workflow

POLL_SECONDS = 0.01
STARTUP_SECONDS = 0.5
DEADLINE_SECONDS = 300.0


@activity("inc")
def inc(x: int) -> int:
    return x + 1


@workflow("chain")
def chain(n: int) -> int:
    x = 0
    for _ in range(n):
        x = inc(x)
    return x


def wait_all(orchestrator: Orchestrator, ids: list[str], deadline: float) -> list[Any]:
    """Poll each run's status, as its README monitors progress, until all are done."""
    outputs = []
    for workflow_id in ids:
        while True:
            status = orchestrator.get_workflow_status(workflow_id) or {}
            if status.get("status") == "done":
                outputs.append(status["output"])
                break
            if status.get("status") == "failed":
                raise RuntimeError(f"workflow failed: {status.get('error_message')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"workflow still {status.get('status')} after the deadline")
            time.sleep(POLL_SECONDS)
    return outputs


def run(workload: str, size: int, runs: int, workdir: str, max_workers: int) -> dict[str, Any]:
    db_path = os.path.join(workdir, "py_orchestrate.db")
    quiet = io.StringIO()  # it prints on start and stop; stdout carries our result line
    with contextlib.redirect_stdout(quiet):
        orchestrator = Orchestrator(db_path=db_path, max_workers=max_workers)
        orchestrator.start()
        # Its recovery thread's first pass would take a run invoked meanwhile for an
        # interrupted one and run it twice: let that pass finish first (setup, not timed).
        time.sleep(STARTUP_SECONDS)
        try:
            started = time.perf_counter()
            ids = [orchestrator.invoke_workflow("chain", n=size) for _ in range(runs)]
            outputs = wait_all(orchestrator, ids, time.monotonic() + DEADLINE_SECONDS)
            seconds = time.perf_counter() - started
        finally:
            orchestrator.stop()
    with sqlite3.connect(db_path) as db:
        recorded = db.execute(
            "SELECT count(*) FROM activity_executions WHERE status = 'completed'"
        ).fetchone()[0]
        journal = db.execute("PRAGMA journal_mode").fetchone()[0]
    return {
        "seconds": seconds,
        "steps": runs * size,
        "ok": True,
        "wrong_outputs": sum(output != size for output in outputs),
        "recorded_steps": recorded,
        "settings": f"max_workers={max_workers}, SQLite journal_mode={journal}, "
        f"completion polled every {POLL_SECONDS * 1e3:.0f} ms",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", required=True, choices=["W1", "W2", "W4"])
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1, help="concurrent runs (W2)")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--max-workers", type=int, default=5)
    args = parser.parse_args()
    result = run(args.workload, args.size, args.runs, args.workdir, args.max_workers)
    result["version"] = version("py-orchestrate")
    result["python"] = sys.version.split()[0]
    result["sqlite"] = sqlite3.sqlite_version
    print("BENCH_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
