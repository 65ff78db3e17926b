"""The conformance suite against the local provider's in-memory queue and state store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from switchboard.interfaces import Broker, StateStore
from switchboard.providers.local.queue import MemoryBroker
from switchboard.providers.local.state import MemoryStateStore
from switchboard_conformance import QueueConformance, StateStoreConformance


class TestMemoryQueue(QueueConformance):
    @pytest.fixture
    def broker(self) -> Iterator[Broker]:
        broker = MemoryBroker()
        yield broker
        broker.close()


class TestMemoryState(StateStoreConformance):
    @pytest.fixture
    def state_store(self) -> Iterator[StateStore]:
        store = MemoryStateStore()
        yield store
        store.close()
