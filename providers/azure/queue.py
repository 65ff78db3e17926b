"""Service Bus queues: `ServiceBusBroker` opens one queue per channel, `ServiceBusQueue` is it.

A channel `name` is the queue `{prefix}-{name}`, its dead-letter channel that queue's
`$DeadLetterQueue` sub-queue. Messages are received in peek-lock mode: `ack` completes,
`release` abandons (or, with a delay, schedules a copy and completes the original), `extend`
renews the lock, and Service Bus itself dead-letters a message after `MaxDeliveryCount`.

Leases: in Service Bus the lock duration is a property of the queue, not of a receive call.
Each queue keeps a small lease keeper thread that renews a lock while its lease lasts and
abandons the message when the lease ends first, so `lease` is honoured in either direction as
long as the receiving process lives. If it dies, the lock (and so the message) is freed after
the queue's lock duration (`lock_duration`, 30 s for queues this provider creates).
"""

from __future__ import annotations

import datetime
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from switchboard.errors import (
    ConfigError,
    LeaseLost,
    NotFound,
    ProviderError,
    TooLarge,
    TransientProviderError,
    UnsupportedOperation,
)
from switchboard.interfaces import Delivery, QueueCapabilities

if TYPE_CHECKING:
    from azure.servicebus import (
        ServiceBusClient,
        ServiceBusMessage,
        ServiceBusReceivedMessage,
        ServiceBusReceiver,
        ServiceBusSender,
    )
    from azure.servicebus.management import ServiceBusAdministrationClient

#: Standard tier: 256 KB per message, headers and properties included. Our messages carry a
#: message id and at most one small application property; 4 KiB covers them and AMQP framing.
MAX_MESSAGE_BYTES = 256 * 1024 - 4 * 1024
MAX_BATCH = 100
#: Scheduled messages have no documented horizon; a week keeps far-future timers in the core.
MAX_DELAY = 7 * 24 * 3600.0
#: Leases beyond the queue's lock duration are kept by renewing the lock; an hour bounds that.
MAX_LEASE = 3600.0
#: Lock duration of queues this provider creates (Service Bus allows 5 s to 5 min).
DEFAULT_LOCK_DURATION = 30.0

SERVICEBUS_QUEUE_CAPABILITIES = QueueCapabilities(
    max_message_bytes=MAX_MESSAGE_BYTES,
    max_batch=MAX_BATCH,
    max_delay=MAX_DELAY,
    max_lease=MAX_LEASE,
    native_dead_letter=True,
)

#: Application property of a delayed release's copy: deliveries its original already had.
PRIOR_ATTEMPTS = "switchboard-prior-attempts"
#: Application property carrying why a message was dead-lettered by copy (a Functions trigger
#: cannot dead-letter natively; see `ServiceBusQueue.send_dead_letter`).
DEAD_LETTER_REASON = "switchboard-dead-letter-reason"
#: The reason Service Bus gives when MaxDeliveryCount is exceeded; used for ours too.
MAX_DELIVERY_REASON = "MaxDeliveryCountExceeded"
#: A receive call is cut into polls this long so acks and lock renewals get their turn: a
#: settling thread waits for the poll in progress. The SDK reads its socket in steps of its
#: `socket_timeout` (0.2 s over AMQP), so a shorter poll would not end any sooner.
_POLL_SECONDS = 0.2
#: The shortest poll: the SDK returns at once, without asking for messages, given 0.
_MIN_POLL_SECONDS = 0.1
_KEEPER_TICK = 0.1
_LOG = logging.getLogger(__name__)
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9-]+")
_MAX_ENTITY_NAME = 260


