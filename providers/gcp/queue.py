"""Pub/Sub queues: `PubSubBroker` opens channels, `PubSubQueue` is one channel.

Resources of channel `name` (created by `ensure()` when missing, never deleted):

- topic and subscription `{prefix}-{name}`: the channel. The subscription's dead-letter
  policy (max_delivery_attempts = max_attempts clamped to Pub/Sub's 5..100) points at
  `{prefix}-{name}-dlq`, which makes Pub/Sub fill `delivery_attempt` and forward poison
  messages natively (the emulator forwards too: verified by the tests).
- topic and subscription `{prefix}-{name}-dlq`: the dead-letter channel, `dead_letters()`.
  Its own dead-letter policy points back at itself (100 attempts), only so that Pub/Sub
  counts its deliveries; a dead letter is never dropped.
- topic and subscription `{prefix}-{name}-delay`: messages of both channels waiting out a
  delay (`sb-to: dlq` marks those bound for the dead-letter channel).

Delayed delivery. Pub/Sub cannot hide a message at publish time, and a message held back
by ModifyAckDeadline on the channel's subscription would count each hold as a delivery
attempt (and toward the dead-letter policy). So a delayed message never enters the
channel until it is due: `send(delay=d)` and `release(delay=d)` publish it to the
`-delay` topic with the attribute `sb-not-before` (wall-clock epoch seconds). Every
`receive` first pumps the `-delay` subscription (at most every `_PUMP_INTERVAL` seconds):
due messages are republished to the channel topic and acked; the others get
ModifyAckDeadline(min(ceil(remaining), 600)) and come back when due (longer delays hop
every 600 s). That subscription has no dead-letter policy, so the hops count nowhere.
Consequences: a delayed message is delivered no earlier than its due time by the pumping
consumer's clock (keep clocks in sync), and only once some consumer calls `receive` on
the channel; `max_delay` stays below the 7-day retention of unacked messages.

Attempts. `attempt = sb-attempts + delivery_attempt`: a message republished by
`release(delay=...)` carries in `sb-attempts` the attempts it had used, because the copy's
own `delivery_attempt` starts again at 1 (`sb-dlq-attempts` on the dead-letter channel,
since Pub/Sub copies a forwarded message's attributes). Since such a copy restarts the
native counter, and Pub/Sub refuses a policy below 5 attempts, `receive` also enforces
`max_attempts` itself: a delivery beyond it is published to the dead-letter topic with a
reason and acked instead of returned. `release(delay=0)` is ModifyAckDeadline(0), a
native redelivery.

Leases. A pull holds messages for the subscription's 10 s ack deadline; `receive` then sets
ModifyAckDeadline(ceil(lease)) on the batch, so leases from 1 s to 600 s work (Pub/Sub
accepts 0..600 there; the 10 s minimum applies only to a subscription's default).
Fractional leases are rounded up to whole seconds. Every message carries `sb-id`, the id
that stays the same across redeliveries, republishing and dead-lettering.

Push. A message that Pub/Sub pushes to an endpoint (a push subscription or a CloudEvent
trigger, see `handlers.py`) becomes a `Delivery` through `pushed()`; it has no ack id, and
the endpoint's HTTP answer settles it. Its `dead_letter` publishes to the dead-letter
topic (the endpoint then answers 2xx, which acknowledges the original), and a pushed
`-delay` message is passed on by `forward_delayed()` once due.
"""

from __future__ import annotations

import math
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from switchboard.errors import ConfigError, LeaseLost, UnsupportedOperation
from switchboard.interfaces import Delivery, Queue, QueueCapabilities
from switchboard.limits import check_send
from switchboard.providers.gcp._google import lease_lost, pubsub_clients, translate
from switchboard.providers.gcp.config import GcpConfig

# A publish request may hold 10,000,000 bytes in all; keep room for the topic name, our
# attributes (a dead-letter reason is cut to 1024 bytes) and the protobuf framing.
MAX_MESSAGE_BYTES = 10_000_000 - 4096

CAPABILITIES = QueueCapabilities(
    max_message_bytes=MAX_MESSAGE_BYTES,
    max_batch=1000,
    max_delay=6 * 24 * 3600.0,
    max_lease=600.0,
    native_dead_letter=True,
)

