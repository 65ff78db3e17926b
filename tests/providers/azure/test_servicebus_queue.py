"""`ServiceBusQueue` through azure-servicebus over AMQP 1.0, against the project's Service Bus
test broker (or the real service with SWITCHBOARD_AZURE_LIVE=1): every guarantee of the
`Queue` and `Broker` docstrings, plus Azure specifics (lease keeping, attempt carry-over)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import pytest

from switchboard.config import build_config
from switchboard.errors import ConfigError, LeaseLost, TooLarge, UnsupportedOperation
from switchboard.interfaces import Broker, Delivery, Queue
from switchboard.providers.azure import AzureConfig, make_broker
from switchboard.providers.azure.queue import (
    MAX_BATCH,
    MAX_DELIVERY_REASON,
    MAX_MESSAGE_BYTES,
    ServiceBusBroker,
    ServiceBusQueue,
    entity_name,
)

OpenQueue = Callable[..., ServiceBusQueue]


def receive_one(queue: Queue, *, wait: float = 5.0, lease: float = 30.0) -> Delivery:
    deliveries = queue.receive(1, wait=wait, lease=lease)
    assert len(deliveries) == 1, f"expected one delivery within {wait}s, got {deliveries}"
    return deliveries[0]


def drain(queue: Queue, *, wait: float = 1.0) -> list[Delivery]:
    got: list[Delivery] = []
    while True:
        batch = queue.receive(MAX_BATCH, wait=wait)
        if not batch:
            return got
        got.extend(batch)


# -- Broker ---------------------------------------------------------------------------------


def test_broker_and_queue_satisfy_the_protocols(
    sb_broker: ServiceBusBroker, open_queue: OpenQueue
) -> None:
    queue = open_queue()
    assert isinstance(sb_broker, Broker) and isinstance(queue, Queue)
    assert isinstance(queue.dead_letters(), Queue)
    caps = queue.capabilities
    assert caps.native_dead_letter and caps.max_message_bytes == MAX_MESSAGE_BYTES
    assert queue.name == "work" and queue.max_attempts == 5


def test_channels_with_different_names_are_isolated(open_queue: OpenQueue) -> None:
    a, b = open_queue("alpha"), open_queue("beta")
    a.send([b"for a"])
    b.send([b"for b"])
    got_a, got_b = receive_one(a), receive_one(b)
    assert (got_a.body, got_b.body) == (b"for a", b"for b")
    a.ack([got_a])
    b.ack([got_b])
    assert a.receive(1, wait=0.5) == [] and b.receive(1, wait=0.5) == []


def test_opening_the_same_name_twice_addresses_the_same_channel(open_queue: OpenQueue) -> None:
    first, second = open_queue("same"), open_queue("same")
    first.send([b"shared"])
    delivery = receive_one(second)
    assert delivery.body == b"shared"
    second.ack([delivery])


def test_names_differing_only_in_case_or_a_trailing_hyphen_are_different_queues() -> None:
    names = ["jobs", "JOBS", "Jobs", "jobs-", "jobs--", "j-obs", "J-0bs-"]
    entities = {entity_name("App", name) for name in names}
    assert len(entities) == len(names)
    for entity in entities:
        assert entity.startswith("app-") and entity[-1].isalnum() and entity == entity.lower()


def test_a_channel_name_must_be_letters_digits_and_hyphens(sb_broker: ServiceBusBroker) -> None:
    with pytest.raises(ValueError):
        sb_broker.queue("no/slashes")


# -- send / receive -------------------------------------------------------------------------


def test_every_body_is_delivered_byte_for_byte(open_queue: OpenQueue) -> None:
    queue = open_queue()
    rng = random.Random(5)
    bodies = [b"", b"\x00\xff\x00", "unicode é 中 😀".encode(), rng.randbytes(1000)]
    bodies.append(rng.randbytes(MAX_MESSAGE_BYTES))
    queue.send(bodies[:4])
    queue.send(bodies[4:])
    got = drain(queue)
    assert sorted(d.body for d in got) == sorted(bodies)
    assert all(d.attempt == 1 for d in got)
    assert len({d.id for d in got}) == len(bodies)
    queue.ack(got)


def test_a_body_over_the_limit_is_too_large(open_queue: OpenQueue) -> None:
    queue = open_queue()
    with pytest.raises(TooLarge):
        queue.send([b"x" * (MAX_MESSAGE_BYTES + 1)])
    assert queue.receive(1, wait=0.5) == []


def test_too_many_bodies_or_too_long_a_delay_are_unsupported(open_queue: OpenQueue) -> None:
    queue = open_queue()
    with pytest.raises(UnsupportedOperation):
        queue.send([b"x"] * (MAX_BATCH + 1))
    with pytest.raises(UnsupportedOperation):
        queue.send([b"x"], delay=queue.capabilities.max_delay + 1)
    with pytest.raises(UnsupportedOperation):
        queue.receive(MAX_BATCH + 1)
    with pytest.raises(UnsupportedOperation):
        queue.receive(1, lease=queue.capabilities.max_lease + 1)


def test_a_full_batch_is_sent_and_received_each_message_once(open_queue: OpenQueue) -> None:
    queue = open_queue()
    bodies = [f"message {i}".encode() * 200 for i in range(MAX_BATCH)]  # about 2 KB each
    queue.send(bodies)
    got = drain(queue)
    assert sorted(d.body for d in got) == sorted(bodies)
    queue.ack(got)
    assert queue.receive(MAX_BATCH, wait=0.5) == []


def test_a_delayed_message_is_not_delivered_before_its_delay(open_queue: OpenQueue) -> None:
    queue = open_queue()
    sent = time.monotonic()
    queue.send([b"later"], delay=2.0)
    assert queue.receive(1, wait=1.0) == []
    delivery = receive_one(queue, wait=5.0)
    assert time.monotonic() - sent >= 2.0
    assert (delivery.body, delivery.attempt) == (b"later", 1)
    queue.ack([delivery])


def test_receive_waits_up_to_wait_and_may_return_nothing(open_queue: OpenQueue) -> None:
    queue = open_queue()
    started = time.monotonic()
    assert queue.receive(1, wait=1.0) == []
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 3.0


def test_receive_returns_as_soon_as_a_message_arrives(open_queue: OpenQueue) -> None:
    queue = open_queue()
    threading.Timer(0.5, queue.send, args=([b"soon"],)).start()
    started = time.monotonic()
    delivery = receive_one(queue, wait=10.0)
    assert time.monotonic() - started < 4.0
    queue.ack([delivery])


# -- leases and attempts --------------------------------------------------------------------


def test_an_unacked_delivery_comes_back_after_its_lease_with_attempt_increased(
    open_queue: OpenQueue,
) -> None:
    queue = open_queue()
    queue.send([b"retry me"])
    first = receive_one(queue, lease=1.0)
    second = receive_one(queue, wait=5.0)
    assert (second.id, second.body, second.attempt) == (first.id, b"retry me", 2)
    queue.ack([second])


def test_a_lease_longer_than_the_native_lock_is_kept(
    open_queue: OpenQueue, lock_duration: float
) -> None:
    queue, other = open_queue(), open_queue()
    queue.send([b"long task"])
    delivery = receive_one(queue, lease=lock_duration + 3)
    assert other.receive(1, wait=lock_duration + 1) == []
    queue.ack([delivery])
    assert other.receive(1, wait=1.0) == []


def test_a_message_is_not_handed_to_two_consumers_while_its_lease_is_live(
    open_queue: OpenQueue,
) -> None:
    consumers = [open_queue() for _ in range(4)]
    consumers[0].send([f"m{i}".encode() for i in range(20)])
    seen: list[Delivery] = []
    lock = threading.Lock()

    def consume(queue: ServiceBusQueue) -> None:
        while batch := queue.receive(3, wait=1.0, lease=20):
            with lock:
                seen.extend(batch)

    threads = [threading.Thread(target=consume, args=(q,)) for q in consumers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(d.body for d in seen) == sorted(f"m{i}".encode() for i in range(20))
    for queue in consumers:
        queue.ack([d for d in seen if d.handle.queue is queue])


def test_a_consumer_that_vanishes_frees_its_messages_after_the_lock_duration(
    open_queue: OpenQueue, lock_duration: float
) -> None:
    gone, survivor = open_queue(), open_queue()
    gone.send([b"orphan"])
    first = receive_one(gone, lease=600)
    gone.close()  # no keeper renews the lock any more
    second = receive_one(survivor, wait=lock_duration + 5)
    assert (second.id, second.attempt) == (first.id, 2)
    survivor.ack([second])


def test_after_max_attempts_the_message_goes_to_the_dead_letter_channel(
    open_queue: OpenQueue,
) -> None:
    queue = open_queue("limited", max_attempts=2)
    queue.send([b"poison \x00"])
    for attempt in (1, 2):
        delivery = receive_one(queue)
        assert delivery.attempt == attempt
        queue.release(delivery)
    assert queue.receive(1, wait=1.0) == []
    dead = receive_one(queue.dead_letters())
    assert dead.body == b"poison \x00"
    assert dead.reason == MAX_DELIVERY_REASON
    queue.dead_letters().ack([dead])


def test_lease_expiry_counts_towards_max_attempts(open_queue: OpenQueue) -> None:
    queue = open_queue("expiring", max_attempts=2)
    queue.send([b"slow"])
    receive_one(queue, lease=0.5)
    receive_one(queue, lease=0.5)
    assert queue.receive(1, wait=1.5) == []
    assert receive_one(queue.dead_letters()).body == b"slow"


# -- ack, release, extend -------------------------------------------------------------------


def test_an_acked_message_is_never_delivered_again(open_queue: OpenQueue) -> None:
    queue = open_queue()
    queue.send([b"done", b"also done"])
    got = drain(queue)
    queue.ack(got)
    time.sleep(1.5)
    assert queue.receive(10, wait=1.0, lease=1) == []


def test_an_ack_after_the_lease_expired_raises_lease_lost(open_queue: OpenQueue) -> None:
    queue = open_queue()
    queue.send([b"too slow"])
    delivery = receive_one(queue, lease=0.5)
    time.sleep(1.5)
    with pytest.raises(LeaseLost):
        queue.ack([delivery])
    again = receive_one(queue)
    assert (again.id, again.attempt) == (delivery.id, 2)
    queue.ack([again])


def test_release_makes_the_message_visible_again_with_attempt_increased(
    open_queue: OpenQueue,
) -> None:
    queue = open_queue()
    queue.send([b"again"])
    first = receive_one(queue)
    queue.release(first)
    second = receive_one(queue, wait=2.0)
    assert (second.id, second.body, second.attempt) == (first.id, b"again", 2)
    queue.ack([second])


def test_release_with_a_delay_hides_the_message_until_then(open_queue: OpenQueue) -> None:
    queue = open_queue()
    queue.send([b"back off"])
    first = receive_one(queue)
    released = time.monotonic()
    queue.release(first, delay=2.0)
    assert queue.receive(1, wait=1.0) == []
    second = receive_one(queue, wait=5.0)
    assert time.monotonic() - released >= 2.0
    assert (second.id, second.body, second.attempt) == (first.id, b"back off", 2)
    queue.ack([second])
    assert queue.receive(1, wait=1.0) == []


def test_attempts_carry_over_delayed_releases_up_to_max_attempts(open_queue: OpenQueue) -> None:
    queue = open_queue("carry", max_attempts=4)
    queue.send([b"flaky"])
    first = receive_one(queue)
    queue.release(first, delay=0.5)  # a scheduled copy carries attempt 1
    second = receive_one(queue, wait=5)
    assert (second.id, second.attempt) == (first.id, 2)
    queue.release(second)  # abandoned: the copy's own delivery count goes up
    third = receive_one(queue, wait=5)
    assert third.attempt == 3
    queue.release(third, delay=0.5)
    fourth = receive_one(queue, wait=5)
    assert fourth.attempt == 4
    queue.release(fourth)  # the next delivery would be the fifth: dead-lettered instead
    assert queue.receive(1, wait=1.5) == []
    dead = receive_one(queue.dead_letters())
    assert (dead.body, dead.reason) == (b"flaky", MAX_DELIVERY_REASON)


def test_a_delayed_release_of_the_last_attempt_dead_letters(open_queue: OpenQueue) -> None:
    queue = open_queue("last", max_attempts=1)
    queue.send([b"once"])
    queue.release(receive_one(queue), delay=5.0)
    dead = receive_one(queue.dead_letters())
    assert (dead.body, dead.reason) == (b"once", MAX_DELIVERY_REASON)


def test_extend_keeps_the_message_hidden_past_its_original_lease(open_queue: OpenQueue) -> None:
    queue, other = open_queue(), open_queue()
    queue.send([b"hold"])
    delivery = receive_one(queue, lease=1.0)
    queue.extend(delivery, 4.0)
    assert other.receive(1, wait=2.5) == []
    queue.ack([delivery])
    assert other.receive(1, wait=2.5) == []


def test_extend_after_the_lease_expired_raises_lease_lost(open_queue: OpenQueue) -> None:
    queue = open_queue()
    queue.send([b"late"])
    delivery = receive_one(queue, lease=0.5)
    time.sleep(1.5)
    with pytest.raises(LeaseLost):
        queue.extend(delivery, 10)


# -- dead letters ---------------------------------------------------------------------------


def test_dead_letter_moves_the_message_with_its_reason(open_queue: OpenQueue) -> None:
    queue = open_queue()
    body = bytes(range(256))
    queue.send([body])
    delivery = receive_one(queue)
    queue.dead_letter(delivery, "malformed: no 'kind' field")
    assert queue.receive(1, wait=1.0) == []
    dead_letters = queue.dead_letters()
    dead = receive_one(dead_letters)
    assert (dead.body, dead.reason, dead.id) == (body, "malformed: no 'kind' field", delivery.id)
    dead_letters.ack([dead])
    assert dead_letters.receive(1, wait=1.0) == []


def test_the_dead_letter_channel_reads_like_a_queue(open_queue: OpenQueue) -> None:
    queue = open_queue()
    queue.send([b"a", b"b"])
    for delivery in drain(queue):
        queue.dead_letter(delivery, "test")
    dead_letters = queue.dead_letters()
    first = dead_letters.receive(2, wait=5.0)
    assert sorted(d.body for d in first) == [b"a", b"b"]
    dead_letters.release(first[0])
    again = receive_one(dead_letters)
    assert again.body == first[0].body
    dead_letters.ack([again, first[1]])
    with pytest.raises(UnsupportedOperation):
        dead_letters.send([b"x"])


def test_close_is_safe_twice(open_queue: OpenQueue, sb_broker: ServiceBusBroker) -> None:
    queue = open_queue()
    queue.dead_letters()
    queue.close()
    queue.close()
    sb_broker.close()
    sb_broker.close()


# -- the provider entry ---------------------------------------------------------------------


def test_the_provider_builds_a_broker_from_config(servicebus: object) -> None:
    connection_string = servicebus.connection_string  # type: ignore[attr-defined]
    config = build_config(
        AzureConfig,
        {"servicebus_connection_string": connection_string, "prefix": "fromconfig"},
        provider="azure",
    )
    broker = make_broker(config)
    try:
        queue = broker.queue("jobs")
        assert queue.entity == "fromconfig-jobs"  # type: ignore[attr-defined]
        queue.send([b"hello"])
        delivery = receive_one(queue)
        queue.ack([delivery])
    finally:
        broker.close()


def test_a_missing_servicebus_connection_string_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("SWITCHBOARD_SERVICEBUS_CONNECTION_STRING", "AZURE_SERVICEBUS_CONNECTION_STRING"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError) as raised:
        make_broker(build_config(AzureConfig, {}, provider="azure"))
    message = str(raised.value)
    assert "servicebus_connection_string" in message
    assert "AZURE_SERVICEBUS_CONNECTION_STRING" in message and "Endpoint=sb://" in message
