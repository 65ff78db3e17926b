"""Queue state for the test broker: messages, sequence numbers, peek-locks, delivery counts,
scheduled messages and the dead-letter sub-queue. No AMQP here; `broker.py` translates.

All methods take one lock, so the reactor thread and `Broker.configure_queue` callers in
other threads can share a store.
"""

from __future__ import annotations

import heapq
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

DEAD_LETTER_SUFFIX = "/$deadletterqueue"
# Service Bus docs: "Service Bus quotas": 256 KB maximum message size on the Standard tier.
STANDARD_MAX_MESSAGE_SIZE = 256 * 1024
MAX_DELIVERY_COUNT_REASON = "MaxDeliveryCountExceeded"


class LockLost(Exception):
    """The lock token is unknown or its lock expired: the service's `MessageLockLost`."""


class MessageState(Enum):
    AVAILABLE = "available"
    LOCKED = "locked"
    SCHEDULED = "scheduled"


@dataclass(frozen=True)
class QueueSettings:
    # Service Bus docs: "Overview of dead-letter queues": MaxDeliveryCount defaults to 10.
    max_delivery_count: int = 10
    # Service Bus docs: "Message transfers, locks, and settlement": LockDuration, 60 s default.
    lock_duration: float = 60.0


@dataclass
class StoredMessage:
    """One message as the broker holds it: the encoded AMQP message the sender sent, plus
    the broker-owned fields that travel as `x-opt-*` annotations and the header."""

    sequence_number: int
    encoded: bytes
    enqueued_time: float
    state: MessageState = MessageState.AVAILABLE
    delivery_count: int = 0
    lock_token: uuid.UUID | None = None
    locked_until: float = 0.0
    scheduled_time: float | None = None
    # Application properties the broker adds, e.g. DeadLetterReason on the dead-letter queue.
    extra_properties: dict[str, str] = field(default_factory=dict)
    dead_letter_source: str | None = None


class Queue:
    """One entity (a queue or a dead-letter sub-queue): ordered by sequence number."""

    def __init__(self, name: str, settings: QueueSettings, dead_letter: Queue | None) -> None:
        self.name = name
        self.settings = settings
        self.dead_letter = dead_letter  # None for a dead-letter sub-queue itself
        self.messages: dict[int, StoredMessage] = {}
        self._ready: list[int] = []  # heap of sequence numbers that may be available
        self._scheduled: list[tuple[float, int]] = []  # heap of (due time, sequence number)
        self._next_sequence = 1

    def add(self, message: StoredMessage) -> None:
        self.messages[message.sequence_number] = message
        if message.state is MessageState.AVAILABLE:
            heapq.heappush(self._ready, message.sequence_number)
        elif message.state is MessageState.SCHEDULED and message.scheduled_time is not None:
            heapq.heappush(self._scheduled, (message.scheduled_time, message.sequence_number))

    def due_scheduled(self, now: float) -> list[StoredMessage]:
        """Scheduled messages whose time has come (cancelled ones are skipped)."""
        due = []
        while self._scheduled and self._scheduled[0][0] <= now:
            _, sequence_number = heapq.heappop(self._scheduled)
            message = self.messages.get(sequence_number)
            if message is not None and message.state is MessageState.SCHEDULED:
                due.append(message)
        return due

    def new_sequence_number(self) -> int:
        number = self._next_sequence
        self._next_sequence += 1
        return number

    def make_available(self, message: StoredMessage) -> None:
        message.state = MessageState.AVAILABLE
        message.lock_token = None
        message.locked_until = 0.0
        heapq.heappush(self._ready, message.sequence_number)

    def pop_available(self) -> StoredMessage | None:
        # The heap may hold stale numbers (completed or re-locked messages): skip them.
        while self._ready:
            sequence_number = heapq.heappop(self._ready)
            message = self.messages.get(sequence_number)
            if message is not None and message.state is MessageState.AVAILABLE:
                return message
        return None

    def has_available(self) -> bool:
        while self._ready:
            message = self.messages.get(self._ready[0])
            if message is not None and message.state is MessageState.AVAILABLE:
                return True
            heapq.heappop(self._ready)
        return False


