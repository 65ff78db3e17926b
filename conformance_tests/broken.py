"""Deliberately broken providers: what the suite must catch, each naming the guarantee it breaks.

Each one wraps or subclasses the local in-memory reference and breaks exactly one thing,
the way real providers get it wrong (a lost `ReceiptHandle`, a read-then-write "CAS", an
offset cursor, UTF-16 ordering from a JVM backend...). The suite's own tests run it against
every one of these and require it to fail, naming `breaks`. A provider author can read this
file to see what the suite is able to catch.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import pytest

from switchboard.errors import Conflict
from switchboard.interfaces import (
    ABSENT,
    ANY,
    Broker,
    Delivery,
    Expect,
    InterruptibleQueue,
    Page,
    Queue,
    QueueCapabilities,
    Record,
    StateStore,
)
from switchboard.providers.local.queue import MemoryBroker
from switchboard.providers.local.state import MEMORY_STATE_CAPABILITIES, MemoryStateStore
from switchboard_conformance import guarantees as g
from switchboard_conformance.fixtures import ConformanceTiming
from switchboard_conformance.guarantees import Guarantee, checked_by
from switchboard_conformance.queue import QueueConformance
from switchboard_conformance.state import StateStoreConformance

# -- queues -----------------------------------------------------------------------------------


class WrappedQueue:
    """Delegates to a reference queue; each broken queue overrides one method."""

    def __init__(self, inner: Queue) -> None:
        self.inner = inner
        self.name = inner.name
        self.max_attempts = inner.max_attempts
        self.capabilities: QueueCapabilities = inner.capabilities

    def send(self, bodies: Sequence[bytes], *, delay: float = 0.0) -> None:
        self.inner.send(bodies, delay=delay)

    def receive(
        self, max_messages: int = 1, *, wait: float = 0.0, lease: float = 30.0
    ) -> list[Delivery]:
        return self.inner.receive(max_messages, wait=wait, lease=lease)

    def interrupt(self) -> None:
        cast(InterruptibleQueue, self.inner).interrupt()

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        self.inner.ack(deliveries)

    def release(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        self.inner.release(delivery, delay=delay)

    def extend(self, delivery: Delivery, lease: float) -> None:
        self.inner.extend(delivery, lease)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.inner.dead_letter(delivery, reason)

    def dead_letters(self) -> Queue:
        return self.inner.dead_letters()

    def close(self) -> None:
        self.inner.close()


class WrappedBroker:
    """A reference broker whose channels come wrapped in `queue_type`, named by `rename`."""

    def __init__(
        self, queue_type: type[WrappedQueue], rename: Callable[[str], str] = lambda n: n
    ) -> None:
        self._inner = MemoryBroker()
        self._queue_type = queue_type
        self._rename = rename
        self.capabilities = self._inner.capabilities

    def queue(self, name: str, *, max_attempts: int = 5) -> Queue:
        return self._queue_type(self._inner.queue(self._rename(name), max_attempts=max_attempts))

    def close(self) -> None:
        self._inner.close()


class NeverRedelivers(WrappedQueue):
    """A message whose lease expires is lost instead of delivered again."""

    def __init__(self, inner: Queue) -> None:
        super().__init__(inner)
        self._released: set[str] = set()

    def release(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        self._released.add(delivery.id)
        super().release(delivery, delay=delay)

    def receive(
        self, max_messages: int = 1, *, wait: float = 0.0, lease: float = 30.0
    ) -> list[Delivery]:
        got = super().receive(max_messages, wait=wait, lease=lease)
        return [d for d in got if d.attempt == 1 or d.id in self._released]


class AttemptStuckAtOne(WrappedQueue):
    """Every delivery reports attempt 1 (an SQS ApproximateReceiveCount never read)."""

    def receive(
        self, max_messages: int = 1, *, wait: float = 0.0, lease: float = 30.0
    ) -> list[Delivery]:
        got = super().receive(max_messages, wait=wait, lease=lease)
        return [dataclasses.replace(d, attempt=1) for d in got]


class ReleaseIgnoresDelay(WrappedQueue):
    def release(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        super().release(delivery)


class SendIgnoresDelay(WrappedQueue):
    def send(self, bodies: Sequence[bytes], *, delay: float = 0.0) -> None:
        super().send(bodies)


class AckIsNoop(WrappedQueue):
    def ack(self, deliveries: Sequence[Delivery]) -> None:
        pass


class ExtendIsNoop(WrappedQueue):
    def extend(self, delivery: Delivery, lease: float) -> None:
        pass


class DeadLetterLosesBody(WrappedQueue):
    """The dead-letter channel hands out empty bodies."""

    def dead_letters(self) -> Queue:
        return _EmptyBodies(super().dead_letters())


class _EmptyBodies(WrappedQueue):
    def receive(
        self, max_messages: int = 1, *, wait: float = 0.0, lease: float = 30.0
    ) -> list[Delivery]:
        got = super().receive(max_messages, wait=wait, lease=lease)
        return [dataclasses.replace(d, body=b"") for d in got]


class InterruptIsNoop(WrappedQueue):
    """Declares `interruptible`, but a waiting receive waits out its `wait` regardless."""

    def interrupt(self) -> None:
        pass


class InterruptSticks(WrappedQueue):
    """After one `interrupt`, every later receive returns at once, never waiting."""

    def __init__(self, inner: Queue) -> None:
        super().__init__(inner)
        self._interrupted = False

    def interrupt(self) -> None:
        self._interrupted = True
        super().interrupt()

    def receive(
        self, max_messages: int = 1, *, wait: float = 0.0, lease: float = 30.0
    ) -> list[Delivery]:
        return super().receive(max_messages, wait=0.0 if self._interrupted else wait, lease=lease)


# -- state stores -----------------------------------------------------------------------------


class CasIgnoresVersion(MemoryStateStore):
    """Writes whatever version was expected."""

    def put(
        self,
        partition: str,
        key: str,
        value: bytes,
        *,
        expect: Expect | str = ANY,
        ttl: float | None = None,
    ) -> str:
        return super().put(
            partition, key, value, expect=expect if isinstance(expect, Expect) else ANY, ttl=ttl
        )


class CasNotAtomic(MemoryStateStore):
    """Checks the version with a read, then writes: concurrent writers all win."""

    def put(
        self,
        partition: str,
        key: str,
        value: bytes,
        *,
        expect: Expect | str = ANY,
        ttl: float | None = None,
    ) -> str:
        if isinstance(expect, str):
            current = self.get(partition, key)
            if current is None or current.version != expect:
                raise Conflict(f"{partition}/{key} is not at version {expect}")
            time.sleep(0.002)
            expect = ANY
        return super().put(partition, key, value, expect=expect, ttl=ttl)


class AbsentNotEnforced(MemoryStateStore):
    def put(
        self,
        partition: str,
        key: str,
        value: bytes,
        *,
        expect: Expect | str = ANY,
        ttl: float | None = None,
    ) -> str:
        return super().put(
            partition, key, value, expect=ANY if expect is ABSENT else expect, ttl=ttl
        )


class VersionsRestartPerKey(MemoryStateStore):
    """Versions count writes since the key was created, so a recreated key reuses them."""

    def __init__(self) -> None:
        super().__init__()
        self._writes: dict[tuple[str, str], int] = {}

    def put(
        self,
        partition: str,
        key: str,
        value: bytes,
        *,
        expect: Expect | str = ANY,
        ttl: float | None = None,
    ) -> str:
        written = self._writes.get((partition, key), 0) + 1
        self._versions = itertools.count(written)
        version = super().put(partition, key, value, expect=expect, ttl=ttl)
        self._writes[(partition, key)] = written
        return version

    def delete(self, partition: str, key: str, *, expect: Expect | str = ANY) -> None:
        super().delete(partition, key, expect=expect)
        self._writes.pop((partition, key), None)


class TruncatesLargeValues(MemoryStateStore):
    """Silently keeps only the first 64 KiB of a value."""

    def put(
        self,
        partition: str,
        key: str,
        value: bytes,
        *,
        expect: Expect | str = ANY,
        ttl: float | None = None,
    ) -> str:
        return super().put(partition, key, value[: 64 * 1024], expect=expect, ttl=ttl)


class PartitionsShared(MemoryStateStore):
    """Ignores the partition: every record lives in one table."""

    def get(self, partition: str, key: str) -> Record | None:
        return super().get("shared", key)

    def put(
        self,
        partition: str,
        key: str,
        value: bytes,
        *,
        expect: Expect | str = ANY,
        ttl: float | None = None,
    ) -> str:
        return super().put("shared", key, value, expect=expect, ttl=ttl)

    def delete(self, partition: str, key: str, *, expect: Expect | str = ANY) -> None:
        super().delete("shared", key, expect=expect)

    def scan(
        self, partition: str, *, prefix: str = "", limit: int = 100, cursor: str | None = None
    ) -> Page:
        return super().scan("shared", prefix=prefix, limit=limit, cursor=cursor)


class ScanUnordered(MemoryStateStore):
    """Pages come back in reverse order."""

    def scan(
        self, partition: str, *, prefix: str = "", limit: int = 100, cursor: str | None = None
    ) -> Page:
        page = super().scan(partition, prefix=prefix, limit=limit, cursor=cursor)
        return Page(page.records[::-1], page.cursor)


class ScanSortsByUtf16(MemoryStateStore):
    """Sorts each page by UTF-16 code units, as JVM and .NET backends do: an emoji sorts
    before U+FF5E there, after it in UTF-8."""

    def scan(
        self, partition: str, *, prefix: str = "", limit: int = 100, cursor: str | None = None
    ) -> Page:
        page = super().scan(partition, prefix=prefix, limit=limit, cursor=cursor)
        return Page(sorted(page.records, key=lambda r: r.key.encode("utf-16-be")), page.cursor)


class PaginationDropsAnItem(MemoryStateStore):
    """The last record of every page but the final one is lost."""

    def scan(
        self, partition: str, *, prefix: str = "", limit: int = 100, cursor: str | None = None
    ) -> Page:
        page = super().scan(partition, prefix=prefix, limit=limit, cursor=cursor)
        return Page(page.records[:-1], page.cursor) if page.cursor is not None else page


class OffsetCursor(MemoryStateStore):
    """The cursor is an offset into the key list: right while nothing changes, wrong when
    records are written before it between pages."""

    def scan(
        self, partition: str, *, prefix: str = "", limit: int = 100, cursor: str | None = None
    ) -> Page:
        records = super().scan(partition, prefix=prefix, limit=2**31).records
        start = int(cursor) if cursor else 0
        end = start + limit
        return Page(records[start:end], str(end) if end < len(records) else None)


class TtlIgnored(MemoryStateStore):
    """Declares TTL but keeps records forever."""

    def put(
        self,
        partition: str,
        key: str,
        value: bytes,
        *,
        expect: Expect | str = ANY,
        ttl: float | None = None,
    ) -> str:
        return super().put(partition, key, value, expect=expect)


class TtlUndeclaredButAccepted(MemoryStateStore):
    """Declares no TTL, yet accepts `ttl=` and silently drops it instead of refusing."""

    capabilities = dataclasses.replace(MEMORY_STATE_CAPABILITIES, ttl=False)

    def put(
        self,
        partition: str,
        key: str,
        value: bytes,
        *,
        expect: Expect | str = ANY,
        ttl: float | None = None,
    ) -> str:
        return super().put(partition, key, value, expect=expect)


# -- the catalogue ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokenProvider:
    """One deliberately broken provider and the guarantee the suite must name."""

    name: str
    breaks: Guarantee
    broker: Callable[[], Broker] | None = None
    state_store: Callable[[], StateStore] | None = None

    @property
    def suite(self) -> type[QueueConformance] | type[StateStoreConformance]:
        return QueueConformance if self.broker is not None else StateStoreConformance

    def tests(self) -> list[str]:
        """The suite's tests that check the broken guarantee."""
        return sorted(
            name
            for name in dir(self.suite)
            if name.startswith("test_") and self.breaks in checked_by(getattr(self.suite, name))
        )


