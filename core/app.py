"""`App`: the registry of a project's tasks and workflows.

A task called inside a running workflow is scheduled through the engine; called anywhere
else it is a plain function call, so tasks stay easy to unit-test.
"""

from __future__ import annotations

import functools
import inspect
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload

from switchboard.context import call_task
from switchboard.errors import ConfigError, UnknownName

if TYPE_CHECKING:
    from switchboard.context import Context

P = ParamSpec("P")
R = TypeVar("R")

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing task is retried: `retries` more attempts after the first, waiting
    `delay * backoff**(n-1)` seconds (capped at `max_delay`, with jitter) before attempt n+1."""

    retries: int = 0
    backoff: float = 2.0
    delay: float = 1.0
    max_delay: float = 300.0

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based), with equal jitter."""
        full = min(self.max_delay, self.delay * self.backoff ** (attempt - 1))
        return full / 2 + random.uniform(0, full / 2)


class Task(Generic[P, R]):
    """A registered task. Calling it inside a workflow schedules it and returns its result
    once recorded; calling it anywhere else runs the function directly.

    `Task(name=..., execute=fn)` is the seed project's form (see `switchboard.compat`): a
    task whose function takes the seed's `Context` and finishes by sending a `Response`.
    """

    def __init__(
        self,
        fn: Callable[P, R] | None = None,
        *,
        name: str,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        execute: Callable[P, R] | None = None,
    ) -> None:
        function = fn if fn is not None else execute
        if function is None:
            raise ConfigError(f"task {name!r} needs a function")
        self.fn: Callable[P, R] = function
        self.name = name
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        #: Set for the seed's `Task(name=..., execute=...)` form.
        self.seed_execute = execute
        self.is_async = inspect.iscoroutinefunction(function)
        functools.update_wrapper(self, function)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return call_task(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"


class Workflow(Generic[P, R]):
    """A registered workflow: a plain function whose first parameter is the `Context`."""

    def __init__(self, fn: Callable[..., R], *, name: str) -> None:
        self.fn = fn
        self.name = name
        functools.update_wrapper(self, fn)

    def __call__(self, ctx: Context, *args: Any, **kwargs: Any) -> R:
        return self.fn(ctx, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<Workflow {self.name}>"


class TaskDecorator(Protocol):
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class WorkflowDecorator(Protocol):
    def __call__(self, fn: Callable[..., R], /) -> Workflow[..., R]: ...


class App:
    """A named collection of tasks and workflows; one deployment unit."""

    def __init__(
        self, name: str, *, secret: str | bytes | None = None, retention: float | None = None
    ) -> None:
        if not _NAME.match(name):
            raise ConfigError(
                f"app name {name!r} must start with a letter and hold at most 40 letters, "
                "digits, '-' or '_' (it names queues and tables)"
            )
        if retention is not None and not retention > 0:
            raise ConfigError(f"retention must be a positive number of seconds, got {retention}")
        self.name = name
        #: Signs task tokens. When unset, SWITCHBOARD_SECRET or a secret kept in the state
        #: store is used (see `switchboard.tokens`).
        self.secret = secret.encode() if isinstance(secret, str) else secret
        #: Seconds a finished run's records are kept, then deleted by the state store's TTL
        #: (None: kept for good). Needs a store with the TTL capability (aws, local).
        self.retention = retention
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.workflows: dict[str, Workflow[Any, Any]] = {}

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        retries: int = 0,
        backoff: float = 2.0,
        retry_delay: float = 1.0,
        timeout: float | None = None,
    ) -> TaskDecorator: ...

    def task(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        retries: int = 0,
        backoff: float = 2.0,
        retry_delay: float = 1.0,
        timeout: float | None = None,
    ) -> Task[P, R] | TaskDecorator:
        """Register a task: `@app.task` or `@app.task(retries=3, backoff=2.0, timeout=30)`."""
        if retries < 0 or backoff < 1 or retry_delay < 0 or (timeout is not None and timeout <= 0):
            raise ConfigError(
                "task options: retries >= 0, backoff >= 1, retry_delay >= 0, timeout > 0"
            )

        def register(fn: Callable[P, R]) -> Task[P, R]:
            task = Task(
                fn,
                name=name or fn.__name__,
                retry=RetryPolicy(retries=retries, backoff=backoff, delay=retry_delay),
                timeout=timeout,
            )
            self._add(self.tasks, task.name, task, "task")
            return task

        return register(fn) if fn is not None else register  # type: ignore[return-value]

    @overload
    def workflow(self, fn: Callable[..., R], /) -> Workflow[..., R]: ...

    @overload
    def workflow(self, fn: None = None, /, *, name: str | None = None) -> WorkflowDecorator: ...

    def workflow(
        self, fn: Callable[..., R] | None = None, /, *, name: str | None = None
    ) -> Workflow[..., R] | WorkflowDecorator:
        """Register a workflow: `@app.workflow` or `@app.workflow(name="fulfil")`."""

        def register(fn: Callable[..., R]) -> Workflow[..., R]:
            workflow: Workflow[..., R] = Workflow(fn, name=name or fn.__name__)
            self._add(self.workflows, workflow.name, workflow, "workflow")
            return workflow

        return register(fn) if fn is not None else register  # type: ignore[return-value]

    def get_task(self, name: str) -> Task[Any, Any]:
        task: Task[Any, Any] = self._lookup(self.tasks, name, "task")
        return task

    def get_workflow(self, name: str) -> Workflow[Any, Any]:
        workflow: Workflow[Any, Any] = self._lookup(self.workflows, name, "workflow")
        return workflow

    def _add(self, table: dict[str, Any], name: str, item: Any, what: str) -> None:
        if name in table:
            raise ConfigError(f"app {self.name!r} already has a {what} named {name!r}")
        table[name] = item

    def _lookup(self, table: dict[str, Any], name: str, what: str) -> Any:
        try:
            return table[name]
        except KeyError:
            known = ", ".join(sorted(table)) or "none"
            raise UnknownName(
                f"app {self.name!r} has no {what} named {name!r}; known {what}s: {known}"
            ) from None