class QueueStore:
    """All queues, created on first use by name (Service Bus entity names are
    case-insensitive, so names are compared case-folded)."""

    def __init__(self, defaults: QueueSettings | None = None) -> None:
        self.defaults = defaults or QueueSettings()
        self._queues: dict[str, Queue] = {}
        self._configured: dict[str, QueueSettings] = {}
        self._locks: dict[uuid.UUID, tuple[Queue, int]] = {}
        self._mutex = threading.RLock()

    # -- entities ----------------------------------------------------------------------

    def configure_queue(
        self,
        name: str,
        *,
        max_delivery_count: int | None = None,
        lock_duration: float | None = None,
    ) -> None:
        """Set a queue's settings, before or after it is first used."""
        with self._mutex:
            key = name.casefold()
            current = self._configured.get(key, self.defaults)
            settings = QueueSettings(
                max_delivery_count=current.max_delivery_count
                if max_delivery_count is None
                else max_delivery_count,
                lock_duration=current.lock_duration if lock_duration is None else lock_duration,
            )
            self._configured[key] = settings
            queue = self._queues.get(key)
            if queue is not None:
                queue.settings = settings
                assert queue.dead_letter is not None
                queue.dead_letter.settings = settings

    def entity(self, address: str) -> Queue:
        """The queue or dead-letter sub-queue that an address names, created if new."""
        # Service Bus docs: "Queues, topics, and subscriptions": a queue is an entity
        # created through the management plane before use. Tests have no management
        # plane, so attaching to a name creates the queue with the default settings.
        with self._mutex:
            key = address.casefold()
            if key.endswith(DEAD_LETTER_SUFFIX):
                parent = self._queue(key.removesuffix(DEAD_LETTER_SUFFIX))
                assert parent.dead_letter is not None
                return parent.dead_letter
            return self._queue(key)

    def _queue(self, key: str) -> Queue:
        queue = self._queues.get(key)
        if queue is None:
            settings = self._configured.get(key, self.defaults)
            dead_letter = Queue(key + DEAD_LETTER_SUFFIX, settings, None)
            queue = self._queues[key] = Queue(key, settings, dead_letter)
        return queue

    def queues(self) -> Iterator[Queue]:
        with self._mutex:
            for queue in list(self._queues.values()):
                yield queue
                assert queue.dead_letter is not None
                yield queue.dead_letter

    # -- sending -----------------------------------------------------------------------

    def enqueue(self, queue: Queue, encoded: bytes, scheduled_time: float | None = None) -> int:
        """Store a message; a future `scheduled_time` keeps it invisible until then."""
        with self._mutex:
            now = time.time()
            message = StoredMessage(queue.new_sequence_number(), encoded, enqueued_time=now)
            if scheduled_time is not None and scheduled_time > now:
                message.state = MessageState.SCHEDULED
                message.scheduled_time = scheduled_time
            queue.add(message)
            return message.sequence_number

    def cancel_scheduled(self, queue: Queue, sequence_numbers: list[int]) -> None:
        with self._mutex:
            for number in sequence_numbers:
                message = queue.messages.get(number)
                if message is not None and message.state is MessageState.SCHEDULED:
                    del queue.messages[number]

    # -- receiving and settlement --------------------------------------------------------

    def next_message(self, queue: Queue, *, lock: bool) -> StoredMessage | None:
        """The next available message: locked for `lock_duration` (peek-lock), or removed
        from the queue (receive-and-delete)."""
        with self._mutex:
            message = queue.pop_available()
            if message is None:
                return None
            if lock:
                message.state = MessageState.LOCKED
                message.lock_token = uuid.uuid4()
                message.locked_until = time.time() + queue.settings.lock_duration
                self._locks[message.lock_token] = (queue, message.sequence_number)
            else:
                del queue.messages[message.sequence_number]
            return message

    def has_available(self, queue: Queue) -> bool:
        with self._mutex:
            return queue.has_available()

    def _locked(self, lock_token: uuid.UUID) -> tuple[Queue, StoredMessage]:
        # Service Bus docs: "Message transfers, locks, and settlement": settling or renewing
        # with a lock that expired (or was never issued) fails with MessageLockLost.
        entry = self._locks.get(lock_token)
        if entry is None:
            raise LockLost(f"lock token {lock_token} is unknown or its lock expired")
        queue, number = entry
        message = queue.messages.get(number)
        if (
            message is None
            or message.lock_token != lock_token
            or message.state is not MessageState.LOCKED
        ):
            del self._locks[lock_token]
            raise LockLost(f"lock token {lock_token} no longer holds a message")
        if message.locked_until <= time.time():
            raise LockLost(f"the lock {lock_token} expired")
        return queue, message

    def complete(self, lock_token: uuid.UUID) -> None:
        with self._mutex:
            queue, message = self._locked(lock_token)
            del self._locks[lock_token]
            del queue.messages[message.sequence_number]

    def abandon(self, lock_token: uuid.UUID) -> None:
        with self._mutex:
            queue, message = self._locked(lock_token)
            del self._locks[lock_token]
            self._count_failed_delivery(queue, message)

    def release(self, lock_token: uuid.UUID) -> None:
        """Unlock without counting a delivery: the SDK releases messages that arrive while
        no receive call is waiting for them."""
        with self._mutex:
            queue, message = self._locked(lock_token)
            del self._locks[lock_token]
            queue.make_available(message)

    def dead_letter(
        self, lock_token: uuid.UUID, reason: str | None, description: str | None
    ) -> None:
        with self._mutex:
            queue, message = self._locked(lock_token)
            del self._locks[lock_token]
            self._move_to_dead_letter(queue, message, reason, description)

    def renew_lock(self, lock_token: uuid.UUID) -> float:
        """Extend a held lock by the queue's lock duration; returns the new expiry."""
        with self._mutex:
            queue, message = self._locked(lock_token)
            message.locked_until = time.time() + queue.settings.lock_duration
            return message.locked_until

    def _count_failed_delivery(self, queue: Queue, message: StoredMessage) -> None:
        # Service Bus docs: "Overview of dead-letter queues": a message whose delivery count
        # reaches MaxDeliveryCount is moved to the DLQ with reason MaxDeliveryCountExceeded.
        # The dead-letter queue itself never dead-letters.
        message.delivery_count += 1
        limit = queue.settings.max_delivery_count
        if queue.dead_letter is not None and message.delivery_count >= limit:
            self._move_to_dead_letter(
                queue,
                message,
                MAX_DELIVERY_COUNT_REASON,
                f"Message could not be consumed after {limit} delivery attempts.",
            )
        else:
            queue.make_available(message)

    def _move_to_dead_letter(
        self, queue: Queue, message: StoredMessage, reason: str | None, description: str | None
    ) -> None:
        # Service Bus docs: "Overview of dead-letter queues": the DLQ is the sub-queue
        # `<queue>/$DeadLetterQueue`; the reason and description become the application
        # properties DeadLetterReason and DeadLetterErrorDescription.
        target = queue.dead_letter
        if target is None:  # a dead-letter queue has no dead-letter queue: keep the message
            queue.make_available(message)
            return
        del queue.messages[message.sequence_number]
        moved = StoredMessage(
            message.sequence_number,  # a dead-lettered message keeps its sequence number
            message.encoded,
            enqueued_time=message.enqueued_time,
            delivery_count=message.delivery_count,
            extra_properties=dict(message.extra_properties),
            dead_letter_source=queue.name,
        )
        if reason is not None:
            moved.extra_properties["DeadLetterReason"] = reason
        if description is not None:
            moved.extra_properties["DeadLetterErrorDescription"] = description
        target.add(moved)

    # -- time ----------------------------------------------------------------------------

    def advance_clock(self) -> None:
        """Expire locks and make due scheduled messages available."""
        with self._mutex:
            now = time.time()
            for token, (queue, number) in list(self._locks.items()):
                message = queue.messages.get(number)
                if message is None or message.lock_token != token:
                    del self._locks[token]
                elif message.locked_until <= now:
                    # Service Bus docs: "Message transfers, locks, and settlement": when the
                    # lock expires the message becomes available again and its delivery
                    # count is incremented.
                    del self._locks[token]
                    self._count_failed_delivery(queue, message)
            for queue in self.queues():
                # Service Bus docs: "Scheduled messages": not visible before
                # ScheduledEnqueueTimeUtc.
                for message in queue.due_scheduled(now):
                    message.enqueued_time = now
                    queue.make_available(message)

    # -- browsing ------------------------------------------------------------------------

    def peek(self, queue: Queue, from_sequence_number: int, count: int) -> list[StoredMessage]:
        """Messages from a sequence number on, in order, without locking them (active,
        locked and scheduled ones alike, as Service Bus message browsing does)."""
        with self._mutex:
            numbers = sorted(n for n in queue.messages if n >= from_sequence_number)
            return [queue.messages[n] for n in numbers[:count]]
