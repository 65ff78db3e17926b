"""Workflows end to end on the local provider (memory and SQLite), through the public API."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import switchboard as sb
from switchboard import wire
from switchboard.context import current_workflow
from switchboard.errors import SerializationError, UnknownName

Open = Callable[..., sb.Client]


def test_chain_and_plain_call(run_app: Open) -> None:
    app = sb.App("chain")

    @app.task
    def add(x: int) -> int:
        return x + 1

    @app.workflow
    def chain(ctx: sb.Context, n: int) -> int:
        x = 0
        for _ in range(n):
            x = add(x)
        return x

    assert add(41) == 42, "a task called outside a workflow is a plain call"
    client = run_app(app)
    run_id = client.start("chain", n=50)
    status = client.wait(run_id, timeout=30)
    assert status.status == "completed" and status.output == 50
    completed = [e for e in client.history(run_id) if e.type == "step.completed"]
    assert [e.data["seq"] for e in completed] == list(range(50))


def test_a_task_sees_one_context_of_its_own_and_calls_tasks_plainly(run_app: Open) -> None:
    """In a task (run inline in the workflow's thread or not) `current_task()` is the
    same object on every call and in the task's own threads and coroutines, no workflow
    is current, and calling another task is a plain call. Cache changes made through it
    reach the workflow; a task that never asks sends no change."""
    app = sb.App("contexts")

    @app.task
    def add(x: int) -> int:
        return x + 1

    @app.task
    def inspect(label: str) -> dict[str, Any]:
        first = sb.current_task()
        in_thread: list[Any] = []
        worker = threading.Thread(
            target=contextvars.copy_context().run,
            args=(lambda: in_thread.append(sb.current_task()),),
        )
        worker.start()
        worker.join()
        in_coroutine = asyncio.run(_current_task_in_a_coroutine())
        first.cache[label] = first.cache["count"]
        return {
            "same": sb.current_task() is first and in_thread == [first],
            "same_in_coroutine": in_coroutine is first,
            "no_workflow": current_workflow() is None,
            "plain_call": add(1),
            "step": [first.step, first.attempt, first.idempotency_key.endswith(":0")],
        }

    @app.task
    def untouched() -> str:
        return "ok"

    @app.workflow
    def run(ctx: sb.Context) -> dict[str, Any]:
        ctx.cache["count"] = 7
        inside = inspect("a")
        untouched()
        return {"inside": inside, "cache": dict(ctx.cache)}

    client = run_app(app)
    run_id = client.start("run")
    output = client.wait(run_id, timeout=30).output
    assert output["inside"] == {
        "same": True,
        "same_in_coroutine": True,
        "no_workflow": True,
        "plain_call": 2,
        "step": [0, 1, True],
    }
    assert output["cache"] == {"count": 7, "a": 7}
    completed = [e for e in client.history(run_id) if e.type == "step.completed"]
    assert ["cache" in e.data for e in completed] == [True, False]


async def _current_task_in_a_coroutine() -> Any:
    return sb.current_task()


def test_parallel_fan_out_and_cache_branch(run_app: Open) -> None:
    app = sb.App("fanout")

    @app.task
    def square(x: int) -> int:
        return x * x

    @app.task
    def mark() -> str:
        sb.current_task().cache["marked"] = True
        return "marked"

    @app.task
    def branch(label: str) -> str:
        return label

    @app.workflow
    def fan(ctx: sb.Context, width: int) -> dict[str, Any]:
        ctx.cache["width"] = width
        squares = ctx.parallel(*[ctx.call(square, i) for i in range(width)])
        mark()
        taken = branch("yes") if ctx.cache.get("marked") else branch("no")
        return {"sum": sum(squares), "taken": taken, "cache": ctx.cache}

    client = run_app(app)
    status = client.wait(client.start("fan", width=100), timeout=60)
    assert status.output == {
        "sum": sum(i * i for i in range(100)),
        "taken": "yes",
        "cache": {"width": 100, "marked": True},
    }


def test_retries_then_success_and_exhausted(run_app: Open) -> None:
    app = sb.App("retry")
    attempts: dict[str, int] = {}

    @app.task(retries=3, retry_delay=0.01)
    def flaky(key: str, fail_times: int) -> int:
        attempts[key] = attempts.get(key, 0) + 1
        if attempts[key] <= fail_times:
            raise ConnectionError(f"attempt {attempts[key]} failed")
        return sb.current_task().attempt

    @app.workflow
    def run(ctx: sb.Context, key: str, fail_times: int) -> int:
        return flaky(key, fail_times)

    client = run_app(app)
    assert client.wait(client.start("run", key="a", fail_times=2), timeout=30).output == 3
    with pytest.raises(sb.RunFailed) as failed:
        client.wait(client.start("run", key="b", fail_times=10), timeout=30)
    error = failed.value.status.error
    assert error is not None and error["type"] == "TaskFailed"
    assert "ConnectionError: attempt 4 failed" in error["message"]
    assert attempts["b"] == 4, "retries=3 means four attempts in all"


def test_non_retryable_error_skips_retries(run_app: Open) -> None:
    app = sb.App("nonretry")
    calls = []

    @app.task(retries=5, retry_delay=0.01)
    def refuse() -> None:
        calls.append(1)
        raise sb.NonRetryableError("card declined")

    @app.workflow
    def run(ctx: sb.Context) -> str:
        try:
            refuse()
        except sb.TaskFailed as exc:
            return f"{exc.error_type}: {exc.message}"
        return "unreachable"

    client = run_app(app)
    assert client.wait(client.start("run"), timeout=30).output == "NonRetryableError: card declined"
    assert len(calls) == 1


def test_workflow_error_is_kept_with_traceback(run_app: Open) -> None:
    app = sb.App("broken")

    @app.workflow
    def boom(ctx: sb.Context) -> None:
        raise ValueError("bad order")

    client = run_app(app)
    with pytest.raises(sb.RunFailed) as failed:
        client.wait(client.start("boom"), timeout=30)
    error = failed.value.status.error
    assert error is not None
    assert (error["type"], error["message"]) == ("ValueError", "bad order")
    assert "raise ValueError" in error["traceback"]
    assert client.status(failed.value.status.run_id).status == "failed"


def test_task_timeout_then_retry(run_app: Open) -> None:
    app = sb.App("timeouts")

    @app.task(timeout=0.3, retries=1, retry_delay=0.01)
    def slow(delay: float) -> str:
        if sb.current_task().attempt == 1:
            time.sleep(delay)
        return f"attempt {sb.current_task().attempt}"

    @app.workflow
    def run(ctx: sb.Context) -> str:
        return slow(1.0)

    client = run_app(app, workers=4)
    assert client.wait(client.start("run"), timeout=30).output == "attempt 2"


def test_async_task(run_app: Open) -> None:
    app = sb.App("asyncs")

    @app.task
    async def fetch(x: int) -> int:
        await asyncio.sleep(0.01)
        return x * 2

    @app.workflow
    def run(ctx: sb.Context) -> list[int]:
        return [fetch(1), *ctx.parallel(ctx.call(fetch, 2), ctx.call(fetch, 3))]  # type: ignore[list-item]

    client = run_app(app)
    assert client.wait(client.start("run"), timeout=30).output == [2, 4, 6]


def test_durable_sleep(run_app: Open) -> None:
    app = sb.App("sleepy")

    @app.workflow
    def nap(ctx: sb.Context, seconds: float) -> str:
        ctx.sleep(seconds)
        return "rested"

    client = run_app(app)
    started = time.monotonic()
    run_id = client.start("nap", seconds=0.5)
    time.sleep(0.2)
    assert client.status(run_id).status == "waiting"
    assert client.wait(run_id, timeout=30).output == "rested"
    assert time.monotonic() - started >= 0.5


def test_wait_for_event_signal_buffering_and_timeout(run_app: Open) -> None:
    app = sb.App("events")

    @app.workflow
    def approve(ctx: sb.Context) -> Any:
        first = ctx.wait_for_event("approved")
        try:
            ctx.wait_for_event("second", timeout=0.3)
        except sb.EventTimeout:
            return {"first": first, "second": "timed out"}
        return "unreachable"

    client = run_app(app)
    run_id = client.start("approve")
    while client.status(run_id).status != "waiting":
        time.sleep(0.02)
    client.signal(run_id, "approved", {"by": "ops"})
    assert client.wait(run_id, timeout=30).output == {"first": {"by": "ops"}, "second": "timed out"}

    @app.workflow
    def early(ctx: sb.Context) -> Any:
        ctx.sleep(0.3)
        return ctx.wait_for_event("go")

    run_id = client.start("early")
    client.signal(run_id, "go", 7)  # before the workflow waits: kept for it
    assert client.wait(run_id, timeout=30).output == 7


def test_cancel(run_app: Open) -> None:
    app = sb.App("cancels")

    @app.workflow
    def forever(ctx: sb.Context) -> None:
        ctx.wait_for_event("never")

    client = run_app(app)
    run_id = client.start("forever")
    while client.status(run_id).status != "waiting":
        time.sleep(0.02)
    client.cancel(run_id)
    with pytest.raises(sb.RunFailed) as failed:
        client.wait(run_id, timeout=30)
    assert failed.value.status.status == "cancelled"
    assert client.list(status="cancelled")[0].run_id == run_id


def test_external_completion_by_token(run_app: Open) -> None:
    app = sb.App("tokens")
    handed: list[str] = []

    @app.task
    def ask() -> Any:
        handed.append(sb.current_task().token)
        return sb.pending()

    @app.workflow
    def run(ctx: sb.Context) -> Any:
        answer = ask()
        try:
            ask()
        except sb.TaskFailed as exc:
            return {"answer": answer, "second": exc.message}
        return "unreachable"

    client = run_app(app)
    run_id = client.start("run")
    deadline = time.monotonic() + 10
    while not handed and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(sb.InvalidToken):
        client.complete(handed[0][:-4] + "AAAA", "forged")
    client.complete(handed[0], {"ok": True})
    with pytest.raises(sb.TokenAlreadyUsed):
        client.complete(handed[0], "again")
    while len(handed) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    client.fail(handed[1], "vendor said no")
    status = client.wait(run_id, timeout=30)
    assert status.output == {"answer": {"ok": True}, "second": "vendor said no"}


def test_five_megabyte_payloads(run_app: Open) -> None:
    app = sb.App("big")

    @app.task
    def double(blob: str) -> str:
        return blob + blob

    @app.workflow
    def run(ctx: sb.Context, blob: str) -> str:
        return double(blob)

    blob = "x" * (5 * 1024 * 1024 // 2) + "é"
    client = run_app(app)
    assert client.wait(client.start("run", blob=blob), timeout=60).output == blob + blob


def test_two_hundred_concurrent_runs(run_app: Open) -> None:
    app = sb.App("many")

    @app.task
    def inc(x: int) -> int:
        return x + 1

    @app.workflow
    def run(ctx: sb.Context, start: int) -> int:
        x = start
        for _ in range(5):
            x = inc(x)
        return x

    client = run_app(app)
    run_ids = [client.start("run", start=i) for i in range(200)]
    assert [client.wait(r, timeout=120).output for r in run_ids] == [i + 5 for i in range(200)]


def test_idempotent_start_by_run_id(run_app: Open) -> None:
    app = sb.App("idem")

    @app.workflow
    def run(ctx: sb.Context, x: int) -> int:
        return x

    client = run_app(app)
    assert client.start("run", x=1, run_id="order-1") == "order-1"
    assert client.start("run", x=1, run_id="order-1") == "order-1"
    with pytest.raises(sb.Conflict):
        client.start("run", x=2, run_id="order-1")
    assert client.wait("order-1", timeout=30).output == 1
    assert len([r for r in client.list() if r.run_id == "order-1"]) == 1


def test_a_start_message_ahead_of_its_run_creates_the_run(run_app: Open) -> None:
    """`start` writes the first entry and sends the message at once; an engine that gets
    the message first creates the run from the entry the message carries."""
    app = sb.App("ahead")

    @app.workflow
    def run(ctx: sb.Context, x: int) -> int:
        return x * 2

    client = run_app(app)
    entry = {
        "v": 1,
        "n": 0,
        "at": time.time(),
        "consumed": [],
        "events": [
            {
                "e": "run.created",
                "app": "ahead",
                "workflow": "run",
                "input": {"args": [], "kwargs": {"x": 21}},
            }
        ],
    }
    # Only the message: no entry, no index record written by a client.
    client.runtime.report(wire.envelope(wire.RUN_START, app="ahead", run="r-ahead", entry=entry))
    deadline = time.monotonic() + 30
    while not [r for r in client.list() if r.run_id == "r-ahead"]:
        assert time.monotonic() < deadline, "the engine never created the run"
        time.sleep(0.02)
    assert client.wait("r-ahead", timeout=30).output == 42
    history = [e.type for e in client.history("r-ahead")]
    assert history.count("run.created") == 1 and history[-1] == "run.completed"


def test_bad_input_is_refused_clearly(run_app: Open) -> None:
    app = sb.App("bad")

    @app.task
    def echo(x: Any) -> Any:
        return x

    @app.task
    def unserialisable() -> Any:
        return object()

    @app.workflow
    def calls_unknown(ctx: sb.Context) -> Any:
        return ctx.call("no_such_task").result()

    @app.workflow
    def returns_object(ctx: sb.Context) -> Any:
        return unserialisable()

    @app.workflow
    def passes_object(ctx: sb.Context) -> Any:
        return echo(threading.Lock())

    client = run_app(app)
    with pytest.raises(UnknownName, match="known workflows: calls_unknown, passes_object"):
        client.start("nope")
    with pytest.raises(SerializationError, match="input of workflow 'calls_unknown'"):
        client.start("calls_unknown", when=object())
    for workflow, expected in [
        ("calls_unknown", "has no task named 'no_such_task'; known tasks: echo, unserialisable"),
        ("returns_object", "result of task 'unserialisable' is not JSON-serializable"),
        ("passes_object", "input of task 'echo' is not JSON-serializable"),
    ]:
        with pytest.raises(sb.RunFailed) as failed:
            client.wait(client.start(workflow), timeout=30)
        error = failed.value.status.error
        assert error is not None and expected in error["message"], error


def test_waiting_on_a_run_this_process_just_finished_reads_nothing(run_app: Open) -> None:
    app = sb.App("recent")

    @app.task
    def echo(value: Any) -> Any:
        return value

    @app.workflow
    def flow(ctx: sb.Context, value: Any) -> Any:
        return echo(value)

    client = run_app(app)
    small = client.start(flow, 7)
    large = client.start(flow, "x" * 10_000)
    for run_id in (small, large):  # finished by the time each is asked about
        deadline = time.monotonic() + 30
        while client.runtime.index.get(run_id)["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.01)
    store: Any = client.runtime.store
    reads: list[str] = []
    get, scan = store.get, store.scan
    store.get = lambda *a, **k: reads.append("get") or get(*a, **k)
    store.scan = lambda *a, **k: reads.append("scan") or scan(*a, **k)
    try:
        assert client.wait(small, timeout=5).output == 7
        assert reads == [], "the final status of a run finished here is kept in memory"
        assert client.wait(large, timeout=5).output == "x" * 10_000
        assert reads, "a large output is not kept: it is read from the store"
    finally:
        store.get, store.scan = get, scan


def test_the_index_follows_an_inline_chain_within_its_lag(run_app: Open) -> None:
    app = sb.App("lagging")

    @app.task
    def step(x: int, pause: float) -> int:
        time.sleep(pause)
        return x + 1

    @app.workflow
    def chain(ctx: sb.Context, n: int, pause: float) -> int:
        x = 0
        for _ in range(n):
            x = step(x, pause)
        return x

    client = run_app(app)
    store: Any = client.runtime.store
    partition = client.runtime.index.partition
    index_writes: list[str] = []
    put = store.put

    def counting_put(where: str, key: str, value: bytes, **kwargs: Any) -> str:
        if where == partition:
            index_writes.append(key)
        return str(put(where, key, value, **kwargs))

    store.put = counting_put
    try:
        quick = client.start(chain, 20, 0.0)
        assert client.wait(quick, timeout=30).output == 20
        assert index_writes.count(quick) == 2, "a chain ending within the lag: pending, then done"
        slow = client.start(chain, 30, 0.05)  # 1.5 s of inline tasks
        deadline = time.monotonic() + 30
        while client.runtime.index.get(slow)["status"] != "running":
            assert time.monotonic() < deadline, "the index never showed the run running"
            time.sleep(0.02)
        assert client.wait(slow, timeout=30).output == 30
    finally:
        store.put = put
