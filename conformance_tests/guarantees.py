"""The guarantees the suite checks, quoted from `switchboard.interfaces`, and the helpers that
tie each test to them.

A guarantee is one clause of an interface docstring (the text after "Guarantees:", split at
sentence ends and semicolons) or of a capability comment. `checks(...)` marks a test with the
guarantees it verifies, and makes sure any failure of that test names them; `guarantee(...)`
builds an assertion message that names one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

#: The attribute `checks` sets on a test function: the guarantees it verifies.
ATTRIBUTE = "__sb_guarantees__"


@dataclass(frozen=True)
class Guarantee:
    """One checkable promise of the provider contract."""

    #: The Protocol or dataclass that makes the promise (`Queue`, `StateStore`, ...).
    interface: str
    #: The method or field whose docstring or comment holds it.
    member: str
    #: The clause, quoted from `switchboard/interfaces.py`.
    text: str

    @property
    def where(self) -> str:
        return f"{self.interface}.{self.member}"

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


def guarantee(promise: Guarantee, detail: str = "") -> str:
    """An assertion message naming the broken guarantee, then what was observed."""
    message = f"guarantee broken: {promise}"
    return f"{message}\n  observed: {detail}" if detail else message


def checks(*promises: Guarantee) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Mark a test with the guarantees it verifies.

    Any failure of the test names them: an assertion whose message does not already
    name one is re-raised with them, and an unexpected exception from the provider is
    turned into an assertion failure naming them (skips and xfails pass through).
    """

    def decorate(test: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(test)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return test(*args, **kwargs)
            except AssertionError as exc:
                if any(promise.text in str(exc) for promise in promises):
                    raise
                raise AssertionError(f"{_named(promises)}\n{exc}") from exc
            except Exception as exc:
                raise AssertionError(
                    f"{_named(promises)}\n  observed: the provider raised "
                    f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
                ) from exc

        setattr(run, ATTRIBUTE, promises)
        return run

    return decorate


def checked_by(test: object) -> tuple[Guarantee, ...]:
    """The guarantees a test function (or pytest item's function) was marked with."""
    found: tuple[Guarantee, ...] = getattr(test, ATTRIBUTE, ())
    return found


def _named(promises: tuple[Guarantee, ...]) -> str:
    return "\n".join(guarantee(promise) for promise in promises)


def expect_raises(
    error: type[Exception], promise: Guarantee, action: Callable[[], object], what: str
) -> Exception:
    """Run `action`, which must raise `error`; any other outcome breaks `promise`.

    Unlike `pytest.raises`, the failure names the guarantee.
    """
    try:
        action()
    except error as exc:
        return exc
    except Exception as exc:
        raise AssertionError(
            guarantee(
                promise,
                f"{what} raised {type(exc).__qualname__}: {exc}, expected {error.__qualname__}",
            )
        ) from exc
    raise AssertionError(guarantee(promise, f"{what} did not raise {error.__qualname__}"))


# -- Queue ------------------------------------------------------------------------------------

SEND_ROUND_TRIP = Guarantee(
    "Queue",
    "send",
    "Every body is delivered byte for byte as sent (binary, unicode and empty bodies alike, "
    "up to `capabilities.max_message_bytes`)",
)
SEND_DELAY = Guarantee(
    "Queue",
    "send",
    "A message sent with `delay` is not delivered before `delay` seconds have passed",
)
SEND_TOO_LARGE = Guarantee("Queue", "send", "A body larger than the limit raises `TooLarge`")
SEND_UNSUPPORTED = Guarantee(
    "Queue",
    "send",
    "a `delay` above `capabilities.max_delay` or more bodies than `capabilities.max_batch` "
    "raise `UnsupportedOperation`",
)
MAX_BATCH = Guarantee(
    "QueueCapabilities",
    "max_batch",
    "Most bodies per `send` call and most deliveries per `receive` call",
)
MAX_DELAY = Guarantee(
    "QueueCapabilities",
    "max_delay",
    "Longest `delay` accepted by `send` and `release`, in seconds",
)
MAX_LEASE = Guarantee(
    "QueueCapabilities",
    "max_lease",
    "Longest lease accepted by `receive` and `extend`, in seconds",
)
RECEIVE_WAIT = Guarantee(
    "Queue",
    "receive",
    "Returns as soon as a message is available, or an empty list after about `wait` seconds",
)
RECEIVE_UNSUPPORTED = Guarantee(
    "Queue",
    "receive",
    "More than `capabilities.max_batch` messages or a lease above `capabilities.max_lease` "
    "raise `UnsupportedOperation`",
)
RECEIVE_REDELIVERY = Guarantee(
    "Queue",
    "receive",
    "A delivery that is not acked within its lease becomes visible again and is delivered "
    "with `attempt` increased by one",
)
RECEIVE_EXCLUSIVE = Guarantee(
    "Queue",
    "receive",
    "A message is not handed to two consumers while a lease on it is live",
)
RECEIVE_DEAD_LETTER = Guarantee(
    "Queue",
    "receive",
    "A message whose next delivery would exceed `max_attempts` is moved to the dead-letter "
    "channel, body intact, instead",
)
DELIVERY_ID = Guarantee("Delivery", "id", "the same for every delivery of that message")
DELIVERY_ATTEMPT = Guarantee(
    "Delivery",
    "attempt",
    "How many times this message has been delivered, this delivery included (1 first)",
)
AT_LEAST_ONCE = Guarantee(
    "Queue",
    "(class)",
    "A message is delivered again until it is acked",
)
ACK = Guarantee(
    "Queue",
    "ack",
    "An acked message is never delivered again (unless its lease had already expired, in "
    "which case the ack may raise `LeaseLost`, have no effect, or still settle the message)",
)
RELEASE = Guarantee(
    "Queue",
    "release",
    "The message becomes visible again after `delay` seconds, not before, and its next "
    "delivery has `attempt` increased by one",
)
RELEASE_UNSUPPORTED = Guarantee(
    "Queue", "release", "A `delay` above `capabilities.max_delay` raises `UnsupportedOperation`"
)
EXTEND = Guarantee(
    "Queue",
    "extend",
    "The message stays hidden for `lease` seconds from now, even past the end of its "
    "original lease",
)
EXTEND_LEASE_LOST = Guarantee(
    "Queue",
    "extend",
    "After the lease has expired, `extend` raises `LeaseLost` or has no effect",
)
EXTEND_UNSUPPORTED = Guarantee(
    "Queue", "extend", "A lease above `capabilities.max_lease` raises `UnsupportedOperation`"
)
DEAD_LETTER = Guarantee(
    "Queue",
    "dead_letter",
    "The message leaves this channel and appears on `dead_letters()` with its body intact "
    "and `reason` kept",
)
DEAD_LETTERS = Guarantee(
    "Queue",
    "dead_letters",
    "Its deliveries carry the dead-lettered body byte for byte and, where the message was "
    "dead-lettered with `dead_letter`, the reason",
)
QUEUE_CLOSE = Guarantee("Queue", "close", "Safe to call twice")
CHANNELS_ISOLATED = Guarantee(
    "Broker", "queue", "Channels with different names are isolated from each other"
)
CASE_SENSITIVE = Guarantee("Broker", "queue", "names are case-sensitive")
SAME_CHANNEL = Guarantee(
    "Broker", "queue", "opening the same name twice addresses the same channel"
)
CHANNEL_NAMES = Guarantee("Broker", "queue", "`name` holds only letters, digits and hyphens")
NATIVE_NAMES = Guarantee("Broker", "queue", "the provider maps it to a valid native name")
BROKER_CLOSE = Guarantee("Broker", "close", "Safe to call twice")

# -- ClaimingQueue (`capabilities.claim_on_send`) ----------------------------------------------

CLAIM_EXCLUSIVE = Guarantee(
    "ClaimingQueue",
    "send_claimed",
    "the message is delivered to no one else while the lease is live",
)
CLAIM_SETTLES = Guarantee(
    "ClaimingQueue",
    "send_claimed",
    "the returned delivery has `attempt` 1 and acks, releases and extends like one from `receive`",
)
CLAIM_REDELIVERY = Guarantee(
    "ClaimingQueue",
    "send_claimed",
    "a claimed message left unsettled is delivered again after its lease, with `attempt` 2",
)
CLAIM_UNSUPPORTED = Guarantee(
    "ClaimingQueue",
    "send_claimed",
    "A lease above `capabilities.max_lease` raises `UnsupportedOperation`",
)

# -- InterruptibleQueue (`capabilities.interruptible`) -----------------------------------------

INTERRUPT_ENDS_WAIT = Guarantee(
    "InterruptibleQueue",
    "interrupt",
    "a `receive` waiting when `interrupt` is called returns well before its `wait` is up",
)
INTERRUPT_LOSES_NOTHING = Guarantee(
    "InterruptibleQueue",
    "interrupt",
    "a message sent after the interrupt is delivered to a later `receive` as to any other",
)
INTERRUPT_NOT_STICKY = Guarantee(
    "InterruptibleQueue",
    "interrupt",
    "a `receive` that starts after `interrupt` has returned waits as usual",
)

# -- StateStore -------------------------------------------------------------------------------

GET_MISSING = Guarantee("StateStore", "get", "Returns None for a missing key")
GET_ROUND_TRIP = Guarantee(
    "StateStore",
    "get",
    "otherwise the value byte for byte as last put, with its current version (reads see "
    "every completed write)",
)
PUT_ABSENT = Guarantee(
    "StateStore",
    "put",
    "With `expect=ABSENT` the write fails with `Conflict` if the record exists",
)
PUT_VERSION = Guarantee(
    "StateStore",
    "put",
    "with a version string it fails with `Conflict` unless that is the record's current "
    "version (a missing record never matches)",
)
PUT_ATOMIC = Guarantee(
    "StateStore",
    "put",
    "The check and the write are one atomic step, so of concurrent writers expecting the "
    "same version exactly one succeeds",
)
PUT_NEW_VERSION = Guarantee(
    "StateStore", "put", "Every successful write gives a version never before seen for that key"
)
PUT_VALUE_SIZE = Guarantee(
    "StateStore", "put", "Values up to `capabilities.max_value_bytes` round-trip exactly"
)
PUT_TOO_LARGE = Guarantee("StateStore", "put", "larger ones raise `TooLarge`")
PUT_KEYS = Guarantee(
    "StateStore",
    "put",
    "Keys may hold any characters, `/`, `#`, `?`, spaces and non-ASCII included",
)
PUT_TTL_UNSUPPORTED = Guarantee(
    "StateStore",
    "put",
    "`ttl` on a store without the TTL capability raises `UnsupportedOperation`",
)
TTL = Guarantee(
    "StateCapabilities",
    "ttl",
    "Whether `put(ttl=...)` is honoured (the record disappears after `ttl` seconds)",
)
MAX_KEY_BYTES = Guarantee(
    "StateCapabilities", "max_key_bytes", "Longest key or partition, in UTF-8 bytes"
)
DELETE_VERSION = Guarantee(
    "StateStore",
    "delete",
    "With a version string, fails with `Conflict` unless that is the current version",
)
DELETE_ANY = Guarantee(
    "StateStore", "delete", "with `ANY`, deleting a missing record is not an error"
)
DELETE_ABSENT = Guarantee(
    "StateStore",
    "delete",
    "with `ABSENT`, it fails with `Conflict` if the record exists and otherwise does nothing",
)
SCAN_PREFIX = Guarantee(
    "StateStore", "scan", "List records of one partition whose keys start with `prefix`"
)
SCAN_ORDER = Guarantee(
    "StateStore", "scan", "Records come in ascending order of their keys' UTF-8 bytes"
)
SCAN_LIMIT = Guarantee("StateStore", "scan", "a page holds at most `limit` records")
SCAN_CURSOR = Guarantee(
    "StateStore",
    "scan",
    "following cursors visits every record that existed for the whole scan exactly once, "
    "even while other records are written",
)
PARTITIONS_ISOLATED = Guarantee(
    "StateStore",
    "scan",
    "Partitions are isolated: a scan never returns another partition's records",
)
STATE_CLOSE = Guarantee("StateStore", "close", "Safe to call twice")
