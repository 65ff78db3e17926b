"""Local state stores: `MemoryStateStore` (in-process) and `SqliteStateStore` (durable)."""

from __future__ import annotations

import bisect
import itertools
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from switchboard import ids
from switchboard.errors import Conflict
from switchboard.interfaces import ABSENT, ANY, Expect, Page, Record, StateCapabilities
from switchboard.limits import check_expectation, check_limit, check_write
from switchboard.providers.local.sqlite import Database

MEMORY_STATE_CAPABILITIES = StateCapabilities(
    max_value_bytes=64 * 1024 * 1024, max_key_bytes=4096, ttl=True
)


@dataclass(slots=True)
class _Entry:
    value: bytes
    version: str
    expires: float | None


# What a partition never written holds: read-only, and made once rather than per lookup.
_NO_PARTITION: tuple[Sequence[str], Mapping[str, _Entry]] = ((), MappingProxyType({}))


class MemoryStateStore:
    """Records in dictionaries, with one sorted key list per partition for scans."""

    capabilities = MEMORY_STATE_CAPABILITIES

    def __init__(self) -> None:
        self._partitions: dict[str, tuple[list[str], dict[str, _Entry]]] = {}
        self._versions = itertools.count(1)
        self._lock = threading.Lock()

    def get(self, partition: str, key: str) -> Record | None:
        with self._lock:
            entry = self._live(partition, key)
            return None if entry is None else Record(key, entry.value, entry.version)

    def put(
        self,
        partition: str,
        key: str,
        value: bytes,
        *,
        expect: Expect | str = ANY,
        ttl: float | None = None,
    ) -> str:
        check_write(self.capabilities, key, value, ttl)
        if type(value) is not bytes:
            value = bytes(value)  # a bytearray or memoryview the caller may change later
        with self._lock:
            current = self._live(partition, key)
            check_expectation(current.version if current else None, expect, partition, key)
            stored = self._partitions.get(partition)
            if stored is None:
                stored = self._partitions[partition] = ([], {})
            keys, entries = stored
            if key not in entries:
                bisect.insort(keys, key)
            version = str(next(self._versions))
            expires = time.time() + ttl if ttl is not None else None
            entries[key] = _Entry(value, version, expires)
            return version

    def delete(self, partition: str, key: str, *, expect: Expect | str = ANY) -> None:
        with self._lock:
            current = self._live(partition, key)
            check_expectation(current.version if current else None, expect, partition, key)
            if current is not None:
                self._remove(partition, key)

    def scan(
        self, partition: str, *, prefix: str = "", limit: int = 100, cursor: str | None = None
    ) -> Page:
        check_limit(limit)
        with self._lock:
            keys, entries = self._partitions.get(partition, _NO_PARTITION)
            if cursor is None:
                index = bisect.bisect_left(keys, prefix)
            else:
                index = bisect.bisect_right(keys, cursor)
            records: list[Record] = []
            now = time.time()
            while index < len(keys) and keys[index].startswith(prefix):
                entry = entries[keys[index]]
                if entry.expires is None or entry.expires > now:
                    if len(records) == limit:
                        return Page(records, records[-1].key)
                    records.append(Record(keys[index], entry.value, entry.version))
                index += 1
            return Page(records, None)

    def close(self) -> None:
        pass

    def _live(self, partition: str, key: str) -> _Entry | None:
        _, entries = self._partitions.get(partition, _NO_PARTITION)
        entry = entries.get(key)
        if entry is not None and entry.expires is not None and entry.expires <= time.time():
            self._remove(partition, key)
            return None
        return entry

    def _remove(self, partition: str, key: str) -> None:
        keys, entries = self._partitions[partition]
        del entries[key]
        del keys[bisect.bisect_left(keys, key)]


SQLITE_STATE_CAPABILITIES = StateCapabilities(
    max_value_bytes=64 * 1024 * 1024, max_key_bytes=4096, ttl=True
)


