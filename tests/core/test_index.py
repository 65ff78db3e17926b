"""The run index follows the history: conditional writes, never moving backwards."""

from __future__ import annotations

import json

from switchboard.history import RunView
from switchboard.index import RunIndex
from switchboard.providers.local.state import MemoryStateStore


def view(n: int, status: str = "running") -> RunView:
    return RunView("run-1", workflow="flow", status=status, next_n=n)


def indexed(store: MemoryStateStore) -> dict[str, object]:
    record = store.get("runs.app", "run-1")
    assert record is not None
    return dict(json.loads(record.value))


def test_an_update_with_the_version_last_written_goes_straight_to_the_write() -> None:
    store = MemoryStateStore()
    index = RunIndex(store, "app")
    first = index.update(view(1))
    assert first is not None
    reads = 0
    get = store.get

    def counting_get(partition: str, key: str) -> object:
        nonlocal reads
        reads += 1
        return get(partition, key)

    store.get = counting_get  # type: ignore[method-assign,assignment]
    second = index.update(view(2, "completed"), version=first)
    assert second is not None and second != first
    assert reads == 0, "the version was known: no read needed"
    store.get = get  # type: ignore[method-assign]
    assert indexed(store)["status"] == "completed"


def test_a_stale_version_falls_back_to_reading_the_record() -> None:
    store = MemoryStateStore()
    index = RunIndex(store, "app")
    stale = index.update(view(1))
    assert index.update(view(2)) is not None  # someone else moved it on
    assert index.update(view(3, "completed"), version=stale) is not None
    assert indexed(store)["status"] == "completed"
    assert indexed(store)["n"] == 3


def test_an_update_never_moves_the_index_back_to_an_earlier_entry() -> None:
    store = MemoryStateStore()
    index = RunIndex(store, "app")
    index.update(view(5, "completed"))
    assert index.update(view(3)) is None
    assert indexed(store)["status"] == "completed"
