"""`TablesStateStore`: versioned records in one Azure Data Tables table.

A record is one entity: PartitionKey and RowKey hold the escaped partition and key, the value
is split over binary properties, and the entity's ETag is the record's version. Every
version check is an `If-Match` / insert precondition evaluated by the service itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from switchboard.errors import (
    ConfigError,
    Conflict,
    NotFound,
    ProviderError,
    TooLarge,
    TransientProviderError,
    UnsupportedOperation,
)
from switchboard.interfaces import ABSENT, ANY, Expect, Page, Record, StateCapabilities

if TYPE_CHECKING:
    from azure.data.tables import TableClient

# -- keys -------------------------------------------------------------------------------------
#
# PartitionKey and RowKey may not hold `/`, `\`, `#`, `?` or control characters, and the
# service orders them by UTF-16 code units, while the interface promises UTF-8 byte order.
# So keys are stored escaped: each UTF-8 byte becomes either itself (a safe printable ASCII
# character) or an escape character followed by two uppercase hex digits. Each escape
# character stands for one contiguous range of byte values and sits between the safe
# characters around that range, so comparing escaped keys character by character gives the
# same order as comparing the original UTF-8 bytes, and the escape of a prefix is a prefix of
# the escape of every key that starts with it. Escaped keys are plain ASCII, readable in the
# portal ("run-1/step" is stored as "run-1.2Fstep").

_ESCAPE_RANGES = (
    ("!", 0x00, 0x21),  # control characters and space
    ('"', 0x22, 0x23),  # '#'
    (".", 0x2E, 0x2F),  # '/'
    (">", 0x3E, 0x3F),  # '?'
    ("[", 0x5B, 0x5C),  # '\'
    ("~", 0x7E, 0xFF),  # DEL and every byte of a non-ASCII character
)


def _escape_table() -> tuple[str, ...]:
    table = [chr(byte) for byte in range(256)]
    for escape, low, high in _ESCAPE_RANGES:
        for byte in range(low, high + 1):
            table[byte] = f"{escape}{byte:02X}"
    return tuple(table)


_ESCAPED_BYTE = _escape_table()
_ESCAPES = frozenset(escape for escape, _, _ in _ESCAPE_RANGES)
#: PartitionKey and RowKey are limited to 1 KiB of UTF-16, i.e. 512 characters.
_MAX_NATIVE_KEY_CHARS = 512
#: An escaped byte takes three characters, so this many UTF-8 bytes always fit.
MAX_KEY_BYTES = _MAX_NATIVE_KEY_CHARS // 3


def encode_key(key: str) -> str:
    """The table key storing `key`: same UTF-8 byte order, prefixes kept, no forbidden chars."""
    return "".join(_ESCAPED_BYTE[byte] for byte in key.encode("utf-8"))


def decode_key(stored: str) -> str:
    """The key that `encode_key` turned into `stored`."""
    out = bytearray()
    index = 0
    while index < len(stored):
        char = stored[index]
        if char in _ESCAPES:
            out.append(int(stored[index + 1 : index + 3], 16))
            index += 3
        else:
            out.append(ord(char))
            index += 1
    return out.decode("utf-8")


def _prefix_successor(encoded_prefix: str) -> str:
    """The smallest string above every string that starts with `encoded_prefix`.

    An escaped key never ends in an escape character and its characters are at most `~`,
    so raising the last character by one stays printable ASCII.
    """
    return encoded_prefix[:-1] + chr(ord(encoded_prefix[-1]) + 1)


# -- values -----------------------------------------------------------------------------------

#: A binary property holds at most 64 KiB by the documentation; the real service has been
#: seen to refuse string properties over 64,000 bytes (Azurite issue 2510), so stay under both.
_CHUNK_BYTES = 64_000
#: An entity holds at most 1 MiB. The service counts binary properties by their raw size, but
#: Azurite checks the JSON request body of an update, where binary values travel in base64
#: (4/3 larger). 12 chunks (768,000 bytes, 1,024,000 in base64) leave room for keys of up to
#: 2 x 512 characters and property annotations, so one limit holds on both.
MAX_VALUE_BYTES = 12 * _CHUNK_BYTES
_CHUNK_NAME = "v{:02d}"
_CHUNK_PROPERTY = re.compile(r"v\d\d")

TABLES_STATE_CAPABILITIES = StateCapabilities(
    max_value_bytes=MAX_VALUE_BYTES, max_key_bytes=MAX_KEY_BYTES, ttl=False
)

_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
#: The weak entity tags Tables issues (RFC 9110 syntax); it answers 400 to other If-Match values.
_ETAG = re.compile(r'W/"[\x21\x23-\x7e]*"')
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TOO_LARGE_CODES = frozenset({"EntityTooLarge", "PropertyValueTooLarge", "RequestBodyTooLarge"})
#: Ask the service not to echo a written entity back: values may be up to 1 MiB.
_NO_ECHO = {"Prefer": "return-no-content"}


class TablesStateStore:
    """A `StateStore` over one Azure Data Tables table (Azure Storage or Cosmos DB Table API).

    One partition is one table partition, so scanning a run's records is a single-partition
    range query. Records have no TTL (the service has none).
    """

    capabilities = TABLES_STATE_CAPABILITIES

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._closed = False

    @classmethod
    def from_connection_string(cls, connection_string: str, table: str) -> TablesStateStore:
        """A store on table `table` of the account that `connection_string` names."""
        _check_table_name(table)
        from azure.data.tables import TableClient

        try:
            client = TableClient.from_connection_string(connection_string, table_name=table)
        except ValueError as error:
            raise ConfigError(
                f"the azure provider's setting 'tables_connection_string' is not valid: {error}"
            ) from None
        return cls(client)

    @classmethod
    def from_endpoint(cls, endpoint: str, table: str, credential: Any) -> TablesStateStore:
        """A store on table `table` of the Table service at `endpoint`, authenticated with
        `credential` (an `AzureNamedKeyCredential`, a SAS credential or an Azure AD token
        credential)."""
        _check_table_name(table)
        from azure.data.tables import TableClient

        try:
            client = TableClient(endpoint, table, credential=credential)
        except ValueError as error:
            raise ConfigError(
                f"the azure provider's setting 'tables_endpoint' is not valid: {error}"
            ) from None
        return cls(client)

    @property
    def table_name(self) -> str:
        return str(self._table.table_name)

    def ensure(self) -> None:
        """Create the table if it does not exist yet (idempotent)."""
        from azure.core.exceptions import ResourceExistsError

        with _translated(f"creating table {self.table_name}"), suppress(ResourceExistsError):
            self._table.create_table()

    def get(self, partition: str, key: str) -> Record | None:
        from azure.core.exceptions import ResourceNotFoundError

        keys = self._native_keys(partition, key)
        try:
            with _translated(f"reading {partition}/{key}"):
                entity = self._table.get_entity(*keys)
        except NotFound as error:
            cause = error.__cause__
            if isinstance(cause, ResourceNotFoundError) and _error_code(cause) != "TableNotFound":
                return None
            raise
        return _record(key, entity)

    def put(
        self,
        partition: str,
        key: str,
        value: bytes,
        *,
        expect: Expect | str = ANY,
        ttl: float | None = None,
    ) -> str:
        if ttl is not None:
            raise UnsupportedOperation(
                "Azure Tables has no per-record TTL: the azure state store does not accept ttl"
            )
        if len(value) > MAX_VALUE_BYTES:
            raise TooLarge(
                f"value of {len(value)} bytes exceeds the azure state store's limit of "
                f"{MAX_VALUE_BYTES} bytes"
            )
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        partition_key, row_key = self._native_keys(partition, key)
        entity: dict[str, Any] = {"PartitionKey": partition_key, "RowKey": row_key}
        for number, start in enumerate(range(0, len(value), _CHUNK_BYTES)):
            entity[_CHUNK_NAME.format(number)] = bytes(value[start : start + _CHUNK_BYTES])
        where = f"writing {partition}/{key}"
        if expect is ANY:
            with _translated(where):
                written = self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        elif expect is ABSENT:
            with _translated(where, exists=f"{partition}/{key} already exists"):
                written = self._table.create_entity(entity, headers=_NO_ECHO)
        elif isinstance(expect, str):
            _check_version(expect, partition, key)
            # A missing record answers 404 to If-Match: it never matches a version.
            with _translated(
                where,
                stale=f"{partition}/{key} is not at version {expect}",
                missing=f"{partition}/{key} does not exist (expected version {expect})",
            ):
                written = self._table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=expect,
                    match_condition=MatchConditions.IfNotModified,
                )
        else:
            raise TypeError(f"expect must be ANY, ABSENT or a version string, got {expect!r}")
        return str(written["etag"])

    def delete(self, partition: str, key: str, *, expect: Expect | str = ANY) -> None:
        partition_key, row_key = self._native_keys(partition, key)
        where = f"deleting {partition}/{key}"
        if expect is ANY:
            with _translated(where):
                self._table.delete_entity(partition_key, row_key)
            return
        if expect is ABSENT:
            # Deleting what must not exist: succeeds only when there is nothing to delete.
            if self.get(partition, key) is not None:
                raise Conflict(f"{partition}/{key} exists (expected it absent)")
            return
        if not isinstance(expect, str):
            raise TypeError(f"expect must be ANY, ABSENT or a version string, got {expect!r}")
        _check_version(expect, partition, key)
        self._delete_version(partition, key, partition_key, row_key, expect)

    def _delete_version(
        self, partition: str, key: str, partition_key: str, row_key: str, version: str
    ) -> None:
        """Delete only at `version`. `TableClient.delete_entity` hides a 404, which here must be a
        `Conflict`; a one-operation transaction reports it."""
        from azure.core import MatchConditions
        from azure.data.tables import TableTransactionError

        operation = (
            "delete",
            {"PartitionKey": partition_key, "RowKey": row_key},
            {"etag": version, "match_condition": MatchConditions.IfNotModified},
        )
        try:
            with _translated(f"deleting {partition}/{key}"):
                self._table.submit_transaction([operation])
        except ProviderError as error:
            cause = error.__cause__
            if isinstance(cause, TableTransactionError) and _error_code(cause) == "TableNotFound":
                raise NotFound(f"deleting {partition}/{key}: the table does not exist") from cause
            if isinstance(cause, TableTransactionError) and cause.status_code in (404, 412):
                state = "does not exist" if cause.status_code == 404 else "has another version"
                raise Conflict(f"{partition}/{key} {state} (expected version {version})") from cause
            raise

    def scan(
        self, partition: str, *, prefix: str = "", limit: int = 100, cursor: str | None = None
    ) -> Page:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        partition_key = self._native_partition(partition)
        query = "PartitionKey eq @partition"
        parameters = {"partition": partition_key}
        if prefix:
            low = encode_key(prefix)
            query += " and RowKey ge @low and RowKey lt @high"
            parameters.update(low=low, high=_prefix_successor(low))
        with _translated(f"scanning {partition}/{prefix}*"):
            pages = self._table.query_entities(
                query, parameters=parameters, results_per_page=limit
            ).by_page(continuation_token=_decode_cursor(cursor))
            try:
                entities = list(next(pages))
            except StopIteration:
                return Page([], None)
            token = pages.continuation_token  # type: ignore[attr-defined]
        records = [_record(decode_key(entity["RowKey"]), entity) for entity in entities]
        return Page(records, _encode_cursor(token))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._table.close()

    def _native_partition(self, partition: str) -> str:
        if len(partition.encode("utf-8")) > MAX_KEY_BYTES:
            raise TooLarge(
                f"partition of {len(partition.encode('utf-8'))} UTF-8 bytes exceeds the azure "
                f"state store's limit of {MAX_KEY_BYTES}"
            )
        return encode_key(partition)

    def _native_keys(self, partition: str, key: str) -> tuple[str, str]:
        if len(key.encode("utf-8")) > MAX_KEY_BYTES:
            raise TooLarge(
                f"key of {len(key.encode('utf-8'))} UTF-8 bytes exceeds the azure state store's "
                f"limit of {MAX_KEY_BYTES}"
            )
        return self._native_partition(partition), encode_key(key)


def _check_version(version: str, partition: str, key: str) -> None:
    """A string that is not an ETag is no record's current version: `Conflict`, without
    asking the service (which would refuse the request as malformed)."""
    if not _ETAG.fullmatch(version):
        raise Conflict(
            f"{partition}/{key} is not at version {version!r} (not a version of this store)"
        )


def _record(key: str, entity: Any) -> Record:
    chunks = sorted(name for name in entity if _CHUNK_PROPERTY.fullmatch(name))
    value = b"".join(bytes(entity[name]) for name in chunks)
    return Record(key, value, str(entity.metadata["etag"]))


def _encode_cursor(token: Any) -> str | None:
    if token is None:
        return None
    text = json.dumps(token, sort_keys=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> Any:
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        token = json.loads(text)
    except (binascii.Error, ValueError):
        raise ValueError(f"not a cursor returned by this state store's scan: {cursor!r}") from None
    if not isinstance(token, dict):
        raise ValueError(f"not a cursor returned by this state store's scan: {cursor!r}")
    return token


def _error_code(error: Exception) -> str:
    """The service's error code ("TableNotFound", ...). The SDK sets `error_code` (sometimes an
    enum) on some errors only; the response body always carries it."""
    code = getattr(error, "error_code", None)
    if code:
        return str(getattr(code, "value", code))
    response = getattr(error, "response", None)
    try:
        body = json.loads(response.text()) if response is not None else {}
        return str(body["odata.error"]["code"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


@contextmanager
def _translated(
    where: str,
    *,
    exists: str | None = None,
    stale: str | None = None,
    missing: str | None = None,
) -> Iterator[None]:
    """Turn azure.core exceptions into Switchboard's, naming the operation `where`."""
    from azure.core.exceptions import (
        AzureError,
        HttpResponseError,
        ResourceExistsError,
        ResourceModifiedError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    try:
        yield
    except ResourceExistsError as error:
        raise Conflict(exists or f"{where}: {_short(error)}") from error
    except ResourceModifiedError as error:
        raise Conflict(stale or f"{where}: {_short(error)}") from error
    except ResourceNotFoundError as error:
        if missing is not None and _error_code(error) != "TableNotFound":
            raise Conflict(missing) from error
        if _error_code(error) == "TableNotFound":
            raise NotFound(
                f"{where}: the table does not exist; create it (the provider does when its "
                f"'create' setting is on) or name an existing one with 'table'"
            ) from error
        raise NotFound(f"{where}: {_short(error)}") from error
    except HttpResponseError as error:
        status = error.status_code or 0
        if status in (409, 412):
            raise Conflict(f"{where}: {_short(error)}") from error
        if _error_code(error) in _TOO_LARGE_CODES or status == 413:
            raise TooLarge(f"{where}: {_short(error)}") from error
        if status in _TRANSIENT_STATUS:
            raise TransientProviderError(f"{where}: {_short(error)}") from error
        raise ProviderError(f"{where}: {_short(error)}") from error
    except (ServiceRequestError, ServiceResponseError) as error:
        raise TransientProviderError(f"{where}: {_short(error)}") from error
    except AzureError as error:
        raise ProviderError(f"{where}: {_short(error)}") from error


def _short(error: Exception) -> str:
    """The first line of an SDK error (the rest repeats the response body)."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _check_table_name(table: str) -> None:
    if not _TABLE_NAME.fullmatch(table):
        raise ConfigError(
            f"the azure provider's setting 'table' must be 3-63 letters and digits starting "
            f"with a letter, got {table!r}"
        )
