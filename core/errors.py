"""The one exception hierarchy of Switchboard.

Providers translate their SDK's exceptions into these at the boundary, so the engine and
users never meet a cloud-specific exception. The engine retries only
`TransientProviderError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from switchboard.status import RunStatus


class SwitchboardError(Exception):
    """Base class of every error Switchboard raises."""


# -- configuration and discovery ---------------------------------------------------------


class ConfigError(SwitchboardError):
    """Configuration is wrong or missing; the message names the field and the fix."""


class ProviderLoadError(ConfigError):
    """A provider's plugin failed to import; raised only when that provider is asked for."""


class UnknownName(ConfigError, LookupError):
    """A workflow, task or provider name is not registered; the message lists valid ones."""


# -- provider operations -------------------------------------------------------------------


class ProviderError(SwitchboardError):
    """A queue, state store or executor operation failed and retrying will not help."""


class TransientProviderError(ProviderError):
    """A provider operation failed in a way that may succeed if retried (throttling,
    timeouts, a lost connection). The engine retries these with backoff."""


class Conflict(ProviderError):
    """A conditional write found a different version than it expected."""


class NotFound(ProviderError, LookupError):
    """The addressed run, record or resource does not exist."""


class UnsupportedOperation(ProviderError):
    """The provider does not support this operation; its capabilities say so."""


class LeaseLost(TransientProviderError):
    """The delivery's lease expired (or its lock was lost) before it was settled;
    the message will be delivered again."""


class TooLarge(ProviderError):
    """A message or value is larger than the provider's declared limit."""


# -- the wire ---------------------------------------------------------------------------------


class MalformedMessage(SwitchboardError):
    """A message read from a queue is not a valid Switchboard message; it goes to
    dead-letter with this error's text as the reason."""


class SerializationError(SwitchboardError, TypeError):
    """A value that must cross a process boundary is not JSON-serializable."""


# -- workflows and tasks ------------------------------------------------------------------


class NonDeterminismError(SwitchboardError):
    """Replay met a step that differs from the recorded one (another task name or input).

    The message names the step; the run fails rather than silently continuing.
    """


class TaskFailed(SwitchboardError):
    """Raised inside a workflow when a task failed for good (retries exhausted or a
    non-retryable error). Carries the remote error's type, message and traceback."""

    def __init__(self, task: str, error_type: str, message: str, traceback: str = "") -> None:
        super().__init__(f"task {task!r} failed: {error_type}: {message}")
        self.task = task
        self.error_type = error_type
        self.message = message
        self.traceback = traceback


class NonRetryableError(SwitchboardError):
    """Raise from a task to fail it at once, without using its remaining retries."""


class EventTimeout(SwitchboardError, TimeoutError):
    """`ctx.wait_for_event` did not receive its event before the timeout."""


class InvalidToken(SwitchboardError):
    """A task token was forged, corrupted, or belongs to another app."""


class TokenAlreadyUsed(InvalidToken):
    """A task token was already used to complete or fail its task."""


# -- runs, seen from a client -------------------------------------------------------------


class RunFailed(SwitchboardError):
    """`client.wait` found the run failed or cancelled; `status` holds the details."""

    def __init__(self, status: RunStatus) -> None:
        error = status.error or {}
        detail = f"{error.get('type', 'Error')}: {error.get('message', '')}" if error else ""
        super().__init__(f"run {status.run_id} {status.status}" + (f": {detail}" if detail else ""))
        self.status = status


class WaitTimeout(SwitchboardError, TimeoutError):
    """`client.wait` gave up before the run finished; the run itself goes on."""


def describe(exc: BaseException) -> dict[str, Any]:
    """The JSON form of an exception that crosses a process boundary."""
    import traceback

    return {
        "type": type(exc).__qualname__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }
