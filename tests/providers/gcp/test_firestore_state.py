"""The StateStore guarantees, proven on Firestore over gRPC (the emulator by default).

Test names mirror the sentences of `switchboard.interfaces.StateStore`.
"""

from __future__ import annotations

import re
import threading
import uuid

import pytest

from switchboard.errors import ConfigError, Conflict, TooLarge, UnsupportedOperation
from switchboard.interfaces import ABSENT, Record, StateStore
from switchboard.providers.gcp.config import GcpConfig
from switchboard.providers.gcp.state import MAX_KEY_BYTES, FirestoreStateStore, document_id

TRICKY_KEYS = [
    "plain",
    "a/b/c",
    "/leading",
    "trailing/",
    "#hash",
    "?query=1&x",
    "with spaces ",
    " ",
    "é",
    "中文",
    "😀",
    "\uff5e",
    ".",
    "..",
    "__reserved__",
    "__",
    "%",
    "%2F",
    "%25",
    "",
    "tab\tnewline\n",
    "nul\x00byte",
]


def scan_all(store: StateStore, partition: str, prefix: str = "", limit: int = 3) -> list[Record]:
    records: list[Record] = []
    cursor: str | None = None
    while True:
        page = store.scan(partition, prefix=prefix, limit=limit, cursor=cursor)
        assert len(page.records) <= limit
        records += page.records
        if page.cursor is None:
            return records
        cursor = page.cursor


def test_store_is_a_state_store_without_ttl(store: FirestoreStateStore) -> None:
    assert isinstance(store, StateStore)
    assert store.capabilities.ttl is False
    assert store.capabilities.max_key_bytes == MAX_KEY_BYTES
    assert 1_000_000 < store.capabilities.max_value_bytes < 1024 * 1024


def test_get_returns_none_for_a_missing_key(store: FirestoreStateStore, partition: str) -> None:
    assert store.get(partition, "missing") is None


@pytest.mark.parametrize(
    "value", [bytes(range(256)) * 3, "é中😀".encode(), b""], ids=["binary", "unicode", "empty"]
)
def test_get_returns_the_value_byte_for_byte_with_its_current_version(
    store: FirestoreStateStore, partition: str, value: bytes
) -> None:
    version = store.put(partition, "k", value)
    assert store.get(partition, "k") == Record("k", value, version)
    newer = store.put(partition, "k", value + b"!")
    assert store.get(partition, "k") == Record("k", value + b"!", newer)


