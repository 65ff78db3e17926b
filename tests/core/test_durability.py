"""Crash safety of the durable local mode, and the engine's handling of duplicates,
malformed messages and non-deterministic workflow code."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import switchboard as sb
from switchboard import wire
from switchboard.errors import TransientProviderError

HERE = Path(__file__).parent


def _completed_steps(path: str, run_id: str) -> set[int]:
    from tests.core.crash_app import app

    with sb.local(app, path=path, workers=0) as client:
        return {e.data["seq"] for e in client.history(run_id) if e.type == "step.completed"}


def test_sigkill_mid_run_then_a_fresh_process_resumes(tmp_path: Path) -> None:
    db, log = str(tmp_path / "runs.db"), tmp_path / "executions.log"
    env = {**os.environ, "CRASH_LOG": str(log), "PYTHONPATH": str(HERE.parent.parent)}
    script = str(HERE / "crash_app.py")
    first = subprocess.Popen(
        [sys.executable, script, db, "start", "40"], stdout=subprocess.PIPE, env=env, text=True
    )
    assert first.stdout is not None
    run_id = first.stdout.readline().strip()
    deadline = time.monotonic() + 30
    while (not log.exists() or len(log.read_text().split()) < 10) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    done_before = _completed_steps(db, run_id)
    assert 5 <= len(done_before) < 40, "the kill must land mid-run"

    second = subprocess.run(
        [sys.executable, script, db, "resume", run_id],
        capture_output=True,
        env=env,
        text=True,
        timeout=120,
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == str(sum(range(40)))
    runs = collections.Counter(int(line) for line in log.read_text().split())
    assert set(runs) == set(range(40)), "every step ran"
    again = {step: count for step, count in runs.items() if step in done_before and count > 1}
    assert not again, f"steps completed before the kill ran again after it: {again}"
    # At most the step in flight when the process died runs twice (at-least-once).
    assert sum(runs.values()) <= 41


def _waiting_run(client: sb.Client, workflow: str, **kwargs: Any) -> str:
    run_id = client.start(workflow, **kwargs)
    deadline = time.monotonic() + 10
    while client.status(run_id).status != "waiting":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return run_id


def test_duplicate_results_and_signals_are_harmless(local_mode: str, tmp_path: Path) -> None:
    app = sb.App("dupes")
    tokens: list[str] = []

    @app.task
    def ask() -> Any:
        tokens.append(sb.current_task().token)
        return sb.pending()

    @app.workflow
    def run(ctx: sb.Context) -> Any:
        return {"answer": ask(), "event": ctx.wait_for_event("go"), "cache": ctx.cache}

    path = str(tmp_path / "d.db") if local_mode == "sqlite" else None
    with sb.local(app, path=path) as client:
        run_id = _waiting_run(client, "run")
        runtime = client.runtime
        claims = runtime.signer.verify(tokens[0], app.name)
        result = wire.envelope(
            wire.TASK_RESULT,
            app=app.name,
            run=run_id,
            seq=claims.seq,
            attempt=claims.attempt,
            task="ask",
            outcome="ok",
            result=1,
            cache={"set": {"n": 1}, "del": []},
        )
        for _ in range(3):  # the same message delivered three times
            runtime.report(result)
        late = dict(result, id=wire.new_id(), result=2)  # another result for a settled step
        runtime.report(late)
        signal_message = wire.envelope(
            wire.RUN_SIGNAL, app=app.name, run=run_id, name="go", payload="first"
        )
        runtime.report(signal_message)
        runtime.report(signal_message)
        status = client.wait(run_id, timeout=30)
        assert status.output == {"answer": 1, "event": "first", "cache": {"n": 1}}
        history = client.history(run_id)
        outcomes = collections.Counter(
            e.data["seq"] for e in history if e.type in ("step.completed", "step.failed")
        )
        assert all(count == 1 for count in outcomes.values()), outcomes
        assert sum(e.type == "signal.received" for e in history) == 1


def test_malformed_messages_are_dead_lettered_and_the_worker_goes_on(
    local_mode: str, tmp_path: Path
) -> None:
    app = sb.App("garbage")

    @app.workflow
    def run(ctx: sb.Context) -> str:
        return "still working"

    path = str(tmp_path / "g.db") if local_mode == "sqlite" else None
    with sb.local(app, path=path) as client:
        runtime = client.runtime
        bad = {
            b"\x80\x81 not json": "not JSON",
            b"[1, 2]": "expected a JSON object",
            b'{"v": 99, "kind": "run.start"}': "unsupported wire version 99",
            b'{"v": 1, "kind": "run.explode", "id": "x", "app": "garbage", "run": "r"}': (
                "unknown message kind 'run.explode'"
            ),
            b'{"v": 1, "kind": "task.result", "id": "x", "app": "garbage", "run": "r"}': (
                "task.result field 'seq' must be int"
            ),
            b'{"v": 1, "kind": "run.start", "id": "x", "app": "other", "run": "r"}': (
                "message for app 'other' reached app 'garbage'"
            ),
            b'{"v": 1, "kind": "run.start", "id": "x", "app": "garbage", "run": "nope"}': (
                "no run with id 'nope'"
            ),
        }
        runtime.invocations.send(list(bad))
        assert client.wait(client.start("run"), timeout=30).output == "still working"
        dead = runtime.invocations.dead_letters()
        found: dict[bytes, str | None] = {}
        deadline = time.monotonic() + 10
        while len(found) < len(bad) and time.monotonic() < deadline:
            for delivery in dead.receive(10, wait=0.2):
                found[delivery.body] = delivery.reason
                dead.ack([delivery])
        assert set(found) == set(bad), "every malformed message is kept, body intact"
        for body, reason in found.items():
            assert reason is not None and bad[body] in reason, (body, reason)


def test_changed_workflow_code_fails_with_nondeterminism(tmp_path: Path) -> None:
    path = str(tmp_path / "nd.db")
    app = sb.App("drift")
    version = {"calls": "a"}

    @app.task
    def a() -> str:
        return "a"

    @app.task
    def b() -> str:
        return "b"

    @app.workflow
    def run(ctx: sb.Context) -> Any:
        first = a() if version["calls"] == "a" else b()
        return [first, ctx.wait_for_event("go")]

    with sb.local(app, path=path) as client:
        run_id = _waiting_run(client, "run")
    version["calls"] = "b"  # a deploy changed the code under a live run
    with sb.local(app, path=path) as client:
        client.signal(run_id, "go")
        with pytest.raises(sb.RunFailed) as failed:
            client.wait(run_id, timeout=30)
    error = failed.value.status.error
    assert error is not None and error["type"] == "NonDeterminismError"
    assert "step 0" in error["message"] and "'a'" in error["message"] and "'b'" in error["message"]


def test_a_run_survives_a_clean_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "restart.db")
    app = sb.App("restart")

    @app.task
    def double(x: int) -> int:
        return 2 * x

    @app.workflow
    def run(ctx: sb.Context, x: int) -> int:
        y = double(x)
        ctx.sleep(0.5)
        return double(y)

    with sb.local(app, path=path) as client:
        run_id = client.start("run", x=5)
        time.sleep(0.2)
    with sb.local(app, path=path) as client:
        assert client.wait(run_id, timeout=30).output == 20


def test_a_stale_live_run_reloads_instead_of_dropping_a_result() -> None:
    """Two engines share one run: the one whose live copy is behind must not take a result
    for a step it has never seen as a duplicate (found by the GCP seed test)."""
    from switchboard.executors import queue_executor
    from switchboard.providers.local.queue import MemoryBroker
    from switchboard.providers.local.state import MemoryStateStore
    from switchboard.runtime import Runtime

    app = sb.App("stale")
    tokens: list[str] = []

    @app.task
    def work() -> int:
        return 1

    @app.task
    def ask() -> Any:
        tokens.append(sb.current_task().token)
        return sb.pending()

    @app.workflow
    def flow(ctx: sb.Context) -> Any:
        work()
        return ask()

    broker, store = MemoryBroker(), MemoryStateStore()
    engines = [
        Runtime(app, broker, store, queue_executor, None, close_components=False) for _ in range(2)
    ]
    a, b = engines
    client = sb.Client(a)
    invocations, tasks = a.invocations, a.channel("tasks")

    def feed(runtime: Runtime) -> None:
        (delivery,) = invocations.receive(1, wait=2)
        assert runtime.engine.handle(delivery).result(10).action == "ack"
        invocations.ack([delivery])

    def run_task() -> None:
        (delivery,) = tasks.receive(1, wait=2)
        a.task_runner.run(delivery.body)
        tasks.ack([delivery])

    run_id = client.start("flow")
    feed(b)  # run.start: B's live copy schedules step 0
    run_task()
    feed(a)  # A records step 0 and schedules step 1
    run_task()
    feed(a)  # step 1 is pending
    client.complete(tokens[0], "done")
    feed(b)  # B never saw step 1: it must reload, not drop the result
    assert client.wait(run_id, timeout=10).output == "done"
    for runtime in engines:
        runtime.close()


def _one_held_task(name: str) -> tuple[sb.App, threading.Event]:
    """An app whose workflow `once` runs one task, `hold`, that returns "held" once the
    event is set."""
    app = sb.App(name)
    release = threading.Event()

    @app.task
    def hold() -> str:
        release.wait(30)
        return "held"

    @app.workflow
    def once(ctx: sb.Context) -> str:
        return hold()

    return app, release


def test_a_worker_starts_its_own_runs_without_a_trip_through_the_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`client.start` in a worker process claims the start message as it sends it
    (`ClaimingQueue.send_claimed`): its own engine runs the run at once, no `receive`
    anywhere returns the message, and another worker polling the queue does not get it."""
    from switchboard.providers.local.queue import SqliteBroker, SqliteQueue

    received: list[bytes] = []
    receive = SqliteQueue.receive

    def recording(self: SqliteQueue, *args: Any, **kwargs: Any) -> list[Any]:
        got = receive(self, *args, **kwargs)
        received.extend(d.body for d in got)
        return got

    monkeypatch.setattr(SqliteQueue, "receive", recording)
    app, release = _one_held_task("eager")
    path = str(tmp_path / "runs.db")
    with sb.local(app, path=path) as client:
        run_id = client.start("once")
        other = SqliteBroker(path)
        try:
            rival = other.queue(client.runtime.invocations.name)
            assert rival.receive(10, wait=0.5, lease=30) == []
        finally:
            other.close()
            release.set()
        assert client.wait(run_id, timeout=30).output == "held"
    starts = [body for body in received if wire.loads(body).get("kind") == wire.RUN_START]
    assert starts == [], "the start message went through the queue"


