"""The replay runtime: turns messages from the invocations queue into recorded progress.

Read this top to bottom:

1. `Engine.handle(delivery)` decodes a message and routes it to the `RunDriver` of its run,
   returning a future that says how to settle the delivery (ack, release, dead-letter).
2. A `RunDriver` owns one live run in this process, on its own thread. On a cache miss it
   loads the run's history (one scan) and replays the workflow function: calls whose
   outcome is recorded return at once. At the first call without an outcome the workflow
   *waits inside the call*: the driver commits what it decided (one history entry),
   dispatches new steps, settles the deliveries it holds, and blocks for the next message.
   The function is not re-run for every event, so a long chain costs the same per step
   as a short one; replay happens only when a run is loaded afresh.
3. A lone awaited task may run *inline* on the driver's thread (when this process runs
   tasks): its outcome is committed together with the next decision, one write per step.
   The delivery that woke the run stays held (unsettled, its lease extended by the worker)
   until everything outstanding is durable, so a crash mid-task redelivers it.

Guarantees, and where they come from:
- each outcome is recorded once: history entries are written with `expect=ABSENT`, and a
  driver appends only what its complete view of the history allows;
- duplicates are harmless: message ids are recorded as consumed; a result for a step that
  is no longer open, or for another attempt, changes nothing;
- a crash loses nothing: deliveries are settled only after their effects are committed
  and dispatched; a redelivered message that was already consumed makes the driver
  re-dispatch every open step (tasks run at least once; outcomes are still recorded once);
- replay is checked: each step records its kind, name and input digest, and a mismatch
  raises `NonDeterminismError` naming the step.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, NoReturn

from switchboard import history, wire
from switchboard.app import App, Task
from switchboard.context import Context, TaskContext, resolve_token, run_in_workflow
from switchboard.errors import (
    Conflict,
    EventTimeout,
    MalformedMessage,
    NonDeterminismError,
    SerializationError,
    TaskFailed,
    describe,
)
from switchboard.execution import (
    Invocation,
    Outcome,
    apply_cache_delta,
    attempt,
    copy_cache,
    failure,
    made_once,
)
from switchboard.history import (
    BACKOFF,
    COMPLETED,
    EVENT,
    PENDING,
    SCHEDULED,
    SLEEP,
    TASK,
    RunView,
    StepState,
)
from switchboard.index import RunIndex
from switchboard.interfaces import ABSENT, Delivery, Executor, Queue, Record, StateStore
from switchboard.retry import retrying
from switchboard.threads import Threads
from switchboard.tokens import Signer, TokenClaims

log = logging.getLogger("switchboard.engine")


@dataclass(frozen=True, slots=True)
class Settlement:
    """What the receiver of a delivery should do with it."""

    action: str  # "ack", "release" or "dead"
    delay: float = 0.0
    reason: str = ""


ACK = Settlement("ack")

#: History events a replay records again by itself: no outcome, nothing from outside.
_DECISIONS = frozenset({"run.started", "step.scheduled"})


class _Stop(BaseException):
    """Unwinds a driver's workflow thread: evicted, stale, or shutting down."""


class _Cancelled(BaseException):
    """Unwinds a workflow whose run was cancelled."""


