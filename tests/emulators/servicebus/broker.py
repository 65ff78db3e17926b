"""An AMQP 1.0 broker that answers azure-servicebus as Service Bus would, for tests.

It covers what Switchboard's Azure provider relies on: queues (created on first use),
peek-lock and receive-and-delete, settlement, lock expiry, delivery counts, dead-lettering
and the `$management` operations for lock renewal, scheduling and peeking. Sessions and
topics are out of scope. Built on python-qpid-proton's reactor; run it in a thread
(`Broker.start()` / `stop()`) or as a process (`python -m tests.emulators.servicebus`).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urlparse

from proton import (
    Condition,
    Connection,
    Delivery,
    Endpoint,
    Event,
    Handler,
    Link,
    Message,
    Session,
    symbol,
)
from proton._reactor import Acceptor
from proton.reactor import Container

from ..process import free_port
from . import codec, management
from .store import STANDARD_MAX_MESSAGE_SIZE, LockLost, Queue, QueueSettings, QueueStore

_LOG = logging.getLogger(__name__)


class _PeerGoneFilter(logging.Filter):
    """The SDK closes its socket right after sending Close, so proton's reply hits a closed
    socket and proton logs it as an error. That is the normal end of every connection."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Couldn't send: BrokenPipeError")


logging.getLogger("proton").addFilter(_PeerGoneFilter())

TICK_SECONDS = 0.05  # how often lock expiry and scheduled messages are checked
STOP_GRACE_SECONDS = 0.2
#: Credit granted to a client's sending link, topped up once half of it is used.
INCOMING_CREDIT = 100
CBS_NODE = "$cbs"
MANAGEMENT_SUFFIX = "/$management"
DEAD_LETTER_REASON = "DeadLetterReason"
DEAD_LETTER_DESCRIPTION = "DeadLetterErrorDescription"
MESSAGE_SIZE_EXCEEDED = "amqp:link:message-size-exceeded"
NOT_IMPLEMENTED = "amqp:not-implemented"
INTERNAL_ERROR = "amqp:internal-error"


class LinkKind(Enum):
    QUEUE = "queue"
    CBS = "cbs"
    MANAGEMENT = "management"


@dataclass
class LinkRole:
    """What an attached link is for, kept on the proton link as `link.role`."""

    kind: LinkKind
    node: str  # the address as attached, without the amqps://host/ prefix
    queue: Queue | None = None
    receive_and_delete: bool = False


@dataclass
class Consumers:
    queue: Queue
    links: list[Link] = field(default_factory=list)


def node_address(address: str | None) -> str:
    """The SDK attaches to `amqps://host/<entity>`; the broker only needs `<entity>`."""
    if not address:
        return ""
    if "://" in address:
        return urlparse(address).path.lstrip("/")
    return address


def is_live(link: Link) -> bool:
    active = Endpoint.LOCAL_ACTIVE | Endpoint.REMOTE_ACTIVE
    return bool((link.state & active) == active)


def event_connection(event: Event) -> Connection:
    assert event.connection is not None, event
    return event.connection


def event_session(event: Event) -> Session:
    assert event.session is not None, event
    return event.session


def event_link(event: Event) -> Link:
    assert event.link is not None, event
    return event.link


def new_delivery(link: Link, tag: bytes) -> Delivery:
    # Proton's hint says str, but any bytes are sent as the delivery tag unchanged.
    return link.delivery(tag)  # type: ignore[arg-type]


def links_of(connection: Connection) -> Iterator[Link]:
    link = connection.link_head(0)
    while link is not None:
        yield link
        link = link.next(0)


