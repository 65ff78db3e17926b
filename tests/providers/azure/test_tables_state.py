"""`TablesStateStore` against Azurite over the real Tables REST protocol: every guarantee of
the `StateStore` docstrings, plus what is specific to Azure (escaped keys, limits, errors)."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import threading
import uuid

import pytest

from switchboard.config import build_config
from switchboard.errors import (
    ConfigError,
    Conflict,
    NotFound,
    TooLarge,
    TransientProviderError,
    UnsupportedOperation,
)
from switchboard.interfaces import ABSENT, ANY, StateStore
from switchboard.providers.azure import AzureConfig, make_state, switchboard_providers
from switchboard.providers.azure.state import (
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    TablesStateStore,
    decode_key,
    encode_key,
)
from tests.emulators.process import free_port

FORBIDDEN_KEYS = ["a/b", "a\\b", "a#b", "a?b", "with space", "é", "中", "\x01", "\x7f", "\x85"]


def utf8_order(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda key: key.encode("utf-8"))


def all_records(store: TablesStateStore, partition: str, prefix: str = "", limit: int = 100):
    records, cursor = [], None
    while True:
        page = store.scan(partition, prefix=prefix, limit=limit, cursor=cursor)
        assert len(page.records) <= limit
        records.extend(page.records)
        if page.cursor is None:
            return records
        cursor = page.cursor


# -- the key escaping, on its own -----------------------------------------------------------


def test_escaped_keys_round_trip_and_use_only_characters_tables_allows() -> None:
    samples = [*FORBIDDEN_KEYS, "", "plain-key_1", "".join(chr(c) for c in range(0x80)), "😀\ue000"]
    for key in samples:
        stored = encode_key(key)
        assert decode_key(stored) == key
        assert stored.isascii()
        assert not any(c in stored for c in "/\\#?") and all(0x20 < ord(c) < 0x7F for c in stored)


def test_escaping_preserves_utf8_byte_order_and_prefixes() -> None:
    rng = random.Random(7)
    alphabet = [chr(c) for c in range(0x00, 0x80)] + ["é", "ÿ", "\u0100", "中", "\ue000", "😀"]
    keys = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(3000)]
    assert sorted(keys, key=encode_key) == utf8_order(keys)
    for key in keys[:500]:
        for cut in range(len(key) + 1):
            assert encode_key(key).startswith(encode_key(key[:cut]))
    for a, b in itertools.pairwise(keys):
        if not b.startswith(a):
            assert not encode_key(b).startswith(encode_key(a))


# -- StateStore guarantees ------------------------------------------------------------------


def test_store_satisfies_the_protocol_and_declares_its_limits(store: TablesStateStore) -> None:
    assert isinstance(store, StateStore)
    assert store.capabilities.max_value_bytes == MAX_VALUE_BYTES
    assert store.capabilities.max_key_bytes == MAX_KEY_BYTES == 170
    assert store.capabilities.ttl is False


def test_get_returns_none_for_a_missing_key(store: TablesStateStore) -> None:
    assert store.get("p", "missing") is None
    store.put("p", "present", b"1")
    assert store.get("p", "missing") is None
    assert store.get("other", "present") is None


def test_get_returns_the_last_put_value_byte_for_byte_with_its_version(
    store: TablesStateStore,
) -> None:
    for value in (b"", b"\x00\xff binary \x00", "unicode é 中 😀".encode(), bytes(range(256)) * 3):
        version = store.put("p", "k", value)
        record = store.get("p", "k")
        assert record is not None
        assert (record.key, record.value, record.version) == ("k", value, version)


def test_put_absent_conflicts_when_the_record_exists(store: TablesStateStore) -> None:
    version = store.put("p", "k", b"first", expect=ABSENT)
    with pytest.raises(Conflict):
        store.put("p", "k", b"second", expect=ABSENT)
    record = store.get("p", "k")
    assert record is not None and (record.value, record.version) == (b"first", version)


def test_put_with_a_stale_version_conflicts(store: TablesStateStore) -> None:
    first = store.put("p", "k", b"1")
    second = store.put("p", "k", b"2", expect=first)
    with pytest.raises(Conflict):
        store.put("p", "k", b"3", expect=first)
    third = store.put("p", "k", b"3", expect=second)
    record = store.get("p", "k")
    assert record is not None and (record.value, record.version) == (b"3", third)


def test_a_version_never_matches_a_missing_record(store: TablesStateStore) -> None:
    version = store.put("p", "k", b"1")
    store.delete("p", "k")
    with pytest.raises(Conflict):
        store.put("p", "k", b"2", expect=version)
    with pytest.raises(Conflict):
        store.put("p", "other", b"2", expect=version)
    assert store.get("p", "k") is None and store.get("p", "other") is None


def test_every_write_gives_a_version_never_seen_before_for_that_key(
    store: TablesStateStore,
) -> None:
    seen = set()
    for round_ in range(30):
        seen.add(store.put("p", "k", b"x"))
        if round_ % 3 == 0:
            store.delete("p", "k")
            seen.add(store.put("p", "k", b"x", expect=ABSENT))
    assert len(seen) == 40


def test_concurrent_writers_expecting_the_same_version_exactly_one_wins(
    store: TablesStateStore,
) -> None:
    writers, rounds = 8, 10
    version = store.put("p", "counter", b"0")
    for round_ in range(rounds):
        barrier = threading.Barrier(writers)
        winners: list[str] = []
        errors: list[BaseException] = []

        def write(
            name: str,
            expected: str,
            barrier: threading.Barrier,
            winners: list[str],
            errors: list[BaseException],
        ) -> None:
            barrier.wait()
            try:
                winners.append(store.put("p", "counter", name.encode(), expect=expected))
            except Conflict:
                pass
            except BaseException as error:  # noqa: BLE001 - reported by the assertion below
                errors.append(error)

        threads = [
            threading.Thread(target=write, args=(f"w{i}", version, barrier, winners, errors))
            for i in range(writers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert len(winners) == 1, f"round {round_}: {len(winners)} writers won"
        record = store.get("p", "counter")
        assert record is not None and record.version == winners[0]
        version = winners[0]


def test_concurrent_creates_exactly_one_wins(store: TablesStateStore) -> None:
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def create(index: int) -> None:
        barrier.wait()
        try:
            store.put("p", "once", str(index).encode(), expect=ABSENT)
            outcomes.append("won")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["won"]


def test_delete_with_the_current_version_removes_the_record(store: TablesStateStore) -> None:
    version = store.put("p", "k", b"1")
    store.delete("p", "k", expect=version)
    assert store.get("p", "k") is None


def test_delete_with_a_stale_version_conflicts_and_keeps_the_record(
    store: TablesStateStore,
) -> None:
    first = store.put("p", "k", b"1")
    store.put("p", "k", b"2")
    with pytest.raises(Conflict):
        store.delete("p", "k", expect=first)
    record = store.get("p", "k")
    assert record is not None and record.value == b"2"


def test_delete_of_a_missing_record_with_a_version_conflicts(store: TablesStateStore) -> None:
    version = store.put("p", "k", b"1")
    store.delete("p", "k")
    with pytest.raises(Conflict):
        store.delete("p", "k", expect=version)


def test_delete_any_of_a_missing_record_is_not_an_error(store: TablesStateStore) -> None:
    store.delete("p", "never-written")
    store.delete("p", "never-written", expect=ANY)


def test_keys_with_characters_tables_forbids_round_trip(store: TablesStateStore) -> None:
    keys = [*FORBIDDEN_KEYS, "run/1#step?2\\x", "a b é 中 \x01 end", "😀", "", "'quoted'"]
    for index, key in enumerate(keys):
        version = store.put("p/#?", key, str(index).encode(), expect=ABSENT)
        record = store.get("p/#?", key)
        assert record is not None and (record.key, record.value) == (key, str(index).encode())
        assert store.put("p/#?", key, b"again", expect=version) != version
    assert [r.key for r in all_records(store, "p/#?")] == utf8_order(keys)
    for key in keys:
        store.delete("p/#?", key)
    assert all_records(store, "p/#?") == []


def test_scan_returns_keys_in_ascending_utf8_byte_order(store: TablesStateStore) -> None:
    # UTF-16 order (the service's) differs from UTF-8 order for the last two; ASCII case,
    # punctuation and the escape characters' neighbours are all mixed in.
    keys = ["B", "a", "A", "~", "}", "[", "\\", "]", ".", "/", "0", ">", "?", "@", "!", " ", '"',
            "#", "$", "\x01", "\x7f", "é", "中", "\ue000", "😀", "a\x00", "ab", "a"]  # fmt: skip
    keys = list(dict.fromkeys(keys))
    for key in reversed(keys):
        store.put("order", key, key.encode())
    records = all_records(store, "order", limit=4)
    assert [r.key for r in records] == utf8_order(keys)
    assert all(r.value == r.key.encode() for r in records)


def test_scan_with_a_prefix_returns_exactly_the_keys_starting_with_it(
    store: TablesStateStore,
) -> None:
    keys = ["a", "a/", "a/1", "a/2/x", "a.", "a0", "a/\x7f", "a\\", "a//", "b/1", "a#", "é/", "é"]
    for key in keys:
        store.put("p", key, b"")
    for prefix in ["a/", "a", "a/2", "é", "z", "a//", "a#", "é/"]:
        got = [r.key for r in all_records(store, "p", prefix=prefix, limit=2)]
        assert got == utf8_order([k for k in keys if k.startswith(prefix)]), prefix


def test_a_page_holds_at_most_limit_records_and_cursors_visit_every_record_once(
    store: TablesStateStore,
) -> None:
    keys = [f"step/{i:03d}" for i in range(45)]
    for key in keys:
        store.put("run", key, key.encode())
    for limit in (1, 7, 45, 100):
        seen = all_records(store, "run", prefix="step/", limit=limit)
        assert [r.key for r in seen] == keys


def test_following_cursors_while_writing_visits_each_existing_record_exactly_once(
    store: TablesStateStore,
) -> None:
    existing = [f"k{i:03d}" for i in range(0, 60, 2)]
    for key in existing:
        store.put("run", key, b"old")
    seen: list[str] = []
    cursor = None
    written = 0
    while True:
        page = store.scan("run", prefix="k", limit=4, cursor=cursor)
        assert len(page.records) <= 4
        seen.extend(r.key for r in page.records)
        # Writers interleave: new keys before and after the cursor, updates of existing ones.
        store.put("run", f"k{written * 2 + 1:03d}", b"new")
        store.put("run", existing[-1 - written % len(existing)], b"updated")
        written += 1
        if page.cursor is None:
            break
        cursor = page.cursor
    assert [k for k in seen if k in existing] == existing
    assert len(seen) == len(set(seen))
    assert seen == utf8_order(seen)


def test_partitions_are_isolated(store: TablesStateStore) -> None:
    partitions = ["run-1", "run-10", "run-1/", "run-1#", "", "é"]
    for partition in partitions:
        store.put(partition, "k", partition.encode())
        store.put(partition, f"only-{partition}", b"")
    for partition in partitions:
        record = store.get(partition, "k")
        assert record is not None and record.value == partition.encode()
        assert [r.key for r in all_records(store, partition)] == utf8_order(
            ["k", f"only-{partition}"]
        )
    store.delete("run-1", "k")
    assert store.get("run-10", "k") is not None and store.get("run-1", "k") is None


def test_values_at_the_limit_round_trip_and_one_byte_more_is_too_large(
    store: TablesStateStore,
) -> None:
    rng = random.Random(3)
    for size in (63999, 64000, 64001, MAX_VALUE_BYTES):
        value = rng.randbytes(size)
        store.put("big", str(size), value)
        store.put("big", str(size), value)  # an update is checked by Azurite, unlike an insert
        record = store.get("big", str(size))
        assert record is not None and record.value == value
    # The largest value with the longest keys (each escaped to 510 characters), updated in place.
    partition, key, value = (
        "\x01" * MAX_KEY_BYTES,
        "\x02" * MAX_KEY_BYTES,
        rng.randbytes(MAX_VALUE_BYTES),
    )
    version = store.put(partition, key, value, expect=ABSENT)
    store.put(partition, key, value[::-1], expect=version)
    record = store.get(partition, key)
    assert record is not None and record.value == value[::-1]
    with pytest.raises(TooLarge):
        store.put("big", "over", b"x" * (MAX_VALUE_BYTES + 1))
    assert store.get("big", "over") is None
    # A shorter value replaces every chunk of a longer one.
    store.put("big", str(MAX_VALUE_BYTES), b"short")
    record = store.get("big", str(MAX_VALUE_BYTES))
    assert record is not None and record.value == b"short"
    assert [len(r.value) for r in all_records(store, "big", limit=2)] == [63999, 64000, 64001, 5]


def test_keys_up_to_max_key_bytes_work_and_longer_ones_are_too_large(
    store: TablesStateStore,
) -> None:
    # The worst case for escaping: every byte escaped (control characters, non-ASCII).
    for key in ("\x01" * MAX_KEY_BYTES, "中" * (MAX_KEY_BYTES // 3), "k" * MAX_KEY_BYTES):
        store.put("\x01" * MAX_KEY_BYTES, key, b"v")
        record = store.get("\x01" * MAX_KEY_BYTES, key)
        assert record is not None and record.key == key
    with pytest.raises(TooLarge):
        store.put("p", "k" * (MAX_KEY_BYTES + 1), b"v")
    with pytest.raises(TooLarge):
        store.put("p" * (MAX_KEY_BYTES + 1), "k", b"v")


def test_ttl_is_unsupported(store: TablesStateStore) -> None:
    with pytest.raises(UnsupportedOperation):
        store.put("p", "k", b"v", ttl=60)
    assert store.get("p", "k") is None


def test_a_cursor_from_elsewhere_is_refused(store: TablesStateStore) -> None:
    with pytest.raises(ValueError):
        store.scan("p", cursor="not a cursor!")


def test_close_is_safe_twice(tables_connection_string: str) -> None:
    store = TablesStateStore.from_connection_string(tables_connection_string, "closetwice")
    store.close()
    store.close()


# -- Azure specifics: provisioning, errors, the provider entry --------------------------------


def test_ensure_is_idempotent_and_a_missing_table_is_not_found(
    tables_connection_string: str,
) -> None:
    name = "sb" + uuid.uuid4().hex[:12]
    store = TablesStateStore.from_connection_string(tables_connection_string, name)
    try:
        with pytest.raises(NotFound, match="table does not exist"):
            store.get("p", "k")
        with pytest.raises(NotFound, match="table does not exist"):
            store.put("p", "k", b"v")
        with pytest.raises(NotFound, match="table does not exist"):
            store.scan("p")
        with pytest.raises(NotFound, match="table does not exist"):
            store.delete("p", "k", expect="W/\"datetime'2026-01-01T00%3A00%3A00Z'\"")
        store.ensure()
        store.ensure()
        store.put("p", "k", b"v")
        store.ensure()
        record = store.get("p", "k")
        assert record is not None and record.value == b"v"
    finally:
        from azure.data.tables import TableServiceClient

        with TableServiceClient.from_connection_string(tables_connection_string) as service:
            service.delete_table(name)
        store.close()


def test_an_unreachable_service_is_a_transient_error() -> None:
    from azure.data.tables import TableClient

    from tests.emulators.azurite import connection_string

    client = TableClient.from_connection_string(
        connection_string(free_port()), table_name="nowhere", retry_total=0
    )
    store = TablesStateStore(client)
    with pytest.raises(TransientProviderError):
        store.get("p", "k")
    with pytest.raises(TransientProviderError):
        store.put("p", "k", b"v", expect='W/"x"')
    store.close()


def test_the_provider_builds_the_store_from_config(tables_connection_string: str) -> None:
    (spec,) = switchboard_providers()
    assert spec.name == "azure" and spec.state is make_state and spec.config is AzureConfig
    table = "sb" + uuid.uuid4().hex[:12]
    config = build_config(
        AzureConfig,
        {"tables_connection_string": tables_connection_string, "table": table},
        provider="azure",
    )
    store = spec.state(config)
    try:
        store.put("p", "k", b"v")
        assert store.get("p", "k") is not None
    finally:
        from azure.data.tables import TableServiceClient

        with TableServiceClient.from_connection_string(tables_connection_string) as service:
            service.delete_table(table)
        store.close()


def test_a_missing_connection_string_names_the_field_the_variable_and_an_example(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("AZURE_TABLES_CONNECTION_STRING", "AZURE_STORAGE_CONNECTION_STRING"):
        monkeypatch.delenv(var, raising=False)
    config = build_config(AzureConfig, {}, provider="azure")
    with pytest.raises(ConfigError) as raised:
        make_state(config)
    message = str(raised.value)
    assert "tables_connection_string" in message
    assert "AZURE_TABLES_CONNECTION_STRING" in message and "AccountName=" in message


def test_a_bad_table_name_is_a_config_error(tables_connection_string: str) -> None:
    with pytest.raises(ConfigError, match="'table'"):
        TablesStateStore.from_connection_string(tables_connection_string, "no-dashes")


def test_the_provider_module_imports_without_the_sdks() -> None:
    # Block the SDKs as if they were not installed, import the plugin, build a store.
    code = """
import sys
for name in ("azure.data.tables", "azure.servicebus", "azure.core"):
    sys.modules[name] = None
from switchboard.errors import ConfigError
from switchboard.providers import azure
from switchboard.config import build_config
(spec,) = azure.switchboard_providers()
config = build_config(spec.config, {"tables_connection_string": "x",
                                    "servicebus_connection_string": "y"}, provider="azure")
for factory in (spec.state, spec.broker):
    try:
        factory(config)
    except ConfigError as error:
        assert "pip install 'switchboard-orchestrator[azure]'" in str(error), error
    else:
        raise AssertionError("no ConfigError")
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize("version", ["1", "*", '"strong"', 'W/"made-up"', ""])
def test_a_string_that_is_no_version_of_the_store_conflicts(
    store: TablesStateStore, version: str
) -> None:
    store.put("p", "k", b"1")
    with pytest.raises(Conflict):
        store.put("p", "k", b"2", expect=version)
    with pytest.raises(Conflict):
        store.put("p", "missing", b"2", expect=version)
    with pytest.raises(Conflict):
        store.delete("p", "k", expect=version)
    record = store.get("p", "k")
    assert record is not None and record.value == b"1"
