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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("azure.data.tables", reason="pip install 'switchboard-orchestrator[azure]'")

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `tests.emulators` lives beside this folder's parents
    sys.path.insert(0, str(ROOT))

from switchboard.providers.azure.queue import ServiceBusBroker, ServiceBusQueue  # noqa: E402
from switchboard.providers.azure.state import TablesStateStore  # noqa: E402

if TYPE_CHECKING:
    from tests.emulators.servicebus.broker import Broker

LIVE = os.environ.get("SWITCHBOARD_AZURE_LIVE") == "1"
#: The native lock duration of test queues: the shortest Service Bus allows, so that a
#: consumer that vanished (no lease keeper left) frees its messages quickly.
LOCK_DURATION = 5.0


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


# -- Service Bus ----------------------------------------------------------------------------


class ServiceBusUnderTest:
    """Where the queue tests' Service Bus lives, and how to set a queue's native settings."""

    def __init__(self, connection_string: str, emulator: Broker | None) -> None:
        self.connection_string = connection_string
        self._emulator = emulator

    def configure(self, entity: str, *, max_delivery_count: int, lock_duration: float) -> None:
        """Give a queue its MaxDeliveryCount and LockDuration before it is first used. On the
        real service the provider's own provisioning (create=True) sets MaxDeliveryCount."""
        if self._emulator is not None:
            self._emulator.configure_queue(
                entity, max_delivery_count=max_delivery_count, lock_duration=lock_duration
            )


@pytest.fixture(scope="session")
def servicebus() -> Iterator[ServiceBusUnderTest]:
    pytest.importorskip("azure.servicebus", reason="pip install 'switchboard-orchestrator[azure]'")
    if LIVE:
        value = os.environ.get("SWITCHBOARD_SERVICEBUS_CONNECTION_STRING") or os.environ.get(
            "AZURE_SERVICEBUS_CONNECTION_STRING"
        )
        if not value:
            pytest.fail("SWITCHBOARD_AZURE_LIVE=1 needs AZURE_SERVICEBUS_CONNECTION_STRING")
        yield ServiceBusUnderTest(value, None)
        return
    from tests.emulators.servicebus.server import start_broker

    emulator = start_broker(lock_duration=LOCK_DURATION)
    try:
        yield ServiceBusUnderTest(emulator.connection_string, emulator)
    finally:
        emulator.stop()


@pytest.fixture
def lock_duration() -> float:
    return LOCK_DURATION


@pytest.fixture
def sb_broker(servicebus: ServiceBusUnderTest) -> Iterator[ServiceBusBroker]:
    """A broker whose queues no other test uses (a fresh prefix)."""
    broker = ServiceBusBroker.from_connection_string(
        servicebus.connection_string,
        prefix="t" + uuid.uuid4().hex[:12],
        create=LIVE,
        lock_duration=LOCK_DURATION,
    )
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def open_queue(
    sb_broker: ServiceBusBroker, servicebus: ServiceBusUnderTest
) -> Callable[..., ServiceBusQueue]:
    """Open a channel whose native queue has MaxDeliveryCount = max_attempts."""

    def open_(name: str = "work", *, max_attempts: int = 5) -> ServiceBusQueue:
        queue = sb_broker.queue(name, max_attempts=max_attempts)
        servicebus.configure(
            queue.entity, max_delivery_count=max_attempts, lock_duration=LOCK_DURATION
        )
        return queue

    return open_
