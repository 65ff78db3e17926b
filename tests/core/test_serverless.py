"""The provider-neutral batch processor behind every serverless entry point."""

from __future__ import annotations

import json
import time

import switchboard as sb
from switchboard.engine import ACK
from switchboard.runtime import build_runtime
from switchboard.serverless import BatchProcessor


def test_batches_drive_a_run_to_completion_and_dead_letter_garbage() -> None:
    app = sb.App("lambda")

    @app.task
    def add(x: int) -> int:
        return x + 1

    @app.workflow
    def run(ctx: sb.Context, n: int) -> int:
        x = 0
        for _ in range(n):
            x = add(x)
        return x + sum(ctx.parallel(*[ctx.call(add, i) for i in range(3)]))

    # No workers: nothing consumes the queues but our simulated trigger.
    runtime = build_runtime(app, "local", executor="queue", inline_tasks=False)
    client, processor = sb.Client(runtime), BatchProcessor(runtime)
    tasks = runtime.executor.queue  # type: ignore[attr-defined]
    run_id = client.start("run", n=3)
    runtime.invocations.send([b"garbage"])
    deadline = time.monotonic() + 30
    while client.status(run_id).status not in ("completed", "failed"):
        assert time.monotonic() < deadline
        for source in (runtime.invocations, tasks):
            batch = source.receive(10, wait=0.05)
            failed = processor.process(source, batch, deadline=time.monotonic() + 10)
            # What the trigger does: delete what succeeded, let failures come back.
            source.ack([d for d in batch if d not in failed])
            for delivery in failed:
                source.release(delivery)
    assert client.wait(run_id, timeout=5).output == 3 + 1 + 2 + 3
    dead = runtime.invocations.dead_letters().receive(10)
    assert [(d.body, d.reason) for d in dead] == [
        (b"garbage", "not JSON: Expecting value: line 1 column 1 (char 0)")
    ]
    client.close()


def _chain_app(name: str) -> sb.App:
    app = sb.App(name)

    @app.task
    def add(x: int) -> int:
        return x + 1

    @app.workflow
    def run(ctx: sb.Context, n: int) -> int:
        x = 0
        for _ in range(n):
            x = add(x)
        return x

    return app


def test_with_inline_tasks_one_invocation_runs_a_whole_chain() -> None:
    runtime = build_runtime(_chain_app("inline"), "local", executor="queue", inline_tasks=True)
    client, processor = sb.Client(runtime), BatchProcessor(runtime)
    tasks = runtime.executor.queue  # type: ignore[attr-defined]
    run_id = client.start("run", n=20)
    batch = runtime.invocations.receive(10, wait=1.0)
    assert processor.process(runtime.invocations, batch, deadline=time.monotonic() + 30) == []
    runtime.invocations.ack(batch)
    assert client.wait(run_id, timeout=5).output == 20
    assert tasks.receive(10) == [], "no task left the workflow function"
    client.close()


def test_a_delivery_past_its_settle_by_sends_tasks_to_the_executor() -> None:
    runtime = build_runtime(_chain_app("budget"), "local", executor="queue", inline_tasks=True)
    client = sb.Client(runtime)
    tasks = runtime.executor.queue  # type: ignore[attr-defined]
    run_id = client.start("run", n=3)
    (delivery,) = runtime.invocations.receive(10, wait=1.0)
    # No time left to run anything inline: the task goes out and the delivery settles.
    future = runtime.engine.handle(delivery, settle_by=time.monotonic())
    assert future.result(timeout=10) == ACK
    (invoke,) = tasks.receive(10, wait=1.0)
    assert json.loads(invoke.body)["seq"] == 0
    assert client.status(run_id).status == "running"
    client.close()
