"""botocore errors become `switchboard.errors` at the provider boundary."""

from __future__ import annotations

import botocore.config
import pytest

from switchboard.errors import (
    Conflict,
    LeaseLost,
    NotFound,
    ProviderError,
    TransientProviderError,
)
from switchboard.providers.aws.client import classify
from switchboard.providers.aws.config import AwsConfig
from switchboard.providers.aws.queue import SqsBroker
from switchboard.providers.aws.state import DynamoStateStore
from tests.emulators.process import free_port


@pytest.mark.parametrize(
    ("codes", "status", "expected"),
    [
        ({"ThrottlingException"}, 400, TransientProviderError),
        ({"ProvisionedThroughputExceededException"}, 400, TransientProviderError),
        (
            {"RequestThrottled", "AWS.SimpleQueueService.RequestThrottled"},
            403,
            TransientProviderError,
        ),
        ({"InternalError"}, 500, TransientProviderError),
        ({"SomethingNew"}, 503, TransientProviderError),
        ({"ReceiptHandleIsInvalid"}, 400, LeaseLost),
        ({"AWS.SimpleQueueService.MessageNotInflight"}, 400, LeaseLost),
        ({"ConditionalCheckFailedException"}, 400, Conflict),
        ({"QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"}, 400, NotFound),
        ({"ResourceNotFoundException"}, 400, NotFound),
        ({"AccessDenied"}, 403, ProviderError),
    ],
)
def test_error_codes_map_to_our_hierarchy(
    codes: set[str], status: int, expected: type[ProviderError]
) -> None:
    error = classify(codes, status, "doing something failed")
    assert type(error) is expected


def test_a_failed_batch_entry_blamed_on_aws_is_transient() -> None:
    assert type(classify({"InternalError"}, 0, "x", sender_fault=False)) is TransientProviderError
    assert type(classify({"InvalidParameterValue"}, 0, "x")) is ProviderError


def test_an_unreachable_endpoint_is_transient(aws_settings: dict[str, str]) -> None:
    import boto3

    config = AwsConfig(endpoint_url=f"http://127.0.0.1:{free_port()}")  # nothing listens
    client = boto3.session.Session(region_name=config.region).client(
        "dynamodb",
        endpoint_url=config.endpoint_url,
        config=botocore.config.Config(retries={"total_max_attempts": 1}, connect_timeout=1),
    )
    store = DynamoStateStore(config, client=client)
    try:
        with pytest.raises(TransientProviderError):
            store.get("p", "k")
    finally:
        store.close()


def test_a_queue_deleted_underneath_is_not_found(broker: SqsBroker) -> None:
    queue = broker.queue("doomed")
    broker._client.delete_queue(QueueUrl=queue.url)
    with pytest.raises(NotFound):
        queue.send([b"x"])
