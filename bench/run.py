"""Run every workload on Switchboard and its peers, write `bench/RESULTS.md`, print ratios.

    .venv/bin/python -m bench.run              # the full bench (about 5-8 minutes on 2 cores)
    .venv/bin/python -m bench.run --profile    # ... and profile Switchboard's W1
    .venv/bin/python -m bench.run --smoke      # tiny sizes, one repetition: it still works

Each repetition runs in a fresh process on a fresh database, so no system inherits
another's threads, caches or files; the timing inside excludes launching the app and
creating the database. Repetitions are interleaved across systems, so a slow minute of
the machine hurts all of them alike.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import envs, instructions
from bench.workloads import RESULT_PREFIX, Workload, workloads

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SWITCHBOARD_SYSTEMS = ("switchboard-memory", "switchboard-sqlite")
PEER_SYSTEMS = {"py-orchestrate": envs.PEERS[0], "dbos": envs.PEERS[1]}
ALL_SYSTEMS = (*SWITCHBOARD_SYSTEMS, *PEER_SYSTEMS)
LABELS = {
    "switchboard-memory": "Switchboard (memory)",
    "switchboard-sqlite": "Switchboard (SQLite)",
    "py-orchestrate": "py-orchestrate 1.0.2",
    "dbos": "DBOS 3.4.0",
}
TIMEOUT = 180.0
#: Puts in each probe of the durable put's cost taken beside a W1 repetition.
FLOOR_PROBE_PUTS = 100


@dataclass
class Series:
    """The repetitions of one workload on one system."""

    system: str
    workload: Workload
    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    wrong_outputs: list[int] = field(default_factory=list)
    recorded: list[int] = field(default_factory=list)
    unsupported: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def steps_per_second(self) -> float | None:
        median = self.median
        return self.workload.steps / median if median else None

    @property
    def us_per_step(self) -> float | None:
        median = self.median
        return median / self.workload.steps * 1e6 if median is not None else None


@dataclass
class Report:
    command: str
    smoke: bool
    reps: int
    started: str
    machine: dict[str, str]
    versions: dict[str, str]
    series: list[Series]
    writes: list[dict[str, Any]]
    profiles: list[Any]
    #: `bench.aws_cost` rows: requests and dollars per 1M steps on AWS.
    aws_cost: list[dict[str, Any]] = field(default_factory=list)
    aws_cost_error: str = ""
    elapsed: float = 0.0
    #: One durable put of Switchboard's SQLite store, in microseconds, at the start of the
    #: run, and in each probe taken beside a W1 repetition.
    start_put_us: float = 0.0
    floors: list[float] = field(default_factory=list)
    #: valgrind's count of W1 in memory, or why there is none.
    instructions: instructions.Instructions | None = None
    instructions_missing: str = ""

    @property
    def commit_us(self) -> float:
        """The put's cost the W1 bound uses: the probes' median, else the start's."""
        return statistics.median(self.floors) if self.floors else self.start_put_us


# -- running one repetition ----------------------------------------------------------------------


def _command(
    system: str, workload: Workload, workdir: Path, peer_envs: dict[str, envs.PeerEnv]
) -> list[str]:
    if system in SWITCHBOARD_SYSTEMS:
        return [
            sys.executable,
            "-m",
            "bench.workloads",
            "--mode",
            system.split("-", 1)[1],
            "--workload",
            workload.key,
            "--size",
            str(workload.size),
            "--runs",
            str(workload.runs),
            "--workdir",
            str(workdir),
        ]
    env = peer_envs[system]
    command = [env.python, env.script, "--workload", workload.key, "--size", str(workload.size)]
    return [*command, "--runs", str(workload.runs), "--workdir", str(workdir)]