ID = "sb-id"
ATTEMPTS = "sb-attempts"
#: Attempts used on the dead-letter channel; apart from ATTEMPTS, which Pub/Sub copies
#: onto the messages it forwards there.
DEAD_LETTER_ATTEMPTS = "sb-dlq-attempts"
#: On the delay topic: "dlq" sends the message to the dead-letter channel when due.
TO = "sb-to"
DEAD_LETTERS = "dlq"
NOT_BEFORE = "sb-not-before"
REASON = "sb-reason"
# Set by Pub/Sub on messages it forwards to a dead-letter topic.
NATIVE_DELIVERY_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"

# The interface promises letters, digits and hyphens; underscores are accepted too, since
# app names may hold them (the runtime names channels `{app}-{channel}`) and Pub/Sub allows
# them in topic and subscription names.
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_MAX_NAME = 255
_SUBSCRIPTION_ACK_DEADLINE = 10
_MAX_ACK_DEADLINE = 600
_MIN_NATIVE_ATTEMPTS, _MAX_NATIVE_ATTEMPTS = 5, 100
#: Shortest pull: the service needs a moment even when messages are waiting.
_MIN_PULL = 0.5
#: Longest single pull inside `receive`, so the delay pump keeps running while it waits.
_MAX_PULL = 1.0
_PUMP_PULL = 0.2
_PUMP_INTERVAL = 0.25
_PUBLISH_TIMEOUT = 60.0
_ACK_CHUNK = 1000
_MAX_REASON_BYTES = 1024
_RETENTION_SECONDS = 7 * 24 * 3600


@dataclass(slots=True)
class _Lease:
    """A delivery's handle: where and how to settle it, and until when we hold it."""

    subscription: str
    ack_id: str
    #: time.monotonic() when the lease ends, by our clock (a little before Pub/Sub's).
    expires: float

    def live(self) -> bool:
        return time.monotonic() < self.expires


@dataclass(frozen=True, slots=True)
class _Pushed:
    """A pushed delivery's handle: the push endpoint's HTTP answer settles it."""

    subscription: str


@dataclass(frozen=True, slots=True)
class _Names:
    topic: str
    subscription: str


@dataclass(frozen=True, slots=True)
class _Layout:
    """The Pub/Sub resources behind one channel name."""

    channel: _Names
    dead: _Names
    delay: _Names


