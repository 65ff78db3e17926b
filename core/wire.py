"""The wire format: versioned JSON envelopes, and the claim check for large payloads.

Every message is a JSON object `{"v": 1, "kind": ..., "id": ..., "app": ..., "run": ...}`
plus fields of its kind, documented by `schema/wire-v1.json`. Nothing read from a queue or
a store is ever unpickled or evaluated: `decode` parses JSON and checks each field's type,
and anything else is a `MalformedMessage` that goes to dead-letter with its text as reason.

Payloads larger than a queue's or store's limit are written in chunks to the state store
(the claim check); the message or record then carries `{"$claim": {...}}` instead.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, NoReturn

from switchboard import ids
from switchboard.errors import Conflict, MalformedMessage, SerializationError
from switchboard.interfaces import ABSENT, ANY, Expect, Record, StateStore
from switchboard.retry import retrying

VERSION = 1

RUN_START = "run.start"
RUN_SIGNAL = "run.signal"
RUN_CANCEL = "run.cancel"
TASK_INVOKE = "task.invoke"
TASK_RESULT = "task.result"
TIMER_FIRED = "timer.fired"

# Required fields of each kind beyond the common ones, with their JSON types.
_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    RUN_START: {},
    RUN_SIGNAL: {"name": (str,)},
    RUN_CANCEL: {},
    TASK_INVOKE: {
        "seq": (int,),
        "attempt": (int,),
        "task": (str,),
        "input": (dict,),
        "cache": (dict,),
        "token": (str,),
    },
    TASK_RESULT: {"seq": (int,), "attempt": (int,), "task": (str,), "outcome": (str,)},
    TIMER_FIRED: {"seq": (int,), "attempt": (int,), "purpose": (str,), "due": (int, float)},
}
_COMMON: dict[str, tuple[type, ...]] = {"kind": (str,), "id": (str,), "app": (str,), "run": (str,)}
OUTCOMES = ("ok", "error", "pending")
PURPOSES = ("sleep", "retry", "timeout", "event-timeout")

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Every two-digit string, indexed by its 10 bits, and where each pair sits in an id: one
# lookup writes two digits (a third of the cost of a digit at a time).
_PAIRS = [high + low for high in _ALPHABET for low in _ALPHABET]
_PAIR_SHIFTS = range(120, -10, -10)


def new_id() -> str:
    """A 26-character id that sorts by creation time (48-bit milliseconds, 80 random bits):
    the 128 bits as 26 base-32 digits, most significant first."""
    value = (int(time.time() * 1000) << 80) | ids.random_bits(80)
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


# -- JSON ------------------------------------------------------------------------------------


# Built once: `json.dumps` with options constructs a new encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_DECODER = json.JSONDecoder()


def _not_json(value: Any) -> NoReturn:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# The C encoder behind `_ENCODER`, made once: `JSONEncoder.encode` makes a new one on every
# call, which is half the cost of encoding a small document. Without a `markers` dict it
# keeps no state between calls (so threads share it); a circular value then ends in
# RecursionError instead of ValueError, and both are reported the same way.
_C_ENCODE = (
    None
    if c_make_encoder is None
    else c_make_encoder(None, _not_json, encode_basestring, None, ":", ",", False, False, False)
)


def dumps(value: Any, what: str = "value", name: str | None = None) -> bytes:
    """Compact JSON bytes; `SerializationError` naming `what` (and `name`, see `to_json`)
    if the value is not JSON."""
    return to_json(value, what, name).encode()


def to_json(value: Any, what: str = "value", name: str | None = None) -> str:
    """`dumps`, as text. A `name` is appended to `what` as its repr ("the input of task
    'charge'") only if the error is raised, so a hot path formats nothing. `what` and
    `name` may be given by position: on a hot path, keywords cost more than the call."""
    try:
        if _C_ENCODE is None:
            return _ENCODER.encode(value)
        return "".join(_C_ENCODE(value, 0))
    except (TypeError, ValueError, RecursionError) as exc:
        reason = "it is circular or nested too deeply" if isinstance(exc, RecursionError) else exc
        if name is not None:
            what = f"{what} {name!r}"
        raise SerializationError(f"{what} is not JSON-serializable: {reason}") from None


def scalar_json(value: Any) -> str | None:
    """What `to_json` writes for a `plain` scalar, made without the encoder (whose set-up
    costs more than a small value's encoding); None for anything else."""
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    return None


class Encoded(dict[str, Any]):
    """A JSON object that keeps the text `to_json` made of it, for a document that holds
    it to use instead of encoding it again (a step's input, inside its history entry).
    Otherwise it is a dict. Made by `encoded`."""

    __slots__ = ("json",)
    json: str


def encoded(value: Mapping[str, Any], text: str) -> Encoded:
    """`value` as an `Encoded` whose JSON is `text` (which `to_json(value)` must be).
    Without an `__init__` of its own, which would cost more than the copy."""
    result = Encoded(value)
    result.json = text
    return result


def task_input(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> Encoded:
    """The input of a call of task `name`, `{"args": [...], "kwargs": {...}}`, as a reader
    of its JSON sees it, with that JSON. Plain scalar arguments come back as they are; the
    usual call, positional plain scalars, is written without the encoder (byte for byte
    what `to_json` writes). `SerializationError` names the task if it is not JSON."""
    call = {"args": list(args), "kwargs": kwargs}
    if not kwargs:
        parts = []
        for arg in args:
            part = scalar_json(arg)
            if part is None:
                break
            parts.append(part)
        else:
            return encoded(call, f'{{"args":[{",".join(parts)}],"kwargs":{{}}}}')
    text = to_json(call, "the input of task", name)
    if all(map(plain, args)) and all(map(plain, kwargs.values())):
        return encoded(call, text)
    return encoded(loads(text), text)


def call_arguments(call: Mapping[str, Any] | None) -> tuple[Any, Any]:
    """The `(args, kwargs)` of a recorded call (`task_input`'s shape; `None` or a missing
    part is an empty one). Their types are the reader's to check: this only unpacks."""
    if not call:
        return [], {}
    return call.get("args", []), call.get("kwargs", {})


def loads(data: bytes | str) -> Any:
    """Parse JSON text (bytes are UTF-8, as `dumps` writes them)."""
    return _DECODER.decode(data.decode() if isinstance(data, bytes) else data)


def plain(value: Any) -> bool:
    """Whether `value` is a JSON scalar that JSON gives back unchanged (exact types only:
    an `IntEnum` or a `str` subclass comes back as a plain int or str)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    return kind is float and math.isfinite(value)


def normalize(value: Any, what: str = "value", name: str | None = None) -> Any:
    """`value` as a reader of its JSON will see it (tuples become lists, and so on);
    `SerializationError` naming `what` if it is not JSON. Plain scalars, the usual task
    result, come back as they are without a round trip."""
    if plain(value):
        return value
    return loads(dumps(value, what, name))


# A fresh 8-byte BLAKE2b state, copied per digest: copying costs less than setting up its
# parameters again. Never updated itself, so threads share it.
_BLAKE2B_8 = hashlib.blake2b(digest_size=8)


def digest(data: bytes) -> str:
    """A short fingerprint of encoded input, recorded per step for the determinism check:
    BLAKE2b with an 8-byte digest, in hex."""
    state = _BLAKE2B_8.copy()
    state.update(data)
    return state.hexdigest()


# -- envelopes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded, validated envelope. `fields` holds the kind-specific fields."""

    kind: str
    id: str
    app: str
    run: str
    fields: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


def envelope(kind: str, *, app: str, run: str, **fields: Any) -> dict[str, Any]:
    """A new message of `kind` with a fresh id."""
    return {"v": VERSION, "kind": kind, "id": new_id(), "app": app, "run": run, **fields}


def decode(body: bytes, blobs: Blobs | None = None) -> Message:
    """Parse and validate a message body; `MalformedMessage` says what is wrong."""
    data = _parse(body)
    claim = data.get("$claim")
    if claim is not None:
        if blobs is None:
            raise MalformedMessage("message carries a claim check but no store is available")
        data = _parse(blobs.load(claim))
    return _validate(data)


def _parse(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedMessage(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedMessage(f"expected a JSON object, got {type(data).__name__}")
    if data.get("v") != VERSION:
        raise MalformedMessage(f"unsupported wire version {data.get('v')!r} (expected {VERSION})")
    return data


def _validate(data: dict[str, Any]) -> Message:
    kind = data.get("kind")
    if kind not in _FIELDS:
        raise MalformedMessage(f"unknown message kind {kind!r}")
    for name, types in {**_COMMON, **_FIELDS[kind]}.items():
        value = data.get(name)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = " or ".join(t.__name__ for t in types)
            raise MalformedMessage(f"{kind} field {name!r} must be {expected}, got {value!r}")
    if kind == TASK_RESULT and data["outcome"] not in OUTCOMES:
        raise MalformedMessage(f"task.result outcome must be one of {OUTCOMES}")
    if kind == TIMER_FIRED and data["purpose"] not in PURPOSES:
        raise MalformedMessage(f"timer.fired purpose must be one of {PURPOSES}")
    if kind == RUN_START and "entry" in data:
        _check_first_entry(data["entry"], data["app"])
    fields = {k: v for k, v in data.items() if k not in _COMMON and k != "v"}
    return Message(kind, data["id"], data["app"], data["run"], fields)


def _check_first_entry(entry: Any, app: str) -> None:
    """A `run.start` may carry the run's history entry 0 (see `Client.start`)."""
    events = entry.get("events") if isinstance(entry, dict) else None
    first = events[0] if isinstance(events, list) and len(events) == 1 else None
    if (
        not isinstance(first, dict)
        or entry.get("n") != 0
        or type(entry.get("at")) not in (int, float)
        or not 0 <= entry["at"] < math.inf
        or entry.get("consumed") != []
        or first.get("e") != "run.created"
        or first.get("app") != app
        or not isinstance(first.get("workflow"), str)
        or not isinstance(first.get("input"), dict)
    ):
        raise MalformedMessage(
            "run.start field 'entry' must be the run's first history entry (n 0, an 'at' of "
            "finite epoch seconds, nothing consumed, one run.created event of the message's app)"
        )


def encode(message: dict[str, Any], limit: int, blobs: Blobs) -> bytes:
    """Encode an envelope, moving it behind a claim check when it exceeds `limit` bytes."""
    body = dumps(message, what=f"{message['kind']} message")
    if len(body) <= limit:
        return body
    claim = blobs.store(message["run"], body)
    small = {k: message[k] for k in ("v", "kind", "id", "app", "run")}
    return dumps({**small, "$claim": claim})


# -- the claim check -------------------------------------------------------------------------


class Blobs:
    """Large payloads stored in chunks in a run's partition (keys `b/<id>/<index>`)."""

    PREFIX = "b/"

    def __init__(self, store: StateStore) -> None:
        self._store = store
        # Leave room for the provider's own framing of a value.
        self._chunk = max(1024, store.capabilities.max_value_bytes - 1024)

    def store(self, partition: str, data: bytes) -> dict[str, Any]:
        blob = new_id()
        chunks = range(0, max(len(data), 1), self._chunk)
        for index, start in enumerate(chunks):
            chunk = data[start : start + self._chunk]
            self._put_chunk(partition, f"{self.PREFIX}{blob}/{index:06d}", chunk)
        return {
            "partition": partition,
            "blob": blob,
            "size": len(data),
            "chunks": len(chunks),
            "sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
        }

    def _put_chunk(self, partition: str, key: str, chunk: bytes) -> None:
        # The blob id is fresh, so a Conflict can only mean our own earlier attempt took
        # effect before failing transiently.
        with contextlib.suppress(Conflict):
            retrying(lambda: self._store.put(partition, key, chunk, expect=ABSENT))

    def _get_chunk(self, partition: str, key: str) -> Record | None:
        return retrying(lambda: self._store.get(partition, key))

    def load(self, claim: Any) -> bytes:
        try:
            partition, blob = str(claim["partition"]), str(claim["blob"])
            size, chunks, expected = int(claim["size"]), int(claim["chunks"]), claim["sha256"]
        except (TypeError, KeyError, ValueError):
            raise MalformedMessage(f"invalid claim check {claim!r}") from None
        parts = []
        for index in range(chunks):
            record = self._get_chunk(partition, f"{self.PREFIX}{blob}/{index:06d}")
            if record is None:
                raise MalformedMessage(f"claim check {blob}: chunk {index} of {chunks} is missing")
            parts.append(record.value)
        data = b"".join(parts)
        actual = base64.b64encode(hashlib.sha256(data).digest()).decode()
        if len(data) != size or actual != expected:
            raise MalformedMessage(f"claim check {blob}: payload does not match its checksum")
        return data

    def put_record(
        self, partition: str, key: str, value: bytes, *, expect: Expect | str = ANY
    ) -> str:
        """`StateStore.put`, moving a value above the store's limit behind a claim check."""
        if len(value) > self._store.capabilities.max_value_bytes:
            value = dumps({"v": VERSION, "$claim": self.store(partition, value)})
        return self._store.put(partition, key, value, expect=expect)

    def read_record(self, value: bytes) -> Any:
        """The JSON document of a record written by `put_record`."""
        data = json.loads(value)
        if isinstance(data, dict) and "$claim" in data:
            data = json.loads(self.load(data["$claim"]))
        return data