def run_once(command: Sequence[str], workdir: Path) -> Any:
    """Run one repetition in a fresh process and fresh directory; its JSON result (a dict
    with "error" when it produced none)."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    done = subprocess.run(
        list(command), cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {done.returncode}: {tail[:300]}"}


def measure(
    systems: Sequence[str],
    items: Sequence[Workload],
    reps: int,
    workdir: Path,
    peer_envs: dict[str, envs.PeerEnv],
    versions: dict[str, str],
    floors: list[float] | None = None,
) -> list[Series]:
    """Every repetition of every workload on every system, interleaved; with `floors`, a
    probe of the durable put's cost follows each W1 repetition of Switchboard SQLite (before
    the peers' turn, so the disk it meets is the one that repetition met)."""
    table: list[Series] = []
    for workload in items:
        row: list[Series] = []
        for system in systems:
            series = Series(system, workload)
            peer = PEER_SYSTEMS.get(system)
            if peer is not None and workload.key not in peer.workloads:
                series.unsupported = peer.note
            row.append(series)
        table.extend(row)
        for rep in range(reps):
            for series in row:
                if series.unsupported:
                    continue
                command = _command(series.system, workload, workdir / series.system, peer_envs)
                try:
                    result = run_once(command, workdir / series.system)
                except subprocess.TimeoutExpired:
                    result = {"error": f"no result within {TIMEOUT:.0f}s"}
                _record(series, result, versions)
                shown = (
                    f"{result['seconds'] * 1e3:9.1f} ms"
                    if "seconds" in result and not result.get("error")
                    else f"FAILED {result.get('error', '')}"
                )
                where = f"{workload.name:<24} {LABELS[series.system]:<22}"
                print(f"  {where} rep {rep + 1}/{reps}: {shown}", flush=True)
                if (
                    floors is not None
                    and workload.key == "W1"
                    and series.system == "switchboard-sqlite"
                ):
                    floors.append(store_put_cost(workdir, FLOOR_PROBE_PUTS))
    return table


def _record(series: Series, result: dict[str, Any], versions: dict[str, str]) -> None:
    if "error" in result:
        series.failures.append(str(result["error"]))
        return
    series.seconds.append(float(result["seconds"]))
    wrong = int(result.get("wrong_outputs", 0))
    if wrong:
        series.wrong_outputs.append(wrong)
    recorded = result.get("recorded_steps")
    if recorded is not None and recorded != series.workload.steps:
        series.recorded.append(int(recorded))
    if series.system in PEER_SYSTEMS:
        label = LABELS[series.system]
        versions.setdefault(f"{label} ran on Python", str(result.get("python", "?")))
        versions.setdefault(f"{label} SQLite", str(result.get("sqlite", "?")))
        if "settings" in result:
            versions.setdefault(
                f"{label} settings ({series.workload.key})", str(result["settings"])
            )


# -- state writes ----------------------------------------------------------------------------------


def count_writes(smoke: bool, workdir: Path) -> list[dict[str, Any]]:
    """Switchboard's state-store writes per workload size (one untimed run each)."""
    widths = (2, 4, 8) if smoke else (10, 100, 1000)
    rows: list[dict[str, Any]] = []
    for mode in ("memory", "sqlite"):
        for key, shape in (("W3", "fan_out"), ("W4", "chain")):
            for width in widths:
                workload = Workload(key, shape, width)
                command = [
                    *_command(f"switchboard-{mode}", workload, workdir / "writes", {}),
                    "--count-writes",
                ]
                result = run_once(command, workdir / "writes")
                rows.append({"mode": mode, "shape": shape, "width": width, **result})
    return rows


def measure_aws_cost(smoke: bool, workdir: Path) -> tuple[list[dict[str, Any]], str]:
    """`bench.aws_cost` in its own process (it starts moto's server); its rows, or why not."""
    command = [sys.executable, "-m", "bench.aws_cost", *(["--smoke"] if smoke else [])]
    try:
        result = run_once(command, workdir / "aws-cost")
    except subprocess.TimeoutExpired:
        return [], f"no result within {TIMEOUT:.0f}s"
    if isinstance(result, dict):
        return [], str(result.get("error", "no result"))
    return list(result), ""


# -- the report ----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "CPU": model,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "OS": f"{platform.system()} {platform.release()}",
    }


