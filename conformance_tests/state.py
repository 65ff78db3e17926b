"""`StateStoreConformance`: the `StateStore` guarantees, checked against any provider.

Subclass it as `TestMyState(StateStoreConformance)` and override the `state_store` fixture
(a fresh `StateStore` per test; the suite closes it) or pass `--sb-provider`. Every test
works in fresh unique partitions, so one backend can serve many tests and runs.
"""

from __future__ import annotations

import functools
import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from switchboard.errors import Conflict, TooLarge, UnsupportedOperation
from switchboard.interfaces import ABSENT, ANY, Page, Record, StateStore
from switchboard_conformance import guarantees as g
from switchboard_conformance.fixtures import (
    Conformance,
    ConformanceTiming,
    chosen_provider,
    unique_name,
)
from switchboard_conformance.guarantees import checks, expect_raises, guarantee

#: The largest value the suite writes; a larger declared limit is tested at this size.
LARGEST_TESTED = 8 * 1024 * 1024
#: Beyond this declared limit the suite does not build a limit+1 value to test `TooLarge`.
LARGEST_REFUSAL_TESTED = 256 * 1024 * 1024
CAS_THREADS = 8
CAS_ROUNDS = 20

#: Keys that stores built on URLs, paths or document ids tend to mangle.
AWKWARD_KEYS = [
    "a/b/c",
    "/leading-slash",
    "trailing-slash/",
    "double//slash",
    "#hash",
    "what?x=1&y=2",
    "back\\slash",
    "with space",
    " leading space",
    "100%",
    "%2F-not-decoded",
    "+plus+",
    "dots.in.key",
    ".",
    "..",
    "__dunder__",
    "'quote\"",
    "tab\there",
    "line\nbreak",
    "café",
    "中文键",
    "emoji-😀",
    "fullwidth-\uff46\uff55\uff4c\uff4c-\uff5e",
    "e\u0301-combining",
]


def _all_pages(store: StateStore, partition: str, *, prefix: str = "", limit: int) -> list[Page]:
    pages = [store.scan(partition, prefix=prefix, limit=limit)]
    while pages[-1].cursor is not None:
        assert len(pages) < 10_000, guarantee(g.SCAN_CURSOR, "cursors never reach the end")
        pages.append(store.scan(partition, prefix=prefix, limit=limit, cursor=pages[-1].cursor))
    return pages


def _keys(pages: list[Page]) -> list[str]:
    return [record.key for page in pages for record in page.records]


def _utf8_order(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda key: key.encode("utf-8"))


def _out_of_order(keys: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in itertools.pairwise(keys) if a.encode() >= b.encode()]


