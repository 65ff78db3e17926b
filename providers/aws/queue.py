"""SQS queues: `SqsBroker` opens standard queues `PREFIX-NAME`, each with a native
dead-letter queue `PREFIX-NAME-dlq` (RedrivePolicy, maxReceiveCount = max_attempts).

SQS bodies are XML-safe Unicode text, so a body that is such text goes as is (readable in
the console and by workers in any language); any other body, the empty one included,
travels in a binary message attribute.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

import botocore.exceptions

from switchboard.errors import (
    ConfigError,
    LeaseLost,
    NotFound,
    ProviderError,
    TooLarge,
    UnsupportedOperation,
)
from switchboard.interfaces import Delivery, Queue, QueueCapabilities
from switchboard.providers.aws.client import classify, error_codes, make_client, translated
from switchboard.providers.aws.config import AwsConfig

#: SQS's limit for one message (body and message attributes) and for one batch request.
SQS_MAX_BYTES = 1_048_576
SQS_MAX_BATCH = 10
SQS_MAX_DELAY = 900
SQS_MAX_VISIBILITY = 43_200
SQS_MAX_WAIT = 20
SQS_RETENTION = 1_209_600  # 14 days, the most SQS keeps a message

BODY_ATTRIBUTE = "switchboard.body"
REASON_ATTRIBUTE = "switchboard.reason"
ID_ATTRIBUTE = "switchboard.id"
#: The text body of a message whose bytes travel in BODY_ATTRIBUTE.
BINARY_MARKER = "switchboard:binary"
#: Leads every binary attribute value, because SQS refuses empty attribute values.
_FORMAT_BYTE = b"\x01"
#: `dead_letter` keeps at most this much of a reason (UTF-8 bytes).
REASON_MAX_BYTES = 1024
_MESSAGE_ID_MAX_BYTES = 128

# The worst case: a binary body, later dead-lettered with a reason and its original id.
_BINARY_OVERHEAD = len(BINARY_MARKER) + len(BODY_ATTRIBUTE) + len("Binary") + len(_FORMAT_BYTE)
_DEAD_LETTER_OVERHEAD = (
    len(REASON_ATTRIBUTE)
    + len("Binary")
    + len(_FORMAT_BYTE)
    + REASON_MAX_BYTES
    + len(ID_ATTRIBUTE)
    + len("String")
    + _MESSAGE_ID_MAX_BYTES
)

SQS_CAPABILITIES = QueueCapabilities(
    max_message_bytes=SQS_MAX_BYTES - _BINARY_OVERHEAD - _DEAD_LETTER_OVERHEAD,
    max_batch=100,
    max_delay=float(SQS_MAX_DELAY),
    max_lease=float(SQS_MAX_VISIBILITY),
    native_dead_letter=True,
)

# Characters SQS accepts in a body (XML 1.0's), minus CR, which XML readers may rewrite.
_NOT_SQS_TEXT = re.compile("[^\t\n\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_QUEUE_NAME = re.compile(r"[A-Za-z0-9-]+\Z")
_PREFIX = re.compile(r"[A-Za-z0-9_-]+\Z")
_MAX_NAME = 80 - len("-dlq")

T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _seconds(value: float) -> int:
    """SQS counts whole seconds: round up, so nothing becomes visible early."""
    return max(0, math.ceil(value))


class _Outgoing:
    """One message as SQS will carry it, with its size as SQS counts it."""

    __slots__ = ("attributes", "body", "size")

    def __init__(self, body: bytes, extra: Mapping[str, dict[str, Any]] | None = None) -> None:
        text = _as_sqs_text(body)
        self.attributes: dict[str, dict[str, Any]] = dict(extra or {})
        if text is None:
            text = BINARY_MARKER
            self.attributes[BODY_ATTRIBUTE] = {
                "DataType": "Binary",
                "BinaryValue": _FORMAT_BYTE + body,
            }
        self.body = text
        self.size = len(text.encode()) + sum(
            len(name.encode())
            + len(value["DataType"])
            + len(value.get("BinaryValue") or value.get("StringValue", "").encode())
            for name, value in self.attributes.items()
        )


def _as_sqs_text(body: bytes) -> str | None:
    if not body:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _NOT_SQS_TEXT.search(text) else text


def native_name(prefix: str, name: str) -> str:
    """The SQS name of channel `name`: `PREFIX-NAME`, shortened with a digest if too long."""
    if not _QUEUE_NAME.match(name):
        raise ConfigError(f"queue name {name!r} must hold only letters, digits and hyphens")
    full = f"{prefix}-{name}"
    if len(full) <= _MAX_NAME:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:12]
    return f"{full[: _MAX_NAME - 13]}-{digest}"


class SqsQueue:
    """One SQS standard queue. Thread-safe (boto3 clients are)."""

    capabilities = SQS_CAPABILITIES

    def __init__(
        self,
        name: str,
        max_attempts: int,
        *,
        client: Any,
        url: str,
        dead_letters: SqsQueue | None,
    ) -> None:
        self.name = name
        self.max_attempts = max_attempts
        self.url = url
        self._client = client
        self._dead = dead_letters

    # -- the Queue protocol ------------------------------------------------------------------

    def send(self, bodies: Sequence[bytes], *, delay: float = 0.0) -> None:
        caps = self.capabilities
        if len(bodies) > caps.max_batch:
            raise UnsupportedOperation(
                f"queue {self.name!r} takes at most {caps.max_batch} bodies per send, "
                f"got {len(bodies)}"
            )
        if delay > caps.max_delay:
            raise UnsupportedOperation(
                f"SQS delays a message at most {caps.max_delay:g}s, asked for {delay:g}s"
            )
        for body in bodies:
            if len(body) > caps.max_message_bytes:
                raise TooLarge(
                    f"message of {len(body)} bytes exceeds queue {self.name!r}'s limit of "
                    f"{caps.max_message_bytes} bytes"
                )
        self._send([_Outgoing(bytes(body)) for body in bodies], _seconds(delay))

    def receive(
        self, max_messages: int = 1, *, wait: float = 0.0, lease: float = 30.0
    ) -> list[Delivery]:
        if max_messages > self.capabilities.max_batch:
            raise UnsupportedOperation(
                f"queue {self.name!r} returns at most {self.capabilities.max_batch} "
                f"deliveries per receive, asked for {max_messages}"
            )
        self._check_lease(lease)
        visibility = _seconds(lease)
        deadline = time.monotonic() + wait
        poll = min(SQS_MAX_WAIT, math.ceil(wait)) if wait > 0 else 0
        deliveries: list[Delivery] = []
        while len(deliveries) < max_messages:
            asked = min(SQS_MAX_BATCH, max_messages - len(deliveries))
            batch = self._receive(asked, poll, visibility)
            deliveries.extend(batch)
            if deliveries:
                # Top up with short polls while SQS keeps returning full batches.
                if len(batch) < asked:
                    break
                poll = 0
            else:
                remaining = deadline - time.monotonic()
                if remaining < 1:
                    break
                poll = min(SQS_MAX_WAIT, int(remaining))
        return deliveries

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        failures: list[ProviderError] = []
        for chunk in _chunks(deliveries, SQS_MAX_BATCH):
            entries = [{"Id": str(i), "ReceiptHandle": d.handle} for i, d in enumerate(chunk)]
            with translated(f"acking messages on {self.name!r}"):
                response = self._client.delete_message_batch(QueueUrl=self.url, Entries=entries)
            for failed in response.get("Failed", []):
                message_id = chunk[int(failed["Id"])].id
                failures.append(
                    classify(
                        {str(failed.get("Code", ""))},
                        0,
                        f"ack of message {message_id} on {self.name!r} failed: "
                        f"{failed.get('Message', '')}",
                        sender_fault=bool(failed.get("SenderFault", True)),
                    )
                )
        if failures:
            # Report the most serious failure; lost leases are the expected kind.
            failures.sort(key=lambda exc: isinstance(exc, LeaseLost))
            raise failures[0]

    def release(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        if delay > self.capabilities.max_delay:
            raise UnsupportedOperation(
                f"SQS delays a message at most {self.capabilities.max_delay:g}s, "
                f"asked for {delay:g}s"
            )
        self._change_visibility(delivery, _seconds(delay), "releasing")

    def extend(self, delivery: Delivery, lease: float) -> None:
        self._check_lease(lease)
        self._change_visibility(delivery, _seconds(lease), "extending the lease on")

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        if self._dead is None:
            raise UnsupportedOperation(f"{self.name!r} is itself a dead-letter channel")
        kept = reason.encode("utf-8", "replace")[:REASON_MAX_BYTES]
        extra: dict[str, dict[str, Any]] = {
            REASON_ATTRIBUTE: {"DataType": "Binary", "BinaryValue": _FORMAT_BYTE + kept},
            ID_ATTRIBUTE: {"DataType": "String", "StringValue": delivery.id},
        }
        # Copy first, then delete: a crash in between duplicates, never loses.
        self._dead._send([_Outgoing(delivery.body, extra)], 0)
        self.ack([delivery])

    def dead_letters(self) -> Queue:
        if self._dead is None:
            raise UnsupportedOperation(f"{self.name!r} is itself a dead-letter channel")
        return self._dead

    def close(self) -> None:
        """The broker owns the client; nothing to release per queue."""

    # -- internals --------------------------------------------------------------------------

    def _check_lease(self, lease: float) -> None:
        if lease > self.capabilities.max_lease:
            raise UnsupportedOperation(
                f"SQS leases last at most {self.capabilities.max_lease:g}s, asked for {lease:g}s"
            )

    def _send(self, messages: Sequence[_Outgoing], delay: int) -> None:
        for batch in self._batches(messages):
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": message.body,
                    "DelaySeconds": delay,
                    **({"MessageAttributes": message.attributes} if message.attributes else {}),
                }
                for i, message in enumerate(batch)
            ]
            with translated(f"sending to {self.name!r}"):
                response = self._client.send_message_batch(QueueUrl=self.url, Entries=entries)
            failed = response.get("Failed", [])
            if failed:
                first = failed[0]
                raise classify(
                    {str(first.get("Code", ""))},
                    0,
                    f"{len(failed)} of {len(entries)} messages were not sent to {self.name!r}: "
                    f"{first.get('Message', '')}",
                    sender_fault=bool(first.get("SenderFault", True)),
                )

    @staticmethod
    def _batches(messages: Sequence[_Outgoing]) -> Iterator[list[_Outgoing]]:
        """Group messages into requests SQS accepts: 10 entries, 1 MiB in all."""
        batch: list[_Outgoing] = []
        size = 0
        for message in messages:
            if batch and (len(batch) == SQS_MAX_BATCH or size + message.size > SQS_MAX_BYTES):
                yield batch
                batch, size = [], 0
            batch.append(message)
            size += message.size
        if batch:
            yield batch

    def _receive(self, count: int, wait: int, visibility: int) -> list[Delivery]:
        with translated(f"receiving from {self.name!r}"):
            response = self._client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=wait,
                VisibilityTimeout=visibility,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
                MessageAttributeNames=[BODY_ATTRIBUTE, REASON_ATTRIBUTE, ID_ATTRIBUTE],
            )
        return [self._delivery(message) for message in response.get("Messages", [])]

    @staticmethod
    def _delivery(message: Mapping[str, Any]) -> Delivery:
        attributes = message.get("MessageAttributes") or {}
        binary = attributes.get(BODY_ATTRIBUTE, {}).get("BinaryValue")
        body = bytes(binary[1:]) if binary is not None else str(message["Body"]).encode()
        reason_value = attributes.get(REASON_ATTRIBUTE, {}).get("BinaryValue")
        # A reason cut at REASON_MAX_BYTES may end inside a character: drop that tail.
        reason = None if reason_value is None else bytes(reason_value[1:]).decode("utf-8", "ignore")
        original_id = attributes.get(ID_ATTRIBUTE, {}).get("StringValue")
        return Delivery(
            body=body,
            id=str(original_id or message["MessageId"]),
            attempt=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
            handle=str(message["ReceiptHandle"]),
            reason=reason,
        )

    def _change_visibility(self, delivery: Delivery, seconds: int, action: str) -> None:
        with translated(f"{action} message {delivery.id} on {self.name!r}"):
            self._client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=delivery.handle, VisibilityTimeout=seconds
            )


class SqsBroker:
    """Opens SQS queues named `PREFIX-NAME`, creating them (with their DLQ) if allowed."""

    capabilities = SQS_CAPABILITIES

    def __init__(self, config: AwsConfig, *, client: Any = None) -> None:
        if not _PREFIX.match(config.prefix):
            raise ConfigError(
                f"the aws provider's prefix {config.prefix!r} must hold only letters, digits, "
                "hyphens and underscores"
            )
        self._config = config
        # A client passed in belongs to the caller, who closes it.
        self._client = client if client is not None else make_client("sqs", config)
        self._closed = client is not None
        # native name -> (max_attempts it was ensured with, queue URL, DLQ URL)
        self._urls: dict[str, tuple[int, str, str]] = {}
        self._lock = threading.Lock()

    def queue(self, name: str, *, max_attempts: int = 5) -> SqsQueue:
        url, dead_url = self.ensure(name, max_attempts=max_attempts)
        dead = SqsQueue(f"{name}-dlq", 2**31, client=self._client, url=dead_url, dead_letters=None)
        return SqsQueue(name, max_attempts, client=self._client, url=url, dead_letters=dead)

    def ensure(self, name: str, *, max_attempts: int = 5) -> tuple[str, str]:
        """Make sure the queue and its DLQ exist with this redrive policy; return their URLs.

        Idempotent. With `create=False` it only looks the queues up.
        """
        if not 1 <= max_attempts <= 1000:
            raise UnsupportedOperation(f"SQS allows 1 to 1000 attempts, got {max_attempts}")
        native = native_name(self._config.prefix, name)
        with self._lock:
            cached = self._urls.get(native)
            if cached is not None and cached[0] == max_attempts:
                return cached[1], cached[2]
            if self._config.create:
                url, dead_url = self._create(native, max_attempts)
            else:
                url, dead_url = self._lookup(native), self._lookup(f"{native}-dlq")
                self._check_size_limit(native, url)
                self._check_size_limit(f"{native}-dlq", dead_url)
            self._urls[native] = (max_attempts, url, dead_url)
            return url, dead_url

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()

    def _create(self, native: str, max_attempts: int) -> tuple[str, str]:
        common = {
            "MaximumMessageSize": str(SQS_MAX_BYTES),
            "MessageRetentionPeriod": str(SQS_RETENTION),
        }
        dead_url = self._create_queue(f"{native}-dlq", common, update=False)
        with translated(f"reading the ARN of {native}-dlq"):
            arn = self._client.get_queue_attributes(QueueUrl=dead_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(max_attempts)})
        url = self._create_queue(native, {**common, "RedrivePolicy": redrive}, update=True)
        return url, dead_url

    def _create_queue(self, native: str, attributes: dict[str, str], *, update: bool) -> str:
        with translated(f"creating queue {native}"):
            try:
                response = self._client.create_queue(QueueName=native, Attributes=attributes)
                return str(response["QueueUrl"])
            except botocore.exceptions.ClientError as exc:
                # It exists with other attributes (e.g. another max_attempts): update below.
                if not error_codes(exc) & {"QueueAlreadyExists", "QueueNameExists"}:
                    raise
        url = self._lookup(native)
        if update:
            with translated(f"updating queue {native}"):
                self._client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        return url

    def _check_size_limit(self, native: str, url: str) -> None:
        """Our declared limit needs SQS's largest; queues made before 2025 default to 256 KiB."""
        with translated(f"reading the attributes of {native}"):
            attributes = self._client.get_queue_attributes(
                QueueUrl=url, AttributeNames=["MaximumMessageSize"]
            )["Attributes"]
        size = int(attributes.get("MaximumMessageSize", SQS_MAX_BYTES))
        if size < SQS_MAX_BYTES:
            raise ConfigError(
                f"SQS queue {native} takes messages up to {size} bytes; switchboard needs "
                f"{SQS_MAX_BYTES}: set its MaximumMessageSize to {SQS_MAX_BYTES}"
            )

    def _lookup(self, native: str) -> str:
        try:
            with translated(f"looking up queue {native}"):
                return str(self._client.get_queue_url(QueueName=native)["QueueUrl"])
        except NotFound as exc:
            raise ConfigError(
                f"SQS queue {native} does not exist in {self._config.region}: create it (and "
                f"{native.removesuffix('-dlq')}-dlq with a RedrivePolicy), or set create=true"
            ) from exc
