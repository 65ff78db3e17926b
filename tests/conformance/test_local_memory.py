"""The whole conformance suite against the local provider in memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from switchboard.interfaces import Broker, StateStore
from switchboard.providers.local.executor import ThreadExecutor
from switchboard.providers.local.queue import MemoryBroker
from switchboard.providers.local.state import MemoryStateStore
from switchboard_conformance import (
    ExecutorChoice,
    ExecutorConformance,
    FaultConformance,
    QueueConformance,
    StateStoreConformance,
    WorkflowConformance,
)


class MemoryComponents:
    @pytest.fixture
    def broker(self) -> Iterator[Broker]:
        broker = MemoryBroker()
        yield broker
        broker.close()

    @pytest.fixture
    def state_store(self) -> Iterator[StateStore]:
        store = MemoryStateStore()
        yield store
        store.close()


class TestMemoryQueue(MemoryComponents, QueueConformance):
    pass


class TestMemoryState(MemoryComponents, StateStoreConformance):
    pass


class TestMemoryWorkflows(MemoryComponents, WorkflowConformance):
    pass


class TestQueueExecutorOnMemory(MemoryComponents, ExecutorConformance):
    pass


class TestThreadExecutor(MemoryComponents, ExecutorConformance):
    @pytest.fixture
    def executor(self) -> ExecutorChoice:
        return ExecutorChoice(lambda config, host: ThreadExecutor(host))


class TestMemoryUnderFaults(MemoryComponents, FaultConformance):
    pass
