"""Real workflows end to end on the provider under test: `WorkflowConformance` and
`ExecutorConformance`.

Every run's messages travel on the provider's queues, its history lives in the provider's
state store, and (in `ExecutorConformance`, and wherever a task is not run inline) its
tasks go through the executor. Subclass and override `broker`, `state_store` and, for a
provider with its own executor, `executor`; or run with `--sb-provider NAME`.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import switchboard as sb
from switchboard import history, wire
from switchboard.client import Client
from switchboard.executors import queue_executor
from switchboard.interfaces import Broker, ExecutorFactory, StateStore
from switchboard.runtime import Runtime
from switchboard_conformance.fixtures import (
    Conformance,
    ConformanceTiming,
    chosen_provider,
    unique_name,
)
from switchboard_conformance.guarantees import Guarantee, checks, guarantee

# -- the guarantees: DESIGN §7 and the Executor protocol ----------------------------------------

CHAIN = Guarantee(
    "Workflow", "call", "A chain of task calls runs step after step and returns the last result"
)
FAN_OUT = Guarantee(
    "Workflow",
    "parallel",
    "Steps scheduled together all run, and their results come back in call order",
)
CACHE = Guarantee(
    "Workflow",
    "cache",
    "A task's cache changes reach the workflow when it takes that task's result",
)
RETRIES = Guarantee(
    "Workflow",
    "retries",
    "A failing task is retried up to its retries; then the workflow sees TaskFailed",
)
SLEEP = Guarantee(
    "Workflow", "sleep", "ctx.sleep resumes the workflow no earlier than its duration"
)
SIGNAL = Guarantee(
    "Workflow", "wait_for_event", "A signal reaches wait_for_event, even one sent before the wait"
)
TOKEN = Guarantee(
    "Workflow",
    "complete",
    "A pending task finishes by its token; a forged or reused token is refused",
)
CANCEL = Guarantee("Workflow", "cancel", "A cancelled run ends with status cancelled")
PAYLOAD = Guarantee(
    "Workflow", "claim check", "Inputs and outputs beyond the provider's limits round-trip exactly"
)
CONCURRENT = Guarantee(
    "Workflow", "runs", "Many concurrent runs each complete with their own output"
)
ONCE = Guarantee("Workflow", "history", "Each step's outcome is recorded exactly once")
EXECUTOR_RUNS = Guarantee(
    "Executor",
    "submit",
    "each submitted invocation is run at least once and its outcome (a result, or an error "
    "with type, message and traceback) reaches the invocations queue",
)


@dataclass(frozen=True)
class ExecutorChoice:
    """How the runtime under test builds its executor."""

    factory: ExecutorFactory
    config: Any = None


Open = Callable[..., Client]


def assert_each_outcome_once(store: StateStore, run_id: str) -> None:
    """No step attempt has two outcomes in the run's history."""
    outcomes = collections.Counter(
        (event.data["seq"], event.data.get("attempt", 1))
        for event in history.events(wire.Blobs(store), store, run_id)
        if event.type in ("step.completed", "step.failed")
    )
    twice = {step: count for step, count in outcomes.items() if count > 1}
    assert not twice, guarantee(ONCE, f"run {run_id}: (step, attempt) -> outcomes {twice}")


