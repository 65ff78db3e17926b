"""Our Service Bus test broker, proven only through the real azure-servicebus SDK.

One test per behaviour the Azure provider relies on. Each test gets its own queue (queues
are created on first use) with a 1 s lock duration, so expiry tests stay fast.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

pytest.importorskip("azure.servicebus")
pytest.importorskip("proton")

from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusReceiver,
    ServiceBusSender,
    ServiceBusSubQueue,
)
from azure.servicebus.exceptions import (
    MessageLockLostError,
    MessageSizeExceededError,
)

from tests.emulators.servicebus import Broker, start_broker, start_broker_process

pytestmark = pytest.mark.timeout(60)

LOCK_SECONDS = 1.0


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    broker = start_broker()
    yield broker
    broker.stop()


#: Receivers closing in the background (see `open_receiver`), joined before their client closes.
CLOSING: list[threading.Thread] = []


def join_closing() -> None:
    while CLOSING:
        CLOSING.pop().join()


@pytest.fixture(scope="module")
def client(broker: Broker) -> Iterator[ServiceBusClient]:
    """One client for the module: it only makes handlers, each with its own connection."""
    client = ServiceBusClient.from_connection_string(broker.connection_string)
    yield client
    join_closing()
    client.close()


@pytest.fixture
def queue(broker: Broker) -> str:
    """A fresh queue with a short lock, so expiry tests stay fast."""
    name = f"q-{uuid.uuid4().hex[:12]}"
    broker.configure_queue(name, lock_duration=LOCK_SECONDS)
    return name


def sender(client: ServiceBusClient, queue: str) -> ServiceBusSender:
    # keep_alive=0: no keep-alive thread, whose 1 s sleep the sender's close otherwise waits
    # out (it has to be given per sender: the client-level option does not reach it).
    return client.get_queue_sender(queue, keep_alive=0)


@contextmanager
def open_receiver(
    client: ServiceBusClient, queue: str, **options: object
) -> Iterator[ServiceBusReceiver]:
    """`with client.get_queue_receiver(queue, **options)`, but closed on a background thread:
    after sending its detach and close frames, the SDK's close waits up to a second for the
    receiver's keep-alive thread (a prefetch-0 receiver always has one) to end its sleep."""
    opened = client.get_queue_receiver(queue, **options)  # type: ignore[arg-type]
    try:
        yield opened.__enter__()  # opens the link, as `with` does
    finally:
        closer = threading.Thread(target=opened.close, name=f"close-{queue}")
        closer.start()
        CLOSING.append(closer)


def send(client: ServiceBusClient, queue: str, *messages: ServiceBusMessage) -> None:
    with sender(client, queue) as queue_sender:
        queue_sender.send_messages(list(messages))


def receive_one(
    client: ServiceBusClient, queue: str, *, wait: float = 5.0, **receiver_options: object
) -> ServiceBusReceivedMessage:
    with open_receiver(client, queue, **receiver_options) as receiver:
        messages = receiver.receive_messages(max_message_count=1, max_wait_time=wait)
    assert len(messages) == 1, f"expected one message on {queue}, got {messages}"
    return messages[0]


def test_send_keeps_body_message_id_and_application_properties(
    client: ServiceBusClient, queue: str
) -> None:
    send(
        client,
        queue,
        ServiceBusMessage(
            "hello", message_id="m-1", application_properties={"kind": "greeting", "n": 7}
        ),
    )

    with open_receiver(client, queue) as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.complete_message(message)

    assert str(message) == "hello"
    assert message.message_id == "m-1"
    assert message.application_properties == {b"kind": b"greeting", b"n": 7}


def test_batch_send_delivers_every_message_of_the_batch(
    client: ServiceBusClient, queue: str
) -> None:
    with sender(client, queue) as queue_sender:
        batch = queue_sender.create_message_batch()
        for i in range(3):
            batch.add_message(
                ServiceBusMessage(
                    f"body-{i}", message_id=f"id-{i}", application_properties={"i": i}
                )
            )
        queue_sender.send_messages(batch)

    with open_receiver(client, queue) as receiver:
        messages = receiver.receive_messages(max_message_count=3, max_wait_time=5)
        for message in messages:
            receiver.complete_message(message)

    assert [str(m) for m in messages] == ["body-0", "body-1", "body-2"]
    assert [m.message_id for m in messages] == ["id-0", "id-1", "id-2"]
    assert [m.application_properties for m in messages] == [{b"i": 0}, {b"i": 1}, {b"i": 2}]
    assert [m.sequence_number for m in messages] == [1, 2, 3]