_REPLACE = (
    "INSERT OR REPLACE INTO records (partition, key, value, version, expires) "
    "VALUES (?, ?, ?, ?, ?)"
)
# An expired record counts as absent, so creating over it replaces it.
_CREATE = (
    "INSERT INTO records (partition, key, value, version, expires) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (partition, key) DO UPDATE SET value = excluded.value, "
    "version = excluded.version, expires = excluded.expires "
    "WHERE records.expires IS NOT NULL AND records.expires <= ?"
)
_UPDATE = (
    "UPDATE records SET value = ?, version = ?, expires = ? WHERE partition = ? AND key = ? "
    "AND version = ? AND (expires IS NULL OR expires > ?)"
)


class SqliteStateStore:
    """Records in the SQLite file; keys compare as UTF-8 bytes (SQLite's BINARY collation)."""

    capabilities = SQLITE_STATE_CAPABILITIES

    def __init__(self, path: str, synchronous: str = "full") -> None:
        self._db = Database.acquire(path, synchronous)
        self._closed = False

    def get(self, partition: str, key: str) -> Record | None:
        rows = self._db.read(
            "SELECT value, version FROM records WHERE partition = ? AND key = ? "
            "AND (expires IS NULL OR expires > ?)",
            (partition, key, time.time()),
        )
        if not rows:
            return None
        value, version = rows[0]
        return Record(key, _bytes(value), str(version))

    def put(
        self,
        partition: str,
        key: str,
        value: bytes,
        *,
        expect: Expect | str = ANY,
        ttl: float | None = None,
    ) -> str:
        check_write(self.capabilities, key, value, ttl)
        version = ids.hex_id()
        now = time.time()
        row = (partition, key, bytes(value), version, now + ttl if ttl is not None else None)

        # One statement each: the condition is checked by the write itself.
        def write(db: sqlite3.Connection) -> None:
            if expect is ANY:
                db.execute(_REPLACE, row)
            elif expect is ABSENT:
                if db.execute(_CREATE, (*row, now)).rowcount != 1:
                    raise Conflict(f"{partition}/{key} already exists")
            elif db.execute(_UPDATE, (*row[2:], partition, key, expect, now)).rowcount != 1:
                raise Conflict(f"{partition}/{key} is not at version {expect}")

        self._db.write(write, single=True)
        return version

    def delete(self, partition: str, key: str, *, expect: Expect | str = ANY) -> None:
        def remove(db: sqlite3.Connection) -> None:
            check_expectation(
                self._version(db, partition, key, time.time()), expect, partition, key
            )
            db.execute("DELETE FROM records WHERE partition = ? AND key = ?", (partition, key))

        self._db.write(remove)

    def scan(
        self, partition: str, *, prefix: str = "", limit: int = 100, cursor: str | None = None
    ) -> Page:
        check_limit(limit)
        low = cursor if cursor is not None else prefix
        sql = (
            "SELECT key, value, version FROM records WHERE partition = ? AND key "
            + (">" if cursor is not None else ">=")
            + " ? AND (expires IS NULL OR expires > ?)"
        )
        parameters: list[object] = [partition, low, time.time()]
        upper = _prefix_end(prefix)
        if upper is not None:
            sql += " AND key < ?"
            parameters.append(upper)
        sql += " ORDER BY key LIMIT ?"
        parameters.append(limit + 1)
        rows = self._db.read(sql, tuple(parameters))
        records = [Record(str(k), _bytes(v), str(ver)) for k, v, ver in rows[:limit]]
        return Page(records, records[-1].key if len(rows) > limit else None)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.release()

    @staticmethod
    def _version(db: sqlite3.Connection, partition: str, key: str, now: float) -> str | None:
        row = db.execute(
            "SELECT version FROM records WHERE partition = ? AND key = ? "
            "AND (expires IS NULL OR expires > ?)",
            (partition, key, now),
        ).fetchone()
        return None if row is None else str(row[0])


def _bytes(value: object) -> bytes:
    assert isinstance(value, bytes)
    return value


def _prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix`."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            return prefix[:-1] + chr(last + 1)
        prefix = prefix[:-1]
    return None
