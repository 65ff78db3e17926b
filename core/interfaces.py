"""The provider contract: `Queue`, `StateStore` and `Executor`.

Providers implement these Protocols without inheriting from anything of ours. Every
sentence in a method docstring that starts with a guarantee is checked by the
conformance suite (`switchboard_conformance`), whose test names mirror them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable

# -- queues ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery of one message, as returned by `Queue.receive`."""

    body: bytes
    #: Identifies the message; the same for every delivery of that message.
    id: str
    #: How many times this message has been delivered, this delivery included (1 first).
    attempt: int
    #: Opaque to the core: whatever the provider needs to ack, release or extend.
    handle: Any = field(compare=False, repr=False)
    #: On a dead-letter channel, why the message was dead-lettered, when known.
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class QueueCapabilities:
    """What a provider's queues can do; the core adapts to these limits."""

    #: Largest body `send` accepts. Larger payloads go through the core's claim check.
    max_message_bytes: int
    #: Most bodies per `send` call and most deliveries per `receive` call.
    max_batch: int
    #: Longest `delay` accepted by `send` and `release`, in seconds. The core reaches
    #: longer delays by re-sending.
    max_delay: float
    #: Longest lease accepted by `receive` and `extend`, in seconds.
    max_lease: float
    #: Whether dead-lettering after `max_attempts` is done by the service itself.
    native_dead_letter: bool
    #: Whether the queues are `ClaimingQueue`s: `send_claimed` hands a message to its own
    #: sender as it enqueues it.
    claim_on_send: bool = False
    #: Whether the queues are `InterruptibleQueue`s: `interrupt` ends the receives waiting
    #: on them in this process, so a stopping worker does not wait out its long poll.
    interruptible: bool = False


@runtime_checkable
class Queue(Protocol):
    """One named, at-least-once channel of opaque byte messages.

    Delivery order is not guaranteed. A message is delivered again until it is acked;
    a consumer must tolerate duplicates.
    """

    name: str
    #: Deliveries of a message beyond this many go to the dead-letter channel instead.
    max_attempts: int
    capabilities: QueueCapabilities

    def send(self, bodies: Sequence[bytes], *, delay: float = 0.0) -> None:
        """Enqueue each body as one message. If `send` raises, any subset of the bodies
        may have been enqueued (callers retry; consumers de-duplicate).

        Guarantees: every body is delivered byte for byte as sent (binary, unicode and
        empty bodies alike, up to `capabilities.max_message_bytes`). A message sent with
        `delay` is not delivered before `delay` seconds have passed. A body larger than
        the limit raises `TooLarge`; a `delay` above `capabilities.max_delay` or more
        bodies than `capabilities.max_batch` raise `UnsupportedOperation`.
        """
        ...

    def receive(
        self, max_messages: int = 1, *, wait: float = 0.0, lease: float = 30.0
    ) -> list[Delivery]:
        """Take up to `max_messages` visible messages, hiding each for `lease` seconds.

        Guarantees: returns as soon as a message is available, or an empty list after
        about `wait` seconds. A delivery that is not acked within its lease becomes visible
        again and is delivered with `attempt` increased by one. A message is not handed to
        two consumers while a lease on it is live. A message whose next delivery would
        exceed `max_attempts` is moved to the dead-letter channel, body intact, instead.
        More than `capabilities.max_batch` messages or a lease above
        `capabilities.max_lease` raise `UnsupportedOperation`.
        """
        ...

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Settle deliveries for good.

        Guarantees: an acked message is never delivered again (unless its lease had
        already expired, in which case the ack may raise `LeaseLost`, have no effect, or
        still settle the message).
        """
        ...

    def release(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        """Give a delivery back without processing it.

        Guarantees: the message becomes visible again after `delay` seconds, not
        before, and its next delivery has `attempt` increased by one. A `delay` above
        `capabilities.max_delay` raises `UnsupportedOperation`.
        """
        ...

    def extend(self, delivery: Delivery, lease: float) -> None:
        """Keep holding a delivery.

        Guarantees: the message stays hidden for `lease` seconds from now, even past the
        end of its original lease. After the lease has expired, `extend` raises
        `LeaseLost` or has no effect. A lease above `capabilities.max_lease` raises
        `UnsupportedOperation`.
        """
        ...

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move a delivery to the dead-letter channel now.

        Guarantees: the message leaves this channel and appears on `dead_letters()`
        with its body intact and `reason` kept.
        """
        ...

    def dead_letters(self) -> Queue:
        """This channel's dead-letter channel, readable like any queue (receive, ack,
        release, extend; a provider may refuse `send` or `dead_letter` on it with
        `UnsupportedOperation`).

        Guarantees: its deliveries carry the dead-lettered body byte for byte and, where
        the message was dead-lettered with `dead_letter`, the reason.
        """
        ...

    def close(self) -> None:
        """Release client resources. Safe to call twice."""
        ...


