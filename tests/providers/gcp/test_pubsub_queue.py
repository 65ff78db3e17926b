"""The Queue and Broker guarantees, proven on Pub/Sub over gRPC (the emulator by default).

Test names mirror the sentences of `switchboard.interfaces.Queue` / `Broker`; the last
tests pin the Pub/Sub-specific design (delay channel, attempt counting, leases).
"""

from __future__ import annotations

import contextlib
import time
import uuid

import pytest

from switchboard.errors import (
    ConfigError,
    LeaseLost,
    NotFound,
    TooLarge,
    UnsupportedOperation,
)
from switchboard.interfaces import Delivery, Queue
from switchboard.providers.gcp.config import GcpConfig
from switchboard.providers.gcp.queue import CAPABILITIES, PubSubBroker, PubSubQueue


def receive_all(
    queue: Queue, count: int, *, lease: float = 30.0, wait: float = 5.0
) -> list[Delivery]:
    """Receive until `count` deliveries arrived or `wait` seconds passed."""
    deliveries: list[Delivery] = []
    deadline = time.monotonic() + wait
    while len(deliveries) < count and time.monotonic() < deadline:
        deliveries += queue.receive(
            min(100, count - len(deliveries)), wait=deadline - time.monotonic(), lease=lease
        )
    return deliveries


def receive_one(queue: Queue, *, lease: float = 30.0, wait: float = 5.0) -> Delivery:
    deliveries = receive_all(queue, 1, lease=lease, wait=wait)
    assert len(deliveries) == 1, "expected one delivery"
    return deliveries[0]


# -- send / receive -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [bytes(range(256)) * 4, "é中😀 unicode".encode(), b""],
    ids=["binary", "unicode", "empty"],
)
def test_every_body_is_delivered_byte_for_byte(queue: PubSubQueue, body: bytes) -> None:
    queue.send([body])
    delivery = receive_one(queue)
    assert delivery.body == body
    assert delivery.attempt == 1
    queue.ack([delivery])


def test_a_body_at_the_limit_round_trips_and_one_byte_more_is_too_large(
    queue: PubSubQueue,
) -> None:
    body = b"\xff" * CAPABILITIES.max_message_bytes
    queue.send([body])
    delivery = receive_one(queue, wait=20)
    assert delivery.body == body
    # Our attributes fit beside it: the longest reason, and the delay channel's.
    queue.dead_letter(delivery, "r" * 5000)
    dead = receive_one(queue.dead_letters(), wait=20)
    assert dead.body == body
    queue.dead_letters().release(dead, delay=0.5)
    assert receive_one(queue.dead_letters(), wait=20).body == body
    with pytest.raises(TooLarge):
        queue.send([body + b"x"])


def test_a_batch_is_delivered_whole(queue: PubSubQueue) -> None:
    bodies = [f"message {i}".encode() for i in range(250)]
    queue.send(bodies)
    deliveries = receive_all(queue, 250, wait=20)
    assert sorted(d.body for d in deliveries) == sorted(bodies)
    assert len({d.id for d in deliveries}) == 250
    queue.ack(deliveries)
    assert queue.receive(10, wait=1.0, lease=1) == []


def test_out_of_capability_sends_raise_unsupported(queue: PubSubQueue) -> None:
    with pytest.raises(UnsupportedOperation):
        queue.send([b"x"] * (CAPABILITIES.max_batch + 1))
    with pytest.raises(UnsupportedOperation):
        queue.send([b"x"], delay=CAPABILITIES.max_delay + 1)
    with pytest.raises(UnsupportedOperation):
        queue.receive(1, lease=CAPABILITIES.max_lease + 1)
    with pytest.raises(UnsupportedOperation):
        queue.receive(CAPABILITIES.max_batch + 1)


def test_receive_waits_up_to_wait_and_may_return_empty(queue: PubSubQueue) -> None:
    started = time.monotonic()
    assert queue.receive(1, wait=1.5) == []
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 4.0


def test_receive_returns_a_message_that_arrives_while_waiting(queue: PubSubQueue) -> None:
    import threading

    timer = threading.Timer(0.7, lambda: queue.send([b"late"]))
    timer.start()
    try:
        started = time.monotonic()
        deliveries = queue.receive(1, wait=5.0)
        assert [d.body for d in deliveries] == [b"late"]
        assert time.monotonic() - started < 4.0
        queue.ack(deliveries)
    finally:
        timer.join()


# -- leases, attempts, settlement ----------------------------------------------------------


def test_an_unacked_delivery_comes_back_after_its_lease_with_attempt_plus_one(
    queue: PubSubQueue,
) -> None:
    queue.send([b"lease me"])
    first = receive_one(queue, lease=1)
    started = time.monotonic()
    # A message is not handed to two consumers while a lease on it is live.
    assert queue.receive(1, wait=0.5, lease=1) == []
    second = receive_one(queue, lease=30, wait=5)
    assert time.monotonic() - started >= 0.5
    assert (second.id, second.body, second.attempt) == (first.id, b"lease me", 2)
    queue.ack([second])


