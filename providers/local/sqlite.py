"""One durable SQLite file shared by the local queue and state store.

WAL journal, `synchronous=FULL` by default (`normal` on request, never `off`): a committed
write survives a crash of the process and of the machine. One connection per file per
process, so queue and state writes of a process serialise on one lock; other processes
use the same file through SQLite's own locking.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from switchboard.errors import ConfigError, TransientProviderError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    channel TEXT NOT NULL,
    id TEXT NOT NULL,
    body BLOB NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    visible_at REAL NOT NULL,
    lease TEXT,
    owner TEXT,
    reason TEXT,
    PRIMARY KEY (channel, id)
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (channel, visible_at);
CREATE TABLE IF NOT EXISTS records (
    partition TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    version TEXT NOT NULL,
    expires REAL,
    PRIMARY KEY (partition, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS owners (
    owner TEXT PRIMARY KEY,
    pid INTEGER NOT NULL
);
"""

_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}


class Database:
    """A connection to one SQLite file, its lock, and this process's owner id."""

    _open: dict[str, tuple[Database, int]] = {}
    _registry_lock = threading.Lock()

    @classmethod
    def acquire(cls, path: str, synchronous: str) -> Database:
        """The process-wide `Database` for `path` (reference counted)."""
        key = os.path.abspath(path)
        with cls._registry_lock:
            database, count = cls._open.get(key, (None, 0))
            if database is None:
                database = cls(key, synchronous)
            cls._open[key] = (database, count + 1)
            return database

    def release(self) -> None:
        with self._registry_lock:
            database, count = self._open[self.path]
            if count > 1:
                self._open[self.path] = (database, count - 1)
                return
            del self._open[self.path]
        with self.lock:
            self._connection.execute("DELETE FROM owners WHERE owner = ?", (self.owner,))
            self._connection.close()

    def __init__(self, path: str, synchronous: str) -> None:
        mode = _SYNCHRONOUS.get(synchronous.lower())
        if mode is None:
            raise ConfigError(
                f"the local provider's setting 'synchronous' must be one of "
                f"{', '.join(_SYNCHRONOUS)}, got {synchronous!r}"
            )
        self.path = path
        self.lock = threading.RLock()
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.changed = threading.Condition(self.lock)
        self._connection = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute(f"PRAGMA synchronous={mode}")
        with self.transaction() as db:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            db.execute("INSERT INTO owners (owner, pid) VALUES (?, ?)", (self.owner, os.getpid()))
            self._reclaim_dead_owners(db)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: the write lock is taken up front, so it cannot fail
        half-way on a lock upgrade."""
        with self.lock:
            try:
                self._connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise TransientProviderError(f"SQLite is busy: {exc}") from exc
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def read(self, sql: str, parameters: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self.lock:
            return self._connection.execute(sql, parameters).fetchall()

    def _reclaim_dead_owners(self, db: sqlite3.Connection) -> None:
        """Messages leased by a process that no longer exists become visible at once, so a
        restart resumes without waiting out the dead process's leases."""
        for owner, pid in db.execute("SELECT owner, pid FROM owners").fetchall():
            if owner != self.owner and not _alive(int(pid)):
                db.execute(
                    "UPDATE messages SET visible_at = ?, lease = NULL, owner = NULL "
                    "WHERE owner = ? AND lease IS NOT NULL",
                    (time.time(), owner),
                )
                db.execute("DELETE FROM owners WHERE owner = ?", (owner,))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
