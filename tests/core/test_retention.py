"""`App(retention=...)`: a finished run's records expire through the store's TTL."""

from __future__ import annotations

import dataclasses
import time

import pytest

import switchboard as sb
from switchboard.executors import queue_executor
from switchboard.providers.local.queue import MemoryBroker
from switchboard.providers.local.state import MemoryStateStore
from switchboard.runtime import Runtime


def _app(retention: float | None) -> sb.App:
    app = sb.App("kept", retention=retention)

    @app.task
    def add(x: int) -> int:
        return x + 1

    @app.workflow
    def run(ctx: sb.Context) -> int:
        return add(add(1))

    return app


def test_a_finished_run_disappears_after_its_retention() -> None:
    with sb.local(_app(retention=1.0)) as client:
        run_id = client.start("run")
        assert client.wait(run_id, timeout=10).output == 3
        store = client.runtime.store
        assert store.scan(run_id).records, "the history is there until the retention passes"
        assert [r.run_id for r in client.list()] == [run_id]
        time.sleep(1.2)
        assert store.scan(run_id).records == []
        assert client.list() == []
        with pytest.raises(sb.NotFound):
            client.status(run_id)


def test_without_retention_runs_are_kept() -> None:
    with sb.local(_app(retention=None)) as client:
        run_id = client.start("run")
        client.wait(run_id, timeout=10)
        time.sleep(0.2)
        assert client.status(run_id).status == "completed"


def test_retention_needs_a_store_with_ttl() -> None:
    store = MemoryStateStore()
    store.capabilities = dataclasses.replace(store.capabilities, ttl=False)  # type: ignore[misc]
    with pytest.raises(sb.ConfigError, match="retention, which needs a state store with the TTL"):
        Runtime(_app(retention=60), MemoryBroker(), store, queue_executor, None)


def test_retention_must_be_positive() -> None:
    with pytest.raises(sb.ConfigError, match="retention must be a positive"):
        sb.App("bad", retention=0)
