"""Local queues: `MemoryBroker` (in-process) and `SqliteBroker` (one durable SQLite file).

Both keep the same semantics as the cloud queues: leases, attempt counts, delayed
delivery and a dead-letter channel after `max_attempts` deliveries.
"""

from __future__ import annotations

import heapq
import itertools
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from switchboard import ids
from switchboard.errors import LeaseLost, UnsupportedOperation
from switchboard.interfaces import Delivery, Queue, QueueCapabilities
from switchboard.limits import check_request, check_send
from switchboard.providers.local.sqlite import Database

MEMORY_CAPABILITIES = QueueCapabilities(
    max_message_bytes=64 * 1024 * 1024,
    max_batch=1000,
    max_delay=365 * 24 * 3600.0,
    max_lease=24 * 3600.0,
    native_dead_letter=True,
    claim_on_send=True,
    interruptible=True,
)


@dataclass(slots=True)
class _Message:
    id: str
    body: bytes
    attempt: int = 0
    #: The lease currently out on this message; None while it waits to be delivered.
    lease: int | None = None
    reason: str | None = None


class MemoryQueue:
    """One in-memory channel. Thread-safe; `receive` blocks on a condition, not a poll."""

    capabilities = MEMORY_CAPABILITIES

    def __init__(self, name: str, max_attempts: int, *, dead_letters: MemoryQueue | None) -> None:
        self.name = name
        self.max_attempts = max_attempts
        self._dead = dead_letters
        self._messages: dict[str, _Message] = {}
        self._ready: deque[str] = deque()
        # (visible_at, tiebreak, message id, lease or None): delayed sends and live leases.
        self._timed: list[tuple[float, int, str, int | None]] = []
        self._tiebreak = itertools.count()
        self._leases = itertools.count(1)
        self._cond = threading.Condition()
        #: Counts `interrupt` calls: a waiting `receive` ends when it changes.
        self._interrupts = 0

    # -- the Queue protocol ------------------------------------------------------------------

    def send(self, bodies: Sequence[bytes], *, delay: float = 0.0) -> None:
        check_send(self, bodies, delay)
        with self._cond:
            for body in bodies:
                self._add(_Message(ids.hex_id(), bytes(body)), delay)
            self._cond.notify_all()

    def send_claimed(self, body: bytes, *, lease: float) -> Delivery:
        check_send(self, [body], 0.0)
        check_request(self, lease=lease)
        message = _Message(ids.hex_id(), bytes(body), attempt=1)
        with self._cond:
            message.lease = next(self._leases)
            self._messages[message.id] = message
            self._push_timed(time.monotonic() + lease, message.id, message.lease)
            self._cond.notify_all()  # a receiver's wait must now end by this lease
        return Delivery(message.body, message.id, 1, [message.lease])

    def receive(
        self, max_messages: int = 1, *, wait: float = 0.0, lease: float = 30.0
    ) -> list[Delivery]:
        check_request(self, count=max_messages, lease=lease)
        deadline = time.monotonic() + wait
        with self._cond:
            interrupts = self._interrupts
            while True:
                self._promote_due()
                if self._ready:
                    return self._take(max_messages, lease)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._interrupts != interrupts:
                    return []
                next_due = self._timed[0][0] - time.monotonic() if self._timed else remaining
                self._cond.wait(max(0.0, min(remaining, next_due)))

    def interrupt(self) -> None:
        with self._cond:
            self._interrupts += 1
            self._cond.notify_all()

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        with self._cond:
            for delivery in deliveries:
                message = self._owned(delivery)
                if message is not None:
                    del self._messages[message.id]

    def release(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        check_request(self, delay=delay)
        with self._cond:
            message = self._owned(delivery, strict=True)
            assert message is not None
            message.lease = None
            self._schedule(message, delay)
            self._cond.notify_all()

    def extend(self, delivery: Delivery, lease: float) -> None:
        check_request(self, lease=lease)
        with self._cond:
            message = self._owned(delivery, strict=True)
            assert message is not None
            message.lease = next(self._leases)
            self._push_timed(time.monotonic() + lease, message.id, message.lease)
            # The delivery's handle must follow the lease it now holds.
            handle: list[int] = delivery.handle
            handle[0] = message.lease

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        with self._cond:
            message = self._owned(delivery, strict=True)
            assert message is not None
            del self._messages[message.id]
        self._to_dead_letters(message, reason)

    def dead_letters(self) -> Queue:
        if self._dead is None:
            raise UnsupportedOperation(f"{self.name!r} is itself a dead-letter channel")
        return self._dead

    def close(self) -> None:
        pass

    # -- internals --------------------------------------------------------------------------

    def _add(self, message: _Message, delay: float) -> None:
        self._messages[message.id] = message
        self._schedule(message, delay)

    def _schedule(self, message: _Message, delay: float) -> None:
        if delay > 0:
            self._push_timed(time.monotonic() + delay, message.id, None)
        else:
            self._ready.append(message.id)

    def _push_timed(self, at: float, message_id: str, lease: int | None) -> None:
        heapq.heappush(self._timed, (at, next(self._tiebreak), message_id, lease))

    def _promote_due(self) -> None:
        now = time.monotonic()
        while self._timed and self._timed[0][0] <= now:
            _, _, message_id, lease = heapq.heappop(self._timed)
            message = self._messages.get(message_id)
            # Stale entries (acked, re-leased, released) are skipped lazily.
            if message is not None and message.lease == lease:
                message.lease = None
                self._ready.append(message_id)

    def _take(self, max_messages: int, lease: float) -> list[Delivery]:
        taken: list[Delivery] = []
        now = time.monotonic()
        while self._ready and len(taken) < max_messages:
            message = self._messages.get(self._ready.popleft())
            if message is None or message.lease is not None:
                continue
            if message.attempt >= self.max_attempts and self._dead is not None:
                del self._messages[message.id]
                self._to_dead_letters(message, f"delivered {message.attempt} times")
                continue
            message.attempt += 1
            message.lease = next(self._leases)
            self._push_timed(now + lease, message.id, message.lease)
            taken.append(
                Delivery(message.body, message.id, message.attempt, [message.lease], message.reason)
            )
        return taken

    def _owned(self, delivery: Delivery, *, strict: bool = False) -> _Message | None:
        message = self._messages.get(delivery.id)
        if message is None or message.lease != delivery.handle[0]:
            if strict:
                raise LeaseLost(f"the lease on message {delivery.id} in {self.name!r} is gone")
            return None
        return message

    def _to_dead_letters(self, message: _Message, reason: str) -> None:
        assert self._dead is not None
        with self._dead._cond:
            self._dead._add(_Message(message.id, message.body, reason=reason), 0.0)
            self._dead._cond.notify_all()


class MemoryBroker:
    """Queues living in this process only; gone when it exits."""

    capabilities = MEMORY_CAPABILITIES

    def __init__(self) -> None:
        self._queues: dict[str, MemoryQueue] = {}
        self._lock = threading.Lock()

    def queue(self, name: str, *, max_attempts: int = 5) -> MemoryQueue:
        with self._lock:
            queue = self._queues.get(name)
            if queue is None:
                dead = MemoryQueue(f"{name}-dlq", 2**31, dead_letters=None)
                queue = self._queues[name] = MemoryQueue(name, max_attempts, dead_letters=dead)
            return queue

    def close(self) -> None:
        pass


SQLITE_CAPABILITIES = QueueCapabilities(
    max_message_bytes=64 * 1024 * 1024,
    max_batch=1000,
    max_delay=365 * 24 * 3600.0,
    max_lease=24 * 3600.0,
    native_dead_letter=True,
    claim_on_send=True,
    interruptible=True,
)


class SqliteQueue:
    """One channel in the SQLite file: a row per message, leased by `visible_at`.

    Sends, releases and dead-lettering are durable when they return. Taking a lease,
    extending it and acking commit without an fsync of their own (`Database.write`'s
    `durable=False`): a machine crash can undo the last of them, which redelivers a
    message (with the attempt count it had), never loses one.
    """

    capabilities = SQLITE_CAPABILITIES

    def __init__(
        self, database: Database, name: str, max_attempts: int, *, dead: str | None
    ) -> None:
        self._db = database
        self.name = name
        self.max_attempts = max_attempts
        self._dead = dead
        self._signal = database.signal(name)
        # Other processes write the same file: poll for their messages this often.
        self._poll = 0.05
        #: Counts `interrupt` calls: a waiting `receive` ends when it changes.
        self._interrupts = 0

    def send(self, bodies: Sequence[bytes], *, delay: float = 0.0) -> None:
        check_send(self, bodies, delay)
        rows = [(self.name, ids.hex_id(), bytes(body), time.time() + delay) for body in bodies]

        def insert(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO messages (channel, id, body, visible_at) VALUES (?, ?, ?, ?)", rows
            )

        self._db.write(insert)
        self._signal.notify()

    def send_claimed(self, body: bytes, *, lease: float) -> Delivery:
        check_send(self, [body], 0.0)
        check_request(self, lease=lease)
        message_id, token = ids.hex_id(), ids.hex_id()
        row = (self.name, message_id, bytes(body), time.time() + lease, token, self._db.owner)
        # Durable like `send`; as leased as `receive` leaves it, so no one else sees it
        # until the lease ends (or this process dies: the next `Database` reclaims it).
        self._db.write(
            lambda db: (
                db.execute(
                    "INSERT INTO messages (channel, id, body, attempt, visible_at, lease, owner) "
                    "VALUES (?, ?, ?, 1, ?, ?, ?)",
                    row,
                ).rowcount
            ),
            single=True,
        )
        return Delivery(bytes(body), message_id, 1, token)

    def receive(
        self, max_messages: int = 1, *, wait: float = 0.0, lease: float = 30.0
    ) -> list[Delivery]:
        check_request(self, count=max_messages, lease=lease)
        deadline = time.monotonic() + wait
        signal = self._signal
        changed = signal.changed
        with changed:
            interrupts = self._interrupts
        while True:
            with changed:
                seen = signal.generation
            taken = self._take(max_messages, lease)
            remaining = deadline - time.monotonic()
            if taken or remaining <= 0:
                return taken
            with changed:
                if self._interrupts != interrupts:
                    return []
                # A send since `seen` may have come after the look: look again at once.
                if signal.generation == seen:
                    changed.wait(min(remaining, self._poll))

    def interrupt(self) -> None:
        # The channel's receivers in this process share its signal: all of them wake, and
        # those of other queue objects see no interrupt of their own and wait on.
        with self._signal.changed:
            self._interrupts += 1
            self._signal.changed.notify_all()

    def _take(self, max_messages: int, lease: float) -> list[Delivery]:
        now = time.time()
        taken: list[Delivery] = []
        # Polling an empty channel must not take the write lock from committing writers.
        due = self._db.read(
            "SELECT 1 FROM messages WHERE channel = ? AND visible_at <= ? LIMIT 1",
            (self.name, now),
        )
        if not due:
            return taken

        def take(db: sqlite3.Connection) -> list[Delivery]:
            rows = db.execute(
                "SELECT id, body, attempt FROM messages WHERE channel = ? AND visible_at <= ? "
                "ORDER BY visible_at, rowid LIMIT ?",
                (self.name, now, max_messages),
            ).fetchall()
            for message_id, body, attempt in rows:
                if attempt >= self.max_attempts and self._dead is not None:
                    self._move_to_dead(db, message_id, f"delivered {attempt} times")
                    continue
                token = ids.hex_id()
                db.execute(
                    "UPDATE messages SET attempt = attempt + 1, visible_at = ?, lease = ?, "
                    "owner = ? WHERE channel = ? AND id = ?",
                    (now + lease, token, self._db.owner, self.name, message_id),
                )
                taken.append(Delivery(bytes(body), message_id, attempt + 1, token))
            return taken

        # A lease taken needs no fsync of its own: losing it to a machine crash means the
        # message is delivered again, with the attempt it would have had (see `write`).
        return self._db.write(take, durable=False)

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        rows = [(self.name, d.id, d.handle) for d in deliveries]

        def delete(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM messages WHERE channel = ? AND id = ? AND lease = ?", rows)

        # An ack lost to a machine crash is a redelivery, which consumers must absorb anyway.
        self._db.write(delete, durable=False)

    def release(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        check_request(self, delay=delay)
        self._update_lease(
            delivery, "visible_at = ?, lease = NULL, owner = NULL", time.time() + delay
        )
        self._signal.notify()

    def extend(self, delivery: Delivery, lease: float) -> None:
        check_request(self, lease=lease)
        self._update_lease(delivery, "visible_at = ?", time.time() + lease, durable=False)

    def _update_lease(
        self, delivery: Delivery, assignments: str, visible_at: float, *, durable: bool = True
    ) -> None:
        updated = self._db.write(
            lambda db: (
                db.execute(
                    f"UPDATE messages SET {assignments} WHERE channel = ? AND id = ? AND lease = ?",
                    (visible_at, self.name, delivery.id, delivery.handle),
                ).rowcount
            ),
            durable=durable,
        )
        if not updated:
            raise LeaseLost(f"the lease on message {delivery.id} in {self.name!r} is gone")

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        def move(db: sqlite3.Connection) -> None:
            owned = db.execute(
                "SELECT 1 FROM messages WHERE channel = ? AND id = ? AND lease = ?",
                (self.name, delivery.id, delivery.handle),
            ).fetchone()
            if owned is None:
                raise LeaseLost(f"the lease on message {delivery.id} in {self.name!r} is gone")
            self._move_to_dead(db, delivery.id, reason)

        self._db.write(move)
        if self._dead is not None:
            self._db.signal(self._dead).notify()

    def _move_to_dead(self, db: sqlite3.Connection, message_id: str, reason: str) -> None:
        if self._dead is None:
            raise UnsupportedOperation(f"{self.name!r} is itself a dead-letter channel")
        db.execute(
            "UPDATE messages SET channel = ?, attempt = 0, visible_at = 0, lease = NULL, "
            "owner = NULL, reason = ? WHERE channel = ? AND id = ?",
            (self._dead, reason, self.name, message_id),
        )

    def dead_letters(self) -> Queue:
        if self._dead is None:
            raise UnsupportedOperation(f"{self.name!r} is itself a dead-letter channel")
        return _SqliteDeadLetters(self._db, self._dead, 2**31, dead=None)

    def close(self) -> None:
        pass


class _SqliteDeadLetters(SqliteQueue):
    """A dead-letter channel: deliveries carry the reason the message was moved."""

    def _take(self, max_messages: int, lease: float) -> list[Delivery]:
        taken = super()._take(max_messages, lease)
        if not taken:
            return taken
        rows = self._db.read(
            f"SELECT id, reason FROM messages WHERE channel = ? AND id IN "
            f"({','.join('?' * len(taken))})",
            (self.name, *[d.id for d in taken]),
        )
        reasons = {row[0]: row[1] for row in rows}
        return [
            Delivery(d.body, d.id, d.attempt, d.handle, str(reasons.get(d.id) or "") or None)
            for d in taken
        ]


class SqliteBroker:
    """Queues in one SQLite file: they survive restarts and are shared between processes."""

    capabilities = SQLITE_CAPABILITIES

    def __init__(self, path: str, synchronous: str = "full") -> None:
        self._db = Database.acquire(path, synchronous)
        self._closed = False

    def queue(self, name: str, *, max_attempts: int = 5) -> SqliteQueue:
        return SqliteQueue(self._db, name, max_attempts, dead=f"{name}-dlq")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.release()
