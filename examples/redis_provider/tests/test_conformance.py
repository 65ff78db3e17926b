"""The whole Switchboard conformance suite against the redis provider, the way any
third-party provider runs it: subclass the suite's classes and supply the components."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from switchboard_redis.queue import RedisBroker
from switchboard_redis.state import RedisStateStore

from switchboard.interfaces import Broker, StateStore
from switchboard_conformance import (
    ExecutorConformance,
    FaultConformance,
    QueueConformance,
    StateStoreConformance,
    WorkflowConformance,
)


class RedisComponents:
    """A fresh broker and state store per test, on the session's redis-server, under a
    key prefix of their own."""

    @pytest.fixture
    def prefix(self) -> str:
        return f"sbtest-{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    def broker(self, redis_url: str, prefix: str) -> Iterator[Broker]:
        broker = RedisBroker(redis_url, prefix=prefix)
        yield broker
        broker.close()

    @pytest.fixture
    def state_store(self, redis_url: str, prefix: str) -> Iterator[StateStore]:
        store = RedisStateStore(redis_url, prefix=prefix)
        yield store
        store.close()


class TestRedisQueue(RedisComponents, QueueConformance):
    pass


class TestRedisState(RedisComponents, StateStoreConformance):
    pass


class TestRedisWorkflows(RedisComponents, WorkflowConformance):
    pass


class TestQueueExecutorOnRedis(RedisComponents, ExecutorConformance):
    pass


class TestRedisUnderFaults(RedisComponents, FaultConformance):
    pass