class StateStoreConformance(Conformance):
    """The shared tests every state store provider must pass."""

    @pytest.fixture
    def state_store(self, request: pytest.FixtureRequest) -> Iterator[StateStore]:
        """A fresh `StateStore` for one test; override it in your subclass."""
        choice = chosen_provider(
            request, "state_store", "a fresh switchboard.interfaces.StateStore"
        )
        if choice.spec.state is None:
            pytest.fail(f"the {choice.name} provider offers no state store", pytrace=False)
        made = choice.spec.state(choice.config)
        yield made
        made.close()

    # -- get and put ------------------------------------------------------------------------

    @checks(g.GET_MISSING)
    def test_get_of_a_missing_key_returns_none(self, state_store: StateStore) -> None:
        partition = unique_name()
        assert state_store.get(partition, "missing") is None, guarantee(
            g.GET_MISSING, "a never-written partition returned a record"
        )
        state_store.put(partition, "present", b"x")
        assert state_store.get(partition, "missing") is None, guarantee(
            g.GET_MISSING, "a missing key in a used partition returned a record"
        )
        assert state_store.get(partition, "presen") is None, guarantee(
            g.GET_MISSING, "a prefix of an existing key returned a record"
        )
        state_store.delete(partition, "present")
        assert state_store.get(partition, "present") is None, guarantee(
            g.GET_MISSING, "a deleted key returned a record"
        )

    @checks(g.GET_ROUND_TRIP, g.PUT_NEW_VERSION)
    def test_put_then_get_round_trips_value_and_version(self, state_store: StateStore) -> None:
        partition = unique_name()
        first = state_store.put(partition, "key", b"first")
        assert isinstance(first, str), guarantee(g.GET_ROUND_TRIP, f"put returned {first!r}")
        record = state_store.get(partition, "key")
        assert record == Record("key", b"first", first), guarantee(
            g.GET_ROUND_TRIP, f"put b'first' (version {first!r}), read {record!r}"
        )
        value = bytes(range(256)) + b"\x00"
        second = state_store.put(partition, "key", value)
        assert second != first, guarantee(g.PUT_NEW_VERSION, f"two writes gave version {first!r}")
        record = state_store.get(partition, "key")
        assert record == Record("key", value, second), guarantee(
            g.GET_ROUND_TRIP,
            f"overwrote with 257 binary bytes (version {second!r}), read {record!r}",
        )
        third = state_store.put(partition, "key", b"")
        record = state_store.get(partition, "key")
        assert record == Record("key", b"", third), guarantee(
            g.GET_ROUND_TRIP, f"overwrote with b'' (version {third!r}), read {record!r}"
        )

    @checks(g.PUT_ABSENT)
    def test_put_expecting_absent_conflicts_when_the_record_exists(
        self, state_store: StateStore
    ) -> None:
        partition = unique_name()
        version = state_store.put(partition, "key", b"original", expect=ABSENT)
        expect_raises(
            Conflict,
            g.PUT_ABSENT,
            lambda: state_store.put(partition, "key", b"overwritten", expect=ABSENT),
            "put(expect=ABSENT) over an existing record",
        )
        record = state_store.get(partition, "key")
        assert record == Record("key", b"original", version), guarantee(
            g.PUT_ABSENT, f"the conflicting write changed the record: {record!r}"
        )
        state_store.delete(partition, "key")
        state_store.put(partition, "key", b"recreated", expect=ABSENT)

    @checks(g.PUT_VERSION)
    def test_put_with_a_stale_version_conflicts(self, state_store: StateStore) -> None:
        partition = unique_name()
        stale = state_store.put(partition, "key", b"one")
        current = state_store.put(partition, "key", b"two", expect=stale)
        expect_raises(
            Conflict,
            g.PUT_VERSION,
            lambda: state_store.put(partition, "key", b"lost update", expect=stale),
            "put() expecting a version that was overwritten",
        )
        record = state_store.get(partition, "key")
        assert record == Record("key", b"two", current), guarantee(
            g.PUT_VERSION, f"the conflicting write changed the record: {record!r}"
        )
        state_store.put(partition, "key", b"three", expect=current)

    @checks(g.PUT_VERSION)
    def test_put_with_a_version_never_matches_a_missing_record(
        self, state_store: StateStore
    ) -> None:
        partition = unique_name()
        other = state_store.put(partition, "other", b"x")
        deleted = state_store.put(partition, "gone", b"x")
        state_store.delete(partition, "gone")
        for key, version in (
            ("missing", other),
            ("missing", "1"),
            ("missing", ""),
            ("gone", deleted),
        ):
            expect_raises(
                Conflict,
                g.PUT_VERSION,
                functools.partial(state_store.put, partition, key, b"x", expect=version),
                f"put({key!r}, expect={version!r}) on a missing record",
            )
            assert state_store.get(partition, key) is None, guarantee(
                g.PUT_VERSION, f"the conflicting put({key!r}, expect={version!r}) wrote anyway"
            )

    @checks(g.PUT_ATOMIC)
    def test_concurrent_compare_and_set_has_exactly_one_winner(
        self, state_store: StateStore
    ) -> None:
        partition = unique_name()
        state_store.put(partition, "counter", b"0")
        read_together = threading.Barrier(CAS_THREADS)
        write_together = threading.Barrier(CAS_THREADS)
        winners: Counter[int] = Counter()
        errors: list[BaseException] = []
        lock = threading.Lock()

        def contend() -> None:
            for round_ in range(CAS_ROUNDS):
                try:
                    read_together.wait()
                    record = state_store.get(partition, "counter")
                    assert record is not None
                    write_together.wait()
                    state_store.put(
                        partition, "counter", b"%d" % (int(record.value) + 1), expect=record.version
                    )
                except Conflict:
                    continue
                except Exception as exc:  # noqa: BLE001 - re-raised by the test thread
                    errors.append(exc)
                    read_together.abort()
                    write_together.abort()
                    return
                with lock:
                    winners[round_] += 1

        threads = [threading.Thread(target=contend) for _ in range(CAS_THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        bad = {round_: winners[round_] for round_ in range(CAS_ROUNDS) if winners[round_] != 1}
        assert not bad, guarantee(
            g.PUT_ATOMIC,
            f"{CAS_THREADS} threads expecting the same version: winners per round {bad} "
            "(round: number of successful writes)",
        )
        record = state_store.get(partition, "counter")
        total = sum(winners.values())
        assert record is not None and int(record.value) == total, guarantee(
            g.PUT_ATOMIC,
            f"{total} successful increments, final value {record and record.value!r}",
        )

    @checks(g.PUT_NEW_VERSION)
    def test_every_write_gives_a_version_never_seen_before(self, state_store: StateStore) -> None:
        partition = unique_name()
        versions = [state_store.put(partition, "key", b"1", expect=ABSENT)]
        versions.append(state_store.put(partition, "key", b"2"))
        versions.append(state_store.put(partition, "key", b"2", expect=versions[-1]))
        state_store.delete(partition, "key", expect=versions[-1])
        versions.append(state_store.put(partition, "key", b"1", expect=ABSENT))
        state_store.delete(partition, "key")
        versions.append(state_store.put(partition, "key", b"1"))
        versions.append(state_store.put(partition, "key", b"1"))
        repeated = [v for v, n in Counter(versions).items() if n > 1]
        assert not repeated, guarantee(
            g.PUT_NEW_VERSION,
            f"versions of successive writes (with a delete and recreate): {versions}",
        )

    # -- delete -----------------------------------------------------------------------------

    @checks(g.DELETE_ABSENT)
    def test_delete_expecting_absent(self, state_store: StateStore) -> None:
        partition = unique_name()
        state_store.delete(partition, "never-written", expect=ABSENT)
        version = state_store.put(partition, "key", b"kept")
        expect_raises(
            Conflict,
            g.DELETE_ABSENT,
            lambda: state_store.delete(partition, "key", expect=ABSENT),
            "delete(expect=ABSENT) of an existing record",
        )
        record = state_store.get(partition, "key")
        assert record == Record("key", b"kept", version), guarantee(
            g.DELETE_ABSENT, f"the refused delete changed the record: {record!r}"
        )

    @checks(g.DELETE_VERSION, g.DELETE_ANY)
    def test_delete_checks_the_version_and_tolerates_missing_with_any(
        self, state_store: StateStore
    ) -> None:
        partition = unique_name()
        stale = state_store.put(partition, "key", b"one")
        current = state_store.put(partition, "key", b"two")
        expect_raises(
            Conflict,
            g.DELETE_VERSION,
            lambda: state_store.delete(partition, "key", expect=stale),
            "delete() expecting an overwritten version",
        )
        record = state_store.get(partition, "key")
        assert record == Record("key", b"two", current), guarantee(
            g.DELETE_VERSION, f"the conflicting delete changed the record: {record!r}"
        )
        state_store.delete(partition, "key", expect=current)
        assert state_store.get(partition, "key") is None, guarantee(
            g.DELETE_VERSION, "delete() with the current version left the record"
        )
        expect_raises(
            Conflict,
            g.DELETE_VERSION,
            lambda: state_store.delete(partition, "key", expect=current),
            "delete() with a version on a missing record",
        )
        state_store.delete(partition, "key", expect=ANY)
        state_store.delete(unique_name(), "never-written")

    # -- scan -------------------------------------------------------------------------------

    @checks(g.SCAN_ORDER, g.SCAN_LIMIT)
    def test_scan_returns_keys_in_utf8_byte_order(self, state_store: StateStore) -> None:
        partition = unique_name()
        keys = [
            "b", "a", "B", "A", "ab", "a b", "a-b", "a/b", "a#", "a?", "a.b", "a~", "~", " ",
            "0", "9", "10", "é", "e", "z", "中", "😀", "\uff5e", "\u00ff", "\u0100", "\x7f",
        ]  # fmt: skip
        for key in random.Random(3).sample(keys, len(keys)):
            state_store.put(partition, key, key.encode())
        for limit in (4, 100):
            pages = _all_pages(state_store, partition, limit=limit)
            oversized = [len(page.records) for page in pages if len(page.records) > limit]
            assert not oversized, guarantee(
                g.SCAN_LIMIT, f"limit={limit}, pages of {oversized} records"
            )
            found = _keys(pages)
            assert found == _utf8_order(keys), guarantee(
                g.SCAN_ORDER,
                f"limit={limit}: pairs out of order {_out_of_order(found)[:5]}; "
                f"got {found}, expected {_utf8_order(keys)}",
            )
            values = {r.key: r.value for page in pages for r in page.records}
            wrong = [k for k, v in values.items() if v != k.encode()]
            assert not wrong, guarantee(g.GET_ROUND_TRIP, f"scan returned wrong values for {wrong}")

    @checks(g.SCAN_PREFIX)
    def test_scan_honours_the_prefix(self, state_store: StateStore) -> None:
        partition = unique_name()
        inside = ["run/", "run/1", "run/2/x", "run/é", "run/😀"]
        outside = ["run", "ru", "run0", "runs/1", "Run/1", "other/run/1", "rum/1", "run\\1"]
        for key in inside + outside:
            state_store.put(partition, key, b"x")
        for limit in (2, 100):
            found = _keys(_all_pages(state_store, partition, prefix="run/", limit=limit))
            assert found == _utf8_order(inside), guarantee(
                g.SCAN_PREFIX, f"prefix 'run/', limit={limit}: got {found}, expected {inside}"
            )
        found = _keys(_all_pages(state_store, partition, prefix="run/é", limit=10))
        assert found == ["run/é"], guarantee(g.SCAN_PREFIX, f"prefix 'run/é' got {found}")
        page = state_store.scan(partition, prefix="nothing-here", limit=10)
        assert page == Page([], None), guarantee(
            g.SCAN_PREFIX, f"a prefix matching nothing returned {page!r}"
        )

    @checks(g.SCAN_LIMIT, g.SCAN_CURSOR)
    def test_scan_paginates_without_loss_or_duplication(self, state_store: StateStore) -> None:
        partition = unique_name()
        keys = [f"item/{i:03d}" for i in range(23)]
        for key in keys:
            state_store.put(partition, key, key.encode())
        for limit in (1, 5, 23, 24):
            pages = _all_pages(state_store, partition, prefix="item/", limit=limit)
            sizes = [len(page.records) for page in pages]
            assert max(sizes) <= limit, guarantee(g.SCAN_LIMIT, f"limit={limit}, pages {sizes}")
            found = _keys(pages)
            assert found == keys, guarantee(
                g.SCAN_CURSOR,
                f"limit={limit}: missing {sorted(set(keys) - set(found))}, "
                f"duplicated {[k for k, n in Counter(found).items() if n > 1]}, pages {sizes}",
            )

    @checks(g.SCAN_CURSOR, g.SCAN_ORDER)
    def test_scan_visits_each_record_once_while_others_are_written(
        self, state_store: StateStore
    ) -> None:
        partition = unique_name()
        stable = [f"k/{i:03d}" for i in range(60)]
        for key in stable:
            state_store.put(partition, key, b"stable")
        stop = threading.Event()
        errors: list[BaseException] = []

        def churn() -> None:
            rng = random.Random(11)
            try:
                while not stop.is_set():
                    key = f"k/{rng.randrange(60):03d}/churn{rng.randrange(3)}"
                    if rng.random() < 0.5:
                        state_store.put(partition, key, b"churn")
                    else:
                        state_store.delete(partition, key)
            except Exception as exc:  # noqa: BLE001 - re-raised by the test thread
                errors.append(exc)

        writer = threading.Thread(target=churn)
        writer.start()
        found: list[str] = []
        try:
            page = state_store.scan(partition, prefix="k/", limit=7)
            step = 0
            while True:
                found += [record.key for record in page.records]
                if page.cursor is None:
                    break
                # Writes before and after the cursor: an offset-based cursor skips or repeats.
                step += 1
                state_store.put(partition, f"k/000/before{step}", b"new")
                state_store.delete(partition, f"k/000/before{step - 1}")
                state_store.put(partition, f"k/999/after{step}", b"new")
                time.sleep(0.002)
                page = state_store.scan(partition, prefix="k/", limit=7, cursor=page.cursor)
        finally:
            stop.set()
            writer.join()
        if errors:
            raise errors[0]
        missing = sorted(set(stable) - set(found))
        repeated = sorted(k for k, n in Counter(found).items() if n > 1)
        assert not missing and not repeated, guarantee(
            g.SCAN_CURSOR,
            f"scanning 60 stable records in pages of 7 while other keys were written: "
            f"missing {missing}, visited twice {repeated}",
        )
        assert not _out_of_order(found), guarantee(
            g.SCAN_ORDER, f"out of order across pages: {_out_of_order(found)[:5]}"
        )

    @checks(g.PARTITIONS_ISOLATED)
    def test_partitions_are_isolated(self, state_store: StateStore) -> None:
        base = unique_name()
        # Stores that concatenate partition and key, or scan partitions by prefix, collide here.
        layout = {
            base: {"x-k": b"base x-k", "shared": b"base shared"},
            f"{base}-x": {"k": b"base-x k", "shared": b"base-x shared"},
            f"{base}x": {"shared": b"basex shared"},
        }
        for partition, records in layout.items():
            for key, value in records.items():
                state_store.put(partition, key, value)
        for partition, records in layout.items():
            for key, value in records.items():
                record = state_store.get(partition, key)
                assert record is not None and record.value == value, guarantee(
                    g.PARTITIONS_ISOLATED, f"get({partition!r}, {key!r}) returned {record!r}"
                )
            found = {r.key: r.value for r in state_store.scan(partition, limit=100).records}
            assert found == records, guarantee(
                g.PARTITIONS_ISOLATED, f"scan({partition!r}) returned {found}, expected {records}"
            )
        state_store.delete(base, "shared")
        assert state_store.get(f"{base}-x", "shared") is not None, guarantee(
            g.PARTITIONS_ISOLATED, "deleting a key in one partition removed it from another"
        )
        assert state_store.get(f"{base}-y", "shared") is None, guarantee(
            g.PARTITIONS_ISOLATED, "a never-written partition returned another's record"
        )

    # -- sizes and keys ---------------------------------------------------------------------

    @checks(g.PUT_VALUE_SIZE)
    def test_values_up_to_the_declared_max_round_trip(self, state_store: StateStore) -> None:
        partition = unique_name()
        limit = min(state_store.capabilities.max_value_bytes, LARGEST_TESTED)
        sizes = sorted({0, 1, 255, 64 * 1024, 64 * 1024 + 1, 1024 * 1024, limit})
        for size in (s for s in sizes if s <= limit):
            value = (bytes(range(256)) + random.Random(size).randbytes(size))[:size]
            version = state_store.put(partition, f"value-{size}", value)
            record = state_store.get(partition, f"value-{size}")
            assert record is not None, guarantee(g.PUT_VALUE_SIZE, f"{size} bytes: read None")
            assert record.value == value and record.version == version, guarantee(
                g.PUT_VALUE_SIZE,
                f"wrote {size} bytes, read {len(record.value)} bytes"
                + (" with different content" if len(record.value) == size else ""),
            )

    @checks(g.PUT_TOO_LARGE)
    def test_values_over_the_declared_max_raise_too_large(self, state_store: StateStore) -> None:
        partition = unique_name()
        limit = state_store.capabilities.max_value_bytes
        if limit + 1 > LARGEST_REFUSAL_TESTED:
            pytest.skip(f"max_value_bytes={limit} is too large to build a value over it")
        expect_raises(
            TooLarge,
            g.PUT_TOO_LARGE,
            lambda: state_store.put(partition, "big", b"\x02" * (limit + 1)),
            f"put() of {limit + 1} bytes (max_value_bytes {limit})",
        )
        assert state_store.get(partition, "big") is None, guarantee(
            g.PUT_TOO_LARGE, "the refused value was stored anyway"
        )

    @checks(g.PUT_KEYS, g.SCAN_ORDER)
    def test_keys_with_awkward_characters_round_trip(self, state_store: StateStore) -> None:
        partition = unique_name()
        for key in AWKWARD_KEYS:
            state_store.put(partition, key, key.encode())
        wrong = {}
        for key in AWKWARD_KEYS:
            record = state_store.get(partition, key)
            if record is None or record.key != key or record.value != key.encode():
                wrong[key] = record
        assert not wrong, guarantee(g.PUT_KEYS, f"get() of these keys returned {wrong}")
        found = _keys(_all_pages(state_store, partition, limit=5))
        assert found == _utf8_order(AWKWARD_KEYS), guarantee(
            g.PUT_KEYS, f"scan returned {found}, expected {_utf8_order(AWKWARD_KEYS)}"
        )

    @checks(g.MAX_KEY_BYTES, g.PUT_KEYS)
    def test_keys_up_to_max_key_bytes_round_trip(self, state_store: StateStore) -> None:
        partition = unique_name()
        size = min(state_store.capabilities.max_key_bytes, 64 * 1024)
        key = ("é/" * size)[: size // 3] + "中"
        key += "k" * (size - len(key.encode()))
        assert len(key.encode()) == size
        state_store.put(partition, key, b"long key")
        record = state_store.get(partition, key)
        assert record is not None and record.key == key, guarantee(
            g.MAX_KEY_BYTES, f"a key of {size} UTF-8 bytes read back as {record!r}"
        )
        found = _keys(_all_pages(state_store, partition, limit=10))
        assert found == [key], guarantee(g.MAX_KEY_BYTES, f"scan found {len(found)} keys")

    # -- ttl --------------------------------------------------------------------------------

    @checks(g.TTL)
    def test_ttl_makes_a_record_disappear_when_declared(
        self, state_store: StateStore, conformance_timing: ConformanceTiming
    ) -> None:
        if not state_store.capabilities.ttl:
            pytest.skip("capability not declared: ttl (StateCapabilities.ttl is False)")
        partition = unique_name()
        ttl = conformance_timing.ttl
        written = time.monotonic()
        state_store.put(partition, "expiring", b"soon gone", ttl=ttl)
        state_store.put(partition, "lasting", b"stays")
        record = state_store.get(partition, "expiring")
        if time.monotonic() - written < ttl:
            assert record is not None, guarantee(g.TTL, f"gone before its ttl of {ttl}s")
        deadline = written + ttl + conformance_timing.settle
        while state_store.get(partition, "expiring") is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state_store.get(partition, "expiring") is None, guarantee(
            g.TTL, f"still readable {ttl + conformance_timing.settle}s after a put with ttl={ttl}"
        )
        found = _keys(_all_pages(state_store, partition, limit=10))
        assert found == ["lasting"], guarantee(
            g.TTL, f"after expiry, scan returned {found} (expected only the record without ttl)"
        )
        lasting = state_store.get(partition, "lasting")
        assert lasting is not None and lasting.value == b"stays", guarantee(
            g.TTL, f"a record written without ttl read back as {lasting!r}"
        )

    @checks(g.PUT_TTL_UNSUPPORTED)
    def test_ttl_raises_unsupported_when_not_declared(self, state_store: StateStore) -> None:
        if state_store.capabilities.ttl:
            pytest.skip("capability declared: ttl, so put(ttl=...) must work rather than raise")
        partition = unique_name()
        expect_raises(
            UnsupportedOperation,
            g.PUT_TTL_UNSUPPORTED,
            lambda: state_store.put(partition, "key", b"x", ttl=60),
            "put(ttl=60) on a store declaring ttl=False",
        )
        assert state_store.get(partition, "key") is None, guarantee(
            g.PUT_TTL_UNSUPPORTED, "the refused write was stored anyway"
        )

    # -- lifecycle --------------------------------------------------------------------------

    @checks(g.STATE_CLOSE)
    def test_close_is_safe_to_call_twice(self, state_store: StateStore) -> None:
        state_store.close()
        state_store.close()
