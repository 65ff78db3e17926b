"""Running one task attempt: the same code in every executor, worker and handler.

`attempt` calls the task function (sync or `async def`) with what `current_task()`
answers from, and turns whatever happens into an `Outcome`. `execute` does that for an
`Invocation` (an attempt as the executor hands it out), `TaskRunner` for a wire message,
reporting the outcome on the invocations queue; the engine calls `attempt` for the tasks
it runs inline.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from switchboard import wire
from switchboard.app import App, Task
from switchboard.context import Pending, RunningTask, TaskContext, run_in_task
from switchboard.errors import (
    MalformedMessage,
    NonRetryableError,
    SerializationError,
    UnknownName,
    describe,
)

_made = threading.Lock()

T = TypeVar("T")


def made_once(owner: Any, slot: str, make: Callable[[], T]) -> T:
    """`owner.<slot>`, made by `make` the first time it is asked for: under a lock, since a
    task may ask from threads of its own, and every thread must get the same object."""
    value: T | None = getattr(owner, slot)
    if value is None:
        with _made:
            value = getattr(owner, slot)
            if value is None:
                value = make()
                setattr(owner, slot, value)
    return value


@dataclass(slots=True)
class Invocation:
    """One attempt of a task as the executor hands it out (`task.invoke`), and what
    `current_task()` answers from while it runs."""

    run: str
    seq: int
    attempt: int
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    cache: dict[str, Any]
    #: The signed token, or how to sign it on first use (inline runs sign lazily).
    token: str | Callable[[], str]
    timeout: float | None = None
    #: Made by `task_context`, when the task first asks for it (most tasks never do).
    context: TaskContext | None = field(default=None, init=False, repr=False, compare=False)

    def task_context(self) -> TaskContext:
        """The attempt's `TaskContext`, the same one every time it is asked for. Its cache
        is a copy of the run's: what the task changes there is sent back as a delta."""
        return made_once(self, "context", self._make_context)

    def _make_context(self) -> TaskContext:
        return TaskContext(
            run_id=self.run,
            task=self.task,
            step=self.seq,
            attempt=self.attempt,
            signed_token=self.token,
            idempotency_key=f"{self.run}:{self.seq}",
            cache=copy_cache(self.cache),
        )

    def cache_delta(self) -> dict[str, Any] | None:
        """What the task changed in its copy of the cache (None if it never asked for one)."""
        context = self.context
        return None if context is None else cache_delta(self.cache, context.cache)

    @classmethod
    def from_message(cls, message: wire.Message) -> Invocation:
        if message.kind != wire.TASK_INVOKE:
            raise MalformedMessage(f"expected a task.invoke message, got {message.kind}")
        args, kwargs = wire.call_arguments(message["input"])
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise MalformedMessage("task.invoke input must be {'args': [...], 'kwargs': {...}}")
        timeout = message.get("timeout")
        return cls(
            message.run,
            message["seq"],
            message["attempt"],
            message["task"],
            args,
            kwargs,
            message["cache"],
            message["token"],
            float(timeout) if timeout is not None else None,
        )


@dataclass(slots=True)
class Outcome:
    """What became of one attempt: "ok" with a result, "error", or "pending". Not frozen:
    one is made per step, and a frozen dataclass costs three times as much to make."""

    outcome: str
    result: Any = None
    #: {"type", "message", "traceback", "retryable"} for an error.
    error: dict[str, Any] | None = None
    #: {"set": {...}, "del": [...]}: the task's changes to the run's cache.
    cache: dict[str, Any] | None = None

    def message_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"outcome": self.outcome}
        if self.outcome == "ok":
            fields["result"] = self.result
        if self.error is not None:
            fields["error"] = self.error
        if self.cache is not None:
            fields["cache"] = self.cache
        return fields

    @classmethod
    def from_message(cls, message: wire.Message) -> Outcome:
        return cls(
            message["outcome"], message.get("result"), message.get("error"), message.get("cache")
        )


def failure(exc: BaseException, *, retryable: bool) -> dict[str, Any]:
    return {**describe(exc), "retryable": retryable}