def cpu_check_us(rounds: int = 300) -> float:
    """Median microseconds of a fixed pure-Python workload (encoding and copying a small
    history entry). A shared host's CPU speed moves from minute to minute; this says how
    fast it was while the absolute figures (us per step) were taken."""
    entry = {
        "v": 1,
        "n": 5,
        "at": 1.0,
        "consumed": [],
        "events": [
            {"e": "step.completed", "seq": 3, "attempt": 1, "result": 4},
            {"e": "step.scheduled", "seq": 4, "kind": "task", "name": "inc", "input": [4]},
        ],
    }
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(6):
            copy = json.loads(json.dumps(entry))
            copy["n"] += 1
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def bare_commit_cost(workdir: Path, commits: int = 300) -> float:
    """Median microseconds of one small bare SQLite commit (WAL, synchronous=FULL) on a
    fresh file, whose WAL grows with every commit."""
    path = workdir / "commit-cost.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
        bare = []
        for key in range(commits):
            started = time.perf_counter()
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO t VALUES (?, ?)", (key, b"x" * 200))
            connection.execute("COMMIT")
            bare.append(time.perf_counter() - started)
    finally:
        connection.close()
    return statistics.median(bare) * 1e6


def store_put_cost(workdir: Path, puts: int = 300) -> float:
    """Median microseconds of one `put` of Switchboard's SQLite state store, whose WAL is
    preallocated: the floor of a design that commits once per step, as Switchboard's
    SQLite mode does."""
    from switchboard.interfaces import ABSENT
    from switchboard.providers.local.state import SqliteStateStore

    path = workdir / "commit-cost-store.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    store = SqliteStateStore(str(path), "full")
    try:
        ours = []
        for key in range(puts):
            started = time.perf_counter()
            store.put("run", f"h/{key:010d}", b"x" * 200, expect=ABSENT)
            ours.append(time.perf_counter() - started)
    finally:
        store.close()
    return statistics.median(ours) * 1e6


def base_versions() -> dict[str, str]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "core", "providers"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "Python (Switchboard)": sys.version.split()[0],
        "Switchboard": f"{version('switchboard-orchestrator')}, git {commit or '?'}"
        + (" + uncommitted changes in core/ or providers/" if dirty else ""),
        "SQLite (Switchboard)": sqlite3.sqlite_version,
    }


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _find(report: Report, system: str, key: str, size: int | None = None) -> Series | None:
    for series in report.series:
        if (series.system, series.workload.key) == (system, key) and (
            size is None or series.workload.size == size
        ):
            return series
    return None


def ratios(
    report: Report,
) -> list[tuple[str, str, str, float, tuple[float, float] | None]]:
    """(workload, Switchboard mode, peer, how many times the peer's steps/s, and the
    lowest and highest of that ratio within one repetition)."""
    found: list[tuple[str, str, str, float, tuple[float, float] | None]] = []
    for series in report.series:
        if series.system not in SWITCHBOARD_SYSTEMS or series.steps_per_second is None:
            continue
        for peer in PEER_SYSTEMS:
            other = _find(report, peer, series.workload.key, series.workload.size)
            if other is not None and other.steps_per_second:
                found.append(
                    (
                        series.workload.name,
                        LABELS[series.system],
                        LABELS[peer],
                        series.steps_per_second / other.steps_per_second,
                        paired(series, other),
                    )
                )
    return found


def paired(ours: Series, other: Series) -> tuple[float, float] | None:
    """The lowest and highest ratio of one repetition's times (the systems take turns
    within a repetition, so both ran on the host as it was then); None unless every
    repetition of both succeeded."""
    if ours.failures or other.failures or not ours.seconds:
        return None
    if len(ours.seconds) != len(other.seconds):
        return None
    each = [theirs / mine for mine, theirs in zip(ours.seconds, other.seconds, strict=True)]
    return min(each), max(each)


@dataclass(frozen=True, slots=True)
class Scaling:
    """W4 on one system: us/step at each size, largest over smallest, and the line
    `median = fixed + marginal * steps` through the smallest and largest sizes."""

    system: str
    costs: list[float | None]
    ratio: float | None
    fixed_ms: float | None
    marginal_us: float | None


