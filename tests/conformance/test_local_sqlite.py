"""The whole conformance suite against the local provider's durable SQLite mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from switchboard.interfaces import Broker, StateStore
from switchboard.providers.local.queue import SqliteBroker
from switchboard.providers.local.state import SqliteStateStore
from switchboard_conformance import (
    ExecutorConformance,
    FaultConformance,
    QueueConformance,
    StateStoreConformance,
    WorkflowConformance,
)


class SqliteComponents:
    @pytest.fixture
    def broker(self, tmp_path: Path) -> Iterator[Broker]:
        broker = SqliteBroker(str(tmp_path / "conformance.db"))
        yield broker
        broker.close()

    @pytest.fixture
    def state_store(self, tmp_path: Path) -> Iterator[StateStore]:
        store = SqliteStateStore(str(tmp_path / "conformance.db"))
        yield store
        store.close()


class TestSqliteQueue(SqliteComponents, QueueConformance):
    pass


class TestSqliteState(SqliteComponents, StateStoreConformance):
    pass


class TestSqliteWorkflows(SqliteComponents, WorkflowConformance):
    pass


class TestSqliteExecutor(SqliteComponents, ExecutorConformance):
    pass


class TestSqliteUnderFaults(SqliteComponents, FaultConformance):
    pass