@runtime_checkable
class ClaimingQueue(Queue, Protocol):
    """A queue that can deliver a message to its sender as it sends it, as if sent and
    received at once (`capabilities.claim_on_send`). A worker in the process that starts
    a run starts on it at once this way, and the run is still redelivered elsewhere if
    that process dies."""

    def send_claimed(self, body: bytes, *, lease: float) -> Delivery:
        """Enqueue one body already delivered to the caller, under a lease of `lease`
        seconds; settle the returned delivery like one from `receive`.

        Guarantees: the message is delivered to no one else while the lease is live; the
        returned delivery has `attempt` 1 and acks, releases and extends like one from
        `receive`; a claimed message left unsettled is delivered again after its lease,
        with `attempt` 2. A lease above `capabilities.max_lease` raises
        `UnsupportedOperation`.
        """
        ...


@runtime_checkable
class InterruptibleQueue(Queue, Protocol):
    """A queue whose waiting receives can be ended early (`capabilities.interruptible`).
    A worker that stops ends its long poll this way instead of waiting it out."""

    def interrupt(self) -> None:
        """End the receives waiting on this queue object in this process.

        Guarantees: a `receive` waiting when `interrupt` is called returns well before its
        `wait` is up; a message sent after the interrupt is delivered to a later `receive`
        as to any other; a `receive` that starts after `interrupt` has returned waits as
        usual.
        """
        ...


@runtime_checkable
class Broker(Protocol):
    """A provider's source of queues: opens named channels on one backend."""

    capabilities: QueueCapabilities

    def queue(self, name: str, *, max_attempts: int = 5) -> Queue:
        """Open (creating if needed) the channel `name` with its dead-letter channel.
        `max_attempts` belongs to the channel: opening it again with another value
        changes it for every consumer.

        Guarantees: channels with different names are isolated from each other; names are
        case-sensitive; opening the same name twice addresses the same channel. `name`
        holds only letters, digits and hyphens; the provider maps it to a valid native name.
        """
        ...

    def close(self) -> None:
        """Release client resources. Safe to call twice."""
        ...


# -- state stores ---------------------------------------------------------------------------


class Expect(Enum):
    """Conditions for `put` and `delete` besides an exact version."""

    ANY = "any"
    ABSENT = "absent"


ANY = Expect.ANY
ABSENT = Expect.ABSENT


@dataclass(frozen=True, slots=True)
class Record:
    """One stored value with its opaque version."""

    key: str
    value: bytes
    version: str


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a scan; `cursor` (opaque, non-empty) continues it and is None on the
    last page. A page may hold fewer than `limit` records, even none, before the last."""

    records: list[Record]
    cursor: str | None


@dataclass(frozen=True, slots=True)
class StateCapabilities:
    """What a provider's state store can hold; the core adapts to these limits."""

    #: Largest value `put` accepts. The core stores larger payloads in chunks.
    max_value_bytes: int
    #: Longest key or partition, in UTF-8 bytes.
    max_key_bytes: int
    #: Whether `put(ttl=...)` is honoured (the record disappears after `ttl` seconds).
    ttl: bool