class _Runs(Conformance):
    """Fixtures that build a runtime on the provider's components."""

    #: Task workers in the runtime under test.
    workers = 4

    @pytest.fixture
    def broker(self, request: pytest.FixtureRequest) -> Iterator[Broker]:
        """The queues the runs use; override it in your subclass."""
        choice = chosen_provider(request, "broker", "a fresh switchboard.interfaces.Broker")
        if choice.spec.broker is None:
            pytest.fail(f"the {choice.name} provider offers no queues", pytrace=False)
        made = choice.spec.broker(choice.config)
        yield made
        made.close()

    @pytest.fixture
    def state_store(self, request: pytest.FixtureRequest) -> Iterator[StateStore]:
        """The state store the runs use; override it in your subclass."""
        choice = chosen_provider(
            request, "state_store", "a fresh switchboard.interfaces.StateStore"
        )
        if choice.spec.state is None:
            pytest.fail(f"the {choice.name} provider offers no state store", pytrace=False)
        made = choice.spec.state(choice.config)
        yield made
        made.close()

    @pytest.fixture
    def executor(self, request: pytest.FixtureRequest) -> ExecutorChoice:
        """The executor: the provider's default one, else the core QueueExecutor."""
        choice = request.config.stash.get(_provider_key(), None)
        if choice is not None and "default" in choice.spec.executors:
            return ExecutorChoice(choice.spec.executors["default"], choice.config)
        return ExecutorChoice(queue_executor)

    @pytest.fixture
    def open_runs(
        self,
        broker: Broker,
        state_store: StateStore,
        executor: ExecutorChoice,
        conformance_timing: ConformanceTiming,
    ) -> Iterator[Open]:
        """`open_runs(app, inline_tasks=True)`: a client whose runtime runs on the provider."""
        clients: list[Client] = []

        def open_client(app: sb.App, *, inline_tasks: bool = True) -> Client:
            runtime = Runtime(
                app,
                broker,
                state_store,
                executor.factory,
                executor.config,
                workers=self.workers,
                inline_tasks=inline_tasks,
                lease=max(conformance_timing.lease * 5, 10.0),
                close_components=False,
            )
            clients.append(Client(runtime))
            return clients[-1]

        yield open_client
        for client in clients:
            client.close()


def _provider_key() -> Any:
    from switchboard_conformance.fixtures import PROVIDER

    return PROVIDER


def _app() -> sb.App:
    return sb.App(unique_name("wf"))


