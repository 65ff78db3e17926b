"""Values a client reads about runs: `RunStatus`, `StepInfo`, `HistoryEvent`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RUN_STATUSES = ("pending", "running", "waiting", "completed", "failed", "cancelled")
TERMINAL = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class StepInfo:
    """One step of a run that has not finished yet."""

    seq: int
    kind: str
    name: str
    attempt: int
    status: str


@dataclass(frozen=True)
class RunStatus:
    """A run as `client.status` sees it."""

    run_id: str
    workflow: str
    status: str
    #: Steps scheduled and not finished.
    steps: list[StepInfo] = field(default_factory=list)
    #: For a failed run: {"type", "message", "traceback"}.
    error: dict[str, Any] | None = None
    output: Any = None
    created: float = 0.0
    updated: float = 0.0

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class HistoryEvent:
    """One recorded event of a run, in the order it was recorded."""

    at: float
    type: str
    data: dict[str, Any]
