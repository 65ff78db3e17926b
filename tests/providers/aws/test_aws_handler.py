"""The Lambda handler, fed real-shaped SQS events whose messages really sit in moto's SQS."""

from __future__ import annotations

import threading
import time
from typing import Any

import switchboard as sb
from switchboard.providers.aws.config import AwsConfig
from switchboard.providers.aws.handlers import lambda_handler
from tests.emulators.lambda_sqs import deliver_batch


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
                batch = deliver_batch(sqs_client, url, handler)
                if batch is not None:
                    reported += batch.failed
        assert client.wait(run_id, timeout=5).output == 11 + (1 + 2 + 3)
        assert not reported, "nothing in these batches needed a retry"
        dead = client.runtime.invocations.dead_letters().receive(10, wait=1)
        assert sorted((d.body, (d.reason or "")[:9]) for d in dead) == [
            (b"not json at all", "not JSON:"),
            (b"\xff\x00binary garbage", "not JSON:"),
        ]


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
                # A short visibility timeout stands for the queue's, to keep the test short;
                # 3 s left, 2 s kept back: the batch has about a second.
                batch = deliver_batch(sqs_client, url, handler, visibility=3, remaining_ms=3_000)
                if batch is not None:
                    batches.append((url, batch.message_ids, batch.failed))
            time.sleep(0.1)
        assert client.wait(run_id, timeout=5).output == [0, 10, 20]
    partial = [(ids, failed) for url, ids, failed in batches if failed]
    assert len(partial) == 1, batches
    ids, failed = partial[0]
    assert len(failed) == 1 and len(ids) > 1 and failed[0] in ids, batches
    # The failed message came back (Lambda left it on the queue) and was handled again.
    assert sum(failed[0] in ids for url, ids, _ in batches if url == tasks_url) == 2, batches