class _EngineFailed(BaseException):
    """Unwinds a workflow past its own `except` clauses when the engine fails under it
    (a provider outage beyond `retrying`, a bug): that is not the workflow's outcome, and
    the driver gives its messages back to be retried."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(slots=True)
class _Inbound:
    message: wire.Message | None  # None asks the driver to stop
    future: Future[Settlement] | None
    #: `time.monotonic()` by which the delivery should be settled: no task starts inline
    #: after it while the delivery is held.
    settle_by: float = math.inf


_STOP = _Inbound(None, None)


class Engine:
    """Processes invocation messages for one app, keeping live runs in memory."""

    def __init__(
        self,
        app: App,
        store: StateStore,
        blobs: wire.Blobs,
        invocations: Queue,
        executor: Executor,
        signer: Signer,
        index: RunIndex,
        *,
        inline_tasks: bool = True,
        max_inline_seconds: float = 60.0,
        idle_seconds: float = 60.0,
        index_lag: float = 0.5,
        on_finished: Callable[[RunView], None] | None = None,
        threads: Threads,
    ) -> None:
        self.app = app
        self.store = store
        self.blobs = blobs
        self.invocations = invocations
        self.executor = executor
        self.signer = signer
        self.index = index
        self.inline_tasks = inline_tasks
        #: How long a run may keep a delivery unsettled while running tasks inline; then
        #: it hands tasks to the executor so the delivery settles. `handle(settle_by=)`
        #: sets a delivery's own limit (a serverless invocation's time).
        self.max_inline_seconds = max_inline_seconds
        self.idle_seconds = idle_seconds
        #: How far the run index may lag a run that is running tasks inline: it is written
        #: whenever the run waits and when it ends, and at this interval between. A chain
        #: that ends sooner goes from pending to its end in the index with no write between.
        self.index_lag = index_lag
        self.on_finished = on_finished
        self._drivers: dict[str, RunDriver] = {}
        self._lock = threading.Lock()
        self._closed = False
        #: The threads drivers run on: the runtime's, shared with its client, and closed by it.
        self._threads = threads

    # -- intake ------------------------------------------------------------------------------

    def handle(
        self, delivery: Delivery, *, settle_by: float | None = None, created: bool = False
    ) -> Future[Settlement]:
        """Accept one delivery from the invocations queue; the future says how to settle it
        once its effects are recorded (or that it is malformed and must be dead-lettered).

        While the delivery is held, tasks run inline only until `settle_by` (a
        `time.monotonic()` value; default: `max_inline_seconds` from now); after it, they
        go to the executor so the delivery settles.

        `created` says the delivery is a start message whose sender has just written the
        entry it carries as the run's first: a new driver starts from that entry instead
        of reading the history. (Should another worker have added to it meanwhile, the
        driver's first write conflicts and it reloads.)
        """
        future: Future[Settlement] = Future()
        try:
            message = wire.decode(delivery.body, self.blobs)
            if message.app != self.app.name:
                raise MalformedMessage(
                    f"message for app {message.app!r} reached app {self.app.name!r}"
                )
            if message.kind in (wire.TASK_INVOKE,):
                raise MalformedMessage(f"{message.kind} does not belong on the invocations queue")
        except MalformedMessage as exc:
            log.warning("dead-lettering message %s: %s", delivery.id, exc)
            future.set_result(Settlement("dead", reason=str(exc)))
            return future
        if message.kind == wire.TIMER_FIRED and self._postpone(message):
            future.set_result(ACK)
            return future
        if settle_by is None:
            settle_by = time.monotonic() + self.max_inline_seconds
        self._route(message.run, _Inbound(message, future, settle_by), created=created)
        return future

    def _postpone(self, message: wire.Message) -> bool:
        """A timer longer than the queue's maximum delay travels in hops: re-send it."""
        remaining = float(message["due"]) - time.time()
        if remaining <= 0.05:
            return False
        body = {
            "v": wire.VERSION,
            "kind": message.kind,
            "id": message.id,
            "app": message.app,
            "run": message.run,
            **message.fields,
        }
        self.send_timer(body, remaining)
        return True

    def send_timer(self, body: dict[str, Any], delay: float) -> None:
        caps = self.invocations.capabilities
        encoded = wire.encode(body, caps.max_message_bytes, self.blobs)
        retrying(
            lambda: self.invocations.send([encoded], delay=max(0.0, min(delay, caps.max_delay)))
        )

    def _route(self, run_id: str, inbound: _Inbound, *, created: bool = False) -> None:
        first_entry = None
        if inbound.message is not None and inbound.message.kind == wire.RUN_START:
            first_entry = inbound.message.get("entry")
        with self._lock:
            driver = self._drivers.get(run_id)
            fresh = driver is None
            if driver is None:
                driver = self._drivers[run_id] = RunDriver(
                    self, run_id, first_entry=first_entry, created=created
                )
            driver.inbox.put(inbound)
        if fresh:
            driver.start()

    # -- driver lifecycle --------------------------------------------------------------------

    def _retire(self, driver: RunDriver) -> bool:
        """Forget a driver, unless messages are waiting in its inbox."""
        with self._lock:
            if not driver.inbox.empty():
                return False
            if self._drivers.get(driver.run_id) is driver:
                del self._drivers[driver.run_id]
            return True

    def _replace(self, driver: RunDriver, carried: list[_Inbound]) -> None:
        """Hand a stale driver's messages to a fresh one that reloads the run."""
        with self._lock:
            successor = RunDriver(self, driver.run_id, redispatch=True)
            for inbound in carried:
                successor.inbox.put(inbound)
            while True:
                try:
                    successor.inbox.put(driver.inbox.get_nowait())
                except queue.Empty:
                    break
            self._drivers[driver.run_id] = successor
        successor.start()

    def drives(self, run_id: str) -> bool:
        """Whether a driver in this process has the run live now."""
        return run_id in self._drivers

    @property
    def live_runs(self) -> int:
        with self._lock:
            return len(self._drivers)

    def close(self, timeout: float = 10.0) -> None:
        """Stop every driver at its next wait point; unsettled deliveries are released."""
        with self._lock:
            self._closed = True
            drivers = list(self._drivers.values())
        for driver in drivers:
            driver.inbox.put(_STOP)
        deadline = time.monotonic() + timeout
        for driver in drivers:
            driver.join(max(0.0, deadline - time.monotonic()))


class _InlineAttempt:
    """A task attempt run on its driver's thread. The `Invocation` that `current_task()`
    answers from is made only when the task first asks (most never do), from its step as
    it is then: open, while the attempt runs."""

    __slots__ = ("_driver", "_step", "invocation")

    def __init__(self, driver: RunDriver, step: StepState) -> None:
        self._driver = driver
        self._step = step
        self.invocation: Invocation | None = None

    def task_context(self) -> TaskContext:
        made = made_once(self, "invocation", lambda: self._driver._invocation(self._step))
        return made.task_context()

    def cache_delta(self) -> dict[str, Any] | None:
        return None if self.invocation is None else self.invocation.cache_delta()


class RunDriver:
    """One live run: its view of the history and the thread its workflow runs on."""

    def __init__(
        self,
        engine: Engine,
        run_id: str,
        *,
        redispatch: bool = False,
        first_entry: dict[str, Any] | None = None,
        created: bool = False,
    ) -> None:
        self.engine = engine
        self.run_id = run_id
        self._inline_tasks = engine.inline_tasks
        self._tasks = engine.app.tasks
        #: Entry 0 carried by the start message that woke the driver (see `_create`), and
        #: whether its sender wrote it (the driver then starts from it without a read).
        self._first_entry = first_entry
        self._created = created
        self.inbox: queue.SimpleQueue[_Inbound] = queue.SimpleQueue()
        self.view = RunView(run_id)
        self.ctx: Context | None = None
        self._ended = threading.Event()
        self._redispatch = redispatch
        self._held: list[_Inbound] = []
        self._settle_by = math.inf  # the earliest `settle_by` of the held deliveries
        self._pending: list[dict[str, Any]] = []
        self._pending_consumed: list[str] = []
        self._to_dispatch: list[int] = []
        self._timers: list[dict[str, Any]] = []
        self._next_seq = 0
        self._taken: set[int] = set()
        #: The status the run index holds for this run, and that record's version, as
        #: this driver last wrote them. Unknown (None) until its first write: the index may
        #: lag the history (a crash between the two writes), and that write repairs it.
        self._indexed_status: str | None = None
        self._index_version: str | None = None
        self._indexed_at = time.monotonic()
        self._cancelled = False
        self._nondeterminism: NonDeterminismError | None = None
        #: The history entry being written while an inline task runs (see `_commit`).
        self._writing: tuple[Future[str], list[dict[str, Any]], list[str]] | None = None

    def start(self) -> None:
        self.engine._threads.run(self._run)

    def join(self, timeout: float) -> None:
        self._ended.wait(timeout)

    def _run(self) -> None:
        thread = threading.current_thread()
        name, thread.name = thread.name, f"run-{self.run_id}"
        try:
            self._main()
        finally:
            thread.name = name
            self._ended.set()

    # -- the thread --------------------------------------------------------------------------

    def _main(self) -> None:
        # How to settle what is left when the thread ends: anything short of a clean finish
        # (including a BaseException from a dying process) gives the messages back.
        leftover = Settlement("release")
        try:
            if self._created and self._first_entry is not None:
                self.view.apply_entry(self._first_entry)
            else:
                self.view = retrying(
                    lambda: history.load(self.engine.blobs, self.engine.store, self.run_id)
                )
            if not self.view.exists and self._first_entry is not None:
                self._create()
            if not self.view.exists:
                leftover = Settlement("dead", reason=f"no run with id {self.run_id!r}")
            elif self.view.workflow not in self.engine.app.workflows:
                known = ", ".join(sorted(self.engine.app.workflows)) or "none"
                leftover = Settlement(
                    "dead",
                    reason=f"app {self.engine.app.name!r} has no workflow "
                    f"{self.view.workflow!r} (known: {known}); deploy it and redrive",
                )
            else:
                if not self.view.done:
                    self._run_workflow()
                # The index says the run ended only once its records carry their TTL, and
                # the delivery settles after both: a crash in between redoes them.
                self._flush(settle=False, index=False)
                self._expire()
                self._update_index()
                # Watchers hear of the end as soon as the index shows it, before the acks:
                # a `client.wait` that found it in the index meanwhile would read the
                # whole history for the status they are given here.
                if self.engine.on_finished is not None:
                    self.engine.on_finished(self.view)
                self._settle_held(ACK)
                leftover = ACK  # the run is over: later messages for it have nothing to do
        except _Stop:
            pass
        except Exception:  # a provider outage or a bug: retry the messages later
            log.exception("run %s: engine error; its messages will be retried", self.run_id)
            leftover = Settlement("release", delay=5.0)
        finally:
            while True:
                self._settle_all(leftover)
                if self.engine._retire(self):
                    break

    def _create(self) -> None:
        """The start message came before the run's first entry, which the client writes at
        the same time: write the same entry (whichever lands first, the run exists once)."""
        assert self._first_entry is not None  # only a start that carries it comes here
        entry = history.encode_document(self._first_entry)
        with contextlib.suppress(Conflict):
            retrying(
                lambda: self.engine.blobs.put_record(
                    self.run_id, history.entry_key(0), entry, expect=ABSENT
                )
            )
        self.view = retrying(
            lambda: history.load(self.engine.blobs, self.engine.store, self.run_id)
        )

    def _run_workflow(self) -> None:
        workflow = self.engine.app.get_workflow(self.view.workflow)
        ctx = self.ctx = Context(self, self.run_id, workflow.name)
        args, kwargs = wire.call_arguments(self.view.input)
        try:
            self._take_inbox(block=False)
            if self.view.status == "pending":
                self._add({"e": "run.started"})
            output = run_in_workflow(ctx, lambda: workflow.fn(ctx, *args, **kwargs))
            if self._nondeterminism is not None:
                raise self._nondeterminism
            output = wire.normalize(output, what=f"the output of workflow {workflow.name!r}")
            self._add({"e": "run.completed", "output": output})
        except _Cancelled:
            pass
        except _Stop:
            raise
        except _EngineFailed as failed:
            raise failed.error from None  # to `_main`: the messages are retried later
        except Exception as exc:  # noqa: BLE001 - the workflow's failure is the run's outcome
            self._add({"e": "run.failed", "error": describe(self._nondeterminism or exc)})

    # -- what the workflow calls (on this thread) ---------------------------------------------

    def schedule_task(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
        seq = self._claim_seq()
        recorded = wire.task_input(args, kwargs, name)
        fingerprint = wire.digest(recorded.json.encode())
        step = self.view.steps.get(seq)
        if step is not None:
            self._check(step, TASK, name, fingerprint)
        else:
            if name not in self.engine.app.tasks:
                self.engine.app.get_task(name)  # raises UnknownName, naming the known ones
            self._add(
                {
                    "e": "step.scheduled",
                    "seq": seq,
                    "kind": TASK,
                    "name": name,
                    "digest": fingerprint,
                    "input": recorded,
                }
            )
            step = self.view.steps[seq]
            self._to_dispatch.append(seq)
        assert self.ctx is not None
        # The snapshot it is handed out with (none for an empty cache, or for a replayed
        # closed step).
        if self.ctx.cache and step.open:
            step.cache = copy_cache(self.ctx.cache)
        return seq

    def schedule_sleep(self, seconds: float) -> int:
        seq = self._claim_seq()
        fingerprint = wire.digest(wire.dumps(["sleep", seconds]))
        step = self.view.steps.get(seq)
        if step is not None:
            self._check(step, SLEEP, "sleep", fingerprint)
            return seq
        due = time.time() + seconds
        self._add(
            {
                "e": "step.scheduled",
                "seq": seq,
                "kind": SLEEP,
                "name": "sleep",
                "digest": fingerprint,
                "due": due,
            }
        )
        self._timer("sleep", seq, 1, due)
        return seq

    def schedule_event(self, name: str, timeout: float | None) -> int:
        seq = self._claim_seq()
        fingerprint = wire.digest(wire.dumps(["event", name, timeout]))
        step = self.view.steps.get(seq)
        if step is not None:
            self._check(step, EVENT, name, fingerprint)
            return seq
        due = time.time() + timeout if timeout is not None else None
        self._add(
            {
                "e": "step.scheduled",
                "seq": seq,
                "kind": EVENT,
                "name": name,
                "digest": fingerprint,
                "timeout": timeout,
                "due": due,
            }
        )
        buffered = next((s for s in self.view.signals if s["name"] == name), None)
        if buffered is not None:
            self._add(
                {
                    "e": "step.completed",
                    "seq": seq,
                    "attempt": 1,
                    "result": buffered["payload"],
                    "signal": buffered["id"],
                }
            )
        elif due is not None:
            self._timer("event-timeout", seq, 1, due)
        return seq

    def is_done(self, seq: int) -> bool:
        return not self.view.steps[seq].open

    def wait_all(self, seqs: list[int]) -> None:
        self._wait_until(seqs)

    def result_of(self, seq: int) -> Any:
        step = self.view.steps[seq]
        if seq in self.view.unfinished:  # `step.open`, without the property's call
            self._wait_until([seq])
        # The task's changes to the cache reach it when the workflow first takes its result.
        if step.cache_delta is not None and seq not in self._taken:
            self._taken.add(seq)
            assert self.ctx is not None
            apply_cache_delta(self.ctx.cache, step.cache_delta)
        if step.status == COMPLETED:
            return step.result
        error = step.error or {}
        if step.kind == EVENT:
            raise EventTimeout(error.get("message", f"event {step.name!r} timed out"))
        raise TaskFailed(
            step.name,
            error.get("type", "Error"),
            error.get("message", ""),
            error.get("traceback", ""),
        )

    def _claim_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _check(self, step: StepState, kind: str, name: str, fingerprint: str) -> None:
        if (step.kind, step.name, step.digest) != (kind, name, fingerprint):
            error = NonDeterminismError(
                f"run {self.run_id} step {step.seq}: the history records {step.kind} "
                f"{step.name!r} (input digest {step.digest}), but the workflow now calls "
                f"{kind} {name!r} (input digest {fingerprint})"
            )
            # Kept even if workflow code swallows it: the run must not continue silently.
            self._nondeterminism = self._nondeterminism or error
            raise error

    # -- waiting -------------------------------------------------------------------------------

    def _wait_until(self, seqs: list[int]) -> None:
        """Commit, dispatch, run inline and take messages until the steps are closed.
        Called from workflow code: an error of the engine's own passes through it as
        `_EngineFailed`, never as an exception the workflow could take for its own."""
        steps, unfinished = self.view.steps, self.view.unfinished  # the open steps
        try:
            while waiting := [steps[seq] for seq in seqs if seq in unfinished]:
                task = self._inline_candidate(waiting)
                if task is None:
                    self._flush(settle=True)
                    self._take_inbox(block=True)
                    continue
                if self._only_decisions():
                    self._commit(meanwhile=True)
                else:
                    self._flush(settle=False, index=self._index_overdue())
                self._run_inline(waiting[0], task)
        except Exception as exc:  # re-raised to the driver by `_run_workflow`
            raise _EngineFailed(exc) from exc

    def _inline_candidate(self, waiting: list[StepState]) -> Task[Any, Any] | None:
        """The task of the one step the workflow waits for, if this thread may run it now
        (the step is then no longer to be dispatched)."""
        if len(waiting) != 1 or not self._inline_tasks:
            return None
        if self._held and time.monotonic() >= self._settle_by:
            return None
        step = waiting[0]
        if step.seq not in self._to_dispatch:
            return None
        task = self._tasks.get(step.name)
        # A timeout needs an interruptible runner: such tasks go through the executor.
        if task is None or task.timeout is not None:
            return None
        self._to_dispatch.remove(step.seq)
        return task

    def _only_decisions(self) -> bool:
        """Whether what is uncommitted is only what a replay decides again (the run
        starting, steps scheduled) with nothing waiting to go out. Before an inline task,
        such an entry is written while the task runs (a run's first step): no outcome
        comes before the task, and a crash meanwhile redelivers the held message, whose
        replay decides the same."""
        pending = self._pending
        return (
            # The usual case first: the last step's outcome waits to be committed.
            (not pending or pending[0]["e"] in _DECISIONS)
            and not self._to_dispatch
            and not self._timers
            and not self._redispatch
            and all(event["e"] in _DECISIONS for event in pending)
        )

    def _run_inline(self, step: StepState, task: Task[Any, Any]) -> None:
        args, kwargs = wire.call_arguments(step.input)
        outcome = attempt(task, args, kwargs, _InlineAttempt(self, step))
        self._record_outcome(step, outcome)

    def _take_inbox(self, *, block: bool) -> None:
        """Apply waiting messages; with `block`, wait for at least one first."""
        if block:
            while True:
                try:
                    inbound = self.inbox.get(timeout=self.engine.idle_seconds)
                    break
                except queue.Empty:
                    if not self._held and not self._pending and self.engine._retire(self):
                        raise _Stop from None
            self._apply(inbound)
        while True:
            try:
                inbound = self.inbox.get_nowait()
            except queue.Empty:
                break
            self._apply(inbound)
        if self._cancelled:
            raise _Cancelled

    # -- applying messages -----------------------------------------------------------------

    def _apply(self, inbound: _Inbound) -> None:
        message = inbound.message
        if message is None:
            raise _Stop
        if inbound.future is not None:
            self._settle_by = min(self._settle_by, inbound.settle_by)
            self._held.append(inbound)
        if message.id in self.view.consumed:
            if message.id not in self._pending_consumed:
                # Redelivered after its effects were recorded: the crash may have come
                # before dispatch, so hand every open step out again.
                self._redispatch = True
            return
        self.view.consumed.add(message.id)
        self._pending_consumed.append(message.id)
        if self.view.done:
            return
        kind = message.kind
        if kind == wire.TASK_RESULT:
            self._on_result(message)
        elif kind == wire.TIMER_FIRED:
            self._on_timer(message)
        elif kind == wire.RUN_SIGNAL:
            self._on_signal(message)
        elif kind == wire.RUN_CANCEL:
            self._add({"e": "run.cancelled", "reason": str(message.get("reason", ""))})
            self._cancelled = True

    def _on_result(self, message: wire.Message) -> None:
        step = self.view.steps.get(message["seq"])
        if (
            step is None
            or step.kind != TASK
            or step.name != message["task"]
            or not step.open
            or step.attempt != message["attempt"]
            or step.status == BACKOFF
        ):
            self._ignore()  # a duplicate, or a result for an attempt that no longer matters
            return
        self._record_outcome(step, Outcome.from_message(message))

    def _on_timer(self, message: wire.Message) -> None:
        step = self.view.steps.get(message["seq"])
        if step is None or not step.open:
            self._ignore()
            return
        purpose, attempt = message["purpose"], message["attempt"]
        if purpose == "sleep" and step.kind == SLEEP:
            self._add({"e": "step.completed", "seq": step.seq, "attempt": 1})
        elif purpose == "retry" and step.status == BACKOFF and step.attempt == attempt - 1:
            self._add({"e": "step.dispatched", "seq": step.seq, "attempt": attempt})
            self._to_dispatch.append(step.seq)
        elif (
            purpose == "timeout"
            and step.kind == TASK
            and step.attempt == attempt
            and step.status in (SCHEDULED, PENDING)
        ):
            timeout = TimeoutError(f"task {step.name!r} attempt {attempt} timed out")
            self._record_outcome(step, Outcome("error", error=failure(timeout, retryable=True)))
        elif purpose == "event-timeout" and step.kind == EVENT:
            timed_out = EventTimeout(f"no {step.name!r} event within {step.timeout}s")
            self._add(
                {
                    "e": "step.failed",
                    "seq": step.seq,
                    "attempt": 1,
                    "error": failure(timed_out, retryable=False),
                }
            )

    def _on_signal(self, message: wire.Message) -> None:
        name = message["name"]
        self._add(
            {
                "e": "signal.received",
                "id": message.id,
                "name": name,
                "payload": message.get("payload"),
            }
        )
        waiting = [s for s in self.view.open_steps() if s.kind == EVENT and s.name == name]
        if waiting:
            step = min(waiting, key=lambda s: s.seq)
            self._add(
                {
                    "e": "step.completed",
                    "seq": step.seq,
                    "attempt": 1,
                    "result": message.get("payload"),
                    "signal": message.id,
                }
            )

    def _record_outcome(self, step: StepState, outcome: Outcome) -> None:
        if outcome.outcome == "ok":
            event = {
                "e": "step.completed",
                "seq": step.seq,
                "attempt": step.attempt,
                "result": outcome.result,
            }
            if outcome.cache:
                event["cache"] = outcome.cache
            self._add(event)
            return
        base = {"seq": step.seq, "attempt": step.attempt}
        if outcome.outcome == "pending":
            if step.status == SCHEDULED:
                self._add({"e": "step.pending", **base})
            return
        error = dict(outcome.error or {})
        task = self.engine.app.tasks.get(step.name)
        if error.get("retryable") and task is not None and step.attempt < task.retry.max_attempts:
            retry_at = time.time() + task.retry.delay_after(step.attempt)
            self._add({"e": "step.failed", **base, "error": error, "retry_at": retry_at})
            self._timer("retry", step.seq, step.attempt + 1, retry_at)
        else:
            self._add({"e": "step.failed", **base, "error": error})

    def _add(self, event: dict[str, Any]) -> None:
        self.view.apply(event, time.time())
        self._pending.append(event)

    def _timer(self, purpose: str, seq: int, attempt: int, due: float) -> None:
        self._timers.append(
            wire.envelope(
                wire.TIMER_FIRED,
                app=self.engine.app.name,
                run=self.run_id,
                seq=seq,
                attempt=attempt,
                purpose=purpose,
                due=due,
            )
        )

    # -- committing ----------------------------------------------------------------------------

    def _flush(self, *, settle: bool, index: bool = True) -> None:
        """Commit pending events as one history entry, then dispatch, update the index
        (unless told not to), then settle."""
        if self._pending:
            self._commit()
        else:
            self._written()
        if self._redispatch:
            self._redispatch = False
            self._redispatch_open_steps()
        self._dispatch()
        if index:
            self._update_index()
        if settle:
            self._settle_held(ACK)

    def _commit(self, *, meanwhile: bool = False) -> None:
        """Write the pending events as the next history entry; with `meanwhile`, on
        another thread while this one goes on (`_written` waits for it). An entry whose
        write had not begun when the next one is committed goes into that one instead:
        a quick task then costs no write of its own."""
        self._written(fold=True)
        try:
            data = history.encode_entry(
                self.view.next_n, time.time(), self._pending_consumed, self._pending
            )
        except SerializationError as exc:  # pragma: no cover - values were checked on entry
            raise AssertionError(f"unserialisable history entry: {exc}") from exc
        run_id, key, blobs = self.run_id, history.entry_key(self.view.next_n), self.engine.blobs

        def put() -> str:
            return blobs.put_record(run_id, key, data, expect=ABSENT)

        if meanwhile:
            future = self.engine._threads.submit(functools.partial(retrying, put))
            self._writing = (future, self._pending, self._pending_consumed)
        else:
            try:
                retrying(put)
            except Conflict:
                self._hand_over()
        self.view.next_n += 1
        self._pending, self._pending_consumed = [], []

    def _written(self, *, fold: bool = False) -> None:
        """Wait for the entry `_commit(meanwhile=True)` is writing, if any; with `fold`,
        take its events back into the pending ones if its write has not begun."""
        if self._writing is None:
            return
        (future, events, consumed), self._writing = self._writing, None
        if fold and future.cancel():
            self.view.next_n -= 1
            self._pending = events + self._pending
            self._pending_consumed = consumed + self._pending_consumed
            return
        try:
            future.result()
        except Conflict:
            self._hand_over()

    def _ignore(self) -> None:
        """Before ignoring a message as stale, make sure it is not *our* view that is stale:
        another engine may have advanced this run (a step we have never heard of). Ignoring
        writes nothing, so no `Conflict` would ever tell us."""
        later = retrying(
            lambda: self.engine.store.get(self.run_id, history.entry_key(self.view.next_n))
        )
        if later is not None:
            self._hand_over()

    def _hand_over(self) -> NoReturn:
        """Our view is stale: a fresh driver reloads the run, takes every message we hold
        and re-dispatches open steps (an inline outcome we held is simply redone)."""
        log.info("run %s: history moved on elsewhere; reloading", self.run_id)
        carried, self._held = self._held, []
        self.engine._replace(self, carried)
        raise _Stop

    def _redispatch_open_steps(self) -> None:
        for step in self.view.open_steps():
            if step.kind == TASK and step.status in (SCHEDULED, PENDING):
                if step.seq not in self._to_dispatch:
                    self._to_dispatch.append(step.seq)
            elif step.status == BACKOFF and step.due is not None:
                self._timer("retry", step.seq, step.attempt + 1, step.due)
            elif step.kind == SLEEP and step.due is not None:
                self._timer("sleep", step.seq, 1, step.due)
            elif step.kind == EVENT and step.due is not None:
                self._timer("event-timeout", step.seq, 1, step.due)

    def _dispatch(self) -> None:
        engine = self.engine
        if self._to_dispatch:
            limit = engine.executor.capabilities.max_payload_bytes
            bodies = []
            for seq in self._to_dispatch:
                step = self.view.steps[seq]
                invocation = self._invocation(step)
                message = wire.envelope(
                    wire.TASK_INVOKE,
                    app=engine.app.name,
                    run=self.run_id,
                    seq=seq,
                    attempt=step.attempt,
                    task=step.name,
                    input={"args": invocation.args, "kwargs": invocation.kwargs},
                    cache=invocation.cache,
                    token=resolve_token(invocation.token),
                    timeout=invocation.timeout,
                )
                bodies.append(wire.encode(message, limit, engine.blobs))
                if invocation.timeout is not None:
                    self._timer("timeout", seq, step.attempt, time.time() + invocation.timeout)
            retrying(lambda: engine.executor.submit(bodies))
            self._to_dispatch = []
        if self._timers:
            timers, self._timers = self._timers, []
            for timer in timers:
                engine.send_timer(timer, float(timer["due"]) - time.time())

    def _invocation(self, step: StepState) -> Invocation:
        task = self.engine.app.tasks.get(step.name)
        claims = (self.engine.app.name, self.run_id, step.seq, step.attempt, step.name)
        signer = self.engine.signer
        args, kwargs = wire.call_arguments(step.input)
        return Invocation(
            run=self.run_id,
            seq=step.seq,
            attempt=step.attempt,
            task=step.name,
            args=args,
            kwargs=kwargs,
            cache=step.cache or {},
            # Signed when first asked for: most tasks never ask.
            token=lambda: signer.sign(TokenClaims(*claims)),
            timeout=task.timeout if task is not None else None,
        )

    def _index_overdue(self) -> bool:
        return time.monotonic() - self._indexed_at >= self.engine.index_lag

    def _update_index(self) -> None:
        self._indexed_at = time.monotonic()
        status = self.view.live_status()
        if status != self._indexed_status:
            ttl = self.engine.app.retention if self.view.done else None
            self._index_version = retrying(
                lambda: self.engine.index.update(self.view, ttl=ttl, version=self._index_version)
            )
            self._indexed_status = status

    def _expire(self) -> None:
        """With the app's `retention`, every record of the finished run gets that TTL: the
        store deletes the run's history, claim checks and token markers after it."""
        retention = self.engine.app.retention
        if retention is None:
            return
        store, cursor = self.engine.store, None
        while True:
            page = retrying(functools.partial(store.scan, self.run_id, limit=100, cursor=cursor))
            for record in page.records:
                # A Conflict: it was rewritten meanwhile (by a redelivery doing the same).
                with contextlib.suppress(Conflict):
                    retrying(functools.partial(self._expire_record, record, retention))
            if page.cursor is None:
                return
            cursor = page.cursor

    def _expire_record(self, record: Record, retention: float) -> None:
        self.engine.store.put(
            self.run_id, record.key, record.value, expect=record.version, ttl=retention
        )

    # -- settling ------------------------------------------------------------------------------

    def _settle_held(self, settlement: Settlement) -> None:
        held, self._held = self._held, []
        self._settle_by = math.inf
        for inbound in held:
            assert inbound.future is not None
            if not inbound.future.done():
                inbound.future.set_result(settlement)

    def _settle_all(self, settlement: Settlement) -> None:
        """Settle held deliveries and everything waiting in the inbox the same way."""
        self._settle_held(settlement)
        while True:
            try:
                inbound = self.inbox.get_nowait()
            except queue.Empty:
                return
            if inbound.future is not None and not inbound.future.done():
                inbound.future.set_result(settlement)
