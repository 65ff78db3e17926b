"""Instructions a W1 step costs Switchboard in memory, counted by valgrind.

The timed figures follow the shared host, whose speed moved 2-4x within an hour while
this bench was written; a 10% change to the hot path is lost in that. The number of
instructions executed does not move with the host: measured here it repeats within about
1%. It answers "did this commit make a step cheaper?" where the clock cannot.

    .venv/bin/python -m bench.instructions          # needs valgrind (Debian: valgrind)

Each count is one fresh process under `valgrind --tool=cachegrind --cache-sim=no`:
chains of `short` and `short + 1000` steps give the cost of a step (their difference over
1,000); `extra_runs` more short chains give the cost of a run's start and end. Start-up and
imports cancel out. Each count is taken twice and the lower kept: about one count in ten
read up to a third higher here (most likely a helper thread's timed wake-up landing in the
measured span; not proven).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

from bench.workloads import Workload, drive, open_client

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


@dataclass(frozen=True, slots=True)
class Instructions:
    per_step: float
    #: A run's start and end, beyond its steps.
    per_run: float
    #: What W1 (one chain of 100) costs a step, its start and end shared among its steps.
    w1_per_step: float


def available() -> bool:
    return shutil.which("valgrind") is not None


def count(runs: int, size: int, repeats: int = 2) -> int:
    """Instructions of a whole process running `runs` chains of `size` steps in memory."""
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.instructions",
        "--child",
        str(runs),
        str(size),
    ]
    counts = []
    for _ in range(repeats):
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
        found = _REFS.search(done.stderr)
        if found is None:
            raise RuntimeError(f"valgrind printed no instruction count: {done.stderr[-500:]}")
        counts.append(int(found.group(1).replace(",", "")))
    return min(counts)


def measure(short: int = 10, steps: int = 1000, extra_runs: int = 10) -> Instructions:
    base = count(1, short)
    longer = count(1, short + steps)
    more = count(1 + extra_runs, short)
    per_step = (longer - base) / steps
    per_run = (more - base) / extra_runs - short * per_step
    return Instructions(per_step, per_run, per_step + per_run / 100)


def _child(runs: int, size: int) -> None:
    with open_client("memory", "") as client:
        for _ in range(runs):
            _, wrong = drive(client, Workload("W1", "chain", size))
            if wrong:
                raise SystemExit("a chain returned a wrong output")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=2, type=int, metavar=("RUNS", "SIZE"), help="internal")
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return
    if not available():
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    found = measure()
    print(
        f"{found.per_step:,.0f} instructions a step, {found.per_run:,.0f} a run beside; "
        f"W1 (a chain of 100): {found.w1_per_step:,.0f} a step"
    )


if __name__ == "__main__":
    main()