def test_peek_lock_receive_carries_lock_token_and_broker_properties(
    client: ServiceBusClient, queue: str
) -> None:
    before = datetime.now(UTC)
    send(client, queue, ServiceBusMessage("locked"))

    with open_receiver(client, queue) as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        received_at = datetime.now(UTC)
        annotations = message.raw_amqp_message.annotations
        assert annotations is not None
        locked_until_utc = message.locked_until_utc  # the SDK forgets it once settled
        receiver.complete_message(message)

    assert isinstance(message._delivery_tag, bytes)  # the lock token travels as the tag
    assert uuid.UUID(bytes_le=message._delivery_tag) == annotations[b"x-opt-lock-token"]
    assert message.sequence_number == 1
    assert message.delivery_count == 0
    assert message.enqueued_time_utc is not None
    assert before - timedelta(seconds=1) <= message.enqueued_time_utc <= datetime.now(UTC)
    locked_until = datetime.fromtimestamp(annotations[b"x-opt-locked-until"] / 1000, UTC)
    assert received_at < locked_until <= received_at + timedelta(seconds=LOCK_SECONDS)
    assert locked_until_utc == locked_until


def test_receive_sends_no_more_messages_than_the_credit_given(
    client: ServiceBusClient, queue: str
) -> None:
    send(client, queue, *(ServiceBusMessage(f"m{i}") for i in range(5)))

    with open_receiver(client, queue) as receiver:
        first = receiver.receive_messages(max_message_count=2, max_wait_time=5)
        for message in first:
            receiver.complete_message(message)
        rest = receiver.receive_messages(max_message_count=3, max_wait_time=5)
        for message in rest:
            receiver.complete_message(message)

    assert [str(m) for m in first] == ["m0", "m1"]
    assert [str(m) for m in rest] == ["m2", "m3", "m4"]


def test_receive_returns_nothing_after_max_wait_time_on_an_empty_queue(
    client: ServiceBusClient, queue: str
) -> None:
    with open_receiver(client, queue) as receiver:
        started = time.monotonic()
        messages = receiver.receive_messages(max_message_count=1, max_wait_time=1)
        waited = time.monotonic() - started

    assert messages == []
    assert 0.9 <= waited < 5


def test_complete_removes_the_message_and_is_confirmed_promptly(
    client: ServiceBusClient, queue: str
) -> None:
    send(client, queue, ServiceBusMessage("done"))

    with open_receiver(client, queue) as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        started = time.monotonic()
        receiver.complete_message(message)  # waits for the broker's settled echo
        settle_seconds = time.monotonic() - started
        # Past the lock duration: a completed message must not come back.
        leftover = receiver.receive_messages(max_message_count=1, max_wait_time=LOCK_SECONDS + 0.5)

    assert settle_seconds < 1
    assert leftover == []


def test_abandon_redelivers_with_delivery_count_plus_one(
    client: ServiceBusClient, queue: str
) -> None:
    send(client, queue, ServiceBusMessage("again"))

    with open_receiver(client, queue) as receiver:
        [first] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        first_token = first.lock_token  # the SDK forgets it once settled
        receiver.abandon_message(first)
        [second] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        second_token = second.lock_token
        receiver.complete_message(second)

    assert (first.delivery_count, second.delivery_count) == (0, 1)
    assert first.sequence_number == second.sequence_number
    assert first_token != second_token


