"""The shared conformance suite against the AWS provider: SQS and DynamoDB on moto's server
(or on AWS with SWITCHBOARD_AWS_LIVE=1)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from switchboard.interfaces import Broker, StateStore
from switchboard.providers.aws.queue import SqsBroker
from switchboard.providers.aws.state import DynamoStateStore
from switchboard_conformance import (
    ExecutorConformance,
    FaultConformance,
    QueueConformance,
    StateStoreConformance,
    WorkflowConformance,
)


class TestSqsQueueConformance(QueueConformance):
    @pytest.fixture
    def broker(self, broker: SqsBroker) -> Iterator[Broker]:
        yield broker


class TestDynamoStateConformance(StateStoreConformance):
    @pytest.fixture
    def state_store(self, store: DynamoStateStore) -> Iterator[StateStore]:
        yield store


class AwsComponents:
    @pytest.fixture
    def broker(self, broker: SqsBroker) -> Iterator[Broker]:
        yield broker

    @pytest.fixture
    def state_store(self, store: DynamoStateStore) -> Iterator[StateStore]:
        yield store


class TestAwsWorkflows(AwsComponents, WorkflowConformance):
    # The suite's sizes, 200 concurrent runs included (about 27 s on moto, which serves
    # DynamoDB one request at a time: see tests/emulators/moto.py).
    pass


class TestAwsQueueExecutor(AwsComponents, ExecutorConformance):
    pass


@pytest.mark.timeout(600)
class TestAwsUnderFaults(AwsComponents, FaultConformance):
    # The suite's 500 runs: 110-170 s on moto alone on 2 cores (measured 2026-12-02, the
    # same before and after that day's changes), and past the suite's 300 s guard once
    # with the other emulators' tests running beside it. A hang still fails, at 600 s.
    pass