def scaling(report: Report) -> list[Scaling]:
    sizes = sorted({s.workload.size for s in report.series if s.workload.key == "W4"})
    rows: list[Scaling] = []
    for system in dict.fromkeys(s.system for s in report.series):
        series = [_find(report, system, "W4", size) for size in sizes]
        costs = [s.us_per_step if s else None for s in series]
        first, last = costs[0] if costs else None, costs[-1] if costs else None
        fixed = marginal = None
        small, large = (series[0], series[-1]) if len(series) >= 2 else (None, None)
        if small and large and small.median is not None and large.median is not None:
            marginal_s = (large.median - small.median) / (large.workload.size - small.workload.size)
            marginal = marginal_s * 1e6
            fixed = (small.median - marginal_s * small.workload.size) * 1e3
        rows.append(
            Scaling(system, costs, last / first if first and last else None, fixed, marginal)
        )
    return rows


def targets(report: Report) -> list[tuple[str, str, str]]:
    checks: list[tuple[str, str, str]] = []
    for key in ("W1", "W2"):
        sqlite_series = _find(report, "switchboard-sqlite", key)
        for peer in PEER_SYSTEMS:
            other = _find(report, peer, key)
            if (
                sqlite_series
                and other
                and sqlite_series.steps_per_second
                and other.steps_per_second
            ):
                ratio = sqlite_series.steps_per_second / other.steps_per_second
                checks.append(
                    (
                        f"{key}: Switchboard SQLite >= 10x {LABELS[peer]} steps/s",
                        f"{ratio:.1f}x",
                        "met" if ratio >= 10 else "NOT met",
                    )
                )
    memory = _find(report, "switchboard-memory", "W1")
    if memory and memory.us_per_step is not None:
        checks.append(
            (
                "W1: in-memory <= 50 us per step",
                f"{memory.us_per_step:.0f} us",
                "met" if memory.us_per_step <= 50 else "NOT met",
            )
        )
    for row in scaling(report):
        if row.system in SWITCHBOARD_SYSTEMS and row.ratio is not None:
            checks.append(
                (
                    f"W4: {LABELS[row.system]} us/step at the largest size <= 1.5x the smallest",
                    f"{row.ratio:.2f}x",
                    "met" if row.ratio <= 1.5 else "NOT met",
                )
            )
    for mode in ("memory", "sqlite"):
        rows = [
            r
            for r in report.writes
            if r["mode"] == mode and r["shape"] == "fan_out" and "puts" in r
        ]
        if len(rows) >= 2:
            # A run record rewritten per result makes the bytes written per task grow with
            # the width (quadratic in all). The number of puts cannot tell: it is linear
            # either way, and how many results one entry records depends on how they
            # arrive (7 puts for 100 tasks in one run, 203 for 1,000 in another). So: bytes
            # per task at the two largest widths (a fixed cost per run dominates tiny
            # ones), and at most ~one put per task.
            small, large = rows[-2], rows[-1]
            volume = (large["bytes"] / large["width"]) / (small["bytes"] / small["width"])
            puts = large["puts"] / large["width"]
            checks.append(
                (
                    f"W3 ({mode}): state writes linear in the width (bytes per task at "
                    f"{large['width']} <= 1.5x at {small['width']}; <= 1.5 puts per task)",
                    f"bytes per task x{volume:.2f}, {puts:.2f} puts per task",
                    "met" if volume <= 1.5 and puts <= 1.5 else "NOT met",
                )
            )
    if report.aws_cost:
        from bench.aws_cost import TARGET_PER_MILLION

        worst = max(report.aws_cost, key=lambda row: row["total_per_million"])
        checks.append(
            (
                f"AWS: dollars per 1M steps <= ${TARGET_PER_MILLION:.2f} (every deployment "
                "and workload)",
                f"${worst['total_per_million']:.2f} at most ({worst['deployment']}, "
                f"{worst['workload']})",
                "met" if worst["total_per_million"] <= TARGET_PER_MILLION else "NOT met",
            )
        )
    elif report.aws_cost_error:
        checks.append(("AWS: dollars per 1M steps <= $2.50", report.aws_cost_error, "NOT run"))
    return checks


def _floor_source(report: Report) -> str:
    if report.floors:
        return (
            f"the median of {len(report.floors)} probes of {FLOOR_PROBE_PUTS} puts, one beside "
            f"each W1 repetition"
        )
    return "median of 300, measured at the start of this run"