class ServiceBusHandler(Handler):
    """Proton event handler: endpoints, links, transfers and dispositions."""

    def __init__(
        self, store: QueueStore, max_message_size: int, stop_requested: threading.Event
    ) -> None:
        super().__init__()
        self.store = store
        self.max_message_size = max_message_size
        self._stop_requested = stop_requested
        self._consumers: dict[str, Consumers] = {}
        self._connections: set[Connection] = set()
        self.acceptor: Acceptor | None = None
        self._stopping = False

    # -- reactor and endpoints -----------------------------------------------------------

    def on_reactor_init(self, event: Event) -> None:
        event.container.schedule(TICK_SECONDS, self)

    def on_timer_task(self, event: Event) -> None:
        if self._stopping:
            event.container.stop()
            return
        if self._stop_requested.is_set():
            self._close_everything()
            event.container.schedule(STOP_GRACE_SECONDS, self)
            return
        self.store.advance_clock()
        self._dispatch_all()
        event.container.schedule(TICK_SECONDS, self)

    def _close_everything(self) -> None:
        """Stop listening and close client connections, then stop a moment later so the
        close frames reach the clients."""
        self._stopping = True
        if self.acceptor is not None:
            self.acceptor.close()
        for connection in list(self._connections):
            connection.close()

    def on_connection_bound(self, event: Event) -> None:
        # Service Bus docs: "AMQP 1.0 in Service Bus: connections and sessions": the client
        # authenticates with SASL ANONYMOUS, then with a claims-based ($cbs) put-token.
        assert event.transport is not None
        event.transport.sasl().allowed_mechs("ANONYMOUS")
        self._connections.add(event_connection(event))

    def on_connection_remote_open(self, event: Event) -> None:
        connection = event_connection(event)
        if connection.state & Endpoint.LOCAL_UNINIT:
            connection.container = "switchboard-servicebus-test-broker"
            connection.open()

    def on_session_remote_open(self, event: Event) -> None:
        session = event_session(event)
        if session.state & Endpoint.LOCAL_UNINIT:
            session.open()

    def on_link_remote_open(self, event: Event) -> None:
        link = event_link(event)
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        # Echo the settle modes asked for: PEEK_LOCK asks rcv-settle-mode "second",
        # RECEIVE_AND_DELETE asks snd-settle-mode "settled".
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        role = self._role_for(link)
        link.role = role
        if link.is_receiver:
            if role.kind is LinkKind.QUEUE:
                # Service Bus docs: "Service Bus quotas": maximum message size; the SDK
                # sizes ServiceBusMessageBatch from the max-message-size declared here.
                link.max_message_size = self.max_message_size
            link.open()
            link.flow(INCOMING_CREDIT)
            return
        link.open()
        if role.kind is LinkKind.QUEUE and role.queue is not None:
            consumers = self._consumers.setdefault(role.queue.name, Consumers(role.queue))
            consumers.links.append(link)

    def _role_for(self, link: Link) -> LinkRole:
        terminus = link.remote_target if link.is_receiver else link.remote_source
        address = node_address(terminus.address)
        if address == CBS_NODE:
            return LinkRole(LinkKind.CBS, address)
        if address.casefold().endswith(MANAGEMENT_SUFFIX):
            entity = address[: -len(MANAGEMENT_SUFFIX)]
            return LinkRole(LinkKind.MANAGEMENT, address, self.store.entity(entity))
        return LinkRole(
            LinkKind.QUEUE,
            address,
            self.store.entity(address),
            receive_and_delete=link.is_sender and link.remote_snd_settle_mode == Link.SND_SETTLED,
        )

    def on_link_flow(self, event: Event) -> None:
        # AMQP 1.0, part 2, 2.6.7 "Flow Control": a receiver's flow frame grants credit (and
        # with drain set asks the sender to use it up or give it back at once). Answer it
        # now, as the service does, not at the next tick: the SDK's receive issues credit
        # and then waits for messages, and its close waits for the drain echo.
        link = event_link(event)
        role: LinkRole | None = getattr(link, "role", None)
        if link.is_sender and role is not None and role.kind is LinkKind.QUEUE:
            assert role.queue is not None
            self._dispatch(role.queue)

    def on_link_remote_close(self, event: Event) -> None:
        # Locks held by deliveries on this link stay until they expire, as in the service.
        event_link(event).close()

    def on_session_remote_close(self, event: Event) -> None:
        event_session(event).close()

    def on_connection_remote_close(self, event: Event) -> None:
        event_connection(event).close()

    def on_transport_closed(self, event: Event) -> None:
        # A client that vanished without detaching: stop dispatching to its links.
        if event.connection is not None:
            self._connections.discard(event.connection)
            for link in links_of(event.connection):
                if link.state & Endpoint.LOCAL_ACTIVE:
                    link.close()

    # -- transfers and dispositions ------------------------------------------------------

    def on_delivery(self, event: Event) -> None:
        delivery = event.delivery
        assert delivery is not None
        link = delivery.link
        role: LinkRole = link.role
        # An exception escaping a handler would end the reactor (and the broker): log it
        # and fail only this delivery.
        if link.is_receiver:
            if delivery.readable and not delivery.partial:
                encoded = bytes(link.recv(delivery.pending) or b"")
                link.advance()
                try:
                    self._on_transfer(link, role, delivery, encoded)
                except Exception as error:  # noqa: BLE001
                    _LOG.exception("failed to handle a transfer to %s", role.node)
                    settle(delivery, Delivery.REJECTED, Condition(INTERNAL_ERROR, str(error)))
                top_up_credit(link)
        elif delivery.updated and role.kind is LinkKind.QUEUE:
            # `settled` is the client's side: the SDK's "released" comes pre-settled.
            try:
                self._on_settlement(role, delivery)
            except Exception as error:  # noqa: BLE001
                _LOG.exception("failed to settle a delivery from %s", role.node)
                settle(delivery, Delivery.REJECTED, Condition(INTERNAL_ERROR, str(error)))

    def _on_transfer(self, link: Link, role: LinkRole, delivery: Delivery, encoded: bytes) -> None:
        if role.kind is not LinkKind.QUEUE:
            request = Message()
            request.decode(encoded)
            self._respond(link, role, request)
            settle(delivery, Delivery.ACCEPTED)
            return
        assert role.queue is not None
        if len(encoded) > self.max_message_size:
            # Service Bus docs: "Service Bus quotas" (256 KB on Standard); AMQP 1.0 link
            # error amqp:link:message-size-exceeded, which the SDK raises as
            # MessageSizeExceededError.
            settle(
                delivery,
                Delivery.REJECTED,
                Condition(
                    MESSAGE_SIZE_EXCEEDED,
                    f"The message of {len(encoded)} bytes exceeds the limit of "
                    f"{self.max_message_size} bytes.",
                    # pyamqp's sender reads the error's info field unconditionally.
                    {symbol("max-message-size"): self.max_message_size},
                ),
            )
            return
        # Service Bus docs: "Message transfers, locks, and settlement: sending": the
        # service accepts the transfer once the message (or whole batch) is stored.
        for message in codec.split_batch(encoded):
            self.store.enqueue(role.queue, message, codec.scheduled_time_of(message))
        settle(delivery, Delivery.ACCEPTED)
        self._dispatch(role.queue)

    def _on_settlement(self, role: LinkRole, delivery: Delivery) -> None:
        # Service Bus docs: "Message transfers, locks, and settlement: peek-lock":
        # accepted = complete, modified = abandon (delivery count +1), rejected with
        # com.microsoft:dead-letter = dead-letter, released = unlocked with the count
        # unchanged. The outcome is echoed back settled, which azure-servicebus >= 7.15
        # waits for (rcv-settle-mode second).
        state = delivery.remote_state
        lock_token: uuid.UUID | None = getattr(delivery, "lock_token", None)
        if lock_token is None or state not in (
            Delivery.ACCEPTED,
            Delivery.MODIFIED,
            Delivery.REJECTED,
            Delivery.RELEASED,
        ):
            return
        try:
            if state == Delivery.ACCEPTED:
                self.store.complete(lock_token)
            elif state == Delivery.MODIFIED and delivery.remote.undeliverable:
                # Deferral (modified, undeliverable-here) is not implemented.
                settle(delivery, Delivery.REJECTED, Condition(NOT_IMPLEMENTED, "defer"))
                return
            elif state == Delivery.REJECTED:
                info = dead_letter_info(delivery.remote.condition)
                self.store.dead_letter(
                    lock_token, info.get(DEAD_LETTER_REASON), info.get(DEAD_LETTER_DESCRIPTION)
                )
            elif state == Delivery.RELEASED:
                self.store.release(lock_token)
            else:
                self.store.abandon(lock_token)
        except LockLost as error:
            settle(delivery, Delivery.REJECTED, Condition(management.LOCK_LOST, str(error)))
            return
        settle(delivery, state)
        assert role.queue is not None
        self._dispatch(role.queue)

    # -- $cbs and $management ------------------------------------------------------------

    def _respond(self, link: Link, role: LinkRole, request: Any) -> None:
        """Answer a request message (a proton Message, whose hints are too narrow)."""
        operation = str((request.properties or {}).get("operation", ""))
        properties: dict[str, Any]
        if role.kind is LinkKind.CBS:
            # Service Bus docs: "AMQP claims-based authorization": a put-token request is
            # answered with status-code/status-description; any token is accepted here.
            body = None
            properties = {"status-code": 200, "status-description": "OK"}
        else:
            assert role.queue is not None
            response = management.execute(self.store, role.queue, operation, request.body)
            body = response.body
            properties = {"statusCode": response.status, "statusDescription": response.description}
            if response.condition is not None:
                properties["errorCondition"] = symbol(response.condition)
        reply = Message(body=body, correlation_id=request.id, properties=properties)
        reply.address = request.reply_to
        sender = self._response_link(link.connection, role.node)
        if sender is None:
            _LOG.warning("no response link attached for %s on this connection", role.node)
            return
        delivery = new_delivery(sender, uuid.uuid4().bytes)
        sender.send(reply.encode())
        sender.advance()
        delivery.settle()
        if role.queue is not None:
            self._dispatch(role.queue)

    @staticmethod
    def _response_link(connection: Connection, node: str) -> Link | None:
        """The request/response pattern: responses go back on the link the client attached
        with the node as its source, on the same connection."""
        for link in links_of(connection):
            role = getattr(link, "role", None)
            if link.is_sender and is_live(link) and role is not None and role.node == node:
                return link
        return None

    # -- dispatch ------------------------------------------------------------------------

    def _dispatch_all(self) -> None:
        for consumers in list(self._consumers.values()):
            self._dispatch(consumers.queue)

    def _dispatch(self, queue: Queue) -> None:
        # Service Bus docs: "Message transfers, locks, and settlement: receiving": messages
        # flow only against link credit granted by the receiver. With nothing available
        # nothing is sent: the SDK's max_wait_time then ends the receive call empty.
        consumers = self._consumers.get(queue.name)
        if consumers is None:
            return
        consumers.links = [link for link in consumers.links if is_live(link)]
        while self.store.has_available(queue):
            ready = [link for link in consumers.links if link.credit > 0]
            if not ready:
                break
            for link in ready:
                if not self._send_next(queue, link):
                    break
        for link in consumers.links:
            if link.drain_mode and link.credit > 0:
                link.drained()

    def _send_next(self, queue: Queue, link: Link) -> bool:
        role: LinkRole = link.role
        message = self.store.next_message(queue, lock=not role.receive_and_delete)
        if message is None:
            return False
        # Service Bus docs: "AMQP 1.0 in Service Bus: receiving": the delivery tag is the
        # lock token (a UUID, little-endian as .NET's Guid.ToByteArray).
        lock_token = message.lock_token or uuid.uuid4()
        delivery = new_delivery(link, lock_token.bytes_le)
        # Proton's Python Delivery.tag decodes tags as UTF-8, so keep the token ourselves.
        delivery.lock_token = None if role.receive_and_delete else lock_token
        link.send(codec.outgoing_message(message, locked=not role.receive_and_delete))
        link.advance()
        if role.receive_and_delete:
            # Service Bus docs: "Receive and delete": the message is settled as it is sent.
            delivery.settle()
        return True


