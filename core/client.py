"""`Client`: start runs and ask about them; the same API over every provider."""

from __future__ import annotations

import builtins
import json
import time
from types import TracebackType
from typing import Any

from switchboard import history, wire
from switchboard.app import Workflow
from switchboard.errors import (
    Conflict,
    NotFound,
    RunFailed,
    TokenAlreadyUsed,
    WaitTimeout,
)
from switchboard.execution import failure
from switchboard.interfaces import ABSENT
from switchboard.retry import retrying
from switchboard.runtime import Runtime
from switchboard.status import TERMINAL, HistoryEvent, RunStatus
from switchboard.tokens import TokenClaims


class Client:
    """Returned by `sb.local` and `sb.connect`; a context manager that closes the runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.app = runtime.app

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.runtime.close()

    # -- runs --------------------------------------------------------------------------------

    def start(
        self,
        workflow: str | Workflow[..., Any],
        /,
        *args: Any,
        run_id: str | None = None,
        **kwargs: Any,
    ) -> str:
        """Start a run of `workflow` with the given input and return its run id.

        Starting again with the same `run_id` and the same input is harmless (the run is
        started once); the same id with different input raises `Conflict`. If `start`
        raises otherwise (the provider failing), the run may have started all the same:
        give a `run_id` to retry safely.
        """
        name = workflow if isinstance(workflow, str) else workflow.name
        self.app.get_workflow(name)
        data = wire.dumps(
            {"args": list(args), "kwargs": kwargs}, what=f"the input of workflow {name!r}"
        )
        run_id = run_id or wire.new_id()
        now = time.time()
        created = {
            "e": "run.created",
            "app": self.app.name,
            "workflow": name,
            "input": json.loads(data),
        }
        entry = {"v": wire.VERSION, "n": 0, "at": now, "consumed": [], "events": [created]}
        runtime = self.runtime
        # The start message carries the run's first entry when it fits: the entry, the
        # index record and the message are then written at once (one round trip), and an
        # engine that gets the message before the entry lands creates the same entry.
        limit = runtime.invocations.capabilities.max_message_bytes
        body = wire.dumps(wire.envelope(wire.RUN_START, app=self.app.name, run=run_id, entry=entry))
        carries_entry = len(body) <= limit
        if not carries_entry:
            start = wire.envelope(wire.RUN_START, app=self.app.name, run=run_id)
            body = wire.encode(start, limit, runtime.blobs)
        created_entry = runtime.in_background(lambda: self._create(run_id, entry))
        indexed = runtime.in_background(
            lambda: retrying(lambda: runtime.index.create(run_id, name, now))
        )
        if not carries_entry:
            created_entry.result()  # the engine needs the run before its start message
        claimed = runtime.send_start(body)
        try:
            indexed.result()
            existing = created_entry.result()
        finally:
            if claimed is not None:  # the run's engine is this process's: start it now
                # Whether the entry in the message is the run's whole history so far.
                wrote = created_entry.exception() is None and created_entry.result() is None
                runtime.adopt(claimed, created=carries_entry and wrote)
        if existing is not None:
            first = existing["events"][0]
            if (first.get("workflow"), first.get("input")) != (name, created["input"]):
                raise Conflict(f"run id {run_id!r} is already used by another run")
        return run_id

    def _create(self, run_id: str, entry: dict[str, Any]) -> dict[str, Any] | None:
        """Write the run's entry 0; None if written, else the entry already there (a retry
        after an ambiguous failure finds its own, the engine may have written the same)."""
        runtime = self.runtime
        try:
            retrying(
                lambda: runtime.blobs.put_record(
                    run_id, history.entry_key(0), history.encode_document(entry), expect=ABSENT
                )
            )
            return None
        except Conflict:
            existing: dict[str, Any] = retrying(
                lambda: next(history.read_entries(runtime.blobs, runtime.store, run_id))
            )
            return existing

    def wait(self, run_id: str, timeout: float | None = None) -> RunStatus:
        """Wait for the run to finish and return its status.

        Raises `RunFailed` (carrying the status) if it failed or was cancelled, and
        `WaitTimeout` if `timeout` seconds pass first (the run goes on).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        notice = self.runtime.watch(run_id)
        try:
            delay = 0.01
            # A run this process drives sets the notice when it ends: look at the index
            # only after the first wait (the run may move to another worker).
            look = not self.runtime.engine.drives(run_id)
            while True:
                if notice.status is not None:  # finished by this process's engine
                    status = notice.status
                    break
                if look:
                    entry = retrying(lambda: self.runtime.index.get(run_id))
                    if entry is None:
                        raise NotFound(f"no run with id {run_id!r}")
                    if entry["status"] in TERMINAL:
                        # A notice set meanwhile saves reading the whole history.
                        status = notice.final() or self.status(run_id)
                        if status.status in TERMINAL:
                            break
                look = True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise WaitTimeout(f"run {run_id} did not finish within {timeout}s")
                notice.wait(delay if remaining is None else min(delay, remaining))
                notice.clear()
                delay = min(delay * 2, 1.0)
        finally:
            self.runtime.unwatch(run_id, notice)
        if status.status != "completed":
            raise RunFailed(status)
        return status

    def status(self, run_id: str) -> RunStatus:
        """The run's workflow, status, unfinished steps, error, output and times."""
        view = retrying(lambda: history.load(self.runtime.blobs, self.runtime.store, run_id))
        if not view.exists:
            raise NotFound(f"no run with id {run_id!r}")
        return view.to_status()

    def list(self, workflow: str | None = None, status: str | None = None) -> list[RunStatus]:
        """Runs of this app, oldest first, optionally filtered (from the run index)."""
        return [
            RunStatus(
                run_id=entry["run_id"],
                workflow=entry["workflow"],
                status=entry["status"],
                created=entry["created"],
                updated=entry["updated"],
            )
            for entry in retrying(self.runtime.index.list)
            if (workflow is None or entry["workflow"] == workflow)
            and (status is None or entry["status"] == status)
        ]

    def history(self, run_id: str) -> builtins.list[HistoryEvent]:
        """Every recorded event of the run, in order."""
        events = retrying(lambda: history.events(self.runtime.blobs, self.runtime.store, run_id))
        if not events:
            raise NotFound(f"no run with id {run_id!r}")
        return events

    def cancel(self, run_id: str, reason: str = "cancelled by client") -> None:
        """Ask the run to stop; its status becomes `cancelled` (running tasks finish unseen)."""
        self._require(run_id)
        self.runtime.report(
            wire.envelope(wire.RUN_CANCEL, app=self.app.name, run=run_id, reason=reason)
        )

    def signal(self, run_id: str, name: str, payload: Any = None) -> None:
        """Send an event to the run; `ctx.wait_for_event(name)` returns `payload`."""
        self._require(run_id)
        message = wire.envelope(
            wire.RUN_SIGNAL, app=self.app.name, run=run_id, name=name, payload=payload
        )
        wire.dumps(message, what=f"the payload of signal {name!r}")
        self.runtime.report(message)

    # -- tasks finished from outside ----------------------------------------------------------

    def complete(
        self, token: str, result: Any = None, *, cache: dict[str, Any] | None = None
    ) -> None:
        """Finish a task that returned `sb.pending()`, with `result`.

        `cache` ({"set": {...}, "del": [...]}) changes the run's cache as the task's own
        changes would. Raises `InvalidToken` for a forged token and `TokenAlreadyUsed` for
        a used one.
        """
        value = wire.normalize(result, what="the task result")
        fields: dict[str, Any] = {"outcome": "ok", "result": value}
        if cache:
            fields["cache"] = wire.normalize(cache, what="the cache changes")
        self._finish(token, fields)

    def fail(self, token: str, error: str | BaseException, *, retryable: bool = False) -> None:
        """Fail a task that returned `sb.pending()`; with `retryable`, its retries apply."""
        exc = error if isinstance(error, BaseException) else RuntimeError(error)
        self._finish(token, {"outcome": "error", "error": failure(exc, retryable=retryable)})

    def _finish(self, token: str, fields: dict[str, Any]) -> None:
        claims: TokenClaims = self.runtime.signer.verify(token, self.app.name)
        marker = f"t/{claims.seq:010d}.{claims.attempt}"
        nonce = wire.new_id().encode()
        store = self.runtime.store
        try:
            retrying(lambda: store.put(claims.run, marker, nonce, expect=ABSENT))
        except Conflict:
            used = retrying(lambda: store.get(claims.run, marker))
            # Our own write may have succeeded before an ambiguous failure and retry.
            if used is None or used.value != nonce:
                raise TokenAlreadyUsed(
                    f"the token for step {claims.seq} (attempt {claims.attempt}) of run "
                    f"{claims.run} was already used"
                ) from None
        self.runtime.report(
            wire.envelope(
                wire.TASK_RESULT,
                app=self.app.name,
                run=claims.run,
                seq=claims.seq,
                attempt=claims.attempt,
                task=claims.task,
                **fields,
            )
        )

    def _require(self, run_id: str) -> None:
        if retrying(lambda: self.runtime.index.get(run_id)) is None:
            raise NotFound(f"no run with id {run_id!r}")
