"""Playing Lambda's SQS event source mapping against moto, which cannot run function code.

What the mapping does for a function with ReportBatchItemFailures: receive up to 10
messages (long polling), hand them to the function as one event of real-shaped records,
delete the messages the function did not list in `batchItemFailures`, and leave the rest
to come back after the visibility timeout. Used by the handler tests and the cost bench.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Handler = Callable[[Mapping[str, Any], Any], dict[str, Any]]


class LambdaContext:
    """What the Lambda runtime passes as `context` (only the part the handler reads)."""

    def __init__(self, remaining_ms: int = 30_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def queue_arn(url: str, region: str = "us-east-1") -> str:
    """The ARN Lambda puts in `eventSourceARN` for the queue at `url`."""
    return f"arn:aws:sqs:{region}:123456789012:{url.rstrip('/').rsplit('/', 1)[-1]}"


def sqs_record(message: Mapping[str, Any], arn: str) -> dict[str, Any]:
    """An SQS event record, shaped as Lambda builds it from a received message (binary
    attributes base64-encoded, camelCase keys)."""
    attributes = {
        name: (
            {"binaryValue": base64.b64encode(value["BinaryValue"]).decode(), "dataType": "Binary"}
            if "BinaryValue" in value
            else {"stringValue": value.get("StringValue"), "dataType": "String"}
        )
        for name, value in (message.get("MessageAttributes") or {}).items()
    }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": "us-east-1",
    }


@dataclass
class Batch:
    """One poll of the mapping: the messages it received and the ids the function failed."""

    message_ids: list[str]
    failed: list[str]


def deliver_batch(
    sqs: Any,
    url: str,
    handler: Handler,
    *,
    wait: int = 0,
    visibility: int | None = None,
    remaining_ms: int = 30_000,
) -> Batch | None:
    """One poll of the mapping on the queue at `url`: None when nothing was received."""
    request: dict[str, Any] = {
        "QueueUrl": url,
        "MaxNumberOfMessages": 10,
        "WaitTimeSeconds": wait,
        "AttributeNames": ["All"],
        "MessageAttributeNames": ["All"],
    }
    if visibility is not None:
        request["VisibilityTimeout"] = visibility
    messages = sqs.receive_message(**request).get("Messages", [])
    if not messages:
        return None
    arn = queue_arn(url)
    event = {"Records": [sqs_record(message, arn) for message in messages]}
    result = handler(event, LambdaContext(remaining_ms))
    failed = [str(item["itemIdentifier"]) for item in result["batchItemFailures"]]
    succeeded = [m for m in messages if m["MessageId"] not in failed]
    if succeeded:
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(succeeded)
            ],
        )
    return Batch([m["MessageId"] for m in messages], failed)
