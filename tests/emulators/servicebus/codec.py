"""AMQP encoding of stored messages as Service Bus delivers them, and small helpers for the
values the SDK puts in management requests."""

from __future__ import annotations

import uuid
from typing import Any, NamedTuple

from proton import UNDESCRIBED, Array, Data, Described, Message, symbol, timestamp, uint, ulong

from .store import StoredMessage

HEADER_SECTION = 0x70
DATA_SECTION = 0x75
MESSAGE_SECTIONS = range(0x70, 0x79)  # header .. footer (AMQP 1.0 part 3.2)


class Section(NamedTuple):
    code: int
    raw: bytes  # the section as encoded
    value: Any


def sections(encoded: bytes) -> list[Section]:
    """The top-level described sections of an encoded AMQP message, in order."""
    found = []
    offset = 0
    while offset < len(encoded):
        data = Data()
        size = data.decode(encoded[offset:])
        data.rewind()
        data.next()
        section = data.get_object()
        if not isinstance(section, Described) or not isinstance(section.descriptor, int):
            raise ValueError("not an AMQP message section")
        if section.descriptor not in MESSAGE_SECTIONS:
            raise ValueError("not an AMQP message section")
        value: Any = section.value
        if isinstance(value, memoryview):  # points into `data`, which is about to be freed
            value = bytes(value)
        found.append(Section(section.descriptor, encoded[offset : offset + size], value))
        offset += size
    return found


def split_batch(encoded: bytes) -> list[bytes]:
    """The messages inside a batch envelope, or `[encoded]` for a plain message.

    Service Bus docs: "AMQP 1.0 in Service Bus: batching": a batch is one transfer with
    message-format 0x80013700 whose data sections each hold an encoded message. Proton's
    Python API does not expose message-format, so a transfer counts as a batch when every
    data section is itself a complete AMQP message.
    """
    try:
        payloads = [s.value for s in sections(encoded) if s.code == DATA_SECTION]
        if payloads and all(sections(payload) for payload in payloads):
            return payloads
    except Exception:  # noqa: BLE001 - any decoding failure means "not a batch"
        pass
    return [encoded]


def to_timestamp(epoch_seconds: float) -> timestamp:
    """An AMQP timestamp (milliseconds since the epoch), as `x-opt-*` times are sent."""
    return timestamp(int(epoch_seconds * 1000))


def outgoing_message(stored: StoredMessage, *, locked: bool) -> bytes:
    """The message as a receiver sees it.

    Service Bus docs: "Messages, payloads, and serialization" / "AMQP 1.0 in Service Bus":
    broker-owned properties travel as message annotations (`x-opt-sequence-number`,
    `x-opt-enqueued-time`, and for a peek-lock `x-opt-lock-token` / `x-opt-locked-until`)
    and the delivery count in the AMQP header.
    """
    message: Any = Message()  # Any: proton's hints for the sections are too narrow
    message.decode(stored.encoded)
    annotations: dict[Any, Any] = dict(message.annotations or {})
    annotations[symbol("x-opt-sequence-number")] = stored.sequence_number
    annotations[symbol("x-opt-enqueued-time")] = to_timestamp(stored.enqueued_time)
    if stored.scheduled_time is not None:
        annotations[symbol("x-opt-scheduled-enqueue-time")] = to_timestamp(stored.scheduled_time)
    if locked and stored.lock_token is not None:
        annotations[symbol("x-opt-lock-token")] = stored.lock_token
        annotations[symbol("x-opt-locked-until")] = to_timestamp(stored.locked_until)
    if stored.dead_letter_source is not None:
        annotations[symbol("x-opt-deadletter-source")] = stored.dead_letter_source
    message.annotations = annotations
    if stored.extra_properties:
        message.properties = {**(message.properties or {}), **stored.extra_properties}
    return with_header(bytes(message.encode()), message, stored.delivery_count)


def with_header(encoded: bytes, message: Message, delivery_count: int) -> bytes:
    """Replace the header section by one that always carries delivery-count.

    Proton leaves out header fields at their default, and the SDK reads a missing
    delivery-count as None; the service sends 0 on a first delivery.
    """
    header = Data()
    header.put_object(
        Described(
            ulong(HEADER_SECTION),
            [
                message.durable,
                uint(message.priority),
                None if not message.ttl else uint(int(message.ttl * 1000)),
                message.first_acquirer,
                uint(delivery_count),
            ],
        )
    )
    rest = b"".join(s.raw for s in sections(encoded) if s.code != HEADER_SECTION)
    return bytes(header.encode()) + rest


def scheduled_time_of(encoded: bytes) -> float | None:
    """The `x-opt-scheduled-enqueue-time` annotation of an encoded message, in seconds."""
    message: Any = Message()
    message.decode(encoded)
    value = (message.annotations or {}).get(symbol("x-opt-scheduled-enqueue-time"))
    return None if value is None else int(value) / 1000


def array(type_code: int, values: list[Any]) -> Array:
    """An AMQP array, as the SDK expects lock-token expirations and sequence numbers."""
    undescribed: Any = UNDESCRIBED  # proton's hint for the descriptor is too narrow
    return Array(undescribed, type_code, *values)


def elements(value: Any) -> list[Any]:
    """The items of an AMQP array or list as sent by the SDK."""
    if value is None:
        return []
    if isinstance(value, Array):
        return list(value.elements)
    return list(value)


def lock_token(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
