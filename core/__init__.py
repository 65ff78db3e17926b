"""Switchboard: event-driven, serverless orchestration-as-code.

import switchboard as sb

app = sb.App("shop")

@app.task(retries=3)
def charge(order_id: str, amount: int) -> dict: ...

@app.workflow
def fulfil(ctx: sb.Context, order: dict) -> dict:
    return charge(order["id"], order["total"])

with sb.local(app) as client:
    print(client.wait(client.start("fulfil", order={...})).output)
"""

from switchboard import errors
from switchboard.app import App, RetryPolicy, Task, Workflow
from switchboard.client import Client
from switchboard.context import Context, Step, TaskContext, current_task, pending
from switchboard.errors import (
    ConfigError,
    Conflict,
    EventTimeout,
    InvalidToken,
    NonDeterminismError,
    NonRetryableError,
    NotFound,
    RunFailed,
    SwitchboardError,
    TaskFailed,
    TokenAlreadyUsed,
    WaitTimeout,
)
from switchboard.runtime import connect, local
from switchboard.status import HistoryEvent, RunStatus, StepInfo

# The seed project's names (InitWorkflow, Call, ...) resolve here too, so its README
# example runs unchanged but for the provider line; they load only when first used.
_SEED_NAMES = (
    "InitWorkflow",
    "Call",
    "ParallelCall",
    "Done",
    "GetCache",
    "DB",
    "Cloud",
    "Response",
)


def __getattr__(name: str) -> object:
    if name in _SEED_NAMES:
        from switchboard import compat

        return getattr(compat, name)
    raise AttributeError(f"module 'switchboard' has no attribute {name!r}")


__all__ = [
    "App",
    "Client",
    "ConfigError",
    "Conflict",
    "Context",
    "EventTimeout",
    "HistoryEvent",
    "InvalidToken",
    "NonDeterminismError",
    "NonRetryableError",
    "NotFound",
    "RetryPolicy",
    "RunFailed",
    "RunStatus",
    "Step",
    "StepInfo",
    "SwitchboardError",
    "Task",
    "TaskContext",
    "TaskFailed",
    "TokenAlreadyUsed",
    "WaitTimeout",
    "Workflow",
    "connect",
    "current_task",
    "errors",
    "local",
    "pending",
]
