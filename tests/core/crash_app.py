"""An app for the crash tests: every task execution is logged to a file, so the test can
count how often each step's body ran across a SIGKILL and a restart."""

from __future__ import annotations

import os
import sys
import time

import switchboard as sb

app = sb.App("crashy")
LOG = os.environ.get("CRASH_LOG", "executions.log")


@app.task
def step(i: int) -> int:
    with open(LOG, "a") as log:
        log.write(f"{i}\n")
        log.flush()
        os.fsync(log.fileno())
    time.sleep(0.05)
    return i


@app.workflow
def chain(ctx: sb.Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += step(i)
    return total


def main() -> None:
    """python crash_app.py DB start N | resume RUN_ID"""
    path, action, arg = sys.argv[1:4]
    with sb.local(app, path=path) as client:
        if action == "start":
            print(client.start("chain", n=int(arg)), flush=True)
            time.sleep(3600)  # the test kills us mid-run
        else:
            print(client.wait(arg, timeout=120).output, flush=True)


if __name__ == "__main__":
    main()
