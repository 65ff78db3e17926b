"""Fixtures for the Azure provider tests: Azurite for Tables, the AMQP test broker for Service
Bus, each started once per session on a free 127.0.0.1 port.

With `SWITCHBOARD_AZURE_LIVE=1` and connection strings in the environment
(AZURE_TABLES_CONNECTION_STRING / AZURE_SERVICEBUS_CONNECTION_STRING) the same tests run
against the real services instead.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("azure.data.tables", reason="pip install 'switchboard-orchestrator[azure]'")

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `tests.emulators` lives beside this folder's parents
    sys.path.insert(0, str(ROOT))

from switchboard.providers.azure.state import TablesStateStore  # noqa: E402

LIVE = os.environ.get("SWITCHBOARD_AZURE_LIVE") == "1"


@pytest.fixture(scope="session")
def tables_connection_string() -> Iterator[str]:
    if LIVE:
        value = os.environ.get("AZURE_TABLES_CONNECTION_STRING") or os.environ.get(
            "AZURE_STORAGE_CONNECTION_STRING"
        )
        if not value:
            pytest.fail("SWITCHBOARD_AZURE_LIVE=1 needs AZURE_TABLES_CONNECTION_STRING")
        yield value
        return
    from tests.emulators.azurite import AzuriteTables

    server = AzuriteTables().start()
    try:
        yield server.connection_string
    finally:
        server.stop()


@pytest.fixture
def store(tables_connection_string: str) -> Iterator[TablesStateStore]:
    """A store on a fresh table, dropped afterwards."""
    table = "sb" + uuid.uuid4().hex[:16]
    store = TablesStateStore.from_connection_string(tables_connection_string, table)
    store.ensure()
    try:
        yield store
    finally:
        from azure.data.tables import TableServiceClient

        with TableServiceClient.from_connection_string(tables_connection_string) as service:
            service.delete_table(table)
        store.close()