def top_up_credit(link: Link) -> None:
    """Restore a receiving link's credit once half of it is used. AMQP 1.0, part 2, 2.6.7
    "Flow Control": the receiver sends a flow frame whenever it chooses to change the credit;
    one per transfer would be a frame the client must read before each disposition."""
    if link.credit <= INCOMING_CREDIT // 2:
        link.flow(INCOMING_CREDIT - link.credit)


def settle(delivery: Delivery, state: int, condition: Condition | None = None) -> None:
    if condition is not None:
        delivery.local.condition = condition
    delivery.update(state)
    delivery.settle()


def dead_letter_info(condition: Condition | None) -> dict[str, str]:
    """Reason and description from the rejected outcome's error info map."""
    info = condition.info if condition is not None else None
    if not isinstance(info, dict):
        return {}
    return {str(key): str(value) for key, value in info.items() if value is not None}


def connection_string(host: str, port: int) -> str:
    """What azure-servicebus needs to reach the broker: plain AMQP on `port` (the
    development-emulator flag turns TLS off); the key is not checked."""
    return (
        f"Endpoint=sb://{host}:{port};SharedAccessKeyName=k;SharedAccessKey=v;"
        "UseDevelopmentEmulator=true"
    )


class Broker:
    """The test broker: listen on `host:port` (a free port when 0) and serve until stopped.

    `configure_queue` sets per-queue settings (max delivery count, lock duration); the
    constructor's values are the defaults for other queues.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_delivery_count: int = QueueSettings.max_delivery_count,
        lock_duration: float = QueueSettings.lock_duration,
        max_message_size: int = STANDARD_MAX_MESSAGE_SIZE,
    ) -> None:
        self.host = host
        self.port = port or free_port()
        self.store = QueueStore(QueueSettings(max_delivery_count, lock_duration))
        self._stop_requested = threading.Event()
        self._handler = ServiceBusHandler(self.store, max_message_size, self._stop_requested)
        self._container = Container(self._handler)
        self._thread: threading.Thread | None = None

    @property
    def connection_string(self) -> str:
        return connection_string(self.host, self.port)

    def configure_queue(
        self,
        name: str,
        *,
        max_delivery_count: int | None = None,
        lock_duration: float | None = None,
    ) -> None:
        self.store.configure_queue(
            name, max_delivery_count=max_delivery_count, lock_duration=lock_duration
        )

    def serve_forever(self) -> None:
        """Listen and serve in this thread until `stop()` is called from another."""
        self._listen()
        self._container.run()

    def start(self) -> Broker:
        """Listen now (so a taken port fails here) and serve in a daemon thread."""
        self._listen()
        self._thread = threading.Thread(
            target=self._container.run, name=f"servicebus-broker-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def _listen(self) -> None:
        self._handler.acceptor = self._container.listen(f"{self.host}:{self.port}")

    def stop(self, timeout: float = 10.0) -> None:
        """Close every connection and the listener; returns once the reactor has ended."""
        self._stop_requested.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"the Service Bus test broker did not stop within {timeout}s")
