"""The run index: one small record per run in partition `runs.<app>`, for `client.list`
and cheap polling. The history is the truth; the index follows it and may lag a moment.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from switchboard import wire
from switchboard.errors import Conflict
from switchboard.history import RunView
from switchboard.interfaces import ABSENT, StateStore


class RunIndex:
    def __init__(self, store: StateStore, app_name: str) -> None:
        self._store = store
        self.partition = f"runs.{app_name}"

    def create(self, run_id: str, workflow: str, created: float) -> None:
        """Index a new run as pending, unless it is indexed already (by an engine that got
        to it first, or as an existing run started again)."""
        value = {
            "workflow": workflow,
            "status": "pending",
            "created": created,
            "updated": created,
            "n": 1,
        }
        with contextlib.suppress(Conflict):
            self._store.put(self.partition, run_id, wire.dumps(value), expect=ABSENT)

    def update(
        self, view: RunView, *, ttl: float | None = None, version: str | None = None
    ) -> str | None:
        """Record the run's current status unless a later entry was already indexed
        (with `ttl`, the record expires that many seconds from now). Returns the record's
        new version, or None when it was left alone.

        `version` is the record's version as the caller last wrote it: the write then
        goes straight to a conditional put, and reads the record only if it moved since.
        A finished run's status is written without reading at all: it is the last word,
        and every other write is conditional, so one that read before it fails and finds
        it on its next read.
        """
        value = {
            "workflow": view.workflow,
            "status": view.live_status(),
            "created": view.created,
            "updated": view.updated,
            "n": view.next_n,
        }
        if view.done:
            return self._store.put(self.partition, view.run_id, wire.dumps(value), ttl=ttl)
        if version is not None:
            with contextlib.suppress(Conflict):
                return self._store.put(
                    self.partition, view.run_id, wire.dumps(value), expect=version, ttl=ttl
                )
        return self._write(view.run_id, value, ttl=ttl)

    def _write(self, run_id: str, value: dict[str, Any], *, ttl: float | None = None) -> str | None:
        while True:
            record = self._store.get(self.partition, run_id)
            if record is not None and json.loads(record.value).get("n", 0) > value["n"]:
                return None
            try:
                return self._store.put(
                    self.partition,
                    run_id,
                    wire.dumps(value),
                    expect=record.version if record else ABSENT,
                    ttl=ttl,
                )
            except Conflict:
                continue

    def get(self, run_id: str) -> dict[str, Any] | None:
        record = self._store.get(self.partition, run_id)
        return None if record is None else {"run_id": run_id, **json.loads(record.value)}

    def list(self) -> list[dict[str, Any]]:
        """Every indexed run, oldest first (run ids sort by creation time)."""
        runs: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self._store.scan(self.partition, limit=500, cursor=cursor)
            runs.extend({"run_id": r.key, **json.loads(r.value)} for r in page.records)
            if page.cursor is None:
                return runs
            cursor = page.cursor