def commit_floor(report: Report) -> list[str]:
    """What one durable commit per step allows on this disk, against each peer on W1."""
    if not report.commit_us:
        return []
    lines = [
        f"One durable put of Switchboard's SQLite store (a WAL commit with "
        f"`synchronous=FULL`, WAL preallocated) took {report.commit_us:.0f} us here "
        f"({_floor_source(report)}). A chain whose every step is committed "
        f"before the next is scheduled pays at least that per step, so Switchboard SQLite on "
        f"W1 can be at most this many times faster than each peer; 10x the peer leaves "
        f"the rest of a step (the engine, SQLite's own statement, the run's start and end) "
        f"what is left of a tenth of the peer's step:"
    ]
    for peer in PEER_SYSTEMS:
        other = _find(report, peer, "W1")
        if other is not None and other.us_per_step:
            lines.append(
                f"{LABELS[peer]} ({other.us_per_step:,.0f} us/step): "
                f"{other.us_per_step / report.commit_us:.1f}x at most; 10x leaves "
                f"{other.us_per_step / 10 - report.commit_us:,.0f} us a step beyond the put"
            )
    ours = _find(report, "switchboard-sqlite", "W1")
    if ours is not None and ours.us_per_step:
        lines.append(
            f"{LABELS['switchboard-sqlite']} spent {ours.us_per_step:,.0f} us/step: "
            f"{ours.us_per_step - report.commit_us:,.0f} us a step beyond the put"
        )
    return lines


