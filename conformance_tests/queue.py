"""`QueueConformance`: the `Queue` and `Broker` guarantees, checked against any provider.

Subclass it as `TestMyQueue(QueueConformance)` and override the `broker` fixture (a fresh
`Broker` per test; the suite closes it) or pass `--sb-provider`. Every test opens channels
under fresh unique names, so one backend can serve many tests and runs.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import cast

import pytest

from switchboard.errors import LeaseLost, TooLarge, UnsupportedOperation
from switchboard.interfaces import Broker, ClaimingQueue, Delivery, InterruptibleQueue, Queue
from switchboard_conformance import guarantees as g
from switchboard_conformance.fixtures import (
    Conformance,
    ConformanceTiming,
    chosen_provider,
    unique_name,
)
from switchboard_conformance.guarantees import Guarantee, checks, expect_raises, guarantee

#: The largest body the suite sends; a larger declared limit is tested at this size.
LARGEST_TESTED = 8 * 1024 * 1024
#: Beyond this declared limit the suite does not build a limit+1 body to test `TooLarge`.
LARGEST_REFUSAL_TESTED = 256 * 1024 * 1024
#: Lease for tests that must not see a lease expire.
LONG_LEASE = 60.0
#: Longest wait for something that should arrive at once.
PATIENCE = 15.0
BULK_MESSAGES = 1000
BULK_CONSUMERS = 4


def _short(body: bytes) -> str:
    return repr(body) if len(body) <= 40 else f"{body[:32]!r}... ({len(body)} bytes)"


def _long_lease(queue: Queue) -> float:
    return min(LONG_LEASE, queue.capabilities.max_lease)


def _batch(queue: Queue, wanted: int = 10) -> int:
    return max(1, min(wanted, queue.capabilities.max_batch))


def _send_all(queue: Queue, bodies: Sequence[bytes]) -> None:
    step = queue.capabilities.max_batch
    for start in range(0, len(bodies), step):
        queue.send(bodies[start : start + step])


def _collect(queue: Queue, count: int, *, within: float, lease: float) -> list[Delivery]:
    """Receive until `count` deliveries arrived or `within` seconds passed."""
    deadline = time.monotonic() + within
    got: list[Delivery] = []
    while len(got) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        got += queue.receive(_batch(queue, count - len(got)), wait=remaining, lease=lease)
    return got


def _receive_one(queue: Queue, *, within: float, lease: float) -> tuple[Delivery | None, float]:
    """The first delivery within `within` seconds, and the time just before the `receive`
    call that returned it (its lease started no earlier)."""
    deadline = time.monotonic() + within
    while (remaining := deadline - time.monotonic()) > 0:
        started = time.monotonic()
        got = queue.receive(1, wait=remaining, lease=lease)
        if got:
            assert len(got) == 1, guarantee(g.MAX_BATCH, f"receive(1) returned {len(got)}")
            return got[0], started
    return None, time.monotonic()


def _quiet(queue: Queue, until: float, *, lease: float) -> tuple[list[Delivery], list[Delivery]]:
    """Receive until the monotonic time `until`.

    Returns (early, late): deliveries from `receive` calls that returned before `until`
    (so the message was certainly visible before it) and from the one that returned after.
    """
    early: list[Delivery] = []
    late: list[Delivery] = []
    while (remaining := until - time.monotonic()) > 0:
        got = queue.receive(_batch(queue), wait=remaining, lease=lease)
        (early if time.monotonic() < until else late).extend(got)
    return early, late


def _describe(deliveries: Sequence[Delivery]) -> str:
    return ", ".join(f"{d.id}#{d.attempt} {_short(d.body)}" for d in deliveries) or "nothing"


class _Receiving:
    """One `receive` running on a thread of its own, started at once."""

    def __init__(self, queue: Queue, *, wait: float, lease: float) -> None:
        self.got: list[Delivery] | None = None
        self.error: BaseException | None = None

        def receive() -> None:
            try:
                self.got = queue.receive(1, wait=wait, lease=lease)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.error = exc

        self.thread = threading.Thread(target=receive, name="conformance-receive", daemon=True)
        self.thread.start()


class QueueConformance(Conformance):
    """The shared tests every queue provider must pass."""

    @pytest.fixture
    def broker(self, request: pytest.FixtureRequest) -> Iterator[Broker]:
        """A fresh `Broker` for one test; override it in your subclass."""
        choice = chosen_provider(request, "broker", "a fresh switchboard.interfaces.Broker")
        if choice.spec.broker is None:
            pytest.fail(f"the {choice.name} provider offers no queues", pytrace=False)
        made = choice.spec.broker(choice.config)
        yield made
        made.close()

    def open(self, broker: Broker, *, max_attempts: int = 5) -> Queue:
        return broker.queue(unique_name(), max_attempts=max_attempts)

    # -- send -------------------------------------------------------------------------------

    @checks(g.SEND_ROUND_TRIP, g.DELIVERY_ATTEMPT)
    def test_bodies_round_trip_byte_for_byte(self, broker: Broker) -> None:
        queue = self.open(broker)
        bodies = [
            bytes(range(256)),
            bytes(reversed(range(256))),
            "héllo wörld, 中文, emoji 😀, zero-width \u200b".encode(),
            "\ufeffutf-16 with BOM".encode("utf-16"),
            b"",
            b"\x00",
            b"\x00" * 17,
            b"\r\n\t \x7f\x80\xff trailing space ",
            b'{"v": 1, "kind": "json-looking"}',
            random.Random(7).randbytes(4096),
        ]
        _send_all(queue, bodies)
        got = _collect(queue, len(bodies), within=PATIENCE, lease=_long_lease(queue))
        received = [d.body for d in got]
        unknown = [body for body in received if body not in bodies]
        assert not unknown, guarantee(
            g.SEND_ROUND_TRIP, f"received bodies never sent: {[_short(b) for b in unknown]}"
        )
        missing = [body for body in bodies if body not in received]
        assert not missing, guarantee(
            g.SEND_ROUND_TRIP, f"never delivered: {[_short(b) for b in missing]}"
        )
        first = [d for d in got if d.attempt != 1]
        assert not first, guarantee(
            g.DELIVERY_ATTEMPT, f"first deliveries with attempt != 1: {_describe(first)}"
        )
        queue.ack(got)

    @checks(g.SEND_ROUND_TRIP)
    def test_body_of_the_largest_size_round_trips(self, broker: Broker) -> None:
        queue = self.open(broker)
        size = min(queue.capabilities.max_message_bytes, LARGEST_TESTED)
        body = (bytes(range(256)) + random.Random(size).randbytes(size))[:size]
        queue.send([body])
        got = _collect(queue, 1, within=PATIENCE, lease=_long_lease(queue))
        assert got, guarantee(g.SEND_ROUND_TRIP, f"a body of {size} bytes was never delivered")
        assert got[0].body == body, guarantee(
            g.SEND_ROUND_TRIP,
            f"a body of {size} bytes came back as {len(got[0].body)} bytes"
            + (" with the same length but different content" if len(got[0].body) == size else ""),
        )
        queue.ack(got)

    @checks(g.SEND_TOO_LARGE)
    def test_body_over_the_limit_raises_too_large(
        self, broker: Broker, conformance_timing: ConformanceTiming
    ) -> None:
        queue = self.open(broker)
        limit = queue.capabilities.max_message_bytes
        if limit + 1 > LARGEST_REFUSAL_TESTED:
            pytest.skip(f"max_message_bytes={limit} is too large to build a body over it")
        expect_raises(
            TooLarge,
            g.SEND_TOO_LARGE,
            lambda: queue.send([b"\x01" * (limit + 1)]),
            f"send() of {limit + 1} bytes (limit {limit})",
        )
        early, _ = _quiet(
            queue, time.monotonic() + conformance_timing.settle, lease=_long_lease(queue)
        )
        assert not early, guarantee(
            g.SEND_TOO_LARGE, f"the refused send still enqueued: {_describe(early)}"
        )

    @checks(g.MAX_BATCH, g.SEND_ROUND_TRIP)
    def test_batch_send_and_receive_up_to_max_batch(self, broker: Broker) -> None:
        queue = self.open(broker)
        size = min(queue.capabilities.max_batch, 100)
        bodies = [b"batch-%04d" % i for i in range(size)]
        queue.send(bodies)
        lease = _long_lease(queue)
        small = queue.receive(min(2, size), wait=PATIENCE, lease=lease)
        assert len(small) <= min(2, size), guarantee(
            g.MAX_BATCH, f"receive({min(2, size)}) returned {len(small)} deliveries"
        )
        got = list(small)
        deadline = time.monotonic() + PATIENCE
        while len(got) < size and (remaining := deadline - time.monotonic()) > 0:
            page = queue.receive(size, wait=remaining, lease=lease)
            assert len(page) <= size, guarantee(
                g.MAX_BATCH, f"receive({size}) returned {len(page)} deliveries"
            )
            got += page
        missing = sorted(set(bodies) - {d.body for d in got})
        assert not missing, guarantee(
            g.SEND_ROUND_TRIP,
            f"{len(missing)} of a batch of {size} never delivered, e.g. {missing[:3]}",
        )
        queue.ack(got)

    @checks(g.SEND_UNSUPPORTED)
    def test_more_bodies_than_max_batch_raise_unsupported(
        self, broker: Broker, conformance_timing: ConformanceTiming
    ) -> None:
        queue = self.open(broker)
        over = queue.capabilities.max_batch + 1
        if over > 100_000:
            pytest.skip(f"max_batch={over - 1} is too large to test a batch over it")
        expect_raises(
            UnsupportedOperation,
            g.SEND_UNSUPPORTED,
            lambda: queue.send([b"x"] * over),
            f"send() of {over} bodies (max_batch {over - 1})",
        )
        early, _ = _quiet(
            queue, time.monotonic() + conformance_timing.settle, lease=_long_lease(queue)
        )
        assert not early, guarantee(
            g.SEND_UNSUPPORTED,
            f"the refused batch was half-sent: {len(early)} message(s) enqueued",
        )

    @checks(g.SEND_UNSUPPORTED)
    def test_delay_above_max_delay_raises_unsupported(self, broker: Broker) -> None:
        queue = self.open(broker)
        over = queue.capabilities.max_delay + 1
        expect_raises(
            UnsupportedOperation,
            g.SEND_UNSUPPORTED,
            lambda: queue.send([b"x"], delay=over),
            f"send(delay={over}) (max_delay {queue.capabilities.max_delay})",
        )

    @checks(g.MAX_BATCH, g.RECEIVE_UNSUPPORTED)
    def test_receive_never_returns_more_than_max_batch(self, broker: Broker) -> None:
        queue = self.open(broker)
        over = queue.capabilities.max_batch + 1
        if over > 100_000:
            pytest.skip(f"max_batch={over - 1} is too large to test a receive over it")
        _send_all(queue, [b"m-%06d" % i for i in range(over)])
        expect_raises(
            UnsupportedOperation,
            g.RECEIVE_UNSUPPORTED,
            lambda: queue.receive(over, wait=PATIENCE, lease=_long_lease(queue)),
            f"receive({over}) (max_batch {over - 1})",
        )

    @checks(g.MAX_DELAY, g.RELEASE_UNSUPPORTED)
    def test_release_with_a_delay_above_max_delay_raises_unsupported(self, broker: Broker) -> None:
        queue = self.open(broker)
        queue.send([b"x"])
        delivery, _ = _receive_one(queue, within=PATIENCE, lease=_long_lease(queue))
        assert delivery is not None, guarantee(g.MAX_DELAY, "the message never arrived")
        over = queue.capabilities.max_delay + 1
        expect_raises(
            UnsupportedOperation,
            g.MAX_DELAY,
            lambda: queue.release(delivery, delay=over),
            f"release(delay={over}) (max_delay {over - 1})",
        )

    @checks(g.MAX_LEASE, g.RECEIVE_UNSUPPORTED, g.EXTEND_UNSUPPORTED)
    def test_a_lease_above_max_lease_raises_unsupported(self, broker: Broker) -> None:
        queue = self.open(broker)
        over = queue.capabilities.max_lease + 1
        queue.send([b"x"])
        expect_raises(
            UnsupportedOperation,
            g.MAX_LEASE,
            lambda: queue.receive(1, wait=PATIENCE, lease=over),
            f"receive(lease={over}) (max_lease {over - 1})",
        )
        delivery, _ = _receive_one(queue, within=PATIENCE, lease=_long_lease(queue))
        assert delivery is not None, guarantee(g.MAX_LEASE, "the message never arrived")
        expect_raises(
            UnsupportedOperation,
            g.MAX_LEASE,
            lambda: queue.extend(delivery, over),
            f"extend(lease={over}) (max_lease {over - 1})",
        )

    @checks(g.SEND_DELAY, g.DELIVERY_ATTEMPT)
    def test_delayed_send_is_not_delivered_early(
        self, broker: Broker, conformance_timing: ConformanceTiming
    ) -> None:
        queue = self.open(broker)
        delay = conformance_timing.delay
        if delay > queue.capabilities.max_delay:
            pytest.skip(
                f"capability not declared: delays of {delay}s "
                f"(max_delay={queue.capabilities.max_delay})"
            )
        lease = _long_lease(queue)
        sent = time.monotonic()
        queue.send([b"delayed"], delay=delay)
        early, late = _quiet(queue, sent + delay - conformance_timing.tolerance, lease=lease)
        assert not early, guarantee(
            g.SEND_DELAY, f"sent with delay={delay}s, delivered earlier: {_describe(early)}"
        )
        got = late or _collect(queue, 1, within=conformance_timing.settle, lease=lease)
        assert [d.body for d in got] == [b"delayed"], guarantee(
            g.SEND_DELAY,
            f"sent with delay={delay}s, not delivered within {conformance_timing.settle}s "
            f"after the delay: got {_describe(got)}",
        )
        assert got[0].attempt == 1, guarantee(g.DELIVERY_ATTEMPT, _describe(got))
        queue.ack(got)

    # -- receive ----------------------------------------------------------------------------

    @checks(g.RECEIVE_WAIT)
    def test_receive_waits_up_to_wait_for_a_first_message(
        self, broker: Broker, conformance_timing: ConformanceTiming
    ) -> None:
        queue = self.open(broker)
        wait = conformance_timing.settle
        started = time.monotonic()
        got = queue.receive(1, wait=wait, lease=_long_lease(queue))
        took = time.monotonic() - started
        assert got == [], guarantee(g.RECEIVE_WAIT, f"an empty queue returned {_describe(got)}")
        assert took <= wait + conformance_timing.settle, guarantee(
            g.RECEIVE_WAIT, f"receive(wait={wait}) on an empty queue took {took:.2f}s"
        )

        long_wait = 3 * conformance_timing.settle
        sender = threading.Timer(conformance_timing.settle / 2, lambda: queue.send([b"late"]))
        started = time.monotonic()
        sender.start()
        try:
            got = queue.receive(1, wait=long_wait, lease=_long_lease(queue))
        finally:
            sender.join()
        took = time.monotonic() - started
        assert [d.body for d in got] == [b"late"], guarantee(
            g.RECEIVE_WAIT,
            f"a message sent {conformance_timing.settle / 2}s into a {long_wait}s wait was "
            f"not returned by that receive (got {_describe(got)} after {took:.2f}s)",
        )
        queue.ack(got)

    @checks(g.RECEIVE_REDELIVERY, g.RECEIVE_EXCLUSIVE, g.DELIVERY_ID)
    def test_unacked_delivery_returns_after_its_lease_with_attempt_plus_one(
        self, broker: Broker, conformance_timing: ConformanceTiming
    ) -> None:
        queue = self.open(broker)
        lease = min(conformance_timing.lease, queue.capabilities.max_lease)
        queue.send([b"lease me \x00\xff"])
        first, started = _receive_one(queue, within=PATIENCE, lease=lease)
        assert first is not None, guarantee(g.RECEIVE_REDELIVERY, "the message never arrived")
        early, late = _quiet(queue, started + lease - conformance_timing.tolerance, lease=lease)
        assert not early, guarantee(
            g.RECEIVE_EXCLUSIVE,
            f"handed out again while its {lease}s lease was live: {_describe(early)}",
        )
        again = late or _collect(queue, 1, within=conformance_timing.settle, lease=lease)
        assert again, guarantee(
            g.RECEIVE_REDELIVERY,
            f"not delivered again within {conformance_timing.settle}s after its {lease}s "
            "lease expired unacked",
        )
        assert again[0].id == first.id, guarantee(
            g.DELIVERY_ID, f"first delivery id {first.id}, redelivery id {again[0].id}"
        )
        assert again[0].body == first.body, guarantee(
            g.RECEIVE_REDELIVERY, f"redelivered body {_short(again[0].body)}"
        )
        assert again[0].attempt == first.attempt + 1, guarantee(
            g.RECEIVE_REDELIVERY,
            f"first delivery had attempt {first.attempt}, the redelivery {again[0].attempt}",
        )
        queue.ack(again)

    @checks(g.RECEIVE_EXCLUSIVE)
    def test_a_leased_message_is_not_handed_to_two_consumers(
        self, broker: Broker, conformance_timing: ConformanceTiming
    ) -> None:
        queue = self.open(broker)
        bodies = [b"exclusive-%02d" % i for i in range(20)]
        _send_all(queue, bodies)
        lease = _long_lease(queue)
        deliveries: list[Delivery] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        until = time.monotonic() + 2 * conformance_timing.settle

        def consume() -> None:
            try:
                while (remaining := until - time.monotonic()) > 0:
                    got = queue.receive(_batch(queue, 5), wait=min(remaining, 0.5), lease=lease)
                    with lock:
                        deliveries.extend(got)
            except Exception as exc:  # noqa: BLE001 - re-raised by the test thread
                errors.append(exc)

        consumers = [threading.Thread(target=consume) for _ in range(4)]
        for consumer in consumers:
            consumer.start()
        for consumer in consumers:
            consumer.join()
        if errors:
            raise errors[0]
        twice = {i: n for i, n in Counter(d.id for d in deliveries).items() if n > 1}
        assert not twice, guarantee(
            g.RECEIVE_EXCLUSIVE,
            f"{len(twice)} message(s) handed out more than once within a {lease}s lease: "
            f"{_describe([d for d in deliveries if d.id in twice])}",
        )
        queue.ack(deliveries)

    @checks(g.RECEIVE_DEAD_LETTER, g.DEAD_LETTERS, g.DELIVERY_ATTEMPT)
    def test_dead_letter_after_max_attempts_with_body_intact(
        self, broker: Broker, conformance_timing: ConformanceTiming
    ) -> None:
        attempts = conformance_timing.max_attempts
        queue = self.open(broker, max_attempts=attempts)
        body = b"poison \x00\x01\xfe\xff " + "ünïcode".encode()
        queue.send([body])
        lease = _long_lease(queue)
        for attempt in range(1, attempts + 1):
            delivery, _ = _receive_one(queue, within=PATIENCE, lease=lease)
            assert delivery is not None, guarantee(
                g.RECEIVE_DEAD_LETTER,
                f"delivery {attempt} of {attempts} (max_attempts) never came",
            )
            assert delivery.attempt == attempt, guarantee(
                g.DELIVERY_ATTEMPT, f"delivery {attempt} reports attempt {delivery.attempt}"
            )
            queue.release(delivery)
        early, late = _quiet(queue, time.monotonic() + conformance_timing.settle, lease=lease)
        assert not early + late, guarantee(
            g.RECEIVE_DEAD_LETTER,
            f"delivered beyond max_attempts={attempts}: {_describe(early + late)}",
        )
        dead = _collect(queue.dead_letters(), 1, within=PATIENCE, lease=lease)
        assert dead, guarantee(
            g.RECEIVE_DEAD_LETTER,
            f"after {attempts} deliveries the message never appeared on dead_letters()",
        )
        assert dead[0].body == body, guarantee(
            g.DEAD_LETTERS, f"sent {_short(body)}, dead-lettered {_short(dead[0].body)}"
        )
        queue.dead_letters().ack(dead)

    # -- ack, release, extend, dead_letter --------------------------------------------------

    @checks(g.ACK)
    def test_acked_message_is_never_delivered_again(
        self, broker: Broker, conformance_timing: ConformanceTiming
    ) -> None:
        queue = self.open(broker)
        lease = min(conformance_timing.lease, queue.capabilities.max_lease)
        queue.send([b"ack me"])
        delivery, _ = _receive_one(queue, within=PATIENCE, lease=lease)
        assert delivery is not None, guarantee(g.ACK, "the message never arrived")
        queue.ack([delivery])
        early, late = _quiet(
            queue, time.monotonic() + lease + conformance_timing.settle, lease=lease
        )
        assert not early + late, guarantee(
            g.ACK, f"delivered again after its ack: {_describe(early + late)}"
        )

    @checks(g.ACK, g.EXTEND_LEASE_LOST, g.RECEIVE_REDELIVERY)
    def test_settling_an_expired_delivery_raises_lease_lost_or_has_no_effect(
        self, broker: Broker, conformance_timing: ConformanceTiming
    ) -> None:
        queue = self.open(broker)
        lease = min(conformance_timing.lease, queue.capabilities.max_lease)
        queue.send([b"expire me"])
        stale, _ = _receive_one(queue, within=PATIENCE, lease=lease)
        assert stale is not None, guarantee(g.ACK, "the message never arrived")
        # A short lease again, so that an ack with no effect shows as a redelivery.
        current, _ = _receive_one(queue, within=lease + conformance_timing.settle, lease=lease)
        assert current is not None, guarantee(
            g.RECEIVE_REDELIVERY, "not delivered again after its lease expired"
        )
        with contextlib.suppress(LeaseLost):
            queue.extend(stale, lease)
        with contextlib.suppress(LeaseLost):
            queue.ack([stale])
        queue.ack([current])
        early, late = _quiet(
            queue, time.monotonic() + lease + conformance_timing.settle, lease=lease
        )
        assert not early + late, guarantee(
            g.ACK,
            f"delivered again after its current delivery was acked: {_describe(early + late)}",
        )

    @checks(g.RELEASE, g.DELIVERY_ID)
    def test_release_with_delay_redelivers_not_before_the_delay(
        self, broker: Broker, conformance_timing: ConformanceTiming
    ) -> None:
        queue = self.open(broker)
        delay = conformance_timing.delay
        if delay > queue.capabilities.max_delay:
            pytest.skip(
                f"capability not declared: delays of {delay}s "
                f"(max_delay={queue.capabilities.max_delay})"
            )
        lease = _long_lease(queue)
        queue.send([b"release me"])
        first, _ = _receive_one(queue, within=PATIENCE, lease=lease)
        assert first is not None, guarantee(g.RELEASE, "the message never arrived")
        released = time.monotonic()
        queue.release(first, delay=delay)
        early, late = _quiet(queue, released + delay - conformance_timing.tolerance, lease=lease)
        assert not early, guarantee(
            g.RELEASE, f"released with delay={delay}s, delivered earlier: {_describe(early)}"
        )
        again = late or _collect(queue, 1, within=conformance_timing.settle, lease=lease)
        assert again, guarantee(
            g.RELEASE,
            f"released with delay={delay}s, not delivered within {conformance_timing.settle}s "
            "after the delay",
        )
        assert again[0].id == first.id, guarantee(
            g.DELIVERY_ID, f"first delivery id {first.id}, after release {again[0].id}"
        )
        assert again[0].attempt == first.attempt + 1, guarantee(
            g.RELEASE, f"attempt {first.attempt} released, next delivery has {again[0].attempt}"
        )
        queue.ack(again)

    @checks(g.RELEASE)
    def test_release_without_delay_redelivers_promptly(
        self, broker: Broker, conformance_timing: ConformanceTiming
    ) -> None:
        queue = self.open(broker)
        lease = _long_lease(queue)
        queue.send([b"release now"])
        first, _ = _receive_one(queue, within=PATIENCE, lease=lease)
        assert first is not None, guarantee(g.RELEASE, "the message never arrived")
        queue.release(first)
        again = _collect(queue, 1, within=conformance_timing.settle, lease=lease)
        assert again, guarantee(
            g.RELEASE, f"released with delay=0, not delivered within {conformance_timing.settle}s"
        )
        assert (again[0].id, again[0].body) == (first.id, first.body), guarantee(
            g.RELEASE, f"released {_describe([first])}, got {_describe(again)}"
        )
        assert again[0].attempt == first.attempt + 1, guarantee(
            g.RELEASE, f"attempt {first.attempt} released, next delivery has {again[0].attempt}"
        )
        queue.ack(again)

    @checks(g.EXTEND, g.RECEIVE_REDELIVERY)
    def test_extend_keeps_a_delivery_hidden_past_its_original_lease(
        self, broker: Broker, conformance_timing: ConformanceTiming
    ) -> None:
        queue = self.open(broker)
        lease = min(conformance_timing.lease, queue.capabilities.max_lease)
        longer = min(2 * lease + conformance_timing.settle, queue.capabilities.max_lease)
        queue.send([b"extend me"])
        first, _ = _receive_one(queue, within=PATIENCE, lease=lease)
        assert first is not None, guarantee(g.EXTEND, "the message never arrived")
        time.sleep(lease / 2)
        extended = time.monotonic()
        queue.extend(first, longer)
        early, late = _quiet(queue, extended + longer - conformance_timing.tolerance, lease=lease)
        assert not early, guarantee(
            g.EXTEND,
            f"extended by {longer}s half-way through a {lease}s lease, delivered again "
            f"{time.monotonic() - extended:.2f}s after the extend: {_describe(early)}",
        )
        again = late or _collect(queue, 1, within=conformance_timing.settle, lease=lease)
        assert again and again[0].attempt == first.attempt + 1, guarantee(
            g.RECEIVE_REDELIVERY,
            f"after the extended lease ran out unacked, got {_describe(again)}",
        )
        queue.ack(again)

    # -- claim on send (only where `capabilities.claim_on_send` is declared) -----------------

    def open_declaring(
        self, broker: Broker, capability: str, protocol: type, method: str, promise: Guarantee
    ) -> Queue:
        """A fresh channel whose queue declares `capability` (else the test is skipped) and
        so must be a `protocol`, with `method` (else `promise` is broken)."""
        queue = self.open(broker)
        if not getattr(queue.capabilities, capability):
            pytest.skip(f"capability not declared: {capability}")
        assert isinstance(queue, protocol), guarantee(
            promise, f"{capability} is declared, but {type(queue).__name__} has no {method}"
        )
        return queue

    def open_claiming(self, broker: Broker) -> ClaimingQueue:
        queue = self.open_declaring(
            broker, "claim_on_send", ClaimingQueue, "send_claimed", g.CLAIM_SETTLES
        )
        return cast(ClaimingQueue, queue)

    @checks(g.CLAIM_EXCLUSIVE, g.CLAIM_REDELIVERY)
    def test_a_claimed_message_is_hidden_for_its_lease_then_delivered_again(
        self, broker: Broker, conformance_timing: ConformanceTiming
    ) -> None:
        queue = self.open_claiming(broker)
        lease = min(conformance_timing.lease, queue.capabilities.max_lease)
        started = time.monotonic()
        claimed = queue.send_claimed(b"claimed \x00\xff", lease=lease)
        early, late = _quiet(queue, started + lease - conformance_timing.tolerance, lease=lease)
        assert not early, guarantee(
            g.CLAIM_EXCLUSIVE,
            f"received by another consumer while its {lease}s lease was live: {_describe(early)}",
        )
        again = late or _collect(queue, 1, within=conformance_timing.settle, lease=lease)
        assert again, guarantee(
            g.CLAIM_REDELIVERY,
            f"not delivered within {conformance_timing.settle}s after its {lease}s lease "
            "ran out unsettled",
        )
        got = again[0]
        assert (got.id, got.body, got.attempt) == (claimed.id, claimed.body, 2), guarantee(
            g.CLAIM_REDELIVERY, f"claimed {_describe([claimed])}, then got {_describe(again)}"
        )
        queue.ack(again)

    @checks(g.CLAIM_SETTLES)
    def test_a_claimed_delivery_settles_like_a_received_one(
        self, broker: Broker, conformance_timing: ConformanceTiming
    ) -> None:
        queue = self.open_claiming(broker)
        lease = min(conformance_timing.lease, queue.capabilities.max_lease)
        longer = min(2 * lease + conformance_timing.settle, queue.capabilities.max_lease)
        started = time.monotonic()
        acked = queue.send_claimed(b"acked", lease=lease)
        extended = queue.send_claimed(b"extended", lease=lease)
        released = queue.send_claimed(b"released", lease=_long_lease(queue))
        claimed = [acked, extended, released]
        assert [d.attempt for d in claimed] == [1, 1, 1], guarantee(
            g.CLAIM_SETTLES, f"claimed deliveries {_describe(claimed)}"
        )
        assert [d.body for d in claimed] == [b"acked", b"extended", b"released"], guarantee(
            g.CLAIM_SETTLES, f"claimed deliveries {_describe(claimed)}"
        )
        queue.ack([acked])
        queue.extend(extended, longer)
        queue.release(released)
        # Past the short lease: the acked and the extended one must stay away, the released
        # one comes back once, with attempt 2.
        until = started + lease + conformance_timing.settle
        early, late = _quiet(queue, until, lease=_long_lease(queue))
        got = early + late
        assert [(d.id, d.attempt) for d in got] == [(released.id, 2)], guarantee(
            g.CLAIM_SETTLES,
            f"acked {acked.id}, extended {extended.id} by {longer}s, released {released.id}; "
            f"within {lease + conformance_timing.settle}s got {_describe(got)}",
        )
        queue.ack(got)
        queue.ack([extended])

    @checks(g.CLAIM_UNSUPPORTED)
    def test_send_claimed_with_a_lease_above_max_lease_raises_unsupported(
        self, broker: Broker
    ) -> None:
        queue = self.open_claiming(broker)
        over = queue.capabilities.max_lease + 1
        expect_raises(
            UnsupportedOperation,
            g.CLAIM_UNSUPPORTED,
            lambda: queue.send_claimed(b"x", lease=over),
            f"send_claimed(lease={over}) (max_lease {over - 1})",
        )

    # -- interrupt (only where `capabilities.interruptible` is declared) ----------------------

    def open_interruptible(self, broker: Broker) -> InterruptibleQueue:
        queue = self.open_declaring(
            broker, "interruptible", InterruptibleQueue, "interrupt", g.INTERRUPT_ENDS_WAIT
        )
        return cast(InterruptibleQueue, queue)

    @checks(g.INTERRUPT_ENDS_WAIT, g.INTERRUPT_LOSES_NOTHING)
    def test_interrupt_ends_a_waiting_receive_and_loses_nothing(self, broker: Broker) -> None:
        queue = self.open_interruptible(broker)
        lease = _long_lease(queue)
        wait = 4 * PATIENCE
        waiting = _Receiving(queue, wait=wait, lease=lease)
        # Interrupted until it returns: the first interrupt may come before it waits.
        deadline = time.monotonic() + PATIENCE
        while waiting.thread.is_alive() and time.monotonic() < deadline:
            queue.interrupt()
            waiting.thread.join(0.1)
        assert not waiting.thread.is_alive(), guarantee(
            g.INTERRUPT_ENDS_WAIT,
            f"receive(wait={wait}) still waiting {PATIENCE}s into repeated interrupt() calls",
        )
        assert waiting.error is None, guarantee(
            g.INTERRUPT_ENDS_WAIT, f"the interrupted receive raised {waiting.error!r}"
        )
        assert waiting.got == [], guarantee(
            g.INTERRUPT_ENDS_WAIT,
            f"the interrupted receive on an empty channel returned {_describe(waiting.got or [])}",
        )
        queue.send([b"after the interrupt"])
        got = _collect(queue, 1, within=PATIENCE, lease=lease)
        assert [(d.body, d.attempt) for d in got] == [(b"after the interrupt", 1)], guarantee(
            g.INTERRUPT_LOSES_NOTHING,
            f"sent one message after interrupt(), then received {_describe(got)}",
        )
        queue.ack(got)

    @checks(g.INTERRUPT_NOT_STICKY)
    def test_a_receive_after_an_interrupt_waits_as_usual(
        self, broker: Broker, conformance_timing: ConformanceTiming
    ) -> None:
        queue = self.open_interruptible(broker)
        lease = _long_lease(queue)
        queue.interrupt()
        waiting = _Receiving(queue, wait=PATIENCE, lease=lease)
        # Sent while that receive should still be waiting: it must be the one to get it.
        time.sleep(conformance_timing.settle)
        queue.send([b"wait for me"])
        waiting.thread.join(PATIENCE + conformance_timing.settle)
        assert waiting.error is None, guarantee(
            g.INTERRUPT_NOT_STICKY, f"the receive raised {waiting.error!r}"
        )
        got = waiting.got or []
        assert [d.body for d in got] == [b"wait for me"], guarantee(
            g.INTERRUPT_NOT_STICKY,
            f"a receive(wait={PATIENCE}) begun after interrupt() returned {_describe(got)}, "
            f"not the message sent {conformance_timing.settle}s into its wait",
        )
        queue.ack(got)

    @checks(g.DEAD_LETTER, g.DEAD_LETTERS)
    def test_dead_letter_keeps_body_and_reason(
        self, broker: Broker, conformance_timing: ConformanceTiming
    ) -> None:
        queue = self.open(broker)
        lease = _long_lease(queue)
        body = bytes(range(256)) + "ünïcode".encode()
        reason = "malformed message: ünïcode reason #42"
        queue.send([body])
        delivery, _ = _receive_one(queue, within=PATIENCE, lease=lease)
        assert delivery is not None, guarantee(g.DEAD_LETTER, "the message never arrived")
        queue.dead_letter(delivery, reason)
        early, late = _quiet(queue, time.monotonic() + conformance_timing.settle, lease=lease)
        assert not early + late, guarantee(
            g.DEAD_LETTER, f"still on the channel after dead_letter(): {_describe(early + late)}"
        )
        dead = _collect(queue.dead_letters(), 1, within=PATIENCE, lease=lease)
        assert dead, guarantee(g.DEAD_LETTER, "never appeared on dead_letters()")
        assert dead[0].body == body, guarantee(
            g.DEAD_LETTERS, f"sent {_short(body)}, dead-lettered {_short(dead[0].body)}"
        )
        assert dead[0].reason == reason, guarantee(
            g.DEAD_LETTER, f"dead-lettered with reason {reason!r}, got {dead[0].reason!r}"
        )
        queue.dead_letters().ack(dead)

    # -- channels ---------------------------------------------------------------------------

    @checks(g.CHANNELS_ISOLATED, g.CASE_SENSITIVE)
    def test_channels_are_isolated(
        self, broker: Broker, conformance_timing: ConformanceTiming
    ) -> None:
        name = unique_name()
        queue = broker.queue(name)
        other = broker.queue(unique_name())
        other_case = broker.queue(name.upper())
        lease = _long_lease(queue)
        queue.send([b"only here"])
        for neighbour in (other, other_case):
            early, late = _quiet(
                neighbour, time.monotonic() + conformance_timing.settle / 2, lease=lease
            )
            assert not early + late, guarantee(
                g.CHANNELS_ISOLATED,
                f"sent to {name!r}, received on {neighbour.name!r}: {_describe(early + late)}",
            )
        got = _collect(queue, 1, within=PATIENCE, lease=lease)
        assert [d.body for d in got] == [b"only here"], guarantee(
            g.CHANNELS_ISOLATED, f"the channel itself got {_describe(got)}"
        )
        queue.ack(got)

    @checks(g.SAME_CHANNEL)
    def test_opening_the_same_name_twice_addresses_the_same_channel(self, broker: Broker) -> None:
        name = unique_name()
        first, second = broker.queue(name), broker.queue(name)
        lease = _long_lease(first)
        for sender, receiver in ((first, second), (second, first)):
            sender.send([b"same channel"])
            got = _collect(receiver, 1, within=PATIENCE, lease=lease)
            assert [d.body for d in got] == [b"same channel"], guarantee(
                g.SAME_CHANNEL, f"sent through one handle on {name!r}, the other got nothing"
            )
            receiver.ack(got)

    @checks(g.CHANNEL_NAMES, g.NATIVE_NAMES)
    def test_names_of_letters_digits_and_hyphens_are_accepted(self, broker: Broker) -> None:
        name = f"Sb-9-{unique_name()}-X"
        queue = broker.queue(name)
        queue.send([b"named"])
        got = _collect(queue, 1, within=PATIENCE, lease=_long_lease(queue))
        assert [d.body for d in got] == [b"named"], guarantee(
            g.NATIVE_NAMES, f"channel {name!r} got {_describe(got)}"
        )
        queue.ack(got)

    # -- at least once, at volume -----------------------------------------------------------

    @checks(g.AT_LEAST_ONCE, g.SEND_ROUND_TRIP)
    def test_a_thousand_messages_with_four_consumers_none_lost(
        self,
        broker: Broker,
        conformance_timing: ConformanceTiming,
        record_property: Callable[[str, object], None],
    ) -> None:
        queue = self.open(broker)
        bodies = [b"bulk-%04d" % i for i in range(BULK_MESSAGES)]
        _send_all(queue, bodies)
        lease = _long_lease(queue)
        delivered: Counter[bytes] = Counter()
        errors: list[BaseException] = []
        lock = threading.Lock()
        deadline = time.monotonic() + conformance_timing.bulk_timeout

        def consume() -> None:
            try:
                while time.monotonic() < deadline:
                    with lock:
                        if len(delivered) >= BULK_MESSAGES:
                            return
                    got = queue.receive(_batch(queue), wait=0.5, lease=lease)
                    with lock:
                        delivered.update(d.body for d in got)
                    if got:
                        queue.ack(got)
            except Exception as exc:  # noqa: BLE001 - re-raised by the test thread
                errors.append(exc)

        consumers = [threading.Thread(target=consume) for _ in range(BULK_CONSUMERS)]
        for consumer in consumers:
            consumer.start()
        for consumer in consumers:
            consumer.join()
        duplicates = sum(delivered.values()) - len(delivered)
        note = f"{duplicates} duplicate deliveries of {BULK_MESSAGES} messages"
        record_property("sb_note", note)
        if errors:
            raise errors[0]
        unknown = sorted(set(delivered) - set(bodies))
        missing = sorted(set(bodies) - set(delivered))
        assert not unknown, guarantee(
            g.SEND_ROUND_TRIP, f"bodies never sent were delivered: {unknown[:5]}; {note}"
        )
        assert not missing, guarantee(
            g.AT_LEAST_ONCE,
            f"{len(missing)} of {BULK_MESSAGES} messages lost within "
            f"{conformance_timing.bulk_timeout}s (e.g. {missing[:5]}); {note}",
        )

    # -- lifecycle --------------------------------------------------------------------------

    @checks(g.QUEUE_CLOSE, g.BROKER_CLOSE)
    def test_close_is_safe_to_call_twice(self, broker: Broker) -> None:
        queue = self.open(broker)
        queue.close()
        queue.close()
        broker.close()
        broker.close()