def test_an_acked_message_is_never_delivered_again(queue: PubSubQueue) -> None:
    queue.send([b"once"])
    delivery = receive_one(queue, lease=1)
    queue.ack([delivery])
    assert queue.receive(1, wait=2.0, lease=1) == []


def test_an_ack_after_the_lease_expired_raises_lease_lost_or_does_nothing(
    queue: PubSubQueue,
) -> None:
    queue.send([b"late ack"])
    first = receive_one(queue, lease=1)
    second = receive_one(queue, lease=30, wait=5)
    with contextlib.suppress(LeaseLost):
        queue.ack([first])
    # The live delivery still settles the message.
    queue.ack([second])
    assert queue.receive(1, wait=1.5, lease=1) == []


def test_release_makes_the_message_visible_again_with_attempt_plus_one(
    queue: PubSubQueue,
) -> None:
    queue.send([b"again"])
    first = receive_one(queue)
    queue.release(first)
    second = receive_one(queue, wait=3)
    assert (second.id, second.attempt) == (first.id, 2)
    queue.ack([second])


def test_release_with_delay_redelivers_not_before_the_delay(queue: PubSubQueue) -> None:
    queue.send([b"later"])
    first = receive_one(queue)
    released = time.monotonic()
    queue.release(first, delay=2.0)
    assert queue.receive(1, wait=1.5) == []
    second = receive_one(queue, wait=5)
    assert time.monotonic() - released >= 2.0
    assert (second.id, second.body, second.attempt) == (first.id, b"later", 2)
    # Attempts keep counting across the delay channel.
    queue.release(second)
    third = receive_one(queue, wait=3)
    assert (third.id, third.attempt) == (first.id, 3)
    queue.ack([third])


def test_extend_keeps_the_message_hidden_past_its_original_lease(queue: PubSubQueue) -> None:
    queue.send([b"keep"])
    delivery = receive_one(queue, lease=1)
    queue.extend(delivery, 3)
    extended = time.monotonic()
    assert queue.receive(1, wait=2.0, lease=1) == []
    again = receive_one(queue, wait=5)
    assert time.monotonic() - extended >= 2.9
    assert (again.id, again.attempt) == (delivery.id, 2)
    queue.ack([again])


def test_extend_after_the_lease_expired_raises_lease_lost(queue: PubSubQueue) -> None:
    queue.send([b"too late"])
    delivery = receive_one(queue, lease=1)
    time.sleep(1.2)
    with pytest.raises(LeaseLost):
        queue.extend(delivery, 30)
    with pytest.raises(LeaseLost):
        queue.release(delivery)
    queue.ack(receive_all(queue, 1, wait=3))


# -- dead letters ---------------------------------------------------------------------------


def test_a_message_past_max_attempts_moves_to_dead_letters_body_intact(
    broker: PubSubBroker, channel_name: str
) -> None:
    """max_attempts below Pub/Sub's minimum of 5: enforced by `receive` itself."""
    queue = broker.queue(channel_name, max_attempts=2)
    body = bytes(range(256))
    queue.send([body])
    for attempt in (1, 2):
        delivery = receive_one(queue, wait=3)
        assert delivery.attempt == attempt
        queue.release(delivery)
    assert queue.receive(1, wait=1.5) == []
    dead = receive_one(queue.dead_letters(), wait=5)
    assert (dead.id, dead.body, dead.attempt) == (delivery.id, body, 1)
    assert dead.reason is not None and "max_attempts" in dead.reason
    queue.dead_letters().ack([dead])


def test_pubsub_forwards_to_dead_letters_natively_at_five_attempts(queue: PubSubQueue) -> None:
    """max_attempts=5: Pub/Sub's own dead-letter policy moves the message (the emulator too)."""
    queue.send([b"poison"])
    for attempt in range(1, 6):
        delivery = receive_one(queue, wait=3)
        assert delivery.attempt == attempt
        queue.release(delivery)
    assert queue.receive(1, wait=1.5) == []
    dead = receive_one(queue.dead_letters(), wait=5)
    assert (dead.id, dead.body) == (delivery.id, b"poison")
    assert dead.reason is not None and "5 times" in dead.reason
    queue.dead_letters().ack([dead])


def test_dead_letter_moves_a_delivery_now_with_its_reason(queue: PubSubQueue) -> None:
    body = "ünïcode body".encode()
    queue.send([body])
    delivery = receive_one(queue)
    queue.dead_letter(delivery, "malformed: no kind")
    assert queue.receive(1, wait=1.5, lease=1) == []
    dead = receive_one(queue.dead_letters(), wait=5)
    assert (dead.id, dead.body, dead.reason) == (delivery.id, body, "malformed: no kind")
    assert dead.attempt == 1
    queue.dead_letters().ack([dead])


