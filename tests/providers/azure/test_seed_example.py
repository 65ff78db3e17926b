"""The seed project's README example on the azure provider, run by two `switchboard worker
--provider azure` processes against Azurite and the AMQP test broker (see
tests/seed_workers.py).

The broker runs in a thread of this test process; it is a TCP server on 127.0.0.1, so the
worker subprocesses reach it like any Service Bus namespace. The workers get the connection
strings from the environment and the queue prefix and table with `--set`.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from tests.seed_workers import run_seed_on_workers


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
    )
    try:
        run_seed_on_workers(
            "azure",
            monkeypatch,
            env=env,
            settings={
                "servicebus_connection_string": servicebus.connection_string,
                "tables_connection_string": tables_connection_string,
                "prefix": prefix,
                "table": table,
            },
            worker_args=["--set", f"prefix={prefix}", "--set", f"table={table}"],
        )
    finally:
        from azure.data.tables import TableServiceClient

        with TableServiceClient.from_connection_string(tables_connection_string) as service:
            service.delete_table(table)
