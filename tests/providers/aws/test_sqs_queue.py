"""SqsBroker / SqsQueue against moto's server over HTTP: one test per guarantee of the
`Queue` and `Broker` docstrings. Leases are 1 s because SQS counts visibility in real time.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import replace
from typing import Any

import pytest

from switchboard.errors import ConfigError, LeaseLost, TooLarge, UnsupportedOperation
from switchboard.interfaces import Broker, Delivery, Queue
from switchboard.providers.aws.config import AwsConfig
from switchboard.providers.aws.queue import (
    REASON_MAX_BYTES,
    SQS_MAX_BYTES,
    SqsBroker,
    SqsQueue,
    _Outgoing,
    native_name,
)


def drain(queue: Queue, count: int, *, wait: float = 5.0, lease: float = 30.0) -> list[Delivery]:
    """Receive until `count` deliveries arrived or `wait` seconds passed."""
    deliveries: list[Delivery] = []
    deadline = time.monotonic() + wait
    while len(deliveries) < count and time.monotonic() < deadline:
        remaining = max(0.0, deadline - time.monotonic())
        deliveries += queue.receive(min(10, count - len(deliveries)), wait=remaining, lease=lease)
    return deliveries


def test_broker_and_queue_satisfy_the_protocols(broker: SqsBroker) -> None:
    queue = broker.queue("protocols")
    assert isinstance(broker, Broker)
    assert isinstance(queue, Queue)
    assert isinstance(queue.dead_letters(), Queue)


# -- send / receive -------------------------------------------------------------------------


def test_binary_unicode_and_empty_bodies_round_trip_byte_for_byte(broker: SqsBroker) -> None:
    queue = broker.queue("bodies")
    bodies = [
        b"",
        b"\x00\xff\xfe\x80 not utf-8",
        bytes(range(256)),
        "héllo wörld 中文 😀".encode(),
        b"carriage\r\nreturn\r",
        b'{"v": 1, "kind": "run.start"}',
        "\ufffe is not XML".encode(),
        b" ",
    ]
    queue.send(bodies)
    deliveries = drain(queue, len(bodies))
    assert sorted(d.body for d in deliveries) == sorted(bodies)
    assert all(d.attempt == 1 for d in deliveries)
    assert len({d.id for d in deliveries}) == len(bodies)
    queue.ack(deliveries)


@pytest.mark.parametrize("kind", ["binary", "text"])
def test_body_at_the_limit_round_trips_and_one_byte_more_is_too_large(
    broker: SqsBroker, kind: str
) -> None:
    queue = broker.queue("limit")
    limit = queue.capabilities.max_message_bytes
    body = os.urandom(limit) if kind == "binary" else b"a" * limit
    queue.send([body])
    (delivery,) = drain(queue, 1)
    assert delivery.body == body
    queue.ack([delivery])
    with pytest.raises(TooLarge):
        queue.send([body + b"a"])
    assert queue.receive(1) == []


def test_declared_limit_leaves_room_for_a_dead_letter_reason(broker: SqsBroker) -> None:
    """moto does not count message attributes, so check our accounting against SQS's rule."""
    queue = broker.queue("room")
    worst = os.urandom(queue.capabilities.max_message_bytes)
    reason = "é" * REASON_MAX_BYTES
    extra: dict[str, dict[str, Any]] = {
        "switchboard.reason": {
            "DataType": "Binary",
            "BinaryValue": b"\x01" + reason.encode()[:REASON_MAX_BYTES],
        },
        "switchboard.id": {"DataType": "String", "StringValue": "x" * 128},
    }
    assert _Outgoing(worst, extra).size <= SQS_MAX_BYTES
    queue.send([worst])
    (delivery,) = drain(queue, 1)
    queue.dead_letter(delivery, reason)
    (dead,) = drain(queue.dead_letters(), 1)
    assert dead.body == worst
    assert dead.reason == reason[: REASON_MAX_BYTES // 2]


def test_a_batch_of_25_is_split_into_sqs_batches(broker: SqsBroker) -> None:
    queue = broker.queue("batch")
    bodies = [f"message {i}".encode() for i in range(25)]
    queue.send(bodies)
    deliveries = queue.receive(25, wait=2)
    deliveries += drain(queue, 25 - len(deliveries))
    assert sorted(d.body for d in deliveries) == sorted(bodies)
    queue.ack(deliveries)  # 25 acks: three DeleteMessageBatch calls
    assert queue.receive(10, wait=1) == []


def test_large_bodies_are_split_to_keep_each_request_under_1_mib(broker: SqsBroker) -> None:
    queue = broker.queue("heavy")
    bodies = [bytes([i]) * 400_000 for i in range(5)]  # 2 MB in all: at least 3 requests
    queue.send(bodies)
    deliveries = drain(queue, 5)
    assert sorted(d.body for d in deliveries) == sorted(bodies)


def test_limits_outside_the_capabilities_are_unsupported(broker: SqsBroker) -> None:
    queue = broker.queue("caps")
    caps = queue.capabilities
    with pytest.raises(UnsupportedOperation):
        queue.send([b"x"] * (caps.max_batch + 1))
    with pytest.raises(UnsupportedOperation):
        queue.send([b"x"], delay=caps.max_delay + 1)
    with pytest.raises(UnsupportedOperation):
        queue.receive(caps.max_batch + 1)
    with pytest.raises(UnsupportedOperation):
        queue.receive(1, lease=caps.max_lease + 1)
    queue.send([b"x"])
    (delivery,) = drain(queue, 1)
    with pytest.raises(UnsupportedOperation):
        queue.release(delivery, delay=caps.max_delay + 1)
    with pytest.raises(UnsupportedOperation):
        queue.extend(delivery, caps.max_lease + 1)
    with pytest.raises(UnsupportedOperation):
        queue.dead_letters().dead_letters()


def test_receive_waits_up_to_wait_and_may_return_empty(broker: SqsBroker) -> None:
    queue = broker.queue("idle")
    started = time.monotonic()
    assert queue.receive(1, wait=0) == []
    assert time.monotonic() - started < 1
    started = time.monotonic()
    assert queue.receive(1, wait=1) == []
    assert 0.9 <= time.monotonic() - started < 3


def test_long_poll_returns_a_message_sent_during_the_wait(broker: SqsBroker) -> None:
    queue = broker.queue("longpoll")
    sender = threading.Timer(0.5, queue.send, args=([b"late"],))
    sender.start()
    started = time.monotonic()
    deliveries = queue.receive(1, wait=10)
    sender.join()
    assert [d.body for d in deliveries] == [b"late"]
    assert time.monotonic() - started < 5


def test_delayed_send_is_not_delivered_before_the_delay(broker: SqsBroker) -> None:
    queue = broker.queue("delayed")
    sent = time.monotonic()
    queue.send([b"later"], delay=2)
    assert queue.receive(1, wait=1) == []
    (delivery,) = drain(queue, 1, wait=6)
    assert time.monotonic() - sent >= 1.9
    assert delivery.body == b"later"
    assert delivery.attempt == 1


# -- leases ---------------------------------------------------------------------------------


def test_unacked_delivery_comes_back_after_its_lease_with_attempt_plus_one(
    broker: SqsBroker,
) -> None:
    queue = broker.queue("lease")
    queue.send([b"work"])
    (first,) = drain(queue, 1, lease=1)
    assert first.attempt == 1
    # Not handed to a second consumer while the lease is live.
    assert queue.receive(1, wait=0, lease=1) == []
    (second,) = drain(queue, 1, lease=1)
    assert (second.id, second.body, second.attempt) == (first.id, b"work", 2)


def test_acked_message_is_never_delivered_again(broker: SqsBroker) -> None:
    queue = broker.queue("ack")
    queue.send([b"done"])
    (delivery,) = drain(queue, 1, lease=1)
    queue.ack([delivery])
    time.sleep(1.2)
    assert queue.receive(1, wait=1) == []


def test_release_makes_the_message_visible_after_the_delay_not_before(
    broker: SqsBroker,
) -> None:
    queue = broker.queue("release")
    queue.send([b"again"])
    (delivery,) = drain(queue, 1)
    released = time.monotonic()
    queue.release(delivery, delay=2)
    assert queue.receive(1, wait=1) == []
    (again,) = drain(queue, 1, wait=6)
    assert time.monotonic() - released >= 1.9
    assert (again.id, again.attempt) == (delivery.id, 2)
    queue.release(again)  # no delay: visible at once
    (third,) = queue.receive(1, wait=2)
    assert third.attempt == 3


def test_extend_keeps_the_message_hidden_past_its_original_lease(broker: SqsBroker) -> None:
    queue = broker.queue("extend")
    queue.send([b"slow"])
    (delivery,) = drain(queue, 1, lease=1)
    received = time.monotonic()
    queue.extend(delivery, 3)
    time.sleep(1.5)  # the original lease has ended
    assert queue.receive(1, wait=0) == []
    (again,) = drain(queue, 1, wait=6)
    assert time.monotonic() - received >= 2.9
    assert again.attempt == 2


def test_settling_a_deleted_message_raises_lease_lost(broker: SqsBroker) -> None:
    queue = broker.queue("lost")
    queue.send([b"gone"])
    (delivery,) = drain(queue, 1)
    queue.ack([delivery])
    with pytest.raises(LeaseLost):
        queue.extend(delivery, 5)
    with pytest.raises(LeaseLost):
        queue.release(delivery)


# -- dead letters ---------------------------------------------------------------------------


def test_message_goes_to_dead_letters_after_max_attempts_body_intact(broker: SqsBroker) -> None:
    queue = broker.queue("poison", max_attempts=2)
    body = b"\x00poison\xff"
    queue.send([body])
    attempts = []
    for _ in range(2):
        (delivery,) = drain(queue, 1, lease=1)
        attempts.append(delivery.attempt)
    assert attempts == [1, 2]
    time.sleep(1.1)
    assert queue.receive(1, wait=1, lease=1) == []  # a third delivery would exceed 2
    (dead,) = drain(queue.dead_letters(), 1)
    assert (dead.body, dead.id, dead.reason) == (body, delivery.id, None)


def test_dead_letter_moves_the_delivery_now_with_its_reason(broker: SqsBroker) -> None:
    queue = broker.queue("explicit")
    queue.send([b'{"kind": "nonsense"}'])
    (delivery,) = drain(queue, 1, lease=1)
    queue.dead_letter(delivery, "malformed message: unknown kind 'nonsense' ü")
    time.sleep(1.2)
    assert queue.receive(1, wait=0) == []
    (dead,) = drain(queue.dead_letters(), 1)
    assert dead.body == b'{"kind": "nonsense"}'
    assert dead.reason == "malformed message: unknown kind 'nonsense' ü"
    assert dead.id == delivery.id
    with pytest.raises(UnsupportedOperation):
        queue.dead_letters().dead_letter(dead, "again")


# -- broker -----------------------------------------------------------------------------------


def test_channels_are_isolated_and_the_same_name_is_the_same_channel(broker: SqsBroker) -> None:
    first, second = broker.queue("alpha"), broker.queue("beta")
    first.send([b"for alpha"])
    assert second.receive(1, wait=1) == []
    again = broker.queue("alpha")
    (delivery,) = drain(again, 1)
    assert delivery.body == b"for alpha"
    assert first.dead_letters().receive(1) == []


def test_reopening_with_other_max_attempts_updates_the_redrive_policy(
    broker: SqsBroker,
) -> None:
    def max_receive_count(queue: SqsQueue) -> int:
        attributes = broker._client.get_queue_attributes(
            QueueUrl=queue.url, AttributeNames=["RedrivePolicy"]
        )["Attributes"]
        return int(json.loads(attributes["RedrivePolicy"])["maxReceiveCount"])

    assert max_receive_count(broker.queue("policy", max_attempts=3)) == 3
    assert max_receive_count(broker.queue("policy", max_attempts=7)) == 7
    assert max_receive_count(broker.queue("policy", max_attempts=3)) == 3
    with pytest.raises(UnsupportedOperation):
        broker.queue("policy", max_attempts=1001)


def test_long_and_invalid_names(broker: SqsBroker, aws_config: AwsConfig) -> None:
    long_name = "a-very-long-channel-name-" * 4
    native = native_name(aws_config.prefix, long_name)
    assert len(native) + len("-dlq") <= 80
    assert native != native_name(aws_config.prefix, long_name + "x")
    queue = broker.queue(long_name)
    queue.send([b"fits"])
    assert [d.body for d in drain(queue, 1)] == [b"fits"]
    with pytest.raises(ConfigError):
        broker.queue("no_underscores")


@pytest.mark.usefixtures("broker")  # deletes the queues this test provisions by hand
def test_without_create_queues_must_exist_with_the_full_size_limit(
    aws_config: AwsConfig, sqs_client: Any
) -> None:
    broker = SqsBroker(replace(aws_config, create=False))
    native = native_name(aws_config.prefix, "provisioned")
    try:
        with pytest.raises(ConfigError, match="does not exist"):
            broker.queue("never-created")
        for name in (native, f"{native}-dlq"):
            sqs_client.create_queue(QueueName=name, Attributes={"MaximumMessageSize": "262144"})
        with pytest.raises(ConfigError, match="MaximumMessageSize"):
            broker.queue("provisioned")
        for name in (native, f"{native}-dlq"):
            url = sqs_client.get_queue_url(QueueName=name)["QueueUrl"]
            sqs_client.set_queue_attributes(
                QueueUrl=url, Attributes={"MaximumMessageSize": str(SQS_MAX_BYTES)}
            )
        queue = broker.queue("provisioned")
        queue.send([b"ready"])
        assert [d.body for d in drain(queue, 1)] == [b"ready"]
    finally:
        broker.close()
        broker.close()  # safe twice


def test_queue_close_is_safe_twice(broker: SqsBroker) -> None:
    queue: SqsQueue = broker.queue("closing")
    queue.close()
    queue.close()