def test_dead_letters_is_readable_like_any_queue(queue: PubSubQueue) -> None:
    dead_letters = queue.dead_letters()
    assert isinstance(dead_letters, Queue)
    dead_letters.send([b"direct"])
    first = receive_one(dead_letters, lease=1)
    dead_letters.release(first)
    second = receive_one(dead_letters)
    assert (second.id, second.attempt, second.body) == (first.id, 2, b"direct")
    released = time.monotonic()
    dead_letters.release(second, delay=1.0)
    assert dead_letters.receive(1, wait=0.5) == []
    third = receive_one(dead_letters, wait=4)
    assert time.monotonic() - released >= 1.0
    assert (third.id, third.attempt, third.body) == (first.id, 3, b"direct")
    dead_letters.ack([third])
    dead_letters.send([b"delayed dead letter"], delay=1.0)
    assert queue.receive(1, wait=1.5) == []  # due on the dead-letter channel, not this one
    assert receive_one(dead_letters, wait=4).body == b"delayed dead letter"
    with pytest.raises(UnsupportedOperation):
        dead_letters.dead_letters()


def test_a_long_reason_is_cut_to_what_pubsub_attributes_hold(queue: PubSubQueue) -> None:
    queue.send([b"x"])
    queue.dead_letter(receive_one(queue), "é" * 2000)
    dead = receive_one(queue.dead_letters(), wait=5)
    assert dead.reason is not None and dead.reason.startswith("é" * 100)
    assert len(dead.reason.encode()) <= 1024
    queue.dead_letters().ack([dead])


# -- delays -------------------------------------------------------------------------------


def test_a_message_sent_with_delay_is_not_delivered_before_the_delay(queue: PubSubQueue) -> None:
    sent = time.monotonic()
    queue.send([b"delayed", b"also delayed"], delay=2.0)
    queue.send([b"now"])
    early = receive_all(queue, 3, wait=1.5)
    assert [d.body for d in early] == [b"now"]
    queue.ack(early)
    delayed = receive_all(queue, 2, wait=6)
    assert time.monotonic() - sent >= 2.0
    assert sorted(d.body for d in delayed) == [b"also delayed", b"delayed"]
    assert [d.attempt for d in delayed] == [1, 1]
    queue.ack(delayed)


# -- broker -------------------------------------------------------------------------------


def test_channels_with_different_names_are_isolated(broker: PubSubBroker) -> None:
    first = broker.queue(f"q-{uuid.uuid4().hex[:12]}")
    second = broker.queue(f"q-{uuid.uuid4().hex[:12]}")
    first.send([b"for the first"])
    assert second.receive(1, wait=1.0) == []
    assert receive_one(first).body == b"for the first"


def test_opening_the_same_name_twice_addresses_the_same_channel(
    gcp_config: GcpConfig, channel_name: str
) -> None:
    one, other = PubSubBroker(gcp_config), PubSubBroker(gcp_config)
    try:
        one.queue(channel_name).send([b"shared"])
        delivery = receive_one(other.queue(channel_name))
        assert delivery.body == b"shared"
        other.queue(channel_name).ack([delivery])
    finally:
        one.close()
        other.close()


def test_queue_names_are_checked_and_max_attempts_bounded(broker: PubSubBroker) -> None:
    with pytest.raises(ConfigError):
        broker.queue("no.dots")
    with pytest.raises(ConfigError):
        broker.queue("no spaces")
    assert broker.queue("app_names-may_hold-underscores").name == "app_names-may_hold-underscores"
    with pytest.raises(ConfigError, match="too long"):
        broker.queue("x" * 250)
    with pytest.raises(UnsupportedOperation):
        broker.queue("fine", max_attempts=101)


def test_a_missing_channel_without_create_is_not_found(
    gcp_config: GcpConfig,
) -> None:
    from dataclasses import replace

    broker = PubSubBroker(replace(gcp_config, create=False))
    try:
        queue = broker.queue(f"q-{uuid.uuid4().hex[:12]}")
        with pytest.raises(NotFound):
            queue.send([b"nowhere"])
        with pytest.raises(NotFound):
            queue.receive(1)
    finally:
        broker.close()


def test_ensure_is_idempotent_and_follows_max_attempts(
    broker: PubSubBroker, channel_name: str
) -> None:
    broker.ensure(channel_name, max_attempts=7)
    broker.ensure(channel_name, max_attempts=7)
    queue = broker.queue(channel_name, max_attempts=7)
    queue.send([b"x"])
    assert receive_one(queue).body == b"x"