@runtime_checkable
class StateStore(Protocol):
    """Versioned records addressed by `(partition, key)`.

    Every version check is atomic. Records of one partition can be read together with
    one `scan`; that is how the core loads a run.
    """

    capabilities: StateCapabilities

    def get(self, partition: str, key: str) -> Record | None:
        """Read one record.

        Guarantees: returns None for a missing key; otherwise the value byte for byte
        as last put, with its current version (reads see every completed write).
        """
        ...

    def put(
        self,
        partition: str,
        key: str,
        value: bytes,
        *,
        expect: Expect | str = ANY,
        ttl: float | None = None,
    ) -> str:
        """Write one record and return its new version.

        Guarantees: with `expect=ABSENT` the write fails with `Conflict` if the record
        exists; with a version string it fails with `Conflict` unless that is the
        record's current version (a missing record never matches). The check and the
        write are one atomic step, so of concurrent writers expecting the same version
        exactly one succeeds. Every successful write gives a version never before seen
        for that key. Values up to `capabilities.max_value_bytes` round-trip exactly;
        larger ones raise `TooLarge`. Keys may hold any characters, `/`, `#`, `?`,
        spaces and non-ASCII included. `ttl` on a store without the TTL capability
        raises `UnsupportedOperation`.
        """
        ...

    def delete(self, partition: str, key: str, *, expect: Expect | str = ANY) -> None:
        """Remove one record.

        Guarantees: with a version string, fails with `Conflict` unless that is the
        current version; with `ANY`, deleting a missing record is not an error; with
        `ABSENT`, it fails with `Conflict` if the record exists and otherwise does nothing.
        """
        ...

    def scan(
        self, partition: str, *, prefix: str = "", limit: int = 100, cursor: str | None = None
    ) -> Page:
        """List records of one partition whose keys start with `prefix` (`limit` >= 1).

        Guarantees: records come in ascending order of their keys' UTF-8 bytes; a page
        holds at most `limit` records; following cursors visits every record that
        existed for the whole scan exactly once, even while other records are written.
        Partitions are isolated: a scan never returns another partition's records.
        """
        ...

    def close(self) -> None:
        """Release client resources. Safe to call twice."""
        ...


# -- executors ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExecutorCapabilities:
    """What an executor can carry; larger invocations go through the claim check."""

    max_payload_bytes: int


@dataclass(frozen=True, slots=True)
class ExecutorHost:
    """What the core gives an executor factory."""

    #: The app's name, for naming channels and functions.
    app_name: str
    #: Runs one invocation in this process and reports its outcome on the invocations queue.
    run_task: Callable[[bytes], None]
    #: Opens a channel on the queue provider the runtime uses.
    open_queue: Callable[[str], Queue]
    #: How many tasks may run at once in this process.
    concurrency: int


@runtime_checkable
class Executor(Protocol):
    """Delivers task invocations to wherever tasks run.

    The task's outcome does not come back from `submit`: whatever runs the task reports
    it as a `task.result` message on the invocations queue.
    """

    capabilities: ExecutorCapabilities

    def submit(self, invocations: Sequence[bytes]) -> None:
        """Hand over task invocations (wire-format `task.invoke` messages).

        Guarantees: each submitted invocation is run at least once and its outcome (a
        result, or an error with type, message and traceback) reaches the invocations
        queue. When `submit` returns, the invocations survive a crash of the caller if
        the executor is durable.
        """
        ...

    def close(self) -> None:
        """Stop accepting work and release resources. Safe to call twice."""
        ...


# -- what a provider plugin registers --------------------------------------------------------


BrokerFactory = Callable[[Any], Broker]
StateFactory = Callable[[Any], StateStore]
ExecutorFactory = Callable[[Any, ExecutorHost], Executor]


@dataclass(frozen=True)
class ProviderSpec:
    """A named provider, as returned by the `switchboard_providers` hook.

    Factories receive an instance of `config`, built and validated by the core from the
    user's arguments and environment. A factory imports its SDK lazily and turns a
    missing SDK into a `ConfigError` naming the extra to install.
    """

    name: str
    description: str
    #: A dataclass whose fields are the provider's settings (see `switchboard.config`).
    config: type
    broker: BrokerFactory | None = None
    state: StateFactory | None = None
    #: Executors by name; `"default"` is used when the user names only the provider.
    executors: Mapping[str, ExecutorFactory] = field(default_factory=dict)
    #: The pip extra that brings the SDK (`pip install 'switchboard-orchestrator[aws]'`).
    extra: str | None = None
    #: Top-level modules that must be importable for the provider to work.
    requires: tuple[str, ...] = ()