def render(report: Report) -> str:
    lines: list[str] = []
    add = lines.append
    add("# Benchmark results")
    add("")
    if report.smoke:
        add("**Smoke run: tiny sizes, one repetition. These numbers mean nothing.**")
        add("")
    add(
        f"Run {report.started} UTC, {report.reps} repetition(s) per cell, "
        f"{report.elapsed / 60:.1f} minutes in all."
    )
    add("")
    add("```")
    add(report.command)
    add("```")
    add("")
    add("## Machine and versions")
    add("")
    add("| | |")
    add("| --- | --- |")
    for key, value in {**report.machine, **report.versions}.items():
        add(f"| {key} | {value} |")
    add("")
    add("## Method")
    add("")
    add(
        "Every task body is `x + 1`. Each repetition is a fresh process with a fresh database "
        "(Switchboard's SQLite: WAL, `synchronous=FULL`; the peers: their own SQLite defaults, "
        "journal mode shown above, `synchronous` at SQLite's default FULL). The clock runs from "
        "just before the first run starts until every run has completed; launching the app, "
        "creating the database and shutting down are outside it. Median of the repetitions, "
        "with min-max. W1: one chain of 100 steps; W2: 200 concurrent runs of a 10-step chain; "
        "W3: one run fanning out to 1,000 parallel tasks and gathering them; W4: one chain of "
        "10, 100 and 1,000 steps. Switchboard runs `sb.local(app)` / "
        "`sb.local(app, path=...)` with its defaults (4 workers, inline tasks); the peers run "
        "the same workflows written per their docs (`bench/peers/`)."
    )
    add("")
    add("## Results")
    add("")
    add("| workload | system | median ms | min-max ms | steps/s | us/step | ok reps |")
    add("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    notes: list[str] = []
    for series in report.series:
        label = LABELS[series.system]
        if series.unsupported:
            add(f"| {series.workload.name} | {label} | n/a | | | | |")
            notes.append(f"{label}, {series.workload.key}: {series.unsupported}.")
            continue
        spread = (
            f"{min(series.seconds) * 1e3:,.1f}-{max(series.seconds) * 1e3:,.1f}"
            if series.seconds
            else "-"
        )
        total = len(series.seconds) + len(series.failures)
        median_ms = None if series.median is None else series.median * 1e3
        add(
            f"| {series.workload.name} | {label} | {_fmt(median_ms, 1)} "
            f"| {spread} | {_fmt(series.steps_per_second)} | {_fmt(series.us_per_step, 1)} "
            f"| {len(series.seconds)}/{total} |"
        )
        for failure in sorted(set(series.failures)):
            notes.append(f"{label}, {series.workload.name}: a repetition failed: {failure}.")
        if series.wrong_outputs:
            notes.append(
                f"{label}, {series.workload.name}: timed, but runs returned a wrong output "
                f"in {len(series.wrong_outputs)} of {total} repetitions "
                f"({', '.join(map(str, series.wrong_outputs))} of {series.workload.runs} runs)."
            )
        if series.recorded:
            notes.append(
                f"{label}, {series.workload.name}: its database held "
                f"{', '.join(map(str, series.recorded))} completed step records for "
                f"{series.workload.steps} steps in {len(series.recorded)} of {total} repetitions."
            )
    if notes:
        add("")
        for note in notes:
            add(f"- {note}")
    add("")
    add("## Ratios (Switchboard steps/s divided by the peer's, same run)")
    add("")
    add(
        "The ratio is of the medians; beside it, the lowest and highest ratio within one "
        "repetition, in which the systems ran one after another."
    )
    add("")
    add("| workload | Switchboard | peer | ratio | within a repetition |")
    add("| --- | --- | --- | ---: | ---: |")
    for name, ours, peer, ratio, paired_range in ratios(report):
        within = f"{paired_range[0]:,.1f}-{paired_range[1]:,.1f}x" if paired_range else "-"
        add(f"| {name} | {ours} | {peer} | {ratio:,.1f}x | {within} |")
    add("")
    add("## W4: per-step cost by chain length")
    add("")
    sizes = sorted({s.workload.size for s in report.series if s.workload.key == "W4"})
    add(
        "The last two columns fit `median = fixed + marginal x steps` through the smallest "
        "and largest chain: a per-run latency (starting, finishing, noticing completion) "
        "and the cost of one more step."
    )
    add("")
    head = " | ".join(f"us/step at {size}" for size in sizes)
    add(f"| system | {head} | largest / smallest | fixed ms per run | marginal us/step |")
    add("| --- | " + " | ".join("---:" for _ in sizes) + " | ---: | ---: | ---: |")
    for fit in scaling(report):
        cells = " | ".join(_fmt(cost, 1) for cost in fit.costs)
        add(
            f"| {LABELS[fit.system]} | {cells} | {_fmt(fit.ratio, 2)} "
            f"| {_fmt(fit.fixed_ms, 1)} | {_fmt(fit.marginal_us, 1)} |"
        )
    if report.writes:
        add("")
        add("## Switchboard's state writes by size (one untimed run each)")
        add("")
        add(
            "`put` calls on the state store (`client.runtime.store`), by record kind, with the "
            "bytes written; on SQLite also the file's write transactions, each one WAL commit "
            "and fsync with `synchronous=FULL` (queue and state writes share them; with group "
            "commit one transaction carries a batch of concurrent writers)."
        )
        add("")
        add(
            "| mode | workload | width | puts | puts per task | bytes put | by kind "
            "| SQLite commits |"
        )
        add("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |")
        for row in report.writes:
            shape = "W3 fan-out" if row["shape"] == "fan_out" else "W4 chain"
            if "puts" not in row:
                failed = f"failed: {row.get('error')}"
                add(f"| {row['mode']} | {shape} | {row['width']} | {failed} | | | | |")
                continue
            kinds = ", ".join(f"{k}: {v}" for k, v in sorted(row["puts_by_kind"].items()))
            add(
                f"| {row['mode']} | {shape} "
                f"| {row['width']} | {row['puts']} | {row['puts'] / row['width']:.2f} "
                f"| {row.get('bytes', 0):,} | {kinds} | {row.get('commits', '-')} |"
            )
    if report.aws_cost:
        from bench.aws_cost import render as render_aws_cost

        add("")
        add("## AWS: requests and dollars per 1M steps (issue 4)")
        add("")
        add(
            "Every billable request counted with botocore event hooks against moto's server "
            "(`bench/aws_cost.py` says what is counted and how units are computed), priced "
            "at list prices: SQS $0.40 per 1M requests, DynamoDB on-demand $0.625 per 1M "
            "write and $0.125 per 1M read units, Lambda $0.20 per 1M requests; beside Step "
            "Functions Standard at $25 per 1M state transitions (one per step at least). "
            "*workers*: `switchboard worker` processes; *lambda*: the functions "
            "`switchboard aws template` deploys, with Lambda's SQS pollers played by the bench."
        )
        add("")
        lines.extend(render_aws_cost(report.aws_cost))
    add("")
    add("## Targets (issue 7)")
    add("")
    add("| target | measured | |")
    add("| --- | --- | --- |")
    for target, measured, verdict in targets(report):
        add(f"| {target} | {measured} | {verdict} |")
    floor = commit_floor(report)
    if floor:
        add("")
        add(floor[0])
        add("")
        for line in floor[1:]:
            add(f"- {line}")
    if report.instructions is not None or report.instructions_missing:
        add("")
        add("## Instructions per step (W1, memory)")
        add("")
        lines.extend(render_instructions(report))
    for profile in report.profiles:
        add("")
        add(f"## Profile: Switchboard W1, {profile.mode}")
        add("")
        add(
            f"cProfile over every thread, {profile.runs} chains of {profile.steps // profile.runs} "
            f"steps on one client: {profile.seconds:.3f} s under the profiler "
            f"({profile.seconds / profile.steps * 1e6:.0f} us/step). Blocked waiting "
            f"(locks, conditions, queue gets, sleeps, summed over threads) "
            f"{profile.idle_seconds:.2f} s, left out below. Full stats: "
            f"`{os.path.relpath(profile.dump, REPO)}`."
        )
        add("")
        add("Top 15 by own time:")
        add("")
        add("| own ms | cumulative ms | calls | function |")
        add("| ---: | ---: | ---: | --- |")
        for entry in profile.top:
            add(
                f"| {entry.own_seconds * 1e3:,.1f} | {entry.cumulative_seconds * 1e3:,.1f} "
                f"| {entry.calls:,} | `{entry.function}` |"
            )
        add("")
        add("Top 15 Switchboard functions called at least once per step, by cumulative time:")
        add("")
        add("| cumulative ms | own ms | calls | function |")
        add("| ---: | ---: | ---: | --- |")
        for entry in profile.top_cumulative:
            add(
                f"| {entry.cumulative_seconds * 1e3:,.1f} | {entry.own_seconds * 1e3:,.1f} "
                f"| {entry.calls:,} | `{entry.function}` |"
            )
    add("")
    return "\n".join(lines)


def render_instructions(report: Report) -> list[str]:
    found = report.instructions
    if found is None:
        return [f"Not counted: {report.instructions_missing}."]
    return [
        f"{found.per_step:,.0f} instructions a step, and {found.per_run:,.0f} for a run's "
        f"start and end: {found.w1_per_step:,.0f} a step of W1. Counted by valgrind "
        "(`bench/instructions.py` says how), so unlike the times above it does not follow "
        "the host's speed: it changes with the code, and compares across commits."
    ]


def print_summary(report: Report) -> None:
    print()
    print(f"{'workload':<24} {'system':<22} {'median ms':>10} {'steps/s':>10} {'us/step':>9}")
    for series in report.series:
        median = series.median
        print(
            f"{series.workload.name:<24} {LABELS[series.system]:<22} "
            f"{_fmt(median and median * 1e3, 1) if not series.unsupported else 'n/a':>10} "
            f"{_fmt(series.steps_per_second):>10} {_fmt(series.us_per_step, 1):>9}"
        )
    found = ratios(report)
    if found:
        print()
        print("Switchboard's steps/s over each peer's, measured in this run:")
        for name, ours, peer, ratio, _ in found:
            print(f"  {name:<24} {ours:<22} vs {peer:<22} {ratio:8.1f}x")
    print()
    for target, measured, verdict in targets(report):
        print(f"  [{verdict}] {target}: {measured}")
    if report.instructions is not None or report.instructions_missing:
        print()
        print("Instructions per step (W1, memory): " + render_instructions(report)[0])


def main(argv: Sequence[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument("--reps", type=int, help="repetitions per cell (default 5, smoke 1)")
    parser.add_argument("--profile", action="store_true", help="also profile Switchboard's W1")
    parser.add_argument(
        "--systems",
        default=",".join(ALL_SYSTEMS),
        help=f"comma-separated, from {', '.join(ALL_SYSTEMS)}; 'switchboard' means both modes",
    )
    parser.add_argument(
        "--no-aws", action="store_true", help="skip the AWS cost count (it needs the dev extra)"
    )
    parser.add_argument("--out", default=str(BENCH / "RESULTS.md"), help="where the report goes")
    parser.add_argument("--workdir", default=str(BENCH / ".work"), help="scratch files")
    args = parser.parse_args(argv)
    systems: list[str] = []
    for name in args.systems.split(","):
        name = name.strip().lower()
        chosen = SWITCHBOARD_SYSTEMS if name == "switchboard" else (name,)
        for system in chosen:
            if system not in ALL_SYSTEMS:
                parser.error(f"unknown system {system!r}; choose from {', '.join(ALL_SYSTEMS)}")
            systems.append(system)
    reps = args.reps or (1 if args.smoke else 5)
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_at_start = os.getloadavg()[0]
    cpu_at_start = cpu_check_us()
    report = Report(
        command=shlex.join(
            [os.path.relpath(sys.executable, REPO), "-m", "bench.run", *(argv or sys.argv[1:])]
        ),
        smoke=args.smoke,
        reps=reps,
        started=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        machine=machine(),
        versions=base_versions(),
        series=[],
        writes=[],
        profiles=[],
    )
    peer_envs: dict[str, envs.PeerEnv] = {}
    for system in systems:
        peer = PEER_SYSTEMS.get(system)
        if peer is not None:
            peer_envs[system] = envs.ensure(peer)
            report.versions[f"{LABELS[system]} interpreter"] = peer_envs[system].interpreter
    # Installing the peers leaves the disk busy writing back; every system's durable writes
    # should meet an idle disk.
    os.sync()
    bare_us = bare_commit_cost(workdir)
    report.start_put_us = store_put_cost(workdir)
    report.machine["one SQLite WAL commit, synchronous=FULL, fresh file (median of 300)"] = (
        f"{bare_us:.0f} us"
    )
    report.machine[
        "one put of Switchboard's SQLite store (WAL preallocated; median of 300, at the start)"
    ] = f"{report.start_put_us:.0f} us"
    print(f"measuring {', '.join(LABELS[s] for s in systems)}; {reps} repetition(s)", flush=True)
    report.series = measure(
        systems,
        workloads(args.smoke),
        reps,
        workdir,
        peer_envs,
        report.versions,
        floors=report.floors,
    )
    if report.floors:
        report.machine[
            f"the same put beside each W1 repetition (median of {FLOOR_PROBE_PUTS} each)"
        ] = f"{report.commit_us:.0f} us (median; {min(report.floors):.0f}-{max(report.floors):.0f})"
    if any(s in SWITCHBOARD_SYSTEMS for s in systems):
        print("counting Switchboard's state writes ...", flush=True)
        report.writes = count_writes(args.smoke, workdir)
    if not args.no_aws:
        print("counting AWS requests per step (moto) ...", flush=True)
        report.aws_cost, report.aws_cost_error = measure_aws_cost(args.smoke, workdir)
    if args.profile:
        from bench.profiling import profile_w1

        for mode in ("memory", "sqlite"):
            print(f"profiling Switchboard W1 ({mode}) ...", flush=True)
            size = 5 if args.smoke else 100
            report.profiles.append(
                profile_w1(mode, str(workdir), runs=1 if args.smoke else 10, size=size)
            )
    if "switchboard-memory" in systems:
        if args.smoke:
            report.instructions_missing = "not in a smoke run"
        elif not instructions.available():
            report.instructions_missing = "valgrind is not installed (Debian package valgrind)"
        else:
            print("counting instructions per step (valgrind) ...", flush=True)
            report.instructions = instructions.measure()
    report.elapsed = time.monotonic() - started
    report.machine["load average at start / end (1 min)"] = (
        f"{load_at_start:.2f} / {os.getloadavg()[0]:.2f}"
    )
    report.machine["CPU check at start / end (a fixed pure-Python workload, median of 300)"] = (
        f"{cpu_at_start:.1f} / {cpu_check_us():.1f} us"
    )
    Path(args.out).write_text(render(report))
    print_summary(report)
    print(f"\nwrote {args.out}")
    return report


if __name__ == "__main__":
    main()
