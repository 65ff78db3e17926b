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
    # Half the suite's 500 runs, the size that fits CI here. moto is the bottleneck: one
    # process near 100% of a core, and its DynamoDB queries scan and sort the whole table,
    # so a run costs more the more runs came before. 500 runs took 110-170 s alone on one
    # day, 186-236 s alone on 2026-12-02 (a slow host: the bench's CPU check read 4x its
    # best), and then passed 600 s twice inside the full suite, before and after that day's
    # changes alike. The suite's 500 still run on the local providers, Redis and GCP.
    runs = 250
