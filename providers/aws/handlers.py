"""AWS Lambda entry point: SQS event batches from the invocations and tasks queues.

    handler = lambda_handler(app)   # at module level in the function's code

Point the event source mappings of both queues at it, with ReportBatchItemFailures on:
Lambda deletes what succeeded and retries what the handler lists in `batchItemFailures`.
Malformed messages are dead-lettered here with their reason, so they never fail a batch
forever. The runtime is built on the first event and kept while the container is warm,
so live runs stay cached between invocations.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from typing import Any

from switchboard.app import App
from switchboard.executors import QueueExecutor
from switchboard.interfaces import Delivery
from switchboard.providers.aws.queue import SqsQueue
from switchboard.runtime import Runtime, build_runtime
from switchboard.serverless import BatchProcessor

#: Seconds kept back from the function's time limit to report the batch's failures.
SAFETY_MARGIN = 2.0

Handler = Callable[[Mapping[str, Any], Any], dict[str, Any]]


def lambda_handler(app: App, **settings: Any) -> Handler:
    """A Lambda handler running `app` on the aws provider configured by `settings` (and the
    standard AWS environment variables)."""
    built: list[tuple[Runtime, BatchProcessor, dict[str, SqsQueue]]] = []

    def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        if not built:
            runtime = build_runtime(app, "aws", settings=settings)
            queues = [runtime.invocations]
            if isinstance(runtime.executor, QueueExecutor):
                queues.append(runtime.executor.queue)
            by_name = {_native_name(q): q for q in queues if isinstance(q, SqsQueue)}
            built.append((runtime, BatchProcessor(runtime), by_name))
        _, processor, by_name = built[0]
        remaining = context.get_remaining_time_in_millis() / 1000 if context else 60.0
        deadline = time.monotonic() + max(1.0, remaining - SAFETY_MARGIN)
        groups: dict[str, list[Mapping[str, Any]]] = {}
        for record in event.get("Records", []):
            groups.setdefault(str(record["eventSourceARN"]).rsplit(":", 1)[-1], []).append(record)
        failures: list[dict[str, str]] = []
        for name, records in groups.items():
            source = by_name.get(name)
            if source is None:  # not one of this app's queues: let Lambda retry it elsewhere
                failures += [{"itemIdentifier": str(r["messageId"])} for r in records]
                continue
            deliveries = [delivery_from_record(record) for record in records]
            failed = {id(d) for d in processor.process(source, deliveries, deadline=deadline)}
            failures += [
                {"itemIdentifier": str(record["messageId"])}
                for record, delivery in zip(records, deliveries, strict=True)
                if id(delivery) in failed
            ]
        return {"batchItemFailures": failures}

    return handler


def delivery_from_record(record: Mapping[str, Any]) -> Delivery:
    """The `Delivery` an SQS event record carries, decoded as `SqsQueue.receive` decodes
    the same message (Lambda base64-encodes binary attributes; boto3 does not)."""
    attributes: dict[str, dict[str, Any]] = {}
    for name, value in (record.get("messageAttributes") or {}).items():
        if value.get("binaryValue") is not None:
            attributes[name] = {"BinaryValue": base64.b64decode(value["binaryValue"])}
        else:
            attributes[name] = {"StringValue": value.get("stringValue")}
    return SqsQueue._delivery(
        {
            "Body": record.get("body", ""),
            "MessageId": record["messageId"],
            "ReceiptHandle": record["receiptHandle"],
            "Attributes": record.get("attributes") or {},
            "MessageAttributes": attributes,
        }
    )


def _native_name(queue: SqsQueue) -> str:
    return queue.url.rstrip("/").rsplit("/", 1)[-1]
