"""Whether this folder ran against real Azure: shown as a skip (with `pytest -ra`) when it did
not, so a local-server-only run never passes for a live one."""

from __future__ import annotations

from typing import Any

import pytest

from tests.providers.azure.conftest import LIVE


@pytest.mark.skipif(
    not LIVE,
    reason="real Azure not targeted (Azurite and the AMQP test broker were): set "
    "SWITCHBOARD_AZURE_LIVE=1, AZURE_TABLES_CONNECTION_STRING and "
    "AZURE_SERVICEBUS_CONNECTION_STRING to run this folder against real Data Tables and "
    "Service Bus",
)
def test_the_suite_targets_real_azure(tables_connection_string: str, servicebus: Any) -> None:
    assert "usedevelopmentemulator=true" not in servicebus.connection_string.lower()
    assert "127.0.0.1" not in servicebus.connection_string
    assert "devstoreaccount1" not in tables_connection_string