def test_values_up_to_the_limit_round_trip_and_larger_ones_are_too_large(
    store: FirestoreStateStore,
) -> None:
    """At the limit with the worst case around it: longest key and partition ids."""
    limit = store.capabilities.max_value_bytes
    partition = "p" * 1500
    key = "k" * MAX_KEY_BYTES
    value = bytes(range(256)) * (limit // 256) + b"\x00" * (limit % 256)
    assert len(value) == limit
    version = store.put(partition, key, value)
    assert store.get(partition, key) == Record(key, value, version)
    with pytest.raises(TooLarge):
        store.put(partition, key, value + b"x")
    assert store.get(partition, key) == Record(key, value, version)


def test_keys_longer_than_the_limit_are_too_large(
    store: FirestoreStateStore, partition: str
) -> None:
    store.put(partition, "é" * (MAX_KEY_BYTES // 2), b"ok")
    with pytest.raises(TooLarge):
        store.put(partition, "é" * (MAX_KEY_BYTES // 2) + "x", b"too long")


def test_put_absent_fails_with_conflict_if_the_record_exists(
    store: FirestoreStateStore, partition: str
) -> None:
    version = store.put(partition, "k", b"first", expect=ABSENT)
    with pytest.raises(Conflict):
        store.put(partition, "k", b"second", expect=ABSENT)
    assert store.get(partition, "k") == Record("k", b"first", version)


def test_put_with_a_version_fails_unless_it_is_current(
    store: FirestoreStateStore, partition: str
) -> None:
    old = store.put(partition, "k", b"v1")
    current = store.put(partition, "k", b"v2", expect=old)
    with pytest.raises(Conflict):
        store.put(partition, "k", b"stale", expect=old)
    with pytest.raises(Conflict):
        store.put(partition, "k", b"garbage", expect="not-a-version")
    with pytest.raises(Conflict):
        store.put(partition, "k", b"finer", expect=current[:-1] + "1")
    assert store.get(partition, "k") == Record("k", b"v2", current)


def test_a_missing_record_never_matches_a_version(
    store: FirestoreStateStore, partition: str
) -> None:
    version = store.put(partition, "k", b"v")
    store.delete(partition, "k")
    with pytest.raises(Conflict):
        store.put(partition, "k", b"back", expect=version)
    with pytest.raises(Conflict):
        store.put(partition, "never", b"v", expect=version)
    assert store.get(partition, "k") is None


def test_every_successful_write_gives_a_new_version(
    store: FirestoreStateStore, partition: str
) -> None:
    """Even rewriting the same bytes: Firestore keeps update_time on a no-op write."""
    versions = [store.put(partition, "k", b"same") for _ in range(5)]
    versions.append(store.put(partition, "k", b"same", expect=versions[-1]))
    store.delete(partition, "k")
    versions.append(store.put(partition, "k", b"same", expect=ABSENT))
    assert len(set(versions)) == len(versions)


def test_same_value_writers_expecting_one_version_cannot_both_win(
    store: FirestoreStateStore, partition: str
) -> None:
    version = store.put(partition, "k", b"v")
    store.put(partition, "k", b"v", expect=version)
    with pytest.raises(Conflict):
        store.put(partition, "k", b"v", expect=version)


def race(store: StateStore, partition: str, expected: str, label: str, writers: int) -> list[int]:
    """`writers` threads put at once, all expecting `expected`; returns who succeeded."""
    barrier = threading.Barrier(writers)
    winners: list[int] = []
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        barrier.wait()
        try:
            store.put(partition, "counter", f"{label}:{writer}".encode(), expect=expected)
            winners.append(writer)
        except Conflict:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return winners


def test_concurrent_writers_expecting_the_same_version_exactly_one_succeeds(
    store: FirestoreStateStore, partition: str
) -> None:
    version = store.put(partition, "counter", b"0")
    for round_number in range(1, 6):
        winners = race(store, partition, version, str(round_number), writers=8)
        assert len(winners) == 1, f"round {round_number}: winners {winners}"
        record = store.get(partition, "counter")
        assert record is not None
        assert record.value == f"{round_number}:{winners[0]}".encode()
        version = record.version


def test_delete_with_a_version_fails_unless_it_is_current(
    store: FirestoreStateStore, partition: str
) -> None:
    old = store.put(partition, "k", b"v1")
    current = store.put(partition, "k", b"v2")
    with pytest.raises(Conflict):
        store.delete(partition, "k", expect=old)
    assert store.get(partition, "k") == Record("k", b"v2", current)
    store.delete(partition, "k", expect=current)
    assert store.get(partition, "k") is None
    with pytest.raises(Conflict):
        store.delete(partition, "k", expect=current)


def test_delete_any_of_a_missing_record_is_not_an_error(
    store: FirestoreStateStore, partition: str
) -> None:
    store.delete(partition, "never-written")
    store.put(partition, "k", b"v")
    store.delete(partition, "k")
    store.delete(partition, "k")
    assert store.get(partition, "k") is None


def test_delete_absent_is_a_no_op_or_a_conflict(store: FirestoreStateStore, partition: str) -> None:
    store.delete(partition, "k", expect=ABSENT)
    store.put(partition, "k", b"v")
    with pytest.raises(Conflict):
        store.delete(partition, "k", expect=ABSENT)
    assert store.get(partition, "k") is not None


def test_ttl_raises_unsupported(store: FirestoreStateStore, partition: str) -> None:
    with pytest.raises(UnsupportedOperation):
        store.put(partition, "k", b"v", ttl=60)
    assert store.get(partition, "k") is None


def test_keys_may_hold_any_characters(store: FirestoreStateStore, partition: str) -> None:
    versions = {key: store.put(partition, key, key.encode() or b"<empty>") for key in TRICKY_KEYS}
    for key in TRICKY_KEYS:
        assert store.get(partition, key) == Record(key, key.encode() or b"<empty>", versions[key])
    scanned = scan_all(store, partition, limit=5)
    assert [record.key for record in scanned] == sorted(TRICKY_KEYS, key=str.encode)
    for key in TRICKY_KEYS:
        store.delete(partition, key, expect=versions[key])
    assert scan_all(store, partition) == []


def test_document_ids_are_valid_and_distinct() -> None:
    texts = [*TRICKY_KEYS, "x" * 1500, "x" * 1501, "/" * 600, "%%", "%2E", "%5F_a__", "%%" + "0"]
    ids = [document_id(text) for text in texts]
    assert len(set(ids)) == len(ids)
    for identifier in ids:
        assert identifier and "/" not in identifier and identifier not in (".", "..")
        assert not re.fullmatch("__.*__", identifier, re.DOTALL)
        assert len(identifier.encode()) <= 1500


def test_scan_returns_records_in_ascending_utf8_byte_order(
    store: FirestoreStateStore, partition: str
) -> None:
    # UTF-16 order would put the emoji before U+FF5E; UTF-8 byte order puts it after.
    keys = ["b", "a", "B", "a0", "a/", "é", "\uff5e", "😀", "中", "A", "ab", "aa"]
    for key in keys:
        store.put(partition, key, key.encode())
    scanned = scan_all(store, partition, limit=4)
    assert [record.key for record in scanned] == sorted(keys, key=str.encode)
    assert all(record.value == record.key.encode() for record in scanned)


def test_scan_pages_hold_at_most_limit_and_the_last_has_no_cursor(
    store: FirestoreStateStore, partition: str
) -> None:
    for index in range(7):
        store.put(partition, f"k{index}", b"v")
    first = store.scan(partition, limit=3)
    assert [r.key for r in first.records] == ["k0", "k1", "k2"] and first.cursor
    second = store.scan(partition, limit=3, cursor=first.cursor)
    assert [r.key for r in second.records] == ["k3", "k4", "k5"] and second.cursor is not None
    last = store.scan(partition, limit=3, cursor=second.cursor)
    assert [r.key for r in last.records] == ["k6"] and last.cursor is None
    exact = store.scan(partition, limit=7)
    assert len(exact.records) == 7 and exact.cursor is None
    assert store.scan(f"{partition}-empty").records == []
    # A cursor is never empty, even after the empty key.
    store.put(partition, "", b"v")
    page = store.scan(partition, limit=1)
    assert [r.key for r in page.records] == [""] and page.cursor
    assert store.scan(partition, limit=1, cursor=page.cursor).records[0].key == "k0"


def test_scan_with_a_prefix_lists_only_keys_that_start_with_it(
    store: FirestoreStateStore, partition: str
) -> None:
    keys = [
        "step/1",
        "step/2",
        "step/10",
        "step",
        "stepx",
        "steo",
        "stes",
        "step/é",
        "step\U0010ffff",
    ]
    for key in keys:
        store.put(partition, key, b"v")
    assert [r.key for r in scan_all(store, partition, prefix="step/", limit=2)] == sorted(
        (k for k in keys if k.startswith("step/")), key=str.encode
    )
    assert [r.key for r in scan_all(store, partition, prefix="step", limit=2)] == sorted(
        (k for k in keys if k.startswith("step")), key=str.encode
    )
    assert scan_all(store, partition, prefix="zzz") == []
    top = "\U0010ffff"
    store.put(partition, top + "a", b"v")
    store.put(partition, top, b"v")
    assert [r.key for r in scan_all(store, partition, prefix=top)] == [top, top + "a"]


def test_following_cursors_visits_every_record_once_while_others_are_written(
    store: FirestoreStateStore, partition: str
) -> None:
    existing = [f"k{index:03d}" for index in range(0, 40, 2)]
    for key in existing:
        store.put(partition, key, b"old")
    seen: list[str] = []
    cursor: str | None = None
    written = 0
    while True:
        page = store.scan(partition, limit=3, cursor=cursor)
        seen += [record.key for record in page.records]
        # Concurrent writes: new keys before and after the cursor, rewrites, a deletion.
        store.put(partition, f"k{written * 2 + 1:03d}", b"new")
        store.put(partition, f"a{written}", b"new")
        store.put(partition, existing[written % len(existing)], b"rewritten")
        store.put(partition, f"doomed{written}", b"x")
        store.delete(partition, f"doomed{written}")
        written += 1
        if page.cursor is None:
            break
        cursor = page.cursor
    assert len(seen) == len(set(seen)), "a record was visited twice"
    assert set(existing) <= set(seen), "a record that existed throughout was missed"
    assert seen == sorted(seen, key=str.encode)


def test_partitions_are_isolated(store: FirestoreStateStore, partition: str) -> None:
    neighbours = [partition, f"{partition}/child", f"{partition}%2Fchild", f"{partition}x"]
    for index, name in enumerate(neighbours):
        store.put(name, "shared", str(index).encode())
        store.put(name, f"only-{index}", b"v")
    for index, name in enumerate(neighbours):
        record = store.get(name, "shared")
        assert record is not None and record.value == str(index).encode()
        assert [r.key for r in scan_all(store, name)] == [f"only-{index}", "shared"]


def test_two_stores_see_each_others_writes(gcp_config: GcpConfig, partition: str) -> None:
    other = FirestoreStateStore(gcp_config)
    try:
        mine = FirestoreStateStore(gcp_config)
        version = mine.put(partition, "k", b"v")
        assert other.get(partition, "k") == Record("k", b"v", version)
        mine.close()
        mine.close()  # safe twice
    finally:
        other.close()


def test_reset_helper_empties_the_emulator(
    gcp_config: GcpConfig, firestore_emulator: object, partition: str
) -> None:
    from tests.emulators.google import Emulator, reset_firestore

    if not isinstance(firestore_emulator, Emulator) or firestore_emulator.server is None:
        pytest.skip("only resets an emulator this session started")
    store = FirestoreStateStore(gcp_config)
    try:
        store.put(partition, f"k-{uuid.uuid4().hex}", b"v")
        reset_firestore(firestore_emulator.host, gcp_config.project)
        assert store.scan(partition).records == []
    finally:
        store.close()


@pytest.mark.parametrize("collection", ["a/b", "", ".", "__x__", "50%"])
def test_the_collection_setting_must_be_a_plain_collection_id(
    gcp_config: GcpConfig, collection: str
) -> None:
    from dataclasses import replace

    with pytest.raises(ConfigError, match="collection"):
        FirestoreStateStore(replace(gcp_config, collection=collection))
