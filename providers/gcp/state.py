"""Firestore state store: one document per record, one subcollection per partition.

Layout: `{collection}/{partition id}/records/{key id}` holding the fields `key` (the raw
key, a string), `value` (bytes) and `nonce`. A partition is one subcollection, so loading
a run is one query, and no two partitions can ever meet in a scan. Scans order by the
`key` field, not by document id: Firestore orders strings by their UTF-8 bytes (the
emulator too: tested), which is exactly the order the interface promises, so the ids only
have to be valid and distinct (see `document_id`). Prefix scans are a range on `key`
(`prefix <= key < next string after every key with that prefix`); a cursor is `>` and the
last key returned (never empty, even after the empty key), continued with `start_after`,
so records written during a scan neither repeat nor hide records that existed throughout.

Versions are the document's `update_time` ("seconds.nanoseconds"), checked by Firestore
preconditions in the write itself: `create()` for `ABSENT` (AlreadyExists -> Conflict),
`update()` / `delete()` with `last_update_time` for a version (FailedPrecondition ->
Conflict). Firestore keeps the old `update_time` when a write changes nothing, so each
write also stores a fresh random `nonce`: every successful write gets a new version, and
two writers of the same value expecting the same version cannot both win.

TTL: declared unsupported (`ttl=False`). Firestore's TTL policies delete expired
documents up to a day late and the emulator has none; honouring `ttl` would mean filtering
every read and check on an `expires` field. `put(ttl=...)` raises `UnsupportedOperation`.

Limits: keys up to 1500 UTF-8 bytes (Firestore indexes at most 1500 bytes of a field, and
scans order by that index). Values up to `capabilities.max_value_bytes`: the 1 MiB
document limit minus the worst-case document name and fields (ids up to 1500 bytes).
For large values in production, exempt the `value` field from indexing.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from typing import Any

from switchboard.errors import (
    ConfigError,
    Conflict,
    ProviderError,
    TooLarge,
    UnsupportedOperation,
)
from switchboard.interfaces import ABSENT, ANY, Expect, Page, Record, StateCapabilities
from switchboard.providers.gcp._google import firestore_client, translate
from switchboard.providers.gcp.config import GcpConfig

MAX_KEY_BYTES = 1500
_MAX_ID_BYTES = 1500
_DOCUMENT_BYTES = 1024 * 1024
_RECORDS = "records"
_KEY, _VALUE, _NONCE = "key", "value", "nonce"
_RESERVED_ID = re.compile(r"__.*__", re.DOTALL)
_VERSION = re.compile(r"(\d+)\.(\d{9})")
_CURSOR = ">"


def document_id(text: str) -> str:
    """A valid Firestore document id for `text`, distinct for distinct texts.

    Only `%` and `/` are percent-encoded (ids cannot hold `/`), so ids stay readable. The
    forbidden ids `.`, `..` and `__...__` get their first character encoded, the empty
    string becomes `%`, and an id over Firestore's 1500 bytes becomes `%%` plus a SHA-256:
    after escaping, `%` is always followed by `25` or `2F`, so none of these forms can
    come from another text and no two texts share an id.
    """
    if text == "":
        return "%"
    encoded = text.replace("%", "%25").replace("/", "%2F")
    if encoded in (".", ".."):
        encoded = "%2E" + encoded[1:]
    elif _RESERVED_ID.fullmatch(encoded):
        encoded = "%5F" + encoded[1:]
    if len(encoded.encode()) > _MAX_ID_BYTES:
        return "%%" + hashlib.sha256(text.encode()).hexdigest()
    return encoded


def _max_value_bytes(collection: str) -> int:
    """The 1 MiB document limit minus the worst case of everything else in the document.

    Firestore counts: 32 bytes per document; its name (each collection id and document id
    plus one, and 16 more); each field name plus one; a string plus one; bytes as is.
    """
    name = (len(collection.encode()) + 1) + (_MAX_ID_BYTES + 1) * 2 + (len(_RECORDS) + 1) + 16
    fields = (len(_KEY) + 1) + (MAX_KEY_BYTES + 1) + (len(_VALUE) + 1) + (len(_NONCE) + 1) + 16
    room = _DOCUMENT_BYTES - 32 - name - fields
    return room // 1024 * 1024


class FirestoreStateStore:
    """Versioned records in Firestore documents, checked by write preconditions."""

    def __init__(self, config: GcpConfig) -> None:
        if document_id(config.collection) != config.collection or len(config.collection) > 100:
            raise ConfigError(
                f"the gcp provider's setting 'collection' must be a plain Firestore collection "
                f"id (no '/', '%', '.', '..' or '__...__'; at most 100 characters), "
                f"got {config.collection!r}"
            )
        self._collection = config.collection
        self._client = firestore_client(config)
        self.capabilities = StateCapabilities(
            max_value_bytes=_max_value_bytes(config.collection),
            max_key_bytes=MAX_KEY_BYTES,
            ttl=False,
        )
        self._closed = False
        self._lock = threading.Lock()

    def get(self, partition: str, key: str) -> Record | None:
        try:
            snapshot = self._document(partition, key).get()
        except Exception as exc:
            raise translate(exc, f"get {partition}/{key}") from exc
        if not snapshot.exists:
            return None
        return Record(key, bytes(snapshot.get(_VALUE)), _version(snapshot.update_time))

    def put(
        self,
        partition: str,
        key: str,
        value: bytes,
        *,
        expect: Expect | str = ANY,
        ttl: float | None = None,
    ) -> str:
        self._check_write(key, value, ttl)
        from google.api_core import exceptions as google

        document = self._document(partition, key)
        fields = {_KEY: key, _VALUE: bytes(value), _NONCE: os.urandom(8)}
        try:
            if isinstance(expect, str):
                result = document.update(fields, option=self._precondition(expect))
            elif expect is ABSENT:
                result = document.create(fields)
            else:
                result = document.set(fields)
        except (google.AlreadyExists, google.FailedPrecondition, google.NotFound) as exc:
            raise self._conflict(partition, key, expect) from exc
        except Exception as exc:
            raise _too_large_or(exc, f"put {partition}/{key}") from exc
        return _version(result.update_time)

    def delete(self, partition: str, key: str, *, expect: Expect | str = ANY) -> None:
        from google.api_core import exceptions as google

        document = self._document(partition, key)
        try:
            if isinstance(expect, str):
                document.delete(option=self._precondition(expect))
            elif expect is ABSENT:
                # Deleting a record that must be absent is a no-op or a conflict.
                document.delete(option=self._client.write_option(exists=False))
            else:
                document.delete()
        except (google.AlreadyExists, google.FailedPrecondition, google.NotFound) as exc:
            raise self._conflict(partition, key, expect) from exc
        except Exception as exc:
            raise translate(exc, f"delete {partition}/{key}") from exc

    def scan(
        self, partition: str, *, prefix: str = "", limit: int = 100, cursor: str | None = None
    ) -> Page:
        if limit < 1:
            raise UnsupportedOperation(f"scan limit must be at least 1, got {limit}")
        from google.cloud.firestore_v1.base_query import FieldFilter

        query: Any = self._records(partition)
        if prefix:
            query = query.where(filter=FieldFilter(_KEY, ">=", prefix))
            upper = _after_prefix(prefix)
            if upper is not None:
                query = query.where(filter=FieldFilter(_KEY, "<", upper))
        query = query.order_by(_KEY)
        if cursor is not None:
            if not cursor.startswith(_CURSOR):
                raise ProviderError(f"{cursor!r} is not a cursor of this store")
            query = query.start_after({_KEY: cursor[len(_CURSOR) :]})
        try:
            snapshots = list(query.limit(limit + 1).stream())
        except Exception as exc:
            raise translate(exc, f"scan {partition}") from exc
        records = [
            Record(snapshot.get(_KEY), bytes(snapshot.get(_VALUE)), _version(snapshot.update_time))
            for snapshot in snapshots[:limit]
        ]
        more = len(snapshots) > limit
        return Page(records, _CURSOR + records[-1].key if more else None)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._client.close()

    # -- internals --------------------------------------------------------------------------

    def _records(self, partition: str) -> Any:
        return self._client.collection(self._collection, document_id(partition), _RECORDS)

    def _document(self, partition: str, key: str) -> Any:
        return self._records(partition).document(document_id(key))

    def _precondition(self, version: str) -> Any:
        from google.protobuf.timestamp_pb2 import Timestamp

        match = _VERSION.fullmatch(version)
        # Firestore times are whole microseconds (and refuses finer preconditions).
        if match is None or int(match[2]) % 1000:
            raise Conflict(f"{version!r} is not a version of this store")
        timestamp = Timestamp(seconds=int(match[1]), nanos=int(match[2]))
        return self._client.write_option(last_update_time=timestamp)

    def _check_write(self, key: str, value: bytes, ttl: float | None) -> None:
        if ttl is not None:
            raise UnsupportedOperation(
                "the Firestore state store has no ttl (capabilities.ttl is False): "
                "delete records explicitly"
            )
        if len(value) > self.capabilities.max_value_bytes:
            raise TooLarge(
                f"value of {len(value)} bytes exceeds the Firestore store's limit of "
                f"{self.capabilities.max_value_bytes} bytes"
            )
        if len(key.encode()) > MAX_KEY_BYTES:
            raise TooLarge(f"key of {len(key.encode())} bytes exceeds {MAX_KEY_BYTES} bytes")

    @staticmethod
    def _conflict(partition: str, key: str, expect: Expect | str) -> Conflict:
        if expect is ABSENT:
            return Conflict(f"{partition}/{key} already exists")
        return Conflict(f"{partition}/{key} is not at version {expect} (or is missing)")


def _version(update_time: Any) -> str:
    timestamp = update_time.timestamp_pb()
    return f"{timestamp.seconds}.{timestamp.nanos:09d}"


def _after_prefix(prefix: str) -> str | None:
    """The least string above every string starting with `prefix` (None: there is none).

    UTF-8 byte order is code point order, so bump the last code point that can be bumped.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code == 0xD800:
            code = 0xE000  # surrogates cannot be stored
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return None


def _too_large_or(exc: BaseException, action: str) -> Exception:
    from google.api_core import exceptions as google

    if isinstance(exc, google.InvalidArgument) and (
        "longer than" in str(exc) or "exceeds the maximum" in str(exc) or "too big" in str(exc)
    ):
        return TooLarge(f"{action} failed: {exc}")
    return translate(exc, action)
