"""The Lambda handler, fed real-shaped SQS events whose messages really sit in moto's SQS."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import switchboard as sb
from switchboard.providers.aws.config import AwsConfig
from switchboard.providers.aws.handlers import lambda_handler


class LambdaContext:
    """What the Lambda runtime passes as `context` (only the part the handler reads)."""

    def __init__(self, remaining_ms: int = 30_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def _record(message: dict[str, Any], arn: str) -> dict[str, Any]:
    """An SQS event record, shaped as Lambda builds it from a received message."""
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


def test_sqs_batches_drive_a_run_and_dead_letter_garbage(
    aws_config: AwsConfig, sqs_client: Any
) -> None:
    app = sb.App("lambdaapp")

    @app.task
    def add(x: int) -> int:
        return x + 1

    @app.workflow
    def run(ctx: sb.Context, n: int) -> int:
        x = add(n)
        return x + sum(ctx.parallel(*[ctx.call(add, i) for i in range(3)]))

    settings = {
        "endpoint_url": aws_config.endpoint_url,
        "region": aws_config.region,
        "prefix": aws_config.prefix,
    }
    handler = lambda_handler(app, **settings)
    with sb.connect(app, "aws", **settings) as client:
        run_id = client.start("run", n=10)
        invocations_url = client.runtime.invocations.url  # type: ignore[attr-defined]
        sqs_client.send_message(QueueUrl=invocations_url, MessageBody="not json at all")
        # Not UTF-8: SqsQueue sends it in its binary attribute, which Lambda base64-encodes.
        client.runtime.invocations.send([b"\xff\x00binary garbage"])
        tasks_url = client.runtime.executor.queue.url  # type: ignore[attr-defined]
        reported: list[str] = []
        deadline = time.monotonic() + 60
        while client.status(run_id).status not in ("completed", "failed"):
            assert time.monotonic() < deadline, client.history(run_id)
            for url in (invocations_url, tasks_url):
                messages = sqs_client.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=0,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
                if not messages:
                    continue
                arn = "arn:aws:sqs:us-east-1:123456789012:" + url.rsplit("/", 1)[-1]
                event = {"Records": [_record(m, arn) for m in messages]}
                failed = {
                    f["itemIdentifier"]
                    for f in handler(event, LambdaContext())["batchItemFailures"]
                }
                reported += failed
                # What Lambda does: delete the successes; failures come back after the timeout.
                for message in messages:
                    if message["MessageId"] not in failed:
                        sqs_client.delete_message(
                            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"]
                        )
        assert client.wait(run_id, timeout=5).output == 11 + (1 + 2 + 3)
        assert not reported, "nothing in these batches needed a retry"
        dead = client.runtime.invocations.dead_letters().receive(10, wait=1)
        assert sorted((d.body, (d.reason or "")[:9]) for d in dead) == [
            (b"not json at all", "not JSON:"),
            (b"\xff\x00binary garbage", "not JSON:"),
        ]


def _receive(sqs_client: Any, url: str, visibility: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = sqs_client.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=0,
        VisibilityTimeout=visibility,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    return messages


def test_a_task_past_the_deadline_is_reported_and_retried_by_lambda(
    aws_config: AwsConfig, sqs_client: Any
) -> None:
    """A partial batch failure: one task of three outlives the invocation's time, so only
    its message is in `batchItemFailures`; Lambda deletes the two others, and the failed
    one comes back after the visibility timeout and completes the run."""
    app = sb.App("lambdapartial")
    first_slow = threading.Event()

    @app.task
    def work(i: int) -> int:
        if i == 0 and not first_slow.is_set():
            first_slow.set()
            time.sleep(1.8)
        return i * 10

    @app.workflow
    def run(ctx: sb.Context) -> list[int]:
        return ctx.parallel(*[ctx.call(work, i) for i in range(3)])

    settings = {
        "endpoint_url": aws_config.endpoint_url,
        "region": aws_config.region,
        "prefix": aws_config.prefix,
    }
    handler = lambda_handler(app, **settings)
    with sb.connect(app, "aws", **settings) as client:
        run_id = client.start("run")
        invocations_url = client.runtime.invocations.url  # type: ignore[attr-defined]
        tasks_url = client.runtime.executor.queue.url  # type: ignore[attr-defined]
        batches: list[tuple[str, list[str], list[str]]] = []

        def redelivered() -> bool:
            failed = [f for _, _, fs in batches for f in fs]
            return bool(failed) and sum(failed[0] in ids for _, ids, _ in batches) >= 2

        deadline = time.monotonic() + 60
        while client.status(run_id).status not in ("completed", "failed") or not redelivered():
            assert time.monotonic() < deadline, (batches, client.history(run_id))
            for url in (invocations_url, tasks_url):
                # A short visibility timeout stands for the queue's, to keep the test short.
                messages = _receive(sqs_client, url, visibility=3)
                if not messages:
                    continue
                arn = "arn:aws:sqs:us-east-1:123456789012:" + url.rsplit("/", 1)[-1]
                event = {"Records": [_record(m, arn) for m in messages]}
                # 3 s left, 2 s kept back: the batch has about a second.
                result = handler(event, LambdaContext(remaining_ms=3_000))
                failed = [f["itemIdentifier"] for f in result["batchItemFailures"]]
                batches.append((url, [m["MessageId"] for m in messages], failed))
                for message in messages:
                    if message["MessageId"] not in failed:
                        sqs_client.delete_message(
                            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"]
                        )
            time.sleep(0.1)
        assert client.wait(run_id, timeout=5).output == [0, 10, 20]
    partial = [(ids, failed) for url, ids, failed in batches if failed]
    assert len(partial) == 1, batches
    ids, failed = partial[0]
    assert len(failed) == 1 and len(ids) > 1 and failed[0] in ids, batches
    # The failed message came back (Lambda left it on the queue) and was handled again.
    assert sum(failed[0] in ids for url, ids, _ in batches if url == tasks_url) == 2, batches