def cache_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any] | None:
    if not before and not after:
        return None  # the usual case: a run without a cache
    changed = {k: v for k, v in after.items() if k not in before or before[k] != v}
    removed = [k for k in before if k not in after]
    if not changed and not removed:
        return None
    return {"set": changed, "del": removed}


def copy_cache(cache: dict[str, Any]) -> dict[str, Any]:
    """A copy of the run's cache that shares nothing with it, for a task to be given."""
    return wire.loads(wire.dumps(cache, what="the run's cache")) if cache else {}


def apply_cache_delta(cache: dict[str, Any], delta: dict[str, Any] | None) -> None:
    if delta:
        cache.update(delta.get("set", {}))
        for key in delta.get("del", []):
            cache.pop(key, None)


_loops = threading.local()


def _run_coroutine(
    task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any], timeout: float | None
) -> Any:
    # One event loop per thread, reused: creating a loop per call costs more than the call.
    loop = getattr(_loops, "loop", None)
    if loop is None:
        loop = _loops.loop = asyncio.new_event_loop()
    coroutine = task.fn(*args, **kwargs)
    if timeout is not None:
        coroutine = asyncio.wait_for(coroutine, timeout)
    return loop.run_until_complete(coroutine)


def execute(app: App, invocation: Invocation) -> Outcome:
    """Run one attempt of a task as the executor hands it out; never raises for anything
    the task does."""
    try:
        task = app.get_task(invocation.task)
    except UnknownName as exc:
        return Outcome("error", error=failure(exc, retryable=False))
    return attempt(task, invocation.args, invocation.kwargs, invocation, invocation.timeout)


def attempt(
    task: Task[Any, Any],
    args: list[Any],
    kwargs: dict[str, Any],
    running: RunningTask,
    timeout: float | None = None,
) -> Outcome:
    """Call the task function (sync or `async def`) with `running` as what
    `current_task()` answers from, and turn whatever happens into an `Outcome`."""
    try:
        if task.is_async:
            value = run_in_task(running, _run_coroutine, task, args, kwargs, timeout)
        else:
            value = run_in_task(running, task.fn, *args, **kwargs)
    except NonRetryableError as exc:
        return Outcome("error", error=failure(exc, retryable=False))
    except Exception as exc:  # noqa: BLE001 - a task's failure is data, not our crash
        return Outcome("error", error=failure(exc, retryable=True))
    # The task changed only its own copy of the cache, if it asked for one at all.
    delta = running.cache_delta()
    if isinstance(value, Pending):
        return Outcome("pending", cache=delta)
    try:
        result = wire.normalize(value, "the result of task", task.name)
        if delta is not None:
            wire.dumps(delta, what="the cache written by task", name=task.name)
    except SerializationError as exc:
        return Outcome("error", error=failure(exc, retryable=False))
    return Outcome("ok", result, None, delta)  # by position: keywords cost more here


class TaskRunner:
    """Runs `task.invoke` messages in this process and reports each outcome."""

    def __init__(
        self, app: App, blobs: wire.Blobs, report: Callable[[dict[str, Any]], None]
    ) -> None:
        self._app = app
        self._blobs = blobs
        self._report = report

    def run(self, body: bytes) -> None:
        """Run the invocation in `body`; `MalformedMessage` if it is not one."""
        message = wire.decode(body, self._blobs)
        if message.app != self._app.name:
            raise MalformedMessage(
                f"task.invoke for app {message.app!r} reached app {self._app.name!r}"
            )
        invocation = Invocation.from_message(message)
        outcome = execute(self._app, invocation)
        self._report(result_message(self._app.name, invocation, outcome))


def result_message(app: str, invocation: Invocation, outcome: Outcome) -> dict[str, Any]:
    return wire.envelope(
        wire.TASK_RESULT,
        app=app,
        run=invocation.run,
        seq=invocation.seq,
        attempt=invocation.attempt,
        task=invocation.task,
        **outcome.message_fields(),
    )
