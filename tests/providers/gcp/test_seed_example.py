"""The seed project's README example (examples/seed_switchboard, files untouched) on the gcp
provider, run by two `switchboard worker` processes against the emulators.

The run is started from here through `switchboard.compat.app_from` and
`sb.connect(app, "gcp", ...)`; the workers take it from the Pub/Sub queues, the seed's tasks
answer with `Response(...).send()` (one of them later, from a "microservice" thread), and
both workers stop cleanly on SIGTERM.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

import switchboard as sb
from switchboard.compat import app_from
from switchboard.providers.gcp.config import GcpConfig

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "seed_switchboard"
SWITCHBOARD = Path(sys.executable).with_name("switchboard")
WORKERS = 2


def _worker_env(config: GcpConfig) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOOGLE_CLOUD_PROJECT=config.project,
        SWITCHBOARD_GCP_PREFIX=config.prefix,
        SWITCHBOARD_GCP_COLLECTION=config.collection,
        PYTHONUNBUFFERED="1",
    )
    for name, value in (
        ("PUBSUB_EMULATOR_HOST", config.pubsub_emulator_host),
        ("FIRESTORE_EMULATOR_HOST", config.firestore_emulator_host),
    ):
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    return env


def _seed_app(monkeypatch: pytest.MonkeyPatch) -> sb.App:
    """The example's app, imported as its run.py imports it (main.py and tasks.py)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    for name in ("main", "tasks", "microservice"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    main: Any = importlib.import_module("main")
    tasks: Any = importlib.import_module("tasks")
    for name in ("main", "tasks", "microservice"):  # leave no "main" module behind
        monkeypatch.delitem(sys.modules, name, raising=False)
    return app_from(main.workflow_handler, tasks.directory_map, name="my_first_workflow")


def _completions_sent_but_never_recorded(client: sb.Client, run_ids: list[str]) -> list[str]:
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


def test_seed_example_runs_on_switchboard_workers(
    gcp_config: GcpConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _worker_env(gcp_config)
    logs = [tempfile.TemporaryFile() for _ in range(WORKERS)]  # noqa: SIM115 - closed below
    workers = [
        subprocess.Popen(
            [str(SWITCHBOARD), "worker", "run:app", "--provider", "gcp", "--grace", "10"],
            cwd=EXAMPLE,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for log in logs
    ]

    def output(index: int) -> str:
        logs[index].seek(0)
        return logs[index].read().decode(errors="replace")

    try:
        app = _seed_app(monkeypatch)
        settings: dict[str, Any] = {
            "project": gcp_config.project,
            "prefix": gcp_config.prefix,
            "collection": gcp_config.collection,
            "pubsub_emulator_host": gcp_config.pubsub_emulator_host,
            "firestore_emulator_host": gcp_config.firestore_emulator_host,
        }
        with sb.connect(app, "gcp", **{k: v for k, v in settings.items() if v}) as client:
            run_ids = [client.start("my_first_workflow") for _ in range(3)]
            try:
                statuses = [client.wait(run_id, timeout=45) for run_id in run_ids]
            except sb.WaitTimeout as exc:
                unfinished = {
                    r: (client.status(r).status, [(e.type, e.data) for e in client.history(r)])
                    for r in run_ids
                }
                lost = _completions_sent_but_never_recorded(client, run_ids)
                timed_out = (
                    f"{exc}; completions sent but never recorded: {lost}; "
                    f"statuses and histories {unfinished}"
                )
            else:
                timed_out = ""
                history = [event.type for event in client.history(run_ids[0])]
    finally:
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
    texts = [output(index) for index in range(WORKERS)]
    for log in logs:
        log.close()
    if timed_out:
        pytest.fail(f"{timed_out}\nworker logs:\n" + "\n----\n".join(texts), pytrace=False)
    for status in statuses:
        assert status.status == "completed", status
        assert status.output == {"some_bool_field": True, "report_mailed": True}
    assert history.count("step.completed") == 3
    assert codes == [0] * WORKERS, texts
    for text in texts:
        assert "worker for app 'my_first_workflow' on gcp" in text, text
        assert "worker stopped" in text, text
    # The seed tasks ran in the workers (they print as they run).
    ran = "".join(texts)
    assert ran.count("Processing some data...") >= 3, texts
