"""The request/response operations of an entity's `$management` node.

Service Bus docs: "AMQP 1.0 in Azure Service Bus: request-response operations": a request
is a message to `<entity>/$management` whose application property `operation` names the
operation and whose body is an AMQP map; the response correlates by `correlation-id` and
carries `statusCode` / `statusDescription` (and on failure `errorCondition`, which the SDK
maps to its exception types) application properties.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proton import Data

from . import codec
from .store import LockLost, Queue, QueueStore

LOCK_LOST = "com.microsoft:message-lock-lost"
NOT_IMPLEMENTED = "amqp:not-implemented"
BAD_REQUEST = "amqp:invalid-field"


@dataclass(frozen=True)
class Response:
    status: int
    body: Any = None
    description: str = "OK"
    condition: str | None = None


Operation = Callable[[QueueStore, Queue, dict[str, Any]], Response]


def renew_lock(store: QueueStore, queue: Queue, body: dict[str, Any]) -> Response:
    # Service Bus docs: "Message lock renewal" (operation com.microsoft:renew-lock): returns
    # the new expiry of each lock token, in request order.
    expirations = [
        codec.to_timestamp(store.renew_lock(codec.lock_token(token)))
        for token in codec.elements(body.get("lock-tokens"))
    ]
    return Response(200, {"expirations": codec.array(Data.TIMESTAMP, expirations)})


def schedule_message(store: QueueStore, queue: Queue, body: dict[str, Any]) -> Response:
    # Service Bus docs: "Scheduled messages" (com.microsoft:schedule-message): each entry's
    # `message` is an encoded AMQP message carrying x-opt-scheduled-enqueue-time.
    numbers = []
    for entry in codec.elements(body.get("messages")):
        encoded = bytes(entry["message"])
        numbers.append(store.enqueue(queue, encoded, codec.scheduled_time_of(encoded)))
    return Response(200, {"sequence-numbers": codec.array(Data.LONG, numbers)})


def cancel_scheduled_message(store: QueueStore, queue: Queue, body: dict[str, Any]) -> Response:
    # Service Bus docs: "Scheduled messages" (com.microsoft:cancel-scheduled-message).
    store.cancel_scheduled(queue, [int(n) for n in codec.elements(body.get("sequence-numbers"))])
    return Response(200, {})


def peek_message(store: QueueStore, queue: Queue, body: dict[str, Any]) -> Response:
    # Service Bus docs: "Message browsing" (com.microsoft:peek-message): no locks taken;
    # 204 No Content when nothing is at or after from-sequence-number.
    peeked = store.peek(
        queue, int(body.get("from-sequence-number", 1)), int(body.get("message-count", 1))
    )
    if not peeked:
        return Response(204, description="No messages")
    messages = [{"message": codec.outgoing_message(m, locked=False)} for m in peeked]
    return Response(200, {"messages": messages})


def update_disposition(store: QueueStore, queue: Queue, body: dict[str, Any]) -> Response:
    # Service Bus docs: "AMQP request-response operations: update disposition status": the
    # SDK falls back to this when a settlement on the receiver link is not confirmed.
    status = body.get("disposition-status")
    for token in codec.elements(body.get("lock-tokens")):
        lock_token = codec.lock_token(token)
        if status == "completed":
            store.complete(lock_token)
        elif status == "abandoned":
            store.abandon(lock_token)
        elif status == "suspended":
            store.dead_letter(
                lock_token,
                body.get("deadletter-reason") or None,
                body.get("deadletter-description") or None,
            )
        else:
            return Response(501, description=f"disposition {status!r}", condition=NOT_IMPLEMENTED)
    return Response(200, {})


OPERATIONS: dict[str, Operation] = {
    "com.microsoft:renew-lock": renew_lock,
    "com.microsoft:schedule-message": schedule_message,
    "com.microsoft:cancel-scheduled-message": cancel_scheduled_message,
    "com.microsoft:peek-message": peek_message,
    "com.microsoft:update-disposition": update_disposition,
}


def execute(store: QueueStore, queue: Queue, operation: str, body: Any) -> Response:
    """Run one management operation; an unknown one answers 501, a lost lock 410."""
    handler = OPERATIONS.get(operation)
    if handler is None:
        return Response(501, description=f"operation {operation!r}", condition=NOT_IMPLEMENTED)
    try:
        return handler(store, queue, body if isinstance(body, dict) else {})
    except LockLost as error:
        return Response(410, description=str(error), condition=LOCK_LOST)
    except (KeyError, TypeError, ValueError) as error:
        return Response(400, description=f"malformed request: {error!r}", condition=BAD_REQUEST)