class ServiceBusBroker:
    """Opens Service Bus queues named `{prefix}-{name}` on one namespace."""

    capabilities = SERVICEBUS_QUEUE_CAPABILITIES

    def __init__(
        self,
        client: ServiceBusClient,
        *,
        prefix: str = "switchboard",
        admin: ServiceBusAdministrationClient | None = None,
        lock_duration: float = DEFAULT_LOCK_DURATION,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._admin = admin
        self._lock_duration = lock_duration
        self._lock = threading.Lock()
        self._queues: list[ServiceBusQueue] = []
        self._closed = False

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        *,
        prefix: str = "switchboard",
        create: bool = True,
        lock_duration: float = DEFAULT_LOCK_DURATION,
    ) -> ServiceBusBroker:
        """A broker on the namespace of `connection_string`. With `create`, missing queues are
        created (and their MaxDeliveryCount set) through the management API, except on a
        development emulator (`UseDevelopmentEmulator=true`), which has no management API:
        there, queues come from the emulator's own configuration."""
        from azure.servicebus import ServiceBusClient
        from azure.servicebus.management import ServiceBusAdministrationClient

        try:
            client = ServiceBusClient.from_connection_string(connection_string)
            emulator = "usedevelopmentemulator=true" in connection_string.replace(" ", "").lower()
            admin = (
                ServiceBusAdministrationClient.from_connection_string(connection_string)
                if create and not emulator
                else None
            )
        except ValueError as error:
            raise ConfigError(
                f"the azure provider's setting 'servicebus_connection_string' is not valid: {error}"
            ) from None
        return cls(client, prefix=prefix, admin=admin, lock_duration=lock_duration)

    @classmethod
    def from_namespace(
        cls,
        namespace: str,
        credential: Any,
        *,
        prefix: str = "switchboard",
        create: bool = True,
        lock_duration: float = DEFAULT_LOCK_DURATION,
    ) -> ServiceBusBroker:
        """A broker on the fully qualified `namespace` (NAMESPACE.servicebus.windows.net),
        authenticated with `credential` (e.g. azure-identity's `DefaultAzureCredential`; the
        identity needs the Azure Service Bus Data Owner role, Manage rights for `create`)."""
        from azure.servicebus import ServiceBusClient
        from azure.servicebus.management import ServiceBusAdministrationClient

        host = namespace.removeprefix("sb://").strip("/")
        try:
            client = ServiceBusClient(host, credential)
            admin = ServiceBusAdministrationClient(host, credential) if create else None
        except ValueError as error:
            raise ConfigError(
                f"the azure provider's setting 'servicebus_namespace' is not valid: {error}"
            ) from None
        return cls(client, prefix=prefix, admin=admin, lock_duration=lock_duration)

    def queue(self, name: str, *, max_attempts: int = 5) -> ServiceBusQueue:
        if not _CHANNEL_NAME.fullmatch(name):
            raise ValueError(f"a channel name holds only letters, digits and hyphens: {name!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        entity = entity_name(self._prefix, name)
        if len(entity) > _MAX_ENTITY_NAME:
            raise ValueError(f"queue name {entity!r} is longer than {_MAX_ENTITY_NAME} characters")
        if self._admin is not None:
            self._provision(entity, max_attempts)
        with self._lock:
            if self._closed:
                raise ProviderError("this Service Bus broker is closed")
            queue = ServiceBusQueue(self._client, entity, name=name, max_attempts=max_attempts)
            self._queues.append(queue)
            return queue

    def _provision(self, entity: str, max_attempts: int) -> None:
        """Create the queue, or make its MaxDeliveryCount match `max_attempts`."""
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        assert self._admin is not None
        lock = datetime.timedelta(seconds=self._lock_duration)
        where = (
            f"provisioning queue {entity} (this needs Manage rights; without them set "
            f"create=False and create the queue with MaxDeliveryCount={max_attempts})"
        )
        with _translated(where):
            try:
                self._admin.create_queue(
                    entity, max_delivery_count=max_attempts, lock_duration=lock
                )
                return
            except ResourceExistsError:
                pass
            try:
                properties = self._admin.get_queue(entity)
            except ResourceNotFoundError:  # deleted in between: the next open creates it
                return
            if properties.max_delivery_count != max_attempts:
                properties.max_delivery_count = max_attempts
                self._admin.update_queue(properties)

    def close(self) -> None:
        """Close every queue opened here (see `ServiceBusQueue.close`), then the client once
        their links are closed, on a background thread that the process waits for at exit."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            queues, self._queues = self._queues, []
        closers: list[threading.Thread] = []
        for queue in queues:
            queue.close()
            closers.extend(queue.closers)
        client = self._client

        def close_client() -> None:
            for closer in closers:
                closer.join()
            _close_quietly(client, "the Service Bus client")

        threading.Thread(target=close_client, name="servicebus-close-client", daemon=False).start()
        if self._admin is not None:
            self._admin.close()


@dataclass(eq=False)
class _Lease:
    """One outstanding delivery, as the lease keeper sees it."""

    message: ServiceBusReceivedMessage
    #: When the lease ends (time.monotonic()); the message is abandoned then.
    deadline: float
    #: How long a lock lasts on this queue, measured at receive; renew when a third is left.
    lock_seconds: float


@dataclass(frozen=True)
class _Handle:
    queue: ServiceBusQueue
    lease: _Lease


class ServiceBusQueue:
    """One Service Bus queue (or, from `dead_letters()`, its dead-letter sub-queue).

    The SDK's senders and receivers are not thread-safe: each is used under its own lock.
    """

    capabilities = SERVICEBUS_QUEUE_CAPABILITIES

    def __init__(
        self,
        client: ServiceBusClient,
        entity: str,
        *,
        name: str,
        max_attempts: int,
        dead_letter_of: ServiceBusQueue | None = None,
    ) -> None:
        self.name = name
        self.max_attempts = max_attempts
        self.entity = entity
        self._client = client
        self._dead_letter_of = dead_letter_of
        self._sender: ServiceBusSender | None = None
        self._receiver: ServiceBusReceiver | None = None
        #: Opened handlers, closed with the queue. Opening them up front (as a `with` block
        #: does) matters: a receive call would cap the link's opening at its own short wait.
        self._handlers: list[_Closable] = []
        #: Threads closing this queue's handlers (and its dead-letter queue's) after `close`.
        self.closers: list[threading.Thread] = []
        self._send_lock = threading.Lock()
        self._receive_lock = threading.RLock()
        #: Threads waiting for the receive lock; a polling `receive` steps aside for them
        #: between polls (a plain lock lets the poller take it straight back).
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        self._leases: dict[int, _Lease] = {}
        self._keeper: threading.Thread | None = None
        self._stop = threading.Event()
        self._dead_letters: ServiceBusQueue | None = None
        self._closed = False

    # -- sending ----------------------------------------------------------------------------

    def send(self, bodies: Sequence[bytes], *, delay: float = 0.0) -> None:
        self._refuse_on_dead_letter_queue("send to")
        if len(bodies) > MAX_BATCH:
            raise UnsupportedOperation(f"at most {MAX_BATCH} bodies per send, got {len(bodies)}")
        _check_delay(delay)
        for body in bodies:
            if len(body) > MAX_MESSAGE_BYTES:
                raise TooLarge(
                    f"message of {len(body)} bytes exceeds the Service Bus limit of "
                    f"{MAX_MESSAGE_BYTES} bytes (256 KB Standard tier, less headers)"
                )
        from azure.servicebus import ServiceBusMessage

        messages = [ServiceBusMessage(bytes(body), message_id=uuid.uuid4().hex) for body in bodies]
        if messages:
            self._send_messages(messages, delay)

    def send_dead_letter(self, body: bytes, *, message_id: str, reason: str) -> None:
        """Enqueue `body` as a dead letter kept by copy: the message carries `reason` (in the
        application property `switchboard-dead-letter-reason`), which its deliveries report
        as `Delivery.reason`. For holders of a bare lock token, who cannot dead-letter."""
        self._refuse_on_dead_letter_queue("send to")
        if len(body) > MAX_MESSAGE_BYTES:
            raise TooLarge(f"message of {len(body)} bytes exceeds {MAX_MESSAGE_BYTES} bytes")
        from azure.servicebus import ServiceBusMessage

        message = ServiceBusMessage(
            bytes(body),
            message_id=message_id or uuid.uuid4().hex,
            application_properties={DEAD_LETTER_REASON: reason[:4096]},
        )
        self._send_messages([message], 0.0)

    def _send_messages(self, messages: list[ServiceBusMessage], delay: float) -> list[int]:
        """Send (or schedule, with a delay) in as few requests as fit; returns the scheduled
        messages' sequence numbers."""
        from azure.servicebus.exceptions import MessageSizeExceededError

        scheduled: list[int] = []
        with self._send_lock, _translated(f"sending to {self.entity}"):
            sender = self._open_sender()
            if delay > 0:
                at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=delay)
                for group in _groups_by_size(messages, MAX_MESSAGE_BYTES):
                    scheduled.extend(sender.schedule_messages(group, at))
                return scheduled
            batch = sender.create_message_batch()
            for message in messages:
                try:
                    batch.add_message(message)
                except MessageSizeExceededError:
                    sender.send_messages(batch)
                    batch = sender.create_message_batch()
                    batch.add_message(message)
            sender.send_messages(batch)
        return scheduled

    # -- receiving --------------------------------------------------------------------------

    def receive(
        self, max_messages: int = 1, *, wait: float = 0.0, lease: float = 30.0
    ) -> list[Delivery]:
        if not 1 <= max_messages <= MAX_BATCH:
            raise UnsupportedOperation(f"max_messages must be 1 to {MAX_BATCH}, got {max_messages}")
        _check_lease(lease)
        deadline = time.monotonic() + max(wait, 0.0)
        deliveries: list[Delivery] = []
        while True:
            remaining = deadline - time.monotonic()
            poll = min(max(remaining, _MIN_POLL_SECONDS), _POLL_SECONDS)
            self._step_aside()
            with self._receive_lock, _translated(f"receiving from {self.entity}"):
                self._keep_leases_due()
                receiver = self._open_receiver()
                messages = receiver.receive_messages(
                    max_message_count=max_messages - len(deliveries), max_wait_time=poll
                )
                for message in messages:
                    delivery = self._accept(message, lease)
                    if delivery is not None:
                        deliveries.append(delivery)
            if deliveries or time.monotonic() >= deadline:
                return deliveries

    def _accept(self, message: ServiceBusReceivedMessage, lease: float) -> Delivery | None:
        """Track a received message under its lease, or settle it here if it must not be
        handed out (called with the receive lock held)."""
        now = time.monotonic()
        lock_seconds = _seconds_until(message.locked_until_utc)
        if lock_seconds <= 0:
            # Credit left from an earlier call brought it in; its lock ran out while it waited
            # in the client's buffer, so the service is delivering it again already.
            return None
        attempt = _attempt(message)
        if self._dead_letter_of is None and attempt > self.max_attempts:
            # A delayed release's copy counts its original's deliveries, which the service's
            # MaxDeliveryCount does not see.
            self._open_receiver().dead_letter_message(
                message,
                reason=MAX_DELIVERY_REASON,
                error_description=f"delivery {attempt} would exceed max_attempts "
                f"{self.max_attempts}",
            )
            return None
        lease_state = _Lease(message, now + lease, lock_seconds)
        self._leases[id(lease_state)] = lease_state
        self._start_keeper()
        return Delivery(
            body=_body(message),
            id=str(message.message_id or message.sequence_number),
            attempt=attempt,
            handle=_Handle(self, lease_state),
            reason=message.dead_letter_reason
            if self._dead_letter_of is not None
            else _carried_reason(message),
        )

    # -- settling ---------------------------------------------------------------------------

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        lost: list[str] = []
        # One turn for the whole batch: a polling `receive` would otherwise slip in between
        # two completions, and each would wait out a poll.
        with self._turn():
            for delivery in deliveries:
                lease = self._lease_of(delivery)
                try:
                    with self._settling(lease, "completing", delivery) as receiver:
                        receiver.complete_message(lease.message)
                except LeaseLost:
                    lost.append(delivery.id)
        if lost:
            raise LeaseLost(
                f"the lease on {len(lost)} of {len(deliveries)} deliveries from {self.entity} "
                f"had expired before the ack ({', '.join(lost)}); they will be delivered again"
            )

    def release(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        lease = self._lease_of(delivery)
        if delay <= 0:
            with self._settling(lease, "abandoning", delivery) as receiver:
                receiver.abandon_message(lease.message)
            return
        self._refuse_on_dead_letter_queue("release with a delay on")
        _check_delay(delay)
        if delivery.attempt >= self.max_attempts:
            self.dead_letter(delivery, MAX_DELIVERY_REASON)
            return
        self._release_later(delivery, lease, delay)

    def _release_later(self, delivery: Delivery, lease: _Lease, delay: float) -> None:
        """Schedule a copy (same message id, attempts carried over), then complete the
        original; if the original's lock is gone, cancel the copy again."""
        from azure.servicebus import ServiceBusMessage

        original = lease.message
        properties: dict[str | bytes, Any] = {
            key: value for key, value in (original.application_properties or {}).items()
        }
        properties[PRIOR_ATTEMPTS] = delivery.attempt
        copy = ServiceBusMessage(
            delivery.body, message_id=original.message_id, application_properties=properties
        )
        sequence_numbers = self._send_messages([copy], delay)
        try:
            with self._settling(lease, "releasing", delivery) as receiver:
                receiver.complete_message(original)
        except LeaseLost:
            with self._send_lock, _translated(f"cancelling a copy on {self.entity}"):
                self._open_sender().cancel_scheduled_messages(sequence_numbers)
            raise

    def extend(self, delivery: Delivery, lease: float) -> None:
        _check_lease(lease)
        state = self._lease_of(delivery)
        with self._turn():
            if id(state) not in self._leases:
                raise LeaseLost(
                    f"delivery {delivery.id} from {self.entity} is no longer held (its lease "
                    f"ended or it was settled)"
                )
            with _translated(f"renewing the lock of {delivery.id} on {self.entity}"):
                self._open_receiver().renew_message_lock(state.message)
            state.deadline = time.monotonic() + lease

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._refuse_on_dead_letter_queue("dead-letter from")
        lease = self._lease_of(delivery)
        with self._settling(lease, "dead-lettering", delivery) as receiver:
            receiver.dead_letter_message(lease.message, reason=reason, error_description=reason)

    def dead_letters(self) -> ServiceBusQueue:
        self._refuse_on_dead_letter_queue("take the dead-letter channel of")
        with self._turn():
            if self._dead_letters is None:
                self._dead_letters = ServiceBusQueue(
                    self._client,
                    self.entity,
                    name=f"{self.name}/dead-letters",
                    max_attempts=self.max_attempts,
                    dead_letter_of=self,
                )
            return self._dead_letters

    def close(self) -> None:
        """Stop using the queue: later calls raise `ProviderError`, held leases are no longer
        kept. Its links are closed on background threads (`closers`), which the process waits
        for at exit: the SDK's close sends the detach and close frames at once, then waits up
        to a second for its keep-alive thread to wake from its sleep."""
        with self._turn(), self._send_lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            self._leases.clear()
            dead_letters, self._dead_letters = self._dead_letters, None
            handlers, self._handlers = self._handlers, []
            self._receiver = self._sender = None
        for handler in handlers:
            closer = threading.Thread(
                target=_close_quietly,
                args=(handler, f"a link to {self.entity}"),
                name=f"servicebus-close-{self.entity}",
                daemon=False,  # not inherited from a daemon caller: the exit waits for it
            )
            closer.start()
            self.closers.append(closer)
        if self._keeper is not None and self._keeper is not threading.current_thread():
            self._keeper.join(timeout=5)
        if dead_letters is not None:
            dead_letters.close()
            self.closers.extend(dead_letters.closers)

    # -- internals --------------------------------------------------------------------------

    def _open_sender(self) -> ServiceBusSender:
        if self._closed:
            raise ProviderError(f"the queue {self.entity} is closed")
        if self._sender is None:
            sender = self._client.get_queue_sender(queue_name=self.entity)
            self._sender = sender.__enter__()
            self._handlers.append(sender)
        return self._sender

    def _open_receiver(self) -> ServiceBusReceiver:
        if self._closed:
            raise ProviderError(f"the queue {self.entity} is closed")
        if self._receiver is None:
            from azure.servicebus import ServiceBusReceiveMode, ServiceBusSubQueue

            receiver = self._client.get_queue_receiver(
                queue_name=self.entity,
                receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
                prefetch_count=0,
                sub_queue=ServiceBusSubQueue.DEAD_LETTER if self._dead_letter_of else None,
            )
            self._receiver = receiver.__enter__()
            self._handlers.append(receiver)
        return self._receiver

    def _lease_of(self, delivery: Delivery) -> _Lease:
        handle = delivery.handle
        if not isinstance(handle, _Handle) or handle.queue is not self:
            raise ValueError(f"delivery {delivery.id} was not received from {self.entity}")
        return handle.lease

    @contextmanager
    def _settling(self, lease: _Lease, verb: str, delivery: Delivery) -> Iterator[Any]:
        """Settle under the receive lock; a lease that already ended is `LeaseLost`."""
        with self._turn():
            if self._leases.pop(id(lease), None) is None:
                raise LeaseLost(
                    f"{verb} delivery {delivery.id} from {self.entity}: its lease had already "
                    "ended (or it was settled); the message will be delivered again"
                )
            with _translated(f"{verb} delivery {delivery.id} from {self.entity}"):
                yield self._open_receiver()

    def _refuse_on_dead_letter_queue(self, verb: str) -> None:
        if self._dead_letter_of is not None:
            raise UnsupportedOperation(f"cannot {verb} a Service Bus dead-letter sub-queue")

    def _start_keeper(self) -> None:
        if self._keeper is None:
            self._keeper = threading.Thread(
                target=self._keep_leases, name=f"servicebus-leases-{self.entity}", daemon=True
            )
            self._keeper.start()

    def _keep_leases(self) -> None:
        """The keeper thread: lease upkeep while no `receive` is polling to do it."""
        while not self._stop.wait(_KEEPER_TICK):
            with self._turn():
                if self._closed:
                    return
                self._keep_leases_due()

    def _keep_leases_due(self) -> None:
        """Renew locks while leases last; abandon messages whose lease ended first (called
        with the receive lock held)."""
        now = time.monotonic()
        for key, lease in list(self._leases.items()):
            try:
                if now >= lease.deadline:
                    del self._leases[key]
                    self._open_receiver().abandon_message(lease.message)
                    continue
                lock_left = _seconds_until(lease.message.locked_until_utc)
                if lock_left < lease.lock_seconds / 3 and lease.deadline - now > lock_left:
                    self._open_receiver().renew_message_lock(lease.message)
            except Exception:  # noqa: BLE001 - the next settle of it reports LeaseLost
                self._leases.pop(key, None)

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """Hold the receive lock, announced so that a polling `receive` lets us in."""
        with self._waiting_lock:
            self._waiting += 1
        try:
            self._receive_lock.acquire()
        finally:
            with self._waiting_lock:
                self._waiting -= 1
        try:
            yield
        finally:
            self._receive_lock.release()

    def _step_aside(self) -> None:
        """Before a poll: give waiting settlers and the keeper the receive lock first."""
        patience = time.monotonic() + 1.0
        while self._waiting and time.monotonic() < patience:
            time.sleep(0.002)


class _Closable(Protocol):
    def close(self) -> None: ...


def _close_quietly(handler: _Closable, what: str) -> None:
    """Close an SDK object whose connection may already be gone."""
    try:
        handler.close()
    except Exception:  # noqa: BLE001 - nothing is left to do with it
        _LOG.debug("closing %s failed", what, exc_info=True)


def entity_name(prefix: str, name: str) -> str:
    """The queue holding channel `name`. Service Bus entity names are case-insensitive while
    channel names are not, so an upper-case letter becomes `_` and its lower-case form; a
    name ending in a hyphen gets `_0`, as an entity name must end with a letter or digit.
    Channel names hold no `_`, so distinct names always give distinct queues."""
    mapped = "".join(f"_{char.lower()}" if char.isupper() else char for char in name)
    if mapped.endswith("-"):
        mapped += "_0"
    return f"{prefix.lower()}-{mapped}"


def _attempt(message: ServiceBusReceivedMessage) -> int:
    """This delivery's number, from 1. Service Bus sends the AMQP header's delivery-count, the
    number of earlier deliveries (0 on the first); a delayed release's copy adds its
    original's."""
    earlier = message.delivery_count or 0
    properties = message.application_properties or {}
    prior = properties.get(PRIOR_ATTEMPTS.encode(), properties.get(PRIOR_ATTEMPTS, 0))
    return int(prior) + earlier + 1


def _carried_reason(message: ServiceBusReceivedMessage) -> str | None:
    """The reason a dead letter kept by copy carries (see `send_dead_letter`), if any."""
    properties = message.application_properties or {}
    value = properties.get(DEAD_LETTER_REASON.encode(), properties.get(DEAD_LETTER_REASON))
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _body(message: ServiceBusReceivedMessage) -> bytes:
    body = message.body
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if body is None:
        return b""
    return b"".join(bytes(part) for part in body)


def _seconds_until(moment: datetime.datetime | None) -> float:
    if moment is None:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return (moment - datetime.datetime.now(datetime.UTC)).total_seconds()


def _groups_by_size(
    messages: list[ServiceBusMessage], limit: int
) -> Iterator[list[ServiceBusMessage]]:
    """Split messages so each group's bodies add up to at most `limit` bytes."""
    group: list[ServiceBusMessage] = []
    size = 0
    for message in messages:
        length = len(b"".join(message.body)) if message.body is not None else 0
        if group and size + length > limit:
            yield group
            group, size = [], 0
        group.append(message)
        size += length
    if group:
        yield group


def _check_delay(delay: float) -> None:
    if delay < 0:
        raise ValueError(f"delay must not be negative, got {delay}")
    if delay > MAX_DELAY:
        raise UnsupportedOperation(f"delay of {delay} s exceeds the maximum of {MAX_DELAY} s")


def _check_lease(lease: float) -> None:
    if lease <= 0:
        raise ValueError(f"lease must be positive, got {lease}")
    if lease > MAX_LEASE:
        raise UnsupportedOperation(f"lease of {lease} s exceeds the maximum of {MAX_LEASE} s")


@contextmanager
def _translated(where: str) -> Iterator[None]:
    """Turn azure-servicebus / azure.core exceptions into Switchboard's."""
    from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError
    from azure.servicebus.exceptions import (
        MessageAlreadySettled,
        MessageLockLostError,
        MessageSizeExceededError,
        MessagingEntityNotFoundError,
        OperationTimeoutError,
        ServiceBusAuthenticationError,
        ServiceBusAuthorizationError,
        ServiceBusCommunicationError,
        ServiceBusConnectionError,
        ServiceBusError,
        ServiceBusServerBusyError,
    )

    transient = (
        ServiceBusConnectionError,
        ServiceBusCommunicationError,
        ServiceBusServerBusyError,
        OperationTimeoutError,
    )

    try:
        yield
    except (MessageLockLostError, MessageAlreadySettled) as error:
        raise LeaseLost(f"{where}: the lock was lost ({error}); it comes back later") from error
    except MessageSizeExceededError as error:
        raise TooLarge(f"{where}: {error}") from error
    except MessagingEntityNotFoundError as error:
        raise NotFound(
            f"{where}: the queue does not exist; create it or let the provider create it "
            f"(setting 'create', which needs Manage rights)"
        ) from error
    except (ServiceBusAuthenticationError, ServiceBusAuthorizationError) as error:
        raise ProviderError(f"{where}: not allowed: {error}") from error
    except transient as error:
        raise TransientProviderError(f"{where}: {error}") from error
    except ServiceBusError as error:
        raise ProviderError(f"{where}: {error}") from error
    except HttpResponseError as error:  # the management API
        status = error.status_code or 0
        if status in (408, 429) or status >= 500:
            raise TransientProviderError(f"{where}: {error}") from error
        raise ProviderError(f"{where}: {error}") from error
    except ServiceRequestError as error:
        raise TransientProviderError(f"{where}: {error}") from error
    except AzureError as error:
        raise ProviderError(f"{where}: {error}") from error
