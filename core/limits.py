"""Checks every provider makes at its boundary, so requests outside the declared
capabilities fail the same way everywhere (`UnsupportedOperation` / `TooLarge`, never a
silent half-success), and version expectations read the same in every store.

Plain functions, not a base class: a provider calls them from its own methods.
"""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.errors import Conflict, TooLarge, UnsupportedOperation
from switchboard.interfaces import ABSENT, ANY, Expect, Queue, StateCapabilities

# -- queues ---------------------------------------------------------------------------------


def check_request(
    queue: Queue, *, count: int = 1, delay: float = 0.0, lease: float | None = None
) -> None:
    """Refuse a batch size, delay or lease beyond the queue's capabilities, as the
    interface requires (`UnsupportedOperation`, never a silent half-success)."""
    caps = queue.capabilities
    if count > caps.max_batch:
        raise UnsupportedOperation(
            f"queue {queue.name!r} takes at most {caps.max_batch} messages per call, got {count}"
        )
    if delay > caps.max_delay:
        raise UnsupportedOperation(
            f"queue {queue.name!r} delays at most {caps.max_delay}s, asked for {delay}s"
        )
    if lease is not None and lease > caps.max_lease:
        raise UnsupportedOperation(
            f"queue {queue.name!r} leases at most {caps.max_lease}s, asked for {lease}s"
        )


def check_send(queue: Queue, bodies: Sequence[bytes], delay: float) -> None:
    check_request(queue, count=len(bodies), delay=delay)
    limit = queue.capabilities.max_message_bytes
    for body in bodies:
        if len(body) > limit:
            raise TooLarge(
                f"message of {len(body)} bytes exceeds queue {queue.name!r}'s limit of "
                f"{limit} bytes"
            )


# -- state stores -------------------------------------------------------------------------


def check_write(capabilities: StateCapabilities, key: str, value: bytes, ttl: float | None) -> None:
    """Refuse what the store's capabilities exclude, as the interface requires."""
    if len(value) > capabilities.max_value_bytes:
        raise TooLarge(
            f"value of {len(value)} bytes exceeds the store's limit of "
            f"{capabilities.max_value_bytes} bytes"
        )
    # A character is at most 4 bytes of UTF-8: only a long key needs encoding to be sure.
    limit = capabilities.max_key_bytes
    if len(key) * 4 > limit and len(key.encode()) > limit:
        raise TooLarge(f"key of {len(key.encode())} bytes exceeds {limit}")
    if ttl is not None and not capabilities.ttl:
        raise UnsupportedOperation("this state store does not support ttl")


def check_limit(limit: int) -> None:
    """`scan` takes `limit` >= 1."""
    if limit < 1:
        raise ValueError(f"scan limit must be at least 1, got {limit}")


def check_expectation(current: str | None, expect: Expect | str, partition: str, key: str) -> None:
    """Raise `Conflict` unless a record whose version is `current` meets `expect`."""
    if expect is ANY:
        return
    if expect is ABSENT:
        if current is not None:
            raise Conflict(f"{partition}/{key} already exists")
        return
    if current != expect:
        raise Conflict(f"{partition}/{key} is at version {current}, expected {expect}")
