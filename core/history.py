"""A run's recorded history and the state folded from it.

A run lives in one state-store partition (its run id). Its history is a log of entries
`h/0000000000`, `h/0000000001`, ...: each entry is written once, with `expect=ABSENT`, and
holds the events of one engine step (outcomes recorded, steps scheduled, status changes)
plus the ids of the messages it consumed. Writing entry n succeeds only for the one
writer that had seen entries 0..n-1, which serialises concurrent engines on the same run,
records each outcome exactly once, and never rewrites a growing record. Loading a run is
one prefix scan.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from switchboard import wire
from switchboard.interfaces import StateStore
from switchboard.status import TERMINAL, HistoryEvent, RunStatus, StepInfo
from switchboard.wire import Blobs

PREFIX = "h/"

TASK, SLEEP, EVENT = "task", "sleep", "event"

# Step statuses.
SCHEDULED = "scheduled"  # an attempt was handed to the executor
PENDING = "pending"  # the task said someone else finishes it (token)
BACKOFF = "backoff"  # an attempt failed; the next waits for its retry timer
WAITING = "waiting"  # a sleep or an event wait
COMPLETED = "completed"
FAILED = "failed"


def entry_key(n: int) -> str:
    return f"{PREFIX}{n:010d}"


def encode_entry(n: int, at: float, consumed: list[str], events: list[dict[str, Any]]) -> bytes:
    """The JSON of history entry `n`: what `wire.dumps` writes for
    `{"v", "n", "at", "consumed", "events"}`, byte for byte but for `at`, made faster for
    the two events of almost every step (a step completed with a plain result, a task
    scheduled). `at` (epoch seconds, not negative) is written to the microsecond, with six
    decimals made from integers: a float's shortest repr costs more than the rest of the
    entry. `SerializationError` if an event holds something that is not JSON."""
    ids_json = wire.to_json(consumed, what="consumed message ids") if consumed else "[]"
    seconds, micros = divmod(round(at * 1_000_000), 1_000_000)
    return (
        f'{{"v":{wire.VERSION},"n":{n},"at":{seconds}.{micros:06d},"consumed":{ids_json},'
        f'"events":[{",".join(map(_encode_event, events))}]}}'
    ).encode()


def encode_document(entry: dict[str, Any]) -> bytes:
    """`encode_entry` of an entry given as its document (a run's first, made by the client)."""
    return encode_entry(entry["n"], entry["at"], entry["consumed"], entry["events"])


def _encode_event(event: dict[str, Any]) -> str:
    kind = event["e"]
    if kind == "step.completed" and len(event) == 4 and "result" in event:
        result = wire.scalar_json(event["result"])
        if result is not None:
            return (
                f'{{"e":"step.completed","seq":{event["seq"]},'
                f'"attempt":{event["attempt"]},"result":{result}}}'
            )
    elif kind == "step.scheduled" and len(event) == 6 and event["kind"] == TASK:
        recorded, name, digest = event["input"], event["name"], event["digest"]
        # An identifier (the usual task name) and a hex digest hold nothing JSON escapes.
        if (
            type(recorded) is wire.Encoded
            and type(name) is str
            and name.isidentifier()
            and type(digest) is str
            and digest.isalnum()
        ):
            return (
                f'{{"e":"step.scheduled","seq":{event["seq"]},"kind":"task","name":"{name}",'
                f'"digest":"{digest}","input":{recorded.json}}}'
            )
    return wire.to_json(event, what="a history event")


@dataclass(slots=True)
class StepState:
    seq: int
    kind: str
    name: str
    digest: str
    status: str
    #: `{"args": [...], "kwargs": {...}}` for a task; dropped once the step is finished.
    input: Any = None
    attempt: int = 1
    result: Any = None
    error: dict[str, Any] | None = None
    #: Changes to the run's cache made by the task, applied when the workflow takes the result.
    cache_delta: dict[str, Any] | None = None
    #: When a sleep ends or the next retry may start (epoch seconds).
    due: float | None = None
    timeout: float | None = None
    #: Not recorded: the cache snapshot given to the task, rebuilt by replay.
    cache: dict[str, Any] | None = None

    @property
    def open(self) -> bool:
        return self.status not in (COMPLETED, FAILED)


@dataclass
class RunView:
    """Everything the engine knows about one run, folded from its history."""

    run_id: str
    app: str = ""
    workflow: str = ""
    input: dict[str, Any] = field(default_factory=dict)
    status: str = "pending"
    output: Any = None
    error: dict[str, Any] | None = None
    created: float = 0.0
    updated: float = 0.0
    steps: dict[int, StepState] = field(default_factory=dict)
    #: The steps not finished yet, kept as events are folded (a run has few at a time).
    unfinished: dict[int, StepState] = field(default_factory=dict)
    #: Signals received and not yet taken by a `wait_for_event`: {"id", "name", "payload"}.
    signals: list[dict[str, Any]] = field(default_factory=list)
    #: Ids of the messages whose effects are recorded.
    consumed: set[str] = field(default_factory=set)
    #: The number of the next history entry.
    next_n: int = 0

    @property
    def exists(self) -> bool:
        return self.next_n > 0

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def open_steps(self) -> list[StepState]:
        return list(self.unfinished.values())

    def live_status(self) -> str:
        """pending, running or waiting for an unfinished run; the final status otherwise."""
        if self.done or self.status == "pending":
            return self.status
        open_steps = self.open_steps()
        if open_steps and all(step.status != SCHEDULED for step in open_steps):
            return "waiting"
        return "running"

    # -- folding -----------------------------------------------------------------------------

    def apply_entry(self, entry: dict[str, Any]) -> None:
        at = float(entry["at"])
        for event in entry["events"]:
            self.apply(event, at)
        self.consumed.update(entry.get("consumed", ()))
        self.next_n = int(entry["n"]) + 1

    def apply(self, event: dict[str, Any], at: float) -> None:
        """Fold one event into the view (the same code for replay and for live events)."""
        kind = event["e"]
        self.updated = at
        # The two events of almost every step first.
        if kind == "step.completed":
            step = self.steps[event["seq"]]
            step.status, step.result = COMPLETED, event.get("result")
            step.cache_delta = event.get("cache")
            step.input = step.cache = None  # only an open step is handed out again
            del self.unfinished[step.seq]
            if "signal" in event:
                self.signals = [s for s in self.signals if s["id"] != event["signal"]]
        elif kind == "step.scheduled":
            seq, step_kind = event["seq"], event["kind"]
            # By position: keyword arguments cost more than the rest of the step's making.
            status = SCHEDULED if step_kind == TASK else WAITING
            step = StepState(
                seq, step_kind, event["name"], event["digest"], status, event.get("input")
            )
            if step_kind != TASK:
                step.due, step.timeout = event.get("due"), event.get("timeout")
            self.steps[seq] = self.unfinished[seq] = step
        elif kind == "run.created":
            self.app, self.workflow, self.input = event["app"], event["workflow"], event["input"]
            self.created = at
        elif kind == "run.started":
            self.status = "running"
        elif kind == "step.dispatched":
            step = self.steps[event["seq"]]
            step.attempt, step.status, step.due = event["attempt"], SCHEDULED, None
        elif kind == "step.pending":
            self.steps[event["seq"]].status = PENDING
        elif kind == "step.failed":
            step = self.steps[event["seq"]]
            step.error = event["error"]
            if event.get("retry_at") is not None:
                step.status, step.due = BACKOFF, event["retry_at"]
            else:
                step.status = FAILED
                step.input = step.cache = None
                del self.unfinished[step.seq]
        elif kind == "signal.received":
            self.signals.append(
                {"id": event["id"], "name": event["name"], "payload": event.get("payload")}
            )
        elif kind == "run.completed":
            self.status, self.output = "completed", event.get("output")
        elif kind == "run.failed":
            self.status, self.error = "failed", event["error"]
        elif kind == "run.cancelled":
            self.status = "cancelled"
            self.error = {"type": "Cancelled", "message": event.get("reason", ""), "traceback": ""}

    def to_status(self) -> RunStatus:
        return RunStatus(
            run_id=self.run_id,
            workflow=self.workflow,
            status=self.live_status(),
            steps=[StepInfo(s.seq, s.kind, s.name, s.attempt, s.status) for s in self.open_steps()],
            error=self.error,
            output=self.output,
            created=self.created,
            updated=self.updated,
        )


def read_entries(blobs: Blobs, store: StateStore, run_id: str) -> Iterator[dict[str, Any]]:
    """The run's history entries in order."""
    cursor = None
    while True:
        page = store.scan(run_id, prefix=PREFIX, limit=1000, cursor=cursor)
        for record in page.records:
            yield blobs.read_record(record.value)
        if page.cursor is None:
            return
        cursor = page.cursor


def load(blobs: Blobs, store: StateStore, run_id: str) -> RunView:
    """Fold a run's whole history; `view.exists` is False for an unknown run."""
    view = RunView(run_id)
    for entry in read_entries(blobs, store, run_id):
        view.apply_entry(entry)
    return view


def events(blobs: Blobs, store: StateStore, run_id: str) -> list[HistoryEvent]:
    """The run's history as a flat list of events, for `client.history`."""
    out = []
    for entry in read_entries(blobs, store, run_id):
        for event in entry["events"]:
            data = {k: v for k, v in event.items() if k != "e"}
            out.append(HistoryEvent(float(entry["at"]), event["e"], data))
    return out