class WorkflowConformance(_Runs):
    """Workflows end to end on the provider."""

    chain_length = 50
    fan_out_width = 100
    concurrent_runs = 200
    payload_bytes = 5 * 1024 * 1024
    #: How long a single test may wait for its runs, in seconds.
    run_timeout = 120.0

    @checks(CHAIN, ONCE)
    def test_chain(self, open_runs: Open) -> None:
        app = _app()

        @app.task
        def add(x: int) -> int:
            return x + 1

        @app.workflow
        def chain(ctx: sb.Context, n: int) -> int:
            x = 0
            for _ in range(n):
                x = add(x)
            return x

        client = open_runs(app)
        run_id = client.start("chain", n=self.chain_length)
        output = client.wait(run_id, timeout=self.run_timeout).output
        assert output == self.chain_length, guarantee(CHAIN, f"output {output}")
        assert_each_outcome_once(client.runtime.store, run_id)

    @checks(FAN_OUT, CACHE)
    def test_fan_out_and_branch_on_cache(self, open_runs: Open) -> None:
        app = _app()

        @app.task
        def square(x: int) -> int:
            return x * x

        @app.task
        def flag() -> None:
            sb.current_task().cache["flagged"] = True

        @app.task
        def branch(label: str) -> str:
            return label

        @app.workflow
        def fan(ctx: sb.Context, width: int) -> Any:
            squares = ctx.parallel(*[ctx.call(square, i) for i in range(width)])
            flag()
            taken = branch("flagged" if ctx.cache.get("flagged") else "plain")
            return [squares, taken]

        client = open_runs(app)
        width = self.fan_out_width
        squares, taken = client.wait(
            client.start("fan", width=width), timeout=self.run_timeout
        ).output
        assert squares == [i * i for i in range(width)], guarantee(FAN_OUT, f"got {squares[:5]}...")
        assert taken == "flagged", guarantee(CACHE, f"the branch saw {taken!r}")

    @checks(RETRIES)
    def test_retries_then_success_and_exhausted(self, open_runs: Open) -> None:
        app = _app()

        @app.task(retries=2, retry_delay=0.05)
        def flaky(fail_until: int) -> int:
            attempt = sb.current_task().attempt
            if attempt <= fail_until:
                raise ConnectionError(f"attempt {attempt} failed")
            return attempt

        @app.workflow
        def run(ctx: sb.Context, fail_until: int) -> int:
            return flaky(fail_until)

        client = open_runs(app)
        output = client.wait(client.start("run", fail_until=2), timeout=self.run_timeout).output
        assert output == 3, guarantee(RETRIES, f"succeeded on attempt {output}, expected 3")
        with pytest.raises(sb.RunFailed) as failed:
            client.wait(client.start("run", fail_until=9), timeout=self.run_timeout)
        error = failed.value.status.error or {}
        assert error.get("type") == "TaskFailed" and "attempt 3 failed" in error.get(
            "message", ""
        ), guarantee(RETRIES, f"error {error}")

    @checks(SLEEP)
    def test_durable_sleep(self, open_runs: Open) -> None:
        app = _app()

        @app.workflow
        def nap(ctx: sb.Context) -> float:
            ctx.sleep(1.0)
            return 1.0

        client = open_runs(app)
        started = time.monotonic()
        client.wait(client.start("nap"), timeout=self.run_timeout)
        elapsed = time.monotonic() - started
        assert elapsed >= 1.0, guarantee(SLEEP, f"resumed after {elapsed:.2f}s")

    @checks(SIGNAL)
    def test_wait_for_event_and_signal(self, open_runs: Open) -> None:
        app = _app()

        @app.workflow
        def approve(ctx: sb.Context) -> Any:
            return [ctx.wait_for_event("first"), ctx.wait_for_event("early")]

        client = open_runs(app)
        run_id = client.start("approve")
        client.signal(run_id, "early", "sent before its wait")
        _wait_for_status(client, run_id, "waiting", self.run_timeout)
        client.signal(run_id, "first", {"by": "ops"})
        output = client.wait(run_id, timeout=self.run_timeout).output
        assert output == [{"by": "ops"}, "sent before its wait"], guarantee(SIGNAL, f"{output}")

    @checks(TOKEN)
    def test_external_completion_by_token(self, open_runs: Open) -> None:
        app = _app()
        tokens: list[str] = []

        @app.task
        def ask() -> Any:
            tokens.append(sb.current_task().token)
            return sb.pending()

        @app.workflow
        def run(ctx: sb.Context) -> Any:
            return ask()

        client = open_runs(app)
        run_id = client.start("run")
        deadline = time.monotonic() + self.run_timeout
        while not tokens:
            assert time.monotonic() < deadline, guarantee(TOKEN, "the pending task never ran")
            time.sleep(0.02)
        with pytest.raises(sb.InvalidToken):
            client.complete(tokens[0] + "x", "forged")
        client.complete(tokens[0], {"done": True})
        with pytest.raises(sb.TokenAlreadyUsed):
            client.complete(tokens[0], "again")
        output = client.wait(run_id, timeout=self.run_timeout).output
        assert output == {"done": True}, guarantee(TOKEN, f"output {output}")

    @checks(CANCEL)
    def test_cancel(self, open_runs: Open) -> None:
        app = _app()

        @app.workflow
        def forever(ctx: sb.Context) -> None:
            ctx.wait_for_event("never")

        client = open_runs(app)
        run_id = client.start("forever")
        _wait_for_status(client, run_id, "waiting", self.run_timeout)
        client.cancel(run_id)
        with pytest.raises(sb.RunFailed) as failed:
            client.wait(run_id, timeout=self.run_timeout)
        assert failed.value.status.status == "cancelled", guarantee(
            CANCEL, failed.value.status.status
        )

    @checks(PAYLOAD)
    def test_large_payload_in_and_out(self, open_runs: Open) -> None:
        app = _app()

        @app.task
        def reverse(text: str) -> str:
            return text[::-1]

        @app.workflow
        def run(ctx: sb.Context, text: str) -> str:
            return reverse(text)

        text = "".join(chr(0x61 + i % 26) for i in range(self.payload_bytes - 2)) + "é"
        client = open_runs(app, inline_tasks=False)
        output = client.wait(client.start("run", text=text), timeout=self.run_timeout).output
        assert output == text[::-1], guarantee(PAYLOAD, f"{len(output)} characters came back")

    @checks(CONCURRENT, ONCE)
    def test_concurrent_runs(self, open_runs: Open) -> None:
        app = _app()

        @app.task
        def inc(x: int) -> int:
            return x + 1

        @app.workflow
        def run(ctx: sb.Context, start: int) -> int:
            pair: list[int] = ctx.parallel(ctx.call(inc, 0), ctx.call(inc, 1))
            return inc(inc(start)) + sum(pair)

        client = open_runs(app)
        run_ids = [client.start("run", start=i) for i in range(self.concurrent_runs)]
        outputs = [client.wait(r, timeout=self.run_timeout).output for r in run_ids]
        wrong = [(i, o) for i, o in enumerate(outputs) if o != i + 2 + 3]
        assert not wrong, guarantee(CONCURRENT, f"{len(wrong)} wrong outputs, e.g. {wrong[:3]}")
        for run_id in run_ids:
            assert_each_outcome_once(client.runtime.store, run_id)


