"""AWS Lambda entry point: SQS event batches from the invocations and tasks queues, and
task invocations sent by the `aws.lambda` executor.

    handler = lambda_handler(app)   # at module level in the function's code

Point the event source mappings of both queues at it, with ReportBatchItemFailures on:
Lambda deletes what succeeded and retries what the handler lists in `batchItemFailures`.
Which queue a record came from is told by the queue name in its `eventSourceARN`.
Malformed messages are dead-lettered here with their reason, so they never fail a batch
forever. The runtime (`workers=0`: no consumers) is built on the first event and kept
while the container is warm, so live runs stay cached between invocations.

An event that is a `task.invoke` message itself (no `Records`) comes from the
`aws.lambda` executor's asynchronous Invoke: the task runs and its outcome is reported on
the invocations queue. The handler raises only when that report could not be sent, so
Lambda's own retries (two for asynchronous events) send it again.

Settings are those of `sb.connect(app, "aws", ...)`; the environment fills the rest
(`switchboard aws template` sets them). `executor` defaults to `SWITCHBOARD_EXECUTOR`,
else the tasks queue.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from switchboard import wire
from switchboard.app import App
from switchboard.errors import MalformedMessage, SerializationError
from switchboard.executors import QueueExecutor
from switchboard.interfaces import Delivery
from switchboard.providers.aws.queue import SqsQueue
from switchboard.runtime import Runtime
from switchboard.serverless import ServerlessRuntime

log = logging.getLogger("switchboard.aws")

#: Seconds kept back from the function's time limit to report the batch's failures.
SAFETY_MARGIN = 2.0
#: Used when the context gives no remaining time (a test calling the handler bare).
_DEFAULT_SECONDS = 60.0

Handler = Callable[[Mapping[str, Any], Any], dict[str, Any]]


# One runtime per app and settings in this process (a Lambda container), however often
# `lambda_handler` is called.
_BUILT: dict[tuple[int, str | None, bool, tuple[tuple[str, str], ...]], ServerlessRuntime] = {}
_BUILD_LOCK = threading.Lock()


def lambda_handler(
    app: App, *, executor: str | None = None, inline_tasks: bool = True, **settings: Any
) -> Handler:
    """A Lambda handler running `app` on the aws provider configured by `settings` (and
    the standard AWS environment variables).

    With `inline_tasks` (the default) the workflow function runs a lone awaited task
    itself, during the first half of its invocation's time, instead of sending it to the
    task function: a chain of quick tasks then costs no queue requests and no Lambda
    invocations per step. Turn it off to run every task in the task function (its own
    role, memory and timeout).
    """
    chosen = executor if executor is not None else os.environ.get("SWITCHBOARD_EXECUTOR")
    key = (
        id(app),
        chosen,
        inline_tasks,
        tuple(sorted((name, _identity(v)) for name, v in settings.items())),
    )

    with _BUILD_LOCK:
        serverless = _BUILT.setdefault(
            key,
            ServerlessRuntime(
                app, "aws", executor=chosen, inline_tasks=inline_tasks, settings=settings
            ),
        )

    def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        runtime = serverless.runtime
        if "Records" not in event:
            return _run_task(runtime, event)
        queues = [runtime.invocations]
        if isinstance(runtime.executor, QueueExecutor):
            queues.append(runtime.executor.queue)
        by_name = {_native_name(q): q for q in queues if isinstance(q, SqsQueue)}
        remaining = context.get_remaining_time_in_millis() / 1000 if context else _DEFAULT_SECONDS
        deadline = time.monotonic() + max(1.0, remaining - SAFETY_MARGIN)
        groups: dict[str, list[Mapping[str, Any]]] = {}
        for record in event["Records"]:
            name = str(record.get("eventSourceARN", "")).rsplit(":", 1)[-1]
            groups.setdefault(name, []).append(record)
        failures: list[dict[str, str]] = []
        for name, records in groups.items():
            source = by_name.get(name)
            if source is None:  # not one of this app's queues: never ours to settle
                log.error("records from %r, which is no queue of app %r", name, app.name)
                failures += [{"itemIdentifier": str(r["messageId"])} for r in records]
                continue
            deliveries = [delivery_from_record(record) for record in records]
            failed = {
                id(d) for d in serverless.processor.process(source, deliveries, deadline=deadline)
            }
            failures += [
                {"itemIdentifier": str(record["messageId"])}
                for record, delivery in zip(records, deliveries, strict=True)
                if id(delivery) in failed
            ]
        return {"batchItemFailures": failures}

    return handler


def _identity(value: Any) -> str:
    """A setting as part of the runtime cache's key: plain values by value, objects (a
    boto3 session) by identity, since two sessions can print alike."""
    if value is None or isinstance(value, str | int | float | bool):
        return repr(value)
    return f"{type(value).__qualname__}@{id(value)}"


def _run_task(runtime: Runtime, event: Mapping[str, Any]) -> dict[str, Any]:
    """Run a `task.invoke` event from the `aws.lambda` executor. A malformed one is logged
    and dropped (a retry cannot mend it); a failed report raises, for Lambda to retry."""
    try:
        body = wire.dumps(dict(event), what="the task event")
        runtime.task_runner.run(body)
    except (MalformedMessage, SerializationError) as exc:
        log.error(
            "dropping an event that is no task invocation of app %r: %s", runtime.app.name, exc
        )
        return {"status": "malformed", "reason": str(exc)}
    return {"status": "reported"}


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
