"""The whole shared conformance suite on the gcp provider, over the emulators (or the real
services with SWITCHBOARD_GCP_LIVE=1): queues, state, workflows, both executors (the core
QueueExecutor over Pub/Sub and `gcp.http` against a local task endpoint), and faults.

Pub/Sub leases go down to 1 s here: ModifyAckDeadline accepts 0..600 s, and the queue sets
it after every pull (the 10 s minimum applies only to a subscription's default deadline).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from switchboard.interfaces import Broker, Executor, ExecutorHost, StateStore
from switchboard.providers.gcp.config import GcpConfig
from switchboard.providers.gcp.executor import HttpExecutor
from switchboard.providers.gcp.handlers import task_endpoint
from switchboard.providers.gcp.queue import PubSubBroker
from switchboard.providers.gcp.state import FirestoreStateStore
from switchboard_conformance import (
    ConformanceTiming,
    ExecutorChoice,
    ExecutorConformance,
    FaultConformance,
    QueueConformance,
    StateStoreConformance,
    WorkflowConformance,
)
from tests.emulators.wsgi import LocalServer


class GcpComponents:
    @pytest.fixture
    def broker(self, gcp_config: GcpConfig) -> Iterator[Broker]:
        broker = PubSubBroker(gcp_config)
        yield broker
        broker.close()

    @pytest.fixture
    def state_store(self, gcp_config: GcpConfig) -> Iterator[StateStore]:
        store = FirestoreStateStore(gcp_config)
        yield store
        store.close()


class TestPubSubConformance(GcpComponents, QueueConformance):
    @pytest.fixture
    def conformance_timing(self) -> ConformanceTiming:
        # The defaults, 1 s leases included, hold: no slow "Pub/Sub timing" is needed.
        return ConformanceTiming()


class TestFirestoreConformance(GcpComponents, StateStoreConformance):
    pass


class TestGcpWorkflows(GcpComponents, WorkflowConformance):
    pass


class TestQueueExecutorOnPubSub(GcpComponents, ExecutorConformance):
    """The default executor: invocations on the `{app}-tasks` Pub/Sub channel."""


class _ServedHttpExecutor(HttpExecutor):
    """`gcp.http` against a task endpoint served on 127.0.0.1 for this runtime's app: the
    endpoint runs what it is POSTed with the runtime's own `TaskRunner`, as the Cloud Run
    service (`GcpHandlers.task_app`) of the same app would."""

    def __init__(self, config: GcpConfig, host: ExecutorHost) -> None:
        self.server = LocalServer(task_endpoint(host.run_task))
        super().__init__(dataclasses.replace(config, task_url=self.server.url), host)

    def close(self) -> None:
        super().close()
        self.server.stop()


def _served_http_executor(config: GcpConfig, host: ExecutorHost) -> Executor:
    return _ServedHttpExecutor(config, host)


class TestHttpExecutor(GcpComponents, ExecutorConformance):
    """`gcp.http`: each invocation POSTed to the task endpoint, which reports its outcome on
    the invocations queue."""

    @pytest.fixture
    def executor(self, gcp_config: GcpConfig) -> ExecutorChoice:
        return ExecutorChoice(_served_http_executor, gcp_config)


class TestGcpUnderFaults(GcpComponents, FaultConformance):
    pass
