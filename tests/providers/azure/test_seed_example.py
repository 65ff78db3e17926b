"""The seed project's README example (examples/seed_switchboard, files untouched) on the azure
provider, run by two `switchboard worker` processes against Azurite and the AMQP test broker.

The broker runs in a thread of this test process; it is a TCP server on 127.0.0.1, so the
worker subprocesses reach it like any Service Bus namespace. The workers get the connection
strings from the environment and the queue prefix and table with `--set`; the run is started
from here through `switchboard.compat.app_from` and `sb.connect(app, "azure", ...)`. The
seed's tasks answer with `Response(...).send()` (one of them later, from a "microservice"
thread), and both workers stop cleanly on SIGTERM.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import switchboard as sb
from switchboard.compat import app_from

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "seed_switchboard"
SWITCHBOARD = Path(sys.executable).with_name("switchboard")
WORKERS = 2


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


def test_seed_example_runs_on_switchboard_workers(
    tables_connection_string: str, servicebus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix, table = "seed" + uuid.uuid4().hex[:8], "seed" + uuid.uuid4().hex[:12]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SWITCHBOARD_AZURE_", "AZURE_"))
    }
    env.update(
        SWITCHBOARD_SERVICEBUS_CONNECTION_STRING=servicebus.connection_string,
        AZURE_TABLES_CONNECTION_STRING=tables_connection_string,
        PYTHONUNBUFFERED="1",
    )
    logs = [tempfile.TemporaryFile() for _ in range(WORKERS)]  # noqa: SIM115 - closed below
    command = [str(SWITCHBOARD), "worker", "run:app", "--provider", "azure", "--grace", "10"]
    command += ["--set", f"prefix={prefix}", "--set", f"table={table}"]
    workers = [
        subprocess.Popen(command, cwd=EXAMPLE, env=env, stdout=log, stderr=subprocess.STDOUT)
        for log in logs
    ]

    def output(index: int) -> str:
        logs[index].seek(0)
        return logs[index].read().decode(errors="replace")

    timed_out = ""
    try:
        app = _seed_app(monkeypatch)
        with sb.connect(
            app,
            "azure",
            servicebus_connection_string=servicebus.connection_string,
            tables_connection_string=tables_connection_string,
            prefix=prefix,
            table=table,
        ) as client:
            run_ids = [client.start("my_first_workflow") for _ in range(3)]
            try:
                statuses = [client.wait(run_id, timeout=60) for run_id in run_ids]
            except sb.WaitTimeout as exc:
                unfinished = {
                    r: (client.status(r).status, [(e.type, e.data) for e in client.history(r)])
                    for r in run_ids
                }
                timed_out = f"{exc}; statuses and histories {unfinished}"
            else:
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
        from azure.data.tables import TableServiceClient

        with TableServiceClient.from_connection_string(tables_connection_string) as service:
            service.delete_table(table)
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
        assert "worker for app 'my_first_workflow' on azure" in text, text
        assert "worker stopped" in text, text
    # The seed tasks ran in the workers (they print as they run).
    ran = "".join(texts)
    assert ran.count("Processing some data...") >= 3, texts
