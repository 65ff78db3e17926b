"""The seed project's README example (examples/seed_switchboard, files untouched) on the aws
provider, run by two `switchboard worker --provider aws` processes against moto's server.

The example says `Cloud.LOCAL`; the provider is chosen by the workers' command line and by
`sb.connect(app, "aws", ...)` here, which starts the runs through
`switchboard.compat.app_from`. The workers take them from SQS, the seed's tasks answer
with `Response(...).send()` (one of them later, from a "microservice" thread) through the
worker's active runtime, and both workers stop cleanly on SIGTERM.
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
from switchboard.config import build_config
from switchboard.providers.aws.config import AwsConfig

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "seed_switchboard"
SWITCHBOARD = Path(sys.executable).with_name("switchboard")
WORKERS = 2


def _worker_env(config: AwsConfig) -> dict[str, str]:
    """Prefix, table and region by the provider's environment variables (the endpoint goes
    by `--set`); moto's fake credentials are already in this process's environment."""
    env = dict(os.environ)
    env.update(
        AWS_REGION=config.region,
        SWITCHBOARD_AWS_PREFIX=config.prefix,
        SWITCHBOARD_AWS_TABLE=config.table,
        PYTHONUNBUFFERED="1",
    )
    env.pop("AWS_ENDPOINT_URL", None)
    return env


def _settings(config: AwsConfig) -> dict[str, Any]:
    settings = {
        "region": config.region,
        "prefix": config.prefix,
        "endpoint_url": config.endpoint_url,
    }
    return {name: value for name, value in settings.items() if value}


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
    aws_config: AwsConfig, state_table: AwsConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = build_config(
        AwsConfig, {**_settings(aws_config), "table": state_table.table}, provider="aws"
    )
    env = _worker_env(config)
    endpoint = ["--set", f"endpoint_url={config.endpoint_url}"] if config.endpoint_url else []
    logs = [tempfile.TemporaryFile() for _ in range(WORKERS)]  # noqa: SIM115 - closed below
    workers = [
        subprocess.Popen(
            [
                str(SWITCHBOARD),
                "worker",
                "run:app",
                "--provider",
                "aws",
                "--grace",
                "10",
                *endpoint,
            ],
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
        settings = {**_settings(config), "table": config.table}
        with sb.connect(app, "aws", **settings) as client:
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
        assert "worker for app 'my_first_workflow' on aws" in text, text
        assert "worker stopped" in text, text
    # The seed tasks ran in the workers (they print as they run).
    ran = "".join(texts)
    assert ran.count("Processing some data...") >= 3, texts
