"""Fixtures for the AWS provider tests: one moto server per session on a free 127.0.0.1
port, boto3 pointed at it with fake credentials.

With `SWITCHBOARD_AWS_LIVE=1` (and real credentials in boto3's usual places) the same tests
run against AWS instead; every queue and table they create is deleted afterwards.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("boto3", reason="pip install 'switchboard-orchestrator[aws]'")

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `tests.emulators` lives beside this folder's parents
    sys.path.insert(0, str(ROOT))

from switchboard.config import build_config  # noqa: E402
from switchboard.providers.aws.client import make_client  # noqa: E402
from switchboard.providers.aws.config import AwsConfig  # noqa: E402
from switchboard.providers.aws.queue import SqsBroker  # noqa: E402
from switchboard.providers.aws.state import DynamoStateStore  # noqa: E402

LIVE = os.environ.get("SWITCHBOARD_AWS_LIVE") == "1"


@pytest.fixture(scope="session")
def aws_settings() -> Iterator[dict[str, str]]:
    """Settings every test's AwsConfig starts from (endpoint of our moto, or none when live)."""
    if LIVE:
        yield {}
        return
    from tests.emulators.moto import FAKE_ENV, MotoServer

    saved = {name: os.environ.get(name) for name in FAKE_ENV}
    os.environ.update(FAKE_ENV)  # boto3 clients built in tests find these
    server = MotoServer().start()
    try:
        yield {"endpoint_url": server.endpoint_url, "region": FAKE_ENV["AWS_REGION"]}
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def aws_config(aws_settings: dict[str, str]) -> AwsConfig:
    """A config with a prefix no other test uses, so queues never leak between tests."""
    return build_config(
        AwsConfig, {**aws_settings, "prefix": "sbt" + uuid.uuid4().hex[:10]}, provider="aws"
    )


@pytest.fixture(scope="session")
def sqs_client(aws_settings: dict[str, str]) -> Iterator[Any]:
    """One boto3 SQS client for the session (building one takes a noticeable 0.3 s)."""
    client = make_client("sqs", build_config(AwsConfig, aws_settings, provider="aws"))
    yield client
    client.close()


@pytest.fixture
def broker(aws_config: AwsConfig, sqs_client: Any) -> Iterator[SqsBroker]:
    broker = SqsBroker(aws_config, client=sqs_client)
    try:
        yield broker
    finally:
        queues = sqs_client.list_queues(QueueNamePrefix=aws_config.prefix)
        for url in queues.get("QueueUrls", []):
            sqs_client.delete_queue(QueueUrl=url)
        broker.close()


@pytest.fixture(scope="session")
def state_table(aws_settings: dict[str, str]) -> Iterator[AwsConfig]:
    """One table for the session (creating a DynamoDB table takes a while on AWS)."""
    config = build_config(
        AwsConfig, {**aws_settings, "table": "sbt-state-" + uuid.uuid4().hex[:10]}, provider="aws"
    )
    store = DynamoStateStore(config)
    store.ensure()
    try:
        yield config
    finally:
        store._client.delete_table(TableName=config.table)
        store.close()


@pytest.fixture(scope="session")
def store(state_table: AwsConfig) -> Iterator[DynamoStateStore]:
    """One store for the session: tests keep apart by writing to their own partition."""
    store = DynamoStateStore(state_table)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def partition() -> str:
    """A partition no other test writes to."""
    return "run-" + uuid.uuid4().hex
