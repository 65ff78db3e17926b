"""The shared conformance suite against the Azure provider: Tables on Azurite, Service Bus on
the project's AMQP test broker (or the real services with SWITCHBOARD_AZURE_LIVE=1)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import switchboard as sb
from switchboard.interfaces import Broker, StateStore
from switchboard.providers.azure.queue import ServiceBusBroker
from switchboard.providers.azure.state import TablesStateStore
from switchboard_conformance import (
    ExecutorConformance,
    FaultConformance,
    QueueConformance,
    StateStoreConformance,
    WorkflowConformance,
)


class TestTablesStateConformance(StateStoreConformance):
    @pytest.fixture
    def state_store(self, store: TablesStateStore) -> Iterator[StateStore]:
        yield store


class TestServiceBusQueueConformance(QueueConformance):
    @pytest.fixture
    def broker(self, sb_broker: ServiceBusBroker) -> Iterator[Broker]:
        yield sb_broker


def test_a_workflow_runs_end_to_end_on_service_bus_and_tables(
    tables_connection_string: str, servicebus: Any
) -> None:
    """The engine on the azure provider alone, a value over Service Bus's 256 KB included
    (it travels through the claim check)."""
    app = sb.App("azure" + uuid.uuid4().hex[:8])

    @app.task(retries=2)
    def charge(order_id: str, amount: int) -> dict[str, object]:
        return {"order": order_id, "charged": amount}

    @app.task
    def label(order: dict[str, str]) -> str:
        return "label-" + order["id"]

    @app.workflow
    def fulfil(ctx: sb.Context, order: dict[str, object]) -> dict[str, object]:
        receipt = charge(order["id"], order["total"])
        small, large = ctx.parallel(
            ctx.call("label", {"id": order["id"]}), ctx.call("label", {"id": "x" * 400_000})
        )
        return {"receipt": receipt, "label": small, "large": len(large)}

    table = "sb" + uuid.uuid4().hex[:12]
    with sb.connect(
        app,
        provider="azure",
        workers=2,
        tables_connection_string=tables_connection_string,
        servicebus_connection_string=servicebus.connection_string,
        table=table,
        prefix=app.name,
    ) as client:
        run = client.start("fulfil", order={"id": "o1", "total": 5})
        status = client.wait(run, timeout=120)
    assert status.output == {
        "receipt": {"order": "o1", "charged": 5},
        "label": "label-o1",
        "large": 400_006,
    }
    from azure.data.tables import TableServiceClient

    with TableServiceClient.from_connection_string(tables_connection_string) as service:
        service.delete_table(table)


class AzureComponents:
    @pytest.fixture
    def broker(self, sb_broker: ServiceBusBroker) -> Iterator[Broker]:
        yield sb_broker

    @pytest.fixture
    def state_store(self, store: TablesStateStore) -> Iterator[StateStore]:
        yield store


class TestAzureWorkflows(AzureComponents, WorkflowConformance):
    pass


class TestAzureQueueExecutor(AzureComponents, ExecutorConformance):
    pass


class TestAzureUnderFaults(AzureComponents, FaultConformance):
    # Every worker opens its own AMQP links (about 0.5 s each on the test broker).
    runs = 200