def test_dead_letter_keeps_reason_and_description_on_the_dead_letter_queue(
    client: ServiceBusClient, queue: str
) -> None:
    send(client, queue, ServiceBusMessage("poison", message_id="p-1"))
    with open_receiver(client, queue) as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.dead_letter_message(message, reason="BadInput", error_description="no parse")
        assert receiver.receive_messages(max_message_count=1, max_wait_time=1) == []

    with open_receiver(client, queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
        [dead] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.complete_message(dead)

    assert (str(dead), dead.message_id) == ("poison", "p-1")
    assert dead.dead_letter_reason == "BadInput"
    assert dead.dead_letter_error_description == "no parse"
    assert dead.application_properties is not None
    assert dead.application_properties[b"DeadLetterReason"] == b"BadInput"
    assert dead.application_properties[b"DeadLetterErrorDescription"] == b"no parse"
    assert dead.dead_letter_source == queue


def test_dead_letter_queue_is_a_readable_sub_queue_that_empties_on_complete(
    client: ServiceBusClient, queue: str
) -> None:
    send(client, queue, ServiceBusMessage("a"), ServiceBusMessage("b"))
    with open_receiver(client, queue) as receiver:
        for message in receiver.receive_messages(max_message_count=2, max_wait_time=5):
            receiver.dead_letter_message(message, reason="r")

    with open_receiver(client, queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
        peeked = receiver.peek_messages(max_message_count=10)
        dead = receiver.receive_messages(max_message_count=2, max_wait_time=5)
        for message in dead:
            receiver.complete_message(message)
        # sequence_number=1: the SDK otherwise peeks on from the last peeked message.
        after = receiver.peek_messages(max_message_count=10, sequence_number=1)

    assert sorted(str(m) for m in peeked) == ["a", "b"]
    assert sorted(str(m) for m in dead) == ["a", "b"]
    assert after == []


def test_lock_expiry_redelivers_with_delivery_count_plus_one(
    client: ServiceBusClient, queue: str
) -> None:
    send(client, queue, ServiceBusMessage("slow"))

    with open_receiver(client, queue) as receiver:
        [first] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        # Not settled: after the lock duration the broker makes it available again.
        [second] = receiver.receive_messages(max_message_count=1, max_wait_time=LOCK_SECONDS + 3)
        second_token = second.lock_token
        receiver.complete_message(second)

    assert (first.delivery_count, second.delivery_count) == (0, 1)
    assert first.lock_token != second_token


def test_complete_after_lock_expiry_raises_message_lock_lost(
    client: ServiceBusClient, queue: str
) -> None:
    send(client, queue, ServiceBusMessage("late"))

    with open_receiver(client, queue) as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        time.sleep(LOCK_SECONDS + 0.3)
        with pytest.raises(MessageLockLostError):
            receiver.complete_message(message)  # the SDK knows locked_until: refused locally
        with pytest.raises(MessageLockLostError):
            receiver.renew_message_lock(message)  # refused by the broker (410, lock lost)
        [redelivered] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.complete_message(redelivered)

    assert redelivered.delivery_count == 1


def test_renew_lock_extends_the_lock_past_its_first_expiry(
    client: ServiceBusClient, queue: str
) -> None:
    send(client, queue, ServiceBusMessage("long job"))

    with open_receiver(client, queue) as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        first_expiry = message.locked_until_utc
        assert first_expiry is not None
        time.sleep(LOCK_SECONDS / 2)
        renewed = receiver.renew_message_lock(message)
        seen_by_sdk = message.locked_until_utc
        time.sleep(LOCK_SECONDS / 2 + 0.3)  # now past the first expiry
        receiver.complete_message(message)
        leftover = receiver.receive_messages(max_message_count=1, max_wait_time=LOCK_SECONDS)

    assert renewed > first_expiry
    assert seen_by_sdk == renewed
    assert leftover == []


def test_scheduled_message_stays_hidden_until_its_time(
    client: ServiceBusClient, queue: str
) -> None:
    with sender(client, queue) as queue_sender:
        when = datetime.now(UTC) + timedelta(seconds=2)
        [sequence_number] = queue_sender.schedule_messages(ServiceBusMessage("later"), when)

    with open_receiver(client, queue) as receiver:
        early = receiver.receive_messages(max_message_count=1, max_wait_time=0.5)
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        received_at = datetime.now(UTC)
        receiver.complete_message(message)

    assert early == []
    assert message.sequence_number == sequence_number
    assert str(message) == "later"
    assert received_at >= when - timedelta(milliseconds=100)


def test_cancelled_scheduled_message_is_never_delivered(
    client: ServiceBusClient, queue: str
) -> None:
    with sender(client, queue) as queue_sender:
        when = datetime.now(UTC) + timedelta(seconds=1)
        numbers = queue_sender.schedule_messages(
            [ServiceBusMessage("x"), ServiceBusMessage("y")], when
        )
        queue_sender.cancel_scheduled_messages(numbers[0])

    with open_receiver(client, queue) as receiver:
        messages = receiver.receive_messages(max_message_count=2, max_wait_time=2.5)
        for message in messages:
            receiver.complete_message(message)

    assert [str(m) for m in messages] == ["y"]


def test_peek_browses_in_sequence_order_without_locking(
    client: ServiceBusClient, queue: str
) -> None:
    send(client, queue, *(ServiceBusMessage(f"m{i}") for i in range(3)))

    with open_receiver(client, queue) as receiver:
        peeked = receiver.peek_messages(max_message_count=2)
        from_second = receiver.peek_messages(max_message_count=10, sequence_number=2)
        received = receiver.receive_messages(max_message_count=3, max_wait_time=5)
        for message in received:
            receiver.complete_message(message)
        nothing = receiver.peek_messages(max_message_count=10, sequence_number=1)

    assert [(str(m), m.sequence_number) for m in peeked] == [("m0", 1), ("m1", 2)]
    assert [str(m) for m in from_second] == ["m1", "m2"]
    assert [m.delivery_count for m in received] == [0, 0, 0]  # peeking took no lock
    assert nothing == []


def test_max_delivery_count_moves_the_message_to_the_dead_letter_queue(
    broker: Broker, client: ServiceBusClient, queue: str
) -> None:
    broker.configure_queue(queue, max_delivery_count=3)
    send(client, queue, ServiceBusMessage("poison"))

    counts = []
    with open_receiver(client, queue) as receiver:
        for _ in range(3):
            [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            counts.append(message.delivery_count)
            receiver.abandon_message(message)
        leftover = receiver.receive_messages(max_message_count=1, max_wait_time=1)

    dead = receive_one(client, queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
    assert counts == [0, 1, 2]
    assert leftover == []
    assert str(dead) == "poison"
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
    assert dead.dead_letter_error_description == (
        "Message could not be consumed after 3 delivery attempts."
    )


def test_receive_and_delete_removes_messages_as_they_are_received(
    client: ServiceBusClient, queue: str
) -> None:
    send(client, queue, ServiceBusMessage("once"))

    with open_receiver(
        client, queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
    ) as receiver:
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        # Past the lock duration: nothing was locked, so nothing comes back.
        leftover = receiver.receive_messages(max_message_count=1, max_wait_time=LOCK_SECONDS + 0.5)

    assert str(message) == "once"
    assert message.lock_token is None or message.locked_until_utc is None
    assert leftover == []


def test_message_over_256_kib_is_rejected_with_message_size_exceeded(
    client: ServiceBusClient, queue: str
) -> None:
    with sender(client, queue) as queue_sender:
        assert queue_sender.create_message_batch().max_size_in_bytes == 256 * 1024
        with pytest.raises(MessageSizeExceededError):
            queue_sender.send_messages(ServiceBusMessage(b"x" * (256 * 1024 + 1)))
        queue_sender.send_messages(ServiceBusMessage(b"y" * (200 * 1024)))  # the link still works

    message = receive_one(client, queue)
    assert len(b"".join(message.body)) == 200 * 1024


def test_broker_runs_as_a_process_with_command_line_defaults() -> None:
    server, connection_string = start_broker_process(max_delivery_count=1, lock_duration=2)
    try:
        with ServiceBusClient.from_connection_string(connection_string) as client:
            send(client, "jobs", ServiceBusMessage("from a process"))
            with open_receiver(client, "jobs") as receiver:
                [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
                receiver.abandon_message(message)  # max delivery count 1: dead-lettered
            dead = receive_one(client, "jobs", sub_queue=ServiceBusSubQueue.DEAD_LETTER)
            join_closing()  # before this client and the broker process go
    finally:
        server.stop()

    assert str(dead) == "from a process"
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
    assert server.process is not None and server.process.returncode == 0
