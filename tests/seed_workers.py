"""The seed project's README example (examples/seed_switchboard, files untouched) run by two
`switchboard worker --provider NAME` processes: the part every cloud provider's test shares.

The example says `Cloud.LOCAL`; the provider is chosen by the workers' command line and by
`sb.connect(app, NAME, ...)` here, which starts three runs through
`switchboard.compat.app_from`. The workers take them from the provider's queues, the seed's
tasks answer with `Response(...).send()` (one of them later, from a "microservice" thread)
through the worker's active runtime, and both workers stop cleanly on SIGTERM.
"""

from __future__ import annotations

import importlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import switchboard as sb
from switchboard.compat import app_from

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "seed_switchboard"
SWITCHBOARD = Path(sys.executable).with_name("switchboard")
WORKERS = 2
RUNS = 3


def seed_app(monkeypatch: pytest.MonkeyPatch) -> sb.App:
    """The example's app, imported as its run.py imports it (main.py and tasks.py)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    for name in ("main", "tasks", "microservice"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    main: Any = importlib.import_module("main")
    tasks: Any = importlib.import_module("tasks")
    for name in ("main", "tasks", "microservice"):  # leave no "main" module behind
        monkeypatch.delitem(sys.modules, name, raising=False)
    return app_from(main.workflow_handler, tasks.directory_map, name="my_first_workflow")


def completions_sent_but_never_recorded(client: sb.Client, run_ids: list[str]) -> list[str]:
    """Open pending steps whose token was used: their `Response` was sent (the token's
    marker is in the store), yet the history never recorded the outcome."""
    lost = []
    for run_id in run_ids:
        events = client.history(run_id)
        done = {e.data["seq"] for e in events if e.type in ("step.completed", "step.failed")}
        for event in events:
            seq, attempt = event.data.get("seq"), event.data.get("attempt")
            if event.type != "step.pending" or seq in done:
                continue
            if client.runtime.store.get(run_id, f"t/{seq:010d}.{attempt}") is not None:
                lost.append(f"{run_id} step {seq}")
    return lost


def run_seed_on_workers(
    provider: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    env: Mapping[str, str],
    settings: Mapping[str, Any],
    worker_args: Sequence[str] = (),
    timeout: float = 60.0,
) -> None:
    """Run the example on `WORKERS` worker processes (environment `env`, extra command-line
    arguments `worker_args`), started from here with `settings`; check every run completed
    with the seed's output, its tasks ran in the workers, and the workers stopped cleanly."""
    command = [str(SWITCHBOARD), "worker", "run:app", "--provider", provider, "--grace", "10"]
    logs = [tempfile.TemporaryFile() for _ in range(WORKERS)]  # noqa: SIM115 - closed below
    workers = [
        subprocess.Popen(
            [*command, *worker_args],
            cwd=EXAMPLE,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for log in logs
    ]
    timed_out = ""
    try:
        with sb.connect(seed_app(monkeypatch), provider, **settings) as client:
            run_ids = [client.start("my_first_workflow") for _ in range(RUNS)]
            try:
                statuses = [client.wait(run_id, timeout=timeout) for run_id in run_ids]
            except sb.WaitTimeout as exc:
                unfinished = {
                    r: (client.status(r).status, [(e.type, e.data) for e in client.history(r)])
                    for r in run_ids
                }
                lost = completions_sent_but_never_recorded(client, run_ids)
                timed_out = (
                    f"{exc}; completions sent but never recorded: {lost}; "
                    f"statuses and histories {unfinished}"
                )
            else:
                history = [event.type for event in client.history(run_ids[0])]
    finally:
        codes = _stop(workers)
    texts = []
    for log in logs:
        log.seek(0)
        texts.append(log.read().decode(errors="replace"))
        log.close()
    if timed_out:
        pytest.fail(f"{timed_out}\nworker logs:\n" + "\n----\n".join(texts), pytrace=False)
    for status in statuses:
        assert status.status == "completed", status
        assert status.output == {"some_bool_field": True, "report_mailed": True}
    assert history.count("step.completed") == 3
    assert codes == [0] * WORKERS, texts
    for text in texts:
        assert f"worker for app 'my_first_workflow' on {provider}" in text, text
        assert "worker stopped" in text, text
    # The seed tasks ran in the workers (they print as they run).
    assert "".join(texts).count("Processing some data...") >= RUNS, texts


def _stop(workers: list[subprocess.Popen[bytes]]) -> list[int]:
    """SIGTERM every worker still running; their exit codes (killed after a minute)."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 60
    codes = []
    for worker in workers:
        try:
            codes.append(worker.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            worker.kill()
            codes.append(worker.wait())
    return codes
