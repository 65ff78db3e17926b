"""DynamoStateStore against moto's server over HTTP: one test per guarantee of the
`StateStore` docstrings. Every test writes to its own partition of one session table.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace

import pytest

from switchboard.errors import ConfigError, Conflict, TooLarge, UnsupportedOperation
from switchboard.interfaces import ABSENT, StateStore
from switchboard.providers.aws.config import AwsConfig
from switchboard.providers.aws.state import DynamoStateStore

ODD_KEYS = ["a/b", "c#d", "e?f", "with spaces", "é", "中文", "100%", "q=1&r=2", "😀", "\ue000"]


def all_records(store: DynamoStateStore, partition: str, **kwargs: object) -> list[str]:
    keys: list[str] = []
    cursor = None
    while True:
        page = store.scan(partition, cursor=cursor, **kwargs)  # type: ignore[arg-type]
        keys += [record.key for record in page.records]
        if page.cursor is None:
            return keys
        cursor = page.cursor


def test_store_satisfies_the_protocol(store: DynamoStateStore) -> None:
    assert isinstance(store, StateStore)


# -- get / put ------------------------------------------------------------------------------


def test_missing_key_reads_as_none(store: DynamoStateStore, partition: str) -> None:
    assert store.get(partition, "nothing") is None


@pytest.mark.parametrize(
    "value", [b"", b"\x00\xff binary", "ünïcode 中文".encode(), bytes(range(256))]
)
def test_value_round_trips_with_its_version(
    store: DynamoStateStore, partition: str, value: bytes
) -> None:
    version = store.put(partition, "k", value)
    record = store.get(partition, "k")
    assert record is not None
    assert (record.key, record.value, record.version) == ("k", value, version)


def test_value_at_the_limit_round_trips_and_one_byte_more_is_too_large(
    store: DynamoStateStore, partition: str
) -> None:
    caps = store.capabilities
    # The worst case: both key parts at their longest, and a ttl.
    long_partition = partition + "p" * (caps.max_key_bytes - len(partition))
    key = "中" * (caps.max_key_bytes // 3) + "k" * (caps.max_key_bytes % 3)
    assert len(key.encode()) == caps.max_key_bytes
    value = os.urandom(caps.max_value_bytes)
    store.put(long_partition, key, value, ttl=3600)
    record = store.get(long_partition, key)
    assert record is not None and record.value == value
    with pytest.raises(TooLarge):
        store.put(long_partition, key, value + b"x")
    with pytest.raises(TooLarge):
        store.put(long_partition, key + "k", b"x")
    with pytest.raises(TooLarge):
        store.put(long_partition + "p", key, b"x")


def test_absent_expectation_conflicts_with_an_existing_record(
    store: DynamoStateStore, partition: str
) -> None:
    first = store.put(partition, "k", b"one", expect=ABSENT)
    with pytest.raises(Conflict):
        store.put(partition, "k", b"two", expect=ABSENT)
    record = store.get(partition, "k")
    assert record is not None and (record.value, record.version) == (b"one", first)


def test_version_expectation_conflicts_unless_current(
    store: DynamoStateStore, partition: str
) -> None:
    with pytest.raises(Conflict):  # a missing record never matches
        store.put(partition, "k", b"x", expect="0123456789abcdef")
    first = store.put(partition, "k", b"one")
    second = store.put(partition, "k", b"two", expect=first)
    with pytest.raises(Conflict):
        store.put(partition, "k", b"stale", expect=first)
    record = store.get(partition, "k")
    assert record is not None and (record.value, record.version) == (b"two", second)


def test_every_write_gives_a_version_never_seen_for_that_key(
    store: DynamoStateStore, partition: str
) -> None:
    seen = {store.put(partition, "k", b"same") for _ in range(5)}
    store.delete(partition, "k")
    seen.add(store.put(partition, "k", b"same", expect=ABSENT))
    assert len(seen) == 6


def race(
    store: DynamoStateStore, partition: str, expected: str, writers: int
) -> tuple[list[str], int]:
    """Let `writers` threads put at once, all expecting `expected`.

    Returns the versions of the writes that succeeded and how many got `Conflict`.
    """
    barrier = threading.Barrier(writers)
    winners: list[str] = []
    conflicts: list[int] = []

    def write(writer: int) -> None:
        barrier.wait()
        try:
            version = store.put(partition, "counter", f"{writer}".encode(), expect=expected)
        except Conflict:
            conflicts.append(writer)
            return
        winners.append(version)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return winners, len(conflicts)


def test_of_eight_racing_writers_exactly_one_wins_each_round(
    store: DynamoStateStore, partition: str
) -> None:
    version = store.put(partition, "counter", b"start")
    for round_number in range(10):
        winners, conflicts = race(store, partition, version, 8)
        assert len(winners) == 1, f"round {round_number}: {len(winners)} writers won"
        assert conflicts == 7
        version = winners[0]
        record = store.get(partition, "counter")
        assert record is not None and record.version == version


def test_keys_may_hold_any_characters(store: DynamoStateStore, partition: str) -> None:
    for key in ODD_KEYS:
        store.put(partition, key, key.encode())
    for key in ODD_KEYS:
        record = store.get(partition, key)
        assert record is not None and record.value == key.encode()
    assert all_records(store, partition) == sorted(ODD_KEYS, key=lambda k: k.encode())


def test_empty_keys_are_unsupported(store: DynamoStateStore, partition: str) -> None:
    with pytest.raises(UnsupportedOperation):
        store.put(partition, "", b"x")


# -- delete ---------------------------------------------------------------------------------


def test_delete_with_a_version_conflicts_unless_current(
    store: DynamoStateStore, partition: str
) -> None:
    old = store.put(partition, "k", b"one")
    current = store.put(partition, "k", b"two")
    with pytest.raises(Conflict):
        store.delete(partition, "k", expect=old)
    assert store.get(partition, "k") is not None
    store.delete(partition, "k", expect=current)
    assert store.get(partition, "k") is None
    with pytest.raises(Conflict):
        store.delete(partition, "k", expect=current)


def test_deleting_a_missing_record_without_expectation_is_fine(
    store: DynamoStateStore, partition: str
) -> None:
    store.delete(partition, "never-written")


# -- scan -----------------------------------------------------------------------------------


def test_scan_returns_keys_in_utf8_byte_order(store: DynamoStateStore, partition: str) -> None:
    keys = ["b", "a", "B", "ab", "a/b", "é", "\ue000", "😀", "z", "0"]
    for key in keys:
        store.put(partition, key, b"v")
    page = store.scan(partition)
    assert [r.key for r in page.records] == sorted(keys, key=lambda k: k.encode())
    assert page.cursor is None
    # UTF-16 order would put the emoji before U+E000; UTF-8 bytes put it after.
    assert [r.key for r in page.records][-2:] == ["\ue000", "😀"]


def test_scan_filters_by_prefix(store: DynamoStateStore, partition: str) -> None:
    for key in ["step/1", "step/2", "step/10", "stepper", "meta", "step"]:
        store.put(partition, key, b"v")
    assert [r.key for r in store.scan(partition, prefix="step/").records] == [
        "step/1",
        "step/10",
        "step/2",
    ]
    assert all_records(store, partition, prefix="st", limit=2) == [
        "step",
        "step/1",
        "step/10",
        "step/2",
        "stepper",
    ]
    assert store.scan(partition, prefix="zzz").records == []


def test_pages_hold_at_most_limit_and_cursors_visit_each_record_once(
    store: DynamoStateStore, partition: str
) -> None:
    keys = [f"key-{i:03d}" for i in range(23)]
    for key in keys:
        store.put(partition, key, key.encode())
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.scan(partition, limit=5, cursor=cursor)
        pages += 1
        assert len(page.records) <= 5
        assert all(r.value == r.key.encode() for r in page.records)
        seen += [r.key for r in page.records]
        if page.cursor is None:
            break
        cursor = page.cursor
    assert seen == keys
    assert pages == 5


def test_scan_visits_stable_records_once_while_others_are_written(
    store: DynamoStateStore, partition: str
) -> None:
    stable = [f"s{i:02d}" for i in range(0, 40, 2)]
    for key in stable:
        store.put(partition, key, b"stable")
    store.put(partition, "s99-doomed", b"x")
    seen: list[str] = []
    cursor = None
    writes = 0
    while True:
        page = store.scan(partition, limit=3, cursor=cursor)
        seen += [r.key for r in page.records]
        # Between pages: add keys before and after the cursor, rewrite and delete others.
        store.put(partition, f"s{writes * 2 + 1:02d}", b"new")
        store.put(partition, "s00", b"rewritten")
        if writes == 2:
            store.delete(partition, "s99-doomed")
        writes += 1
        if page.cursor is None:
            break
        cursor = page.cursor
    visited_stable = [key for key in seen if key in stable]
    assert visited_stable == stable
    assert seen == sorted(set(seen))  # in order, nothing twice


def test_partitions_are_isolated(store: DynamoStateStore, partition: str) -> None:
    store.put(partition, "k", b"mine")
    store.put(partition + "-other", "k", b"theirs")
    store.put(partition[:-1], "k2", b"prefix partition")
    assert [(r.key, r.value) for r in store.scan(partition).records] == [("k", b"mine")]
    record = store.get(partition + "-other", "k")
    assert record is not None and record.value == b"theirs"


def test_a_cursor_from_elsewhere_is_refused(store: DynamoStateStore, partition: str) -> None:
    with pytest.raises(UnsupportedOperation):
        store.scan(partition, cursor="not a cursor")


# -- ttl ------------------------------------------------------------------------------------


def test_a_record_disappears_after_its_ttl(store: DynamoStateStore, partition: str) -> None:
    assert store.capabilities.ttl
    store.put(partition, "short", b"x", ttl=1)
    version = store.put(partition, "renewed", b"x", ttl=1)
    store.put(partition, "kept", b"y")
    record = store.get(partition, "short")
    assert record is not None and record.value == b"x"
    time.sleep(1.2)
    assert store.get(partition, "short") is None
    assert [r.key for r in store.scan(partition).records] == ["kept"]
    assert all_records(store, partition, limit=1) == ["kept"]  # pages skip expired records
    with pytest.raises(Conflict):  # an expired record has no current version
        store.put(partition, "renewed", b"z", expect=version)
    store.put(partition, "short", b"back", expect=ABSENT)
    record = store.get(partition, "short")
    assert record is not None and record.value == b"back"


def test_ensure_is_idempotent_and_enables_ttl(store: DynamoStateStore) -> None:
    store.ensure()
    store.ensure()
    ttl = store._client.describe_time_to_live(TableName=store.table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires")


def test_without_create_a_missing_table_is_a_config_error(state_table: AwsConfig) -> None:
    store = DynamoStateStore(replace(state_table, table="sbt-missing", create=False))
    try:
        with pytest.raises(ConfigError, match="does not exist"):
            store.ensure()
    finally:
        store.close()
        store.close()  # safe twice