class PubSubQueue:
    """One channel: a topic and its subscription, plus dead-letter and delay channels."""

    capabilities = CAPABILITIES

    def __init__(
        self,
        broker: PubSubBroker,
        name: str,
        max_attempts: int,
        layout: _Layout,
        *,
        dead: PubSubQueue | None,
    ) -> None:
        self.name = name
        self.max_attempts = max_attempts
        self._broker = broker
        self._layout = layout
        #: This channel's dead-letter queue; None when this queue is that channel.
        self._dead = dead
        self._channel = layout.channel if dead is not None else layout.dead
        # The two channels share the delay topic; `sb-to` says where a message goes when due.
        self._target = {} if dead is not None else {TO: DEAD_LETTERS}
        self._attempts = ATTEMPTS if dead is not None else DEAD_LETTER_ATTEMPTS
        self._next_pump = 0.0
        self._pump_lock = threading.Lock()

    # -- the Queue protocol ------------------------------------------------------------------

    def send(self, bodies: Sequence[bytes], *, delay: float = 0.0) -> None:
        check_send(self, bodies, delay)
        if delay > 0:
            held = {NOT_BEFORE: _not_before(delay), **self._target}
            self._broker.publish(
                self._layout.delay.topic,
                [(bytes(body), {ID: uuid.uuid4().hex, **held}) for body in bodies],
            )
        else:
            self._broker.publish(
                self._channel.topic, [(bytes(body), {ID: uuid.uuid4().hex}) for body in bodies]
            )

    def receive(
        self, max_messages: int = 1, *, wait: float = 0.0, lease: float = 30.0
    ) -> list[Delivery]:
        if not 1 <= max_messages <= CAPABILITIES.max_batch:
            raise UnsupportedOperation(
                f"queue {self.name!r} receives 1 to {CAPABILITIES.max_batch} messages at a "
                f"time, asked for {max_messages}"
            )
        seconds = _lease_seconds(lease, self.name)
        deadline = time.monotonic() + wait
        while True:
            self._pump_delayed()
            remaining = deadline - time.monotonic()
            pulled_at = time.monotonic()
            pulled = self._broker.pull(
                self._channel.subscription,
                max_messages,
                timeout=max(_MIN_PULL, min(remaining, _MAX_PULL)),
            )
            deliveries = self._admit(pulled, seconds, pulled_at)
            if deliveries:
                return deliveries
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            if not pulled:
                # The emulator answers an empty pull at once: do not spin on it.
                time.sleep(min(0.1, remaining))

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        by_subscription: dict[str, list[str]] = {}
        for delivery in deliveries:
            handle = _handle(delivery)
            by_subscription.setdefault(handle.subscription, []).append(handle.ack_id)
        for subscription, ack_ids in by_subscription.items():
            self._broker.acknowledge(subscription, ack_ids)

    def release(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        handle = self._held(delivery, "release")
        if delay <= 0:
            self._broker.modify_ack_deadline(handle.subscription, [handle.ack_id], 0)
            handle.expires = 0.0
            return
        if delay > CAPABILITIES.max_delay:
            raise UnsupportedOperation(
                f"queue {self.name!r} delays at most {CAPABILITIES.max_delay}s, asked for {delay}s"
            )
        attributes = {
            ID: delivery.id,
            self._attempts: str(delivery.attempt),
            NOT_BEFORE: _not_before(delay),
            **self._target,
        }
        self._broker.publish(self._layout.delay.topic, [(delivery.body, attributes)])
        self._broker.acknowledge(handle.subscription, [handle.ack_id])
        handle.expires = 0.0

    def extend(self, delivery: Delivery, lease: float) -> None:
        seconds = _lease_seconds(lease, self.name)
        handle = self._held(delivery, "extend")
        started = time.monotonic()
        self._broker.modify_ack_deadline(handle.subscription, [handle.ack_id], seconds)
        handle.expires = started + seconds

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        if self._dead is None:
            raise UnsupportedOperation(f"{self.name!r} is itself a dead-letter channel")
        if isinstance(delivery.handle, _Pushed):
            self._dead_letter([(delivery.body, delivery.id, reason)])
            return
        handle = self._held(delivery, "dead_letter")
        self._dead_letter([(delivery.body, delivery.id, reason)])
        self._broker.acknowledge(handle.subscription, [handle.ack_id])
        handle.expires = 0.0

    def dead_letters(self) -> Queue:
        if self._dead is None:
            raise UnsupportedOperation(f"{self.name!r} is itself a dead-letter channel")
        return self._dead

    def close(self) -> None:
        """Nothing to release: the broker owns the clients (`PubSubBroker.close`)."""

    # -- push delivery ----------------------------------------------------------------------

    def pushed(
        self,
        data: bytes,
        attributes: Mapping[str, str],
        message_id: str,
        *,
        delivery_attempt: int | None,
        subscription: str,
    ) -> Delivery | None:
        """The `Delivery` of a message Pub/Sub pushed from this channel's subscription.

        None when the message is past `max_attempts`: it has then been published to the
        dead-letter topic, and the endpoint should acknowledge it (answer 2xx).
        `delivery_attempt` is Pub/Sub's count (present when the subscription has a
        dead-letter policy); without it the delivery counts as a first one.
        """
        attempt = _int(attributes.get(self._attempts)) + max(1, delivery_attempt or 1)
        delivery_id = str(attributes.get(ID) or message_id)
        if self._dead is not None and attempt > self.max_attempts:
            exhausted = f"delivered {self.max_attempts} times (max_attempts) without being acked"
            self._dead_letter([(data, delivery_id, exhausted)])
            return None
        reason = None
        if self._dead is None:
            reason = attributes.get(REASON) or _native_reason(attributes)
        return Delivery(data, delivery_id, attempt, _Pushed(subscription), reason)

    def forward_delayed(self, data: bytes, attributes: Mapping[str, str]) -> float:
        """Pass a message pushed from the `-delay` subscription on to its channel (or its
        dead-letter channel) if it is due, and return 0; else return the seconds left."""
        remaining = _float(attributes.get(NOT_BEFORE)) - time.time()
        if remaining > 0:
            return remaining
        to_dead = attributes.get(TO) == DEAD_LETTERS
        topic = (self._layout.dead if to_dead else self._layout.channel).topic
        kept = {key: value for key, value in attributes.items() if key not in (NOT_BEFORE, TO)}
        self._broker.publish(topic, [(data, kept)])
        return 0.0

    # -- internals --------------------------------------------------------------------------

    def _admit(self, pulled: Sequence[Any], lease_seconds: int, pulled_at: float) -> list[Delivery]:
        """Turn pulled messages into deliveries; dead-letter those past `max_attempts`.

        Leases are timed from before the pull, so ours ends a little before Pub/Sub's.
        """
        deliveries: list[Delivery] = []
        exhausted: list[Any] = []
        for received in pulled:
            message = received.message
            attributes = message.attributes
            attempt = _int(attributes.get(self._attempts)) + max(1, received.delivery_attempt)
            if self._dead is None:
                reason = attributes.get(REASON) or _native_reason(attributes)
            else:
                reason = None
                if attempt > self.max_attempts:
                    exhausted.append(received)
                    continue
            handle = _Lease(self._channel.subscription, received.ack_id, pulled_at + lease_seconds)
            deliveries.append(
                Delivery(bytes(message.data), _message_id(message), attempt, handle, reason)
            )
        if exhausted:
            reason = f"delivered {self.max_attempts} times (max_attempts) without being acked"
            self._dead_letter(
                [
                    (bytes(received.message.data), _message_id(received.message), reason)
                    for received in exhausted
                ]
            )
            self._broker.acknowledge(
                self._channel.subscription, [received.ack_id for received in exhausted]
            )
        if deliveries and lease_seconds != _SUBSCRIPTION_ACK_DEADLINE:
            self._broker.modify_ack_deadline(
                self._channel.subscription,
                [_handle(delivery).ack_id for delivery in deliveries],
                lease_seconds,
            )
        return deliveries

    def _dead_letter(self, messages: Sequence[tuple[bytes, str, str]]) -> None:
        """Publish (body, id, reason) triples to the dead-letter topic."""
        self._broker.publish(
            self._layout.dead.topic,
            [
                (body, {ID: message_id, REASON: _cut(reason)})
                for body, message_id, reason in messages
            ],
        )

    def _pump_delayed(self) -> None:
        """Move due messages from the delay subscription to their channel; hold the rest."""
        delay = self._layout.delay
        with self._pump_lock:
            if time.monotonic() < self._next_pump:
                return
            self._next_pump = time.monotonic() + _PUMP_INTERVAL
        pulled = self._broker.pull(delay.subscription, 100, timeout=_PUMP_PULL)
        now = time.time()
        due: dict[str, list[Any]] = {}
        holds: dict[int, list[str]] = {}
        for received in pulled:
            attributes = received.message.attributes
            remaining = _float(attributes.get(NOT_BEFORE)) - now
            if remaining <= 0:
                to_dead = attributes.get(TO) == DEAD_LETTERS
                topic = (self._layout.dead if to_dead else self._layout.channel).topic
                due.setdefault(topic, []).append(received)
            else:
                seconds = min(math.ceil(remaining), _MAX_ACK_DEADLINE)
                holds.setdefault(seconds, []).append(received.ack_id)
        for seconds, ack_ids in holds.items():
            self._broker.modify_ack_deadline(delay.subscription, ack_ids, seconds)
        for topic, messages in due.items():
            self._broker.publish(
                topic,
                [
                    (
                        bytes(received.message.data),
                        {
                            key: value
                            for key, value in received.message.attributes.items()
                            if key not in (NOT_BEFORE, TO)
                        },
                    )
                    for received in messages
                ],
            )
            self._broker.acknowledge(delay.subscription, [received.ack_id for received in messages])

    def _held(self, delivery: Delivery, action: str) -> _Lease:
        handle = _handle(delivery)
        if handle.subscription != self._channel.subscription:
            raise UnsupportedOperation(
                f"{action}: delivery {delivery.id} was not received from queue {self.name!r}"
            )
        if not handle.live():
            raise LeaseLost(
                f"{action}: the lease on message {delivery.id} in queue {self.name!r} has "
                "expired; the message will be delivered again"
            )
        return handle


class PubSubBroker:
    """Opens Pub/Sub channels in one project; owns the publisher and subscriber clients."""

    capabilities = CAPABILITIES

    def __init__(self, config: GcpConfig) -> None:
        self._config = config
        self._publisher, self._subscriber = pubsub_clients(config)
        self._queues: dict[tuple[str, int], PubSubQueue] = {}
        self._lock = threading.Lock()
        self._closed = False

    def queue(self, name: str, *, max_attempts: int = 5) -> PubSubQueue:
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"queue name {name!r} must hold only letters, digits, hyphens and underscores"
            )
        longest = f"{self._config.prefix}-{name}-delay"
        if len(longest) > _MAX_NAME:
            raise ConfigError(
                f"queue name {name!r} is too long: Pub/Sub names hold at most {_MAX_NAME} "
                f"characters, and {longest!r} has {len(longest)}"
            )
        if not 1 <= max_attempts <= _MAX_NATIVE_ATTEMPTS:
            raise UnsupportedOperation(
                f"Pub/Sub counts at most {_MAX_NATIVE_ATTEMPTS} delivery attempts; "
                f"max_attempts={max_attempts} is out of 1..{_MAX_NATIVE_ATTEMPTS}"
            )
        with self._lock:
            queue = self._queues.get((name, max_attempts))
            if queue is None:
                queue = self._open(name, max_attempts)
                self._queues[(name, max_attempts)] = queue
            return queue

    def ensure(self, name: str, *, max_attempts: int = 5) -> None:
        """Create the channel's topics and subscriptions if missing (idempotent).

        An existing channel subscription whose dead-letter policy differs gets this one:
        the last opener's `max_attempts` decides when Pub/Sub forwards natively (each
        queue still enforces its own `max_attempts` on receive).
        """
        layout = self._layout(name)
        channel, dead, delay = layout.channel, layout.dead, layout.delay
        for topic in (channel.topic, dead.topic, delay.topic):
            self._create_topic(topic)
        self._create_subscription(dead, dead_letter_topic=dead.topic, attempts=100)
        self._create_subscription(delay, dead_letter_topic=None, attempts=0)
        native = min(max(max_attempts, _MIN_NATIVE_ATTEMPTS), _MAX_NATIVE_ATTEMPTS)
        self._create_subscription(channel, dead_letter_topic=dead.topic, attempts=native)

    def route(self, resource: str) -> tuple[str, str] | None:
        """The channel name and role ("channel", "delay" or "dlq") of one of this broker's
        topics or subscriptions (`projects/P/topics/T`, `projects/P/subscriptions/S`);
        None for a resource that is not ours."""
        for kind in ("subscriptions", "topics"):
            start = f"projects/{self._config.project}/{kind}/{self._config.prefix}-"
            if resource.startswith(start):
                name = resource[len(start) :]
                break
        else:
            return None
        for role, suffix in (("delay", "-delay"), ("dlq", "-dlq")):
            if name.endswith(suffix):
                return name[: -len(suffix)], role
        return name, "channel"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._publisher.stop()
        self._subscriber.close()

    # -- RPCs shared by this broker's queues ------------------------------------------------

    def publish(self, topic: str, messages: Iterable[tuple[bytes, dict[str, str]]]) -> None:
        """Publish a batch and wait for every message; any failure raises."""
        try:
            futures = [
                self._publisher.publish(topic, body, **attributes) for body, attributes in messages
            ]
        except Exception as exc:
            raise translate(exc, f"publish to {topic}") from exc
        failures: list[BaseException] = []
        for future in futures:
            try:
                future.result(timeout=_PUBLISH_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - collected, translated below
                failures.append(exc)
        if failures:
            raise translate(failures[0], f"publish to {topic} ({len(failures)} failed)") from (
                failures[0]
            )

    def pull(self, subscription: str, max_messages: int, *, timeout: float) -> list[Any]:
        """One synchronous pull; an empty subscription gives [] once `timeout` passes."""
        from google.api_core import exceptions as google

        try:
            response = self._subscriber.pull(
                request={"subscription": subscription, "max_messages": max_messages},
                timeout=timeout,
                retry=None,
            )
        except google.DeadlineExceeded:
            return []
        except Exception as exc:
            raise translate(exc, f"pull from {subscription}") from exc
        return list(response.received_messages)

    def acknowledge(self, subscription: str, ack_ids: Sequence[str]) -> None:
        for start in range(0, len(ack_ids), _ACK_CHUNK):
            try:
                self._subscriber.acknowledge(
                    request={
                        "subscription": subscription,
                        "ack_ids": list(ack_ids[start : start + _ACK_CHUNK]),
                    }
                )
            except Exception as exc:
                raise lease_lost(exc, f"ack on {subscription}") from exc

    def modify_ack_deadline(self, subscription: str, ack_ids: Sequence[str], seconds: int) -> None:
        for start in range(0, len(ack_ids), _ACK_CHUNK):
            try:
                self._subscriber.modify_ack_deadline(
                    request={
                        "subscription": subscription,
                        "ack_ids": list(ack_ids[start : start + _ACK_CHUNK]),
                        "ack_deadline_seconds": seconds,
                    }
                )
            except Exception as exc:
                raise lease_lost(exc, f"modify ack deadline on {subscription}") from exc

    # -- internals --------------------------------------------------------------------------

    def _open(self, name: str, max_attempts: int) -> PubSubQueue:
        if self._config.create:
            self.ensure(name, max_attempts=max_attempts)
        layout = self._layout(name)
        dead = PubSubQueue(self, f"{name}-dlq", _MAX_NATIVE_ATTEMPTS, layout, dead=None)
        return PubSubQueue(self, name, max_attempts, layout, dead=dead)

    def _layout(self, name: str) -> _Layout:
        project, base = self._config.project, f"{self._config.prefix}-{name}"

        def names(suffix: str) -> _Names:
            return _Names(
                f"projects/{project}/topics/{base}{suffix}",
                f"projects/{project}/subscriptions/{base}{suffix}",
            )

        return _Layout(names(""), names("-dlq"), names("-delay"))

    def _create_topic(self, topic: str) -> None:
        from google.api_core import exceptions as google

        try:
            self._publisher.create_topic(request={"name": topic})
        except google.AlreadyExists:
            pass
        except Exception as exc:
            raise translate(exc, f"create topic {topic}") from exc

    def _create_subscription(
        self, names: _Names, *, dead_letter_topic: str | None, attempts: int
    ) -> None:
        from google.api_core import exceptions as google

        request: dict[str, Any] = {
            "name": names.subscription,
            "topic": names.topic,
            "ack_deadline_seconds": _SUBSCRIPTION_ACK_DEADLINE,
            "message_retention_duration": {"seconds": _RETENTION_SECONDS},
        }
        if dead_letter_topic is not None:
            request["dead_letter_policy"] = {
                "dead_letter_topic": dead_letter_topic,
                "max_delivery_attempts": attempts,
            }
        try:
            self._subscriber.create_subscription(request=request)
            return
        except google.AlreadyExists:
            pass
        except Exception as exc:
            raise translate(exc, f"create subscription {names.subscription}") from exc
        if dead_letter_topic is None:
            return
        try:
            existing = self._subscriber.get_subscription(
                request={"subscription": names.subscription}
            )
            policy = existing.dead_letter_policy
            if (policy.dead_letter_topic, policy.max_delivery_attempts) != (
                dead_letter_topic,
                attempts,
            ):
                self._subscriber.update_subscription(
                    request={
                        "subscription": {
                            "name": names.subscription,
                            "dead_letter_policy": request["dead_letter_policy"],
                        },
                        "update_mask": {"paths": ["dead_letter_policy"]},
                    }
                )
        except Exception as exc:
            raise translate(exc, f"update subscription {names.subscription}") from exc


def _handle(delivery: Delivery) -> _Lease:
    handle = delivery.handle
    if isinstance(handle, _Pushed):
        raise UnsupportedOperation(
            f"delivery {delivery.id} was pushed: the push endpoint's HTTP answer settles it"
        )
    if not isinstance(handle, _Lease):
        raise UnsupportedOperation(f"delivery {delivery.id} did not come from a Pub/Sub queue")
    return handle


def _lease_seconds(lease: float, name: str) -> int:
    if not 0 < lease <= CAPABILITIES.max_lease:
        raise UnsupportedOperation(
            f"queue {name!r} leases for more than 0 and at most {CAPABILITIES.max_lease}s, "
            f"asked for {lease}s"
        )
    return math.ceil(lease)


def _not_before(delay: float) -> str:
    return repr(time.time() + delay)


def _message_id(message: Any) -> str:
    """Ours, kept across republishing; Pub/Sub's for a message published by someone else."""
    return str(message.attributes.get(ID) or message.message_id)


def _native_reason(attributes: Any) -> str | None:
    count = attributes.get(NATIVE_DELIVERY_COUNT)
    if count is None:
        return None
    return f"delivered {count} times without being acked (Pub/Sub dead-letter policy)"


def _cut(reason: str) -> str:
    """Pub/Sub attribute values hold at most 1024 bytes."""
    encoded = reason.encode()
    if len(encoded) <= _MAX_REASON_BYTES:
        return reason
    return encoded[: _MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."


def _int(text: str | None) -> int:
    try:
        return int(text) if text else 0
    except ValueError:
        return 0


def _float(text: str | None) -> float:
    try:
        return float(text) if text else 0.0
    except ValueError:
        return 0.0