class ExecutorConformance(_Runs):
    """The executor carries tasks (tasks are never run inline here)."""

    concurrent_invocations = 100
    run_timeout = 120.0

    @checks(EXECUTOR_RUNS)
    def test_submitted_invocation_runs_and_reports(self, open_runs: Open) -> None:
        app = _app()

        @app.task
        def greet(name: str) -> str:
            return f"hello {name}"

        @app.workflow
        def run(ctx: sb.Context) -> str:
            return greet("executor")

        client = open_runs(app, inline_tasks=False)
        output = client.wait(client.start("run"), timeout=self.run_timeout).output
        assert output == "hello executor", guarantee(EXECUTOR_RUNS, f"output {output!r}")

    @checks(EXECUTOR_RUNS)
    def test_raising_task_reports_type_message_and_traceback(self, open_runs: Open) -> None:
        app = _app()

        @app.task
        def explode() -> None:
            raise LookupError("no such parcel")

        @app.workflow
        def run(ctx: sb.Context) -> Any:
            try:
                explode()
            except sb.TaskFailed as exc:
                return [exc.error_type, exc.message, exc.traceback]
            return None

        client = open_runs(app, inline_tasks=False)
        output = client.wait(client.start("run"), timeout=self.run_timeout).output
        assert output is not None and output[:2] == ["LookupError", "no such parcel"], guarantee(
            EXECUTOR_RUNS, f"error reported as {output}"
        )
        assert 'raise LookupError("no such parcel")' in output[2], guarantee(
            EXECUTOR_RUNS, "the traceback is missing"
        )

    @checks(EXECUTOR_RUNS)
    def test_timeout(self, open_runs: Open) -> None:
        app = _app()

        @app.task(timeout=1.0)
        def stall() -> str:
            time.sleep(5.0)
            return "too late"

        @app.workflow
        def run(ctx: sb.Context) -> str:
            try:
                return stall()
            except sb.TaskFailed as exc:
                return exc.error_type

        client = open_runs(app, inline_tasks=False)
        started = time.monotonic()
        output = client.wait(client.start("run"), timeout=self.run_timeout).output
        assert output == "TimeoutError", guarantee(EXECUTOR_RUNS, f"outcome {output!r}")
        assert time.monotonic() - started < 5.0, "the timeout must not wait for the task"

    @checks(EXECUTOR_RUNS)
    def test_concurrent_invocations(self, open_runs: Open) -> None:
        app = _app()

        @app.task
        def double(x: int) -> int:
            return 2 * x

        @app.workflow
        def run(ctx: sb.Context, n: int) -> list[int]:
            return ctx.parallel(*[ctx.call(double, i) for i in range(n)])

        client = open_runs(app, inline_tasks=False)
        n = self.concurrent_invocations
        output = client.wait(client.start("run", n=n), timeout=self.run_timeout).output
        assert output == [2 * i for i in range(n)], guarantee(
            EXECUTOR_RUNS, "lost or wrong outcomes"
        )


def _wait_for_status(client: Client, run_id: str, status: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while client.status(run_id).status != status:
        assert time.monotonic() < deadline, f"run {run_id} never became {status}"
        time.sleep(0.05)
