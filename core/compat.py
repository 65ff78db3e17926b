"""The seed project's names over the same engine, so its README example runs unchanged
except for the provider line (`Cloud.AWS` -> `Cloud.LOCAL`, ...).

    tasks.py:  directory_map = {"process_data_task": Task(name=..., execute=process_data)}
               a task receives a `Context`, may change `context.cache`, sets
               `context.success`, and finishes by `Response(cloud, db.interface,
               "<workflow>", context).send()`, now or later, from any thread or process.
    main.py:   def workflow_handler(context): InitWorkflow(...); data = GetCache();
               Call("process_data_task"); ParallelCall("a", "b"); return Done()

`app_from(workflow_handler, directory_map, name=...)` turns them into an `sb.App`, run
with `sb.local` / `sb.connect` like any other. Each seed task becomes a task that returns
`sb.pending()`; its `Response` completes it through `client.complete`, carrying the
cache changes, so the workflow sees them exactly when `Call` returns.
"""

from __future__ import annotations

import copy
import enum
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from switchboard.app import App, Task
from switchboard.context import Context as WorkflowContext
from switchboard.context import current_task, current_workflow, pending
from switchboard.errors import ConfigError, TokenAlreadyUsed
from switchboard.execution import cache_delta

if TYPE_CHECKING:
    from switchboard.client import Client

log = logging.getLogger("switchboard.compat")

__all__ = [
    "DB",
    "Call",
    "Cloud",
    "Context",
    "Done",
    "GetCache",
    "InitWorkflow",
    "ParallelCall",
    "Response",
    "Task",
    "app_from",
]


class Cloud(enum.Enum):
    """Where the seed's components run; the value is the Switchboard provider name."""

    AWS = "aws"
    GCP = "gcp"
    AZURE = "azure"
    LOCAL = "local"


@dataclass
class Context:
    """What a seed task receives: the run and step it serves, and the run's cache."""

    ids: list[Any]
    executed: bool = True
    completed: bool = False
    success: bool = False
    cache: dict[str, Any] = field(default_factory=dict)
    #: Signed token that lets a `Response` finish this task from anywhere.
    token: str = ""
    #: The cache as the task received it; the `Response` sends the difference.
    original_cache: dict[str, Any] = field(default_factory=dict, repr=False)


# -- the connection a Response uses ----------------------------------------------------------

_remote: dict[str, Client] = {}


def _connection(cloud: Cloud, app_name: str) -> Client:
    """The connection the app runs on in this process, or else (a "microservice" in another
    process) a connection to the same provider configured from the environment."""
    from switchboard.client import Client
    from switchboard.runtime import active_runtime, build_runtime

    runtime = active_runtime(app_name)
    if runtime is not None:
        return Client(runtime)
    if app_name not in _remote:
        _remote[app_name] = Client(build_runtime(App(app_name), cloud.value))
    return _remote[app_name]


class DB:
    """The seed's database handle; `interface` names the provider a `Response` uses."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.interface = cloud


class Response:
    """A seed task's outcome. `send()` finishes the task (success or failure per
    `context.success`) and applies its cache changes to the run."""

    def __init__(
        self, cloud: Cloud, db_interface: Any, workflow_name: str, context: Context
    ) -> None:
        self.cloud = cloud
        self.workflow_name = workflow_name
        self.context = context

    def send(self) -> None:
        """Finish the task. Sent again for the same attempt (tasks run at least once: a
        redelivery can run one twice), it changes nothing: the outcome first sent stands."""
        client = _connection(self.cloud, self.workflow_name)
        context = self.context
        try:
            if context.success:
                delta = cache_delta(context.original_cache, context.cache)
                client.complete(context.token, None, cache=delta)
            else:
                client.fail(context.token, f"task {context.ids[1]} reported success=False")
        except TokenAlreadyUsed:
            log.info("task %s: its response was sent already; this one is dropped", context.ids)


# -- the workflow side ---------------------------------------------------------------------


def _workflow() -> WorkflowContext:
    ctx = current_workflow()
    if ctx is None:
        raise RuntimeError("Call, ParallelCall and GetCache work only inside a running workflow")
    return ctx


def InitWorkflow(cloud: Cloud, name: str, db: DB, context: Any) -> None:
    """Kept for the seed's handler: the engine already knows the run it replays."""
    _workflow()


def GetCache() -> dict[str, Any]:
    """The run's cache: tasks' changes appear in it as their `Call` returns."""
    return _workflow().cache


def Call(task_name: str) -> None:
    """Run one task and wait until its `Response` arrives."""
    _workflow().call(task_name).result()


def ParallelCall(*task_names: str) -> None:
    """Run several tasks at once and wait for all their `Response`s."""
    ctx = _workflow()
    ctx.parallel(*(ctx.call(name) for name in task_names))


class _Done:
    def __repr__(self) -> str:
        return "Done()"


def Done() -> Any:
    """Mark the workflow complete; the run's output is its final cache."""
    return _Done()


def app_from(workflow_handler: Any, directory_map: dict[str, Task[Any, Any]], *, name: str) -> App:
    """An `sb.App` running the seed's `workflow_handler` with the tasks of `directory_map`."""
    app = App(name)
    for key, task in directory_map.items():
        if task.seed_execute is None:
            raise ConfigError(f"directory_map[{key!r}] is not a seed Task(name=..., execute=...)")
        app.task(name=task.name)(_seed_task(task.seed_execute))

    @app.workflow(name=name)
    def seed_workflow(ctx: WorkflowContext, **event: Any) -> Any:
        result = workflow_handler(event)
        return dict(ctx.cache) if isinstance(result, _Done) or result is None else result

    return app


def _seed_task(execute: Any) -> Any:
    def run() -> Any:
        task = current_task()
        context = Context(
            ids=[task.run_id, task.step, task.attempt],
            cache=task.cache,
            token=task.token,
            original_cache=copy.deepcopy(task.cache),
        )
        execute(context)
        return pending()

    return run