def _queues(queue_type: type[WrappedQueue]) -> Callable[[], Broker]:
    return lambda: WrappedBroker(queue_type)


BROKEN: list[BrokenProvider] = [
    BrokenProvider("never_redelivers", g.RECEIVE_REDELIVERY, broker=_queues(NeverRedelivers)),
    BrokenProvider("attempt_stuck_at_one", g.RECEIVE_REDELIVERY, broker=_queues(AttemptStuckAtOne)),
    BrokenProvider("release_ignores_delay", g.RELEASE, broker=_queues(ReleaseIgnoresDelay)),
    BrokenProvider("send_ignores_delay", g.SEND_DELAY, broker=_queues(SendIgnoresDelay)),
    BrokenProvider("ack_is_noop", g.ACK, broker=_queues(AckIsNoop)),
    BrokenProvider("extend_is_noop", g.EXTEND, broker=_queues(ExtendIsNoop)),
    BrokenProvider("dead_letter_loses_body", g.DEAD_LETTERS, broker=_queues(DeadLetterLosesBody)),
    BrokenProvider(
        "channels_shared",
        g.CHANNELS_ISOLATED,
        broker=lambda: WrappedBroker(WrappedQueue, rename=lambda name: "everything"),
    ),
    BrokenProvider(
        "channel_names_case_folded",
        g.CHANNELS_ISOLATED,
        broker=lambda: WrappedBroker(WrappedQueue, rename=str.lower),
    ),
    BrokenProvider("interrupt_is_noop", g.INTERRUPT_ENDS_WAIT, broker=_queues(InterruptIsNoop)),
    BrokenProvider("interrupt_sticks", g.INTERRUPT_NOT_STICKY, broker=_queues(InterruptSticks)),
    BrokenProvider("cas_ignores_version", g.PUT_VERSION, state_store=CasIgnoresVersion),
    BrokenProvider("cas_not_atomic", g.PUT_ATOMIC, state_store=CasNotAtomic),
    BrokenProvider("absent_not_enforced", g.PUT_ABSENT, state_store=AbsentNotEnforced),
    BrokenProvider(
        "versions_restart_per_key", g.PUT_NEW_VERSION, state_store=VersionsRestartPerKey
    ),
    BrokenProvider(
        "values_truncated_above_64k", g.PUT_VALUE_SIZE, state_store=TruncatesLargeValues
    ),
    BrokenProvider("partitions_shared", g.PARTITIONS_ISOLATED, state_store=PartitionsShared),
    BrokenProvider("scan_unordered", g.SCAN_ORDER, state_store=ScanUnordered),
    BrokenProvider("scan_sorts_by_utf16", g.SCAN_ORDER, state_store=ScanSortsByUtf16),
    BrokenProvider("pagination_drops_an_item", g.SCAN_CURSOR, state_store=PaginationDropsAnItem),
    BrokenProvider("offset_cursor", g.SCAN_CURSOR, state_store=OffsetCursor),
    BrokenProvider("ttl_ignored", g.TTL, state_store=TtlIgnored),
    BrokenProvider(
        "ttl_undeclared_but_accepted", g.PUT_TTL_UNSUPPORTED, state_store=TtlUndeclaredButAccepted
    ),
]


def conformance_class(broken: BrokenProvider, timing: ConformanceTiming | None = None) -> type:
    """A `Test...` class running the suite against `broken` (it is expected to fail)."""
    name = f"TestBroken_{broken.name}"
    if broken.broker is not None:
        make_broker = broken.broker

        def broker(self: object) -> Iterator[Broker]:
            made = make_broker()
            yield made
            made.close()

        fixtures: dict[str, object] = {"broker": pytest.fixture(broker)}
    else:
        assert broken.state_store is not None
        make_store = broken.state_store

        def state_store(self: object) -> Iterator[StateStore]:
            made = make_store()
            yield made
            made.close()

        fixtures = {"state_store": pytest.fixture(state_store)}

    def conformance_timing(self: object) -> ConformanceTiming:
        return timing or ConformanceTiming()

    fixtures["conformance_timing"] = pytest.fixture(conformance_timing)
    return type(name, (broken.suite,), {**fixtures, "__qualname__": name})
