"""The whole shared conformance suite against the Azure provider: Tables on Azurite, Service
Bus on the project's AMQP test broker (or the real services with SWITCHBOARD_AZURE_LIVE=1):
queues, state, workflows, both executors (the core QueueExecutor over Service Bus and
`azure.http` against a task endpoint on 127.0.0.1), and faults."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import switchboard as sb
from switchboard.interfaces import Broker, Executor, ExecutorHost, StateStore
from switchboard.providers.azure.config import AzureConfig
from switchboard.providers.azure.executor import HttpExecutor
from switchboard.providers.azure.handlers import task_endpoint
from switchboard.providers.azure.queue import ServiceBusBroker
from switchboard.providers.azure.state import TablesStateStore
from switchboard_conformance import (
    ExecutorChoice,
    ExecutorConformance,
    FaultConformance,
    QueueConformance,
    StateStoreConformance,
    WorkflowConformance,
)
from tests.emulators.wsgi import LocalServer


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
    def fulfil(ctx: sb.Context, order: dict[str, Any]) -> dict[str, object]:
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
    """The default executor: invocations on the `{app}-tasks` Service Bus queue."""


FUNCTION_KEY = "conformance-function-key"


class _ServedHttpExecutor(HttpExecutor):
    """`azure.http` against a task endpoint served on 127.0.0.1 for this runtime's app: the
    endpoint checks the function key and runs what it is POSTed with the runtime's own
    `TaskRunner`, as the app's HTTP-triggered function (`AzureHandlers.task`) would."""

    def __init__(self, config: AzureConfig, host: ExecutorHost) -> None:
        self.server = LocalServer(task_endpoint(host.run_task, FUNCTION_KEY), path="/api/tasks")
        super().__init__(dataclasses.replace(config, task_url=self.server.url), host)

    def close(self) -> None:
        super().close()
        self.server.stop()


def _served_http_executor(config: AzureConfig, host: ExecutorHost) -> Executor:
    return _ServedHttpExecutor(config, host)


class TestAzureHttpExecutor(AzureComponents, ExecutorConformance):
    """`azure.http`: each invocation POSTed with its function key to the task endpoint,
    which reports the outcome on the invocations queue."""

    @pytest.fixture
    def executor(self) -> ExecutorChoice:
        return ExecutorChoice(_served_http_executor, AzureConfig(function_key=FUNCTION_KEY))


@pytest.mark.timeout(600)
class TestAzureUnderFaults(AzureComponents, FaultConformance):
    # The suite's 500 runs: about 50 s on the test broker alone, and past the suite's 300 s
    # guard inside the full suite on 2026-12-02's slow host, beside moto's busy core. A hang
    # still fails, at 600 s.
    pass
