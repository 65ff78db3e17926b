"""What workflow and task code sees: `Context`, `Step`, `current_task()`, `pending()`.

Workflow code must be deterministic: given the same recorded outcomes it must make the
same calls in the same order. Everything that varies (task results, signals, timers)
comes in through the verbs here and is recorded, so replay reproduces it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload

if TYPE_CHECKING:
    from switchboard.app import Task
    from switchboard.engine import RunDriver

P = ParamSpec("P")
R = TypeVar("R")


class RunningTask(Protocol):
    """A task attempt being run: it makes the `TaskContext` when the task first asks."""

    def task_context(self) -> TaskContext: ...

    def cache_delta(self) -> dict[str, Any] | None:
        """The task's changes to its copy of the run's cache; None if it made none (or
        never asked for its `TaskContext`)."""
        ...


#: What this thread (or asyncio task) runs: a workflow's `Context`, a task, or neither. One
#: variable, so a task run inline in its workflow's thread costs one `set`, not two.
_running: ContextVar[Context | RunningTask | None] = ContextVar("switchboard_running", default=None)


class Step(Generic[R]):
    """A scheduled step of a workflow. `result()` waits for its recorded outcome."""

    def __init__(self, driver: RunDriver, seq: int) -> None:
        self._driver = driver
        self.seq = seq

    def result(self) -> R:
        """The step's result; raises `TaskFailed` (or `EventTimeout`) if it failed."""
        value: R = self._driver.result_of(self.seq)
        return value

    @property
    def done(self) -> bool:
        return self._driver.is_done(self.seq)

    def __repr__(self) -> str:
        return f"<Step {self.seq}>"


class Context:
    """Given to every workflow function as its first argument."""

    def __init__(self, driver: RunDriver, run_id: str, workflow: str) -> None:
        self._driver = driver
        self.run_id = run_id
        self.workflow = workflow
        #: Per-run shared state. Tasks see a snapshot taken when they are scheduled
        #: (`current_task().cache`); their changes reach it when the workflow takes
        #: their result, so replay rebuilds it exactly.
        self.cache: dict[str, Any] = {}

    @overload
    def call(self, task: Task[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Step[R]: ...

    @overload
    def call(self, task: str, /, *args: Any, **kwargs: Any) -> Step[Any]: ...

    def call(self, task: Task[Any, Any] | str, /, *args: Any, **kwargs: Any) -> Step[Any]:
        """Schedule a task (by object or name) without waiting; returns its `Step`."""
        name = task if isinstance(task, str) else task.name
        return Step(self._driver, self._driver.schedule_task(name, args, kwargs))

    def parallel(self, *steps: Step[Any]) -> list[Any]:
        """Wait for every step, then return their results in order (or raise the first
        failure, in order)."""
        self._driver.wait_all([step.seq for step in steps])
        return [step.result() for step in steps]

    def sleep(self, seconds: float) -> None:
        """Pause the workflow durably: nothing runs meanwhile, and a restart resumes it."""
        seq = self._driver.schedule_sleep(float(seconds))
        self._driver.result_of(seq)

    def wait_for_event(self, name: str, *, timeout: float | None = None) -> Any:
        """Wait for `client.signal(run_id, name, payload)` and return its payload.

        A signal sent before the workflow gets here is kept and taken here. Raises
        `EventTimeout` when `timeout` seconds pass first.
        """
        return self._driver.result_of(self._driver.schedule_event(name, timeout))


@dataclass(frozen=True)
class TaskContext:
    """What a running task knows about itself (`sb.current_task()`)."""

    run_id: str
    task: str
    step: int
    attempt: int
    #: The token, or how to sign it when first asked (most tasks never ask).
    signed_token: str | Callable[[], str] = field(repr=False)
    #: The same for every attempt of this step: use it to make side effects idempotent.
    idempotency_key: str
    #: A copy of the run's cache; changes are sent back with the result.
    cache: dict[str, Any]

    @property
    def token(self) -> str:
        """Hand this to whoever finishes the task later (`client.complete(token, result)`)."""
        return resolve_token(self.signed_token)


def resolve_token(token: str | Callable[[], str]) -> str:
    """A token, signing it first if it was given as a signing function."""
    return token if isinstance(token, str) else token()


class Pending:
    """Returned by a task to say "someone else finishes this" (see `pending()`)."""

    _instance: Pending | None = None

    def __new__(cls) -> Pending:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "switchboard.pending()"


def pending() -> Any:
    """Return this from a task whose outcome comes later, through
    `client.complete(token, result)` or `client.fail(token, error)`."""
    return Pending()


def current_task() -> TaskContext:
    """The running task's context; raises `RuntimeError` outside a task."""
    running = _running.get()
    if running is None or isinstance(running, Context):
        raise RuntimeError("current_task() is only available while a task runs")
    return running.task_context()


def call_task(task: Task[Any, R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
    """What calling a task does: in a workflow, schedule it as the next step and wait for
    its result (`Context.call(...).result()` without the `Step`); anywhere else, a plain
    call of its function."""
    running = _running.get()
    if isinstance(running, Context):
        driver = running._driver
        result: R = driver.result_of(driver.schedule_task(task.name, args, kwargs))
        return result
    return task.fn(*args, **kwargs)


def current_workflow() -> Context | None:
    """The workflow context of this thread, or None outside a running workflow (in a task
    too, even one run inline in its workflow's thread)."""
    running = _running.get()
    return running if isinstance(running, Context) else None


def run_in_workflow(ctx: Context, fn: Callable[[], R]) -> R:
    token = _running.set(ctx)
    try:
        return fn()
    finally:
        _running.reset(token)


def run_in_task(task: RunningTask, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call `fn` as a task: `current_task()` answers and task calls are plain calls."""
    token = _running.set(task)
    try:
        return fn(*args, **kwargs)
    finally:
        _running.reset(token)