def test_status_shows_a_run_running_its_first_inline_step(local_mode: str, tmp_path: Path) -> None:
    """The entry that starts a run and schedules its first step is written while that step
    runs inline: `client.status` says running, with the step open, before it ends."""
    app, release = _one_held_task("first-step")
    path = str(tmp_path / "runs.db") if local_mode == "sqlite" else None
    with sb.local(app, path=path) as client:
        run_id = client.start("once")
        try:
            deadline = time.monotonic() + 10
            status = client.status(run_id)
            while status.status != "running" and time.monotonic() < deadline:
                time.sleep(0.01)
                status = client.status(run_id)
            assert status.status == "running"
            assert [step.name for step in status.steps] == ["hold"]
        finally:
            release.set()
        assert client.wait(run_id, timeout=30).output == "held"


class _OutageStore:
    """A state store whose history writes fail transiently `failures` times from entry
    `from_entry` on: an outage longer than the engine's retries."""

    def __init__(self, inner: Any, from_entry: int, failures: int) -> None:
        self._inner, self._from, self.failures = inner, from_entry, failures

    def put(self, partition: str, key: str, value: bytes, **kwargs: Any) -> str:
        if key.startswith("h/") and int(key[2:]) >= self._from and self.failures > 0:
            self.failures -= 1
            raise TransientProviderError("injected: the store is down")
        return str(self._inner.put(partition, key, value, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_store_outage_beyond_the_retries_is_retried_not_the_runs_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An engine error under a running workflow (here a history write failing past
    `retrying`) is not the workflow's exception: the workflow cannot catch it, the run
    does not fail, and its messages come back until the store does."""
    from switchboard import engine
    from switchboard.client import Client
    from switchboard.executors import queue_executor
    from switchboard.providers.local.queue import MemoryBroker
    from switchboard.providers.local.state import MemoryStateStore
    from switchboard.retry import retrying
    from switchboard.runtime import Runtime

    # Two quick attempts per operation, so the outage (three failures) outlasts them.
    monkeypatch.setattr(engine, "retrying", lambda op: retrying(op, attempts=2, first_delay=0))
    app = sb.App("outage")
    caught: list[BaseException] = []

    @app.task
    def inc(x: int) -> int:
        return x + 1

    @app.workflow
    def chain(ctx: sb.Context, n: int) -> int:
        x = 0
        for _ in range(n):
            try:
                x = inc(x)
            except Exception as exc:  # what a workflow must never see of an outage
                caught.append(exc)
                raise
        return x

    store = _OutageStore(MemoryStateStore(), from_entry=3, failures=3)
    runtime = Runtime(app, MemoryBroker(), store, queue_executor, None, workers=2)  # type: ignore[arg-type]
    with Client(runtime) as client:
        run_id = client.start(chain, 5)
        assert client.wait(run_id, timeout=60).output == 5
        events = [event.type for event in client.history(run_id)]
    assert store.failures == 0, "the outage was never hit"
    assert caught == []
    assert "run.failed" not in events


def test_a_worker_claims_its_starts_only_while_it_has_room() -> None:
    """Claimed starts count against the consumer's `max_inflight` like received messages:
    past it, `client.start` sends the message as usual, and the run waits in the queue."""
    from switchboard.client import Client
    from switchboard.executors import queue_executor
    from switchboard.providers.local.queue import MemoryBroker
    from switchboard.providers.local.state import MemoryStateStore
    from switchboard.runtime import Runtime

    app, release = _one_held_task("room")
    runtime = Runtime(
        app, MemoryBroker(), MemoryStateStore(), queue_executor, None, workers=2, max_inflight=1
    )
    with Client(runtime) as client:
        run_ids = [client.start("once") for _ in range(4)]
        try:
            time.sleep(0.3)
            # One claimed, and at most one more from a receive that was already waiting.
            held = runtime.consumers[0].holding
            assert 1 <= held <= 2
            assert runtime.engine.live_runs == held
            waiting = runtime.invocations.receive(10, wait=0.2, lease=30)
            assert len(waiting) == 4 - held, "the starts beyond max_inflight wait in the queue"
            for delivery in waiting:
                runtime.invocations.release(delivery)
        finally:
            release.set()
        assert [client.wait(run_id, timeout=30).output for run_id in run_ids] == ["held"] * 4
