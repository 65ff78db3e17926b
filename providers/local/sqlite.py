"""One durable SQLite file shared by the local queue and state store.

WAL journal, `synchronous=FULL` by default (`normal` on request, never `off`): a committed
write survives a crash of the process and of the machine. One connection per file per
process, so queue and state writes of a process serialise on one lock (and commit in
groups); other processes use the same file through SQLite's own locking.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar

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
CREATE TABLE IF NOT EXISTS wal_filler (filler BLOB);
"""

#: Pages the WAL holds before SQLite checkpoints it (`wal_autocheckpoint`'s default); the
#: WAL is given this size, plus some, when the file is opened.
_CHECKPOINT_PAGES = 1000

#: Batches one leader commits in a row before handing the lead over.
_LEAD_ROUNDS = 8

_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}

T = TypeVar("T")


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
        self._readers.close()
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
        self.lock = threading.Lock()
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._signals: dict[str, Signal] = {}
        self._signals_lock = threading.Lock()
        self._writers = threading.Lock()
        self._pending: list[_Unit[Any]] = []
        self._leading = False
        self._connection = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute(f"PRAGMA synchronous={mode}")
        #: Whether durable writes fsync (`full`), and the setting the connection has now.
        self._full = mode == "FULL"
        self._synchronous = mode
        self.write(self._set_up)
        self._preallocate_wal()
        # Reads have connections of their own: in WAL mode they then run beside a commit
        # instead of queueing behind its fsync on `lock`.
        self._readers = _Readers(path)

    def write(
        self,
        work: Callable[[sqlite3.Connection], T],
        *,
        durable: bool = True,
        single: bool = False,
    ) -> T:
        """Run `work` in a write transaction and return its result once it is committed.

        With `durable=False` (bookkeeping whose loss a redelivery repairs: leases, acks)
        the commit skips its own fsync when no durable write shares its batch. It is in
        the WAL, so it survives the process dying, and the next durable commit's fsync,
        which syncs the whole WAL, makes it durable too; a machine crash before that can
        undo it, and never a durable write committed after it.

        Group commit: writers that arrive while a commit is under way are committed
        together by the next leader, one transaction and one fsync for the batch. Nothing
        returns before its batch is durable.

        The contract for `work`, which lets a batch run without a savepoint per unit (three
        statements, and three GIL hand-offs, a unit fewer): it raises its own errors (a
        `Conflict`, a `LeaseLost`) only *before* it changes anything, so such an error
        reaches its caller alone and the rest of the batch commits; an `sqlite3.Error`
        fails the whole batch, which rolls back and reports a `TransientProviderError` to
        every unit in it. `work` must return plain values, never a cursor: a cursor
        finalised later, in another thread and outside the lock, corrupts the shared
        statement cache.

        `single=True` says `work` runs exactly one statement: alone in its batch, it then
        runs without BEGIN and COMMIT, its statement being its own transaction.
        """
        unit = _Unit(work, durable, single)
        with self._writers:
            lead = not self._leading
            if lead:
                self._leading = True
            else:
                unit.wake = threading.Event()
            self._pending.append(unit)
        if unit.wake is not None:
            # Woken once: committed by a leader, or made the next leader by one.
            unit.wake.wait()
            if unit.finished:
                return unit.outcome()
        self._lead()
        return unit.outcome()

    def _lead(self) -> None:
        """Commit batches while writers keep queueing, up to `_LEAD_ROUNDS` of them, then
        hand the lead to the oldest waiter.

        A committed batch's writers are woken just before the *next* batch's COMMIT, not
        right after their own: the next batch's statements then run while they still
        sleep, instead of trading the GIL with them at every statement, and their own next
        steps run during the fsync that follows.
        """
        committed: list[_Unit[Any]] = []
        try:
            for _ in range(_LEAD_ROUNDS):
                with self._writers:
                    batch, self._pending = self._pending, []
                if not batch:
                    break
                self._commit(batch, committed)
                _wake(committed)  # a batch that failed before its COMMIT woke no one
                committed = batch
        finally:
            _wake(committed)
            with self._writers:
                # Hand over to the oldest waiter, if any: only it and the committed wake.
                if self._pending:
                    _wake(self._pending[:1])
                else:
                    self._leading = False

    def _commit(self, batch: list[_Unit[Any]], previous: list[_Unit[Any]]) -> None:
        """One IMMEDIATE transaction for the batch (the write lock is taken up front, so it
        cannot fail half-way on a lock upgrade); the `previous` batch's writers are woken
        just before its COMMIT. A lone single-statement unit is its own transaction."""
        connection = self._connection
        alone = len(batch) == 1 and batch[0].single
        try:
            self._synchronize(any(unit.durable for unit in batch))
            with self.lock:
                if alone:
                    _wake(previous)  # the statement commits as it runs
                else:
                    try:
                        connection.execute("BEGIN IMMEDIATE")
                    except sqlite3.OperationalError as exc:
                        raise TransientProviderError(f"SQLite is busy: {exc}") from exc
                try:
                    for unit in batch:
                        try:
                            unit.result = unit.work(connection)
                        except sqlite3.Error:
                            raise  # the transaction may be gone: none of the batch commits
                        except Exception as exc:  # noqa: BLE001 - raised before any change
                            unit.error = exc
                except BaseException:
                    # Some errors (a full disk, I/O) end the transaction themselves.
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
                if not alone:
                    _wake(previous)
                    connection.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - the batch did not commit: all of it failed
            failed = (
                exc
                if isinstance(exc, TransientProviderError)
                else TransientProviderError(f"SQLite commit failed: {exc}")
            )
            for unit in batch:
                unit.result, unit.error = None, failed
        finally:
            for unit in batch:
                unit.finished = True

    def _synchronize(self, durable: bool) -> None:
        """Set the connection's `synchronous` for the next commit (not allowed inside a
        transaction): FULL when it holds a durable write, else NORMAL (no fsync)."""
        mode = "FULL" if durable and self._full else "NORMAL"
        if mode != self._synchronous:
            with self.lock:
                self._connection.execute(f"PRAGMA synchronous={mode}")
            self._synchronous = mode

    def read(self, sql: str, parameters: tuple[object, ...]) -> list[tuple[object, ...]]:
        """Rows of a query; it sees every write committed before it started."""
        return self._readers.read(sql, parameters)

    def signal(self, channel: str) -> Signal:
        """What receivers of `channel` in this process wait on for its messages."""
        with self._signals_lock:
            return self._signals.setdefault(channel, Signal())

    def _preallocate_wal(self) -> None:
        """Give the WAL file its working size now, as PostgreSQL recycles WAL segments.

        A commit is one fdatasync of the WAL. While the WAL grows, each one also has the
        file system journal its new size: measured here, 185-285 us a commit on a fresh
        file against 90-120 us once SQLite overwrites a WAL of full size (after a
        checkpoint it starts again from the front). One transaction that writes and frees
        a blob of that size, then a checkpoint, leaves the WAL full size and empty.
        """
        (page_size,) = self._connection.execute("PRAGMA page_size").fetchone()
        size = (_CHECKPOINT_PAGES + 64) * int(page_size)
        wal = f"{self.path}-wal"
        if os.path.exists(wal) and os.path.getsize(wal) >= size:
            return

        def fill(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO wal_filler (filler) VALUES (zeroblob(?))", (size,))
            db.execute("DELETE FROM wal_filler")

        self.write(fill)
        # Busy (another process reading) only means the WAL starts over a little later.
        self._connection.execute("PRAGMA wal_checkpoint(RESTART)")
        # The first commit after it starts the WAL over: it writes the WAL's header and
        # syncs it before its own frames, an fsync more. Take that now, with one frame that
        # changes nothing, not in the first write a caller waits for.
        self.write(lambda db: db.execute("DELETE FROM wal_filler").rowcount)

    def _set_up(self, db: sqlite3.Connection) -> None:
        for statement in filter(str.strip, _SCHEMA.split(";")):
            db.execute(statement)
        db.execute("INSERT INTO owners (owner, pid) VALUES (?, ?)", (self.owner, os.getpid()))
        self._reclaim_dead_owners(db)

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


class _Readers:
    """Read connections, one per concurrent reader, reused.

    A reader holds its connection for the query alone. One shared connection would need a
    lock, and its holder gives up the GIL inside every query: with many threads running,
    it waits for the GIL while holding the lock, and the other readers queue behind it.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # One ready at once, its schema read: the first read must not pay for opening it.
        self.read("SELECT 1 FROM records LIMIT 1", ())

    def read(self, sql: str, parameters: tuple[object, ...]) -> list[tuple[object, ...]]:
        try:
            connection = self._idle.get_nowait()
        except queue.Empty:
            connection = self._connect()
        try:
            return connection.execute(sql, parameters).fetchall()
        finally:
            self._idle.put(connection)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        with self._lock:
            self._all.append(connection)
        return connection

    def close(self) -> None:
        with self._lock:
            connections, self._all = self._all, []
        for connection in connections:
            connection.close()


class Signal:
    """Notified, with `generation` increased, whenever messages of one channel become
    visible in this process. Per channel: a send wakes only that channel's receivers."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.generation = 0

    def notify(self) -> None:
        with self.changed:
            self.generation += 1
            self.changed.notify_all()


def _wake(units: list[_Unit[Any]]) -> None:
    """Wake the waiting writers among `units` (a leader waits for nothing)."""
    for unit in units:
        if unit.wake is not None:
            unit.wake.set()


class _Unit(Generic[T]):
    """One writer's work in a group commit, and what became of it."""

    __slots__ = ("durable", "error", "finished", "result", "single", "wake", "work")

    def __init__(
        self, work: Callable[[sqlite3.Connection], T], durable: bool, single: bool
    ) -> None:
        self.work = work
        self.durable = durable
        self.single = single
        self.finished = False
        #: Set for a writer that queued behind a leader, which waits for it.
        self.wake: threading.Event | None = None
        self.result: T | None = None
        self.error: Exception | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
