"""DynamoDB state store: one table, partition key `pk` (the partition), sort key `sk` (the key).

Each item holds the value in binary attribute `v`, an opaque version `ver` (uuid4 hex, so a
deleted and recreated record never repeats a version) and, with a ttl, `expires` (epoch
seconds, the table's TimeToLive attribute). DynamoDB deletes expired items only
eventually, so reads and conditions treat an item past `expires` as absent.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from decimal import Decimal
from typing import Any

import botocore.exceptions

from switchboard.errors import ConfigError, Conflict, NotFound, TooLarge, UnsupportedOperation
from switchboard.interfaces import ABSENT, ANY, Expect, Page, Record, StateCapabilities
from switchboard.providers.aws.client import error_codes, make_client, translated
from switchboard.providers.aws.config import AwsConfig

#: DynamoDB's item limit counts attribute names and values (400 KB = 409,600 bytes).
DYNAMO_MAX_ITEM_BYTES = 409_600
#: DynamoDB's limit for a sort key; partitions are held to the same limit.
MAX_KEY_BYTES = 1024
_VERSION_BYTES = len(uuid.uuid4().hex)
#: Numbers take at most 21 bytes.
_ITEM_OVERHEAD = (
    len("pk")
    + MAX_KEY_BYTES
    + len("sk")
    + MAX_KEY_BYTES
    + len("v")
    + len("ver")
    + _VERSION_BYTES
    + len("expires")
    + 21
)
#: Leaves headroom below the computed bound (moto refuses items over 405,000 bytes).
MAX_VALUE_BYTES = 400_000
assert MAX_VALUE_BYTES + _ITEM_OVERHEAD <= 405_000 <= DYNAMO_MAX_ITEM_BYTES

DYNAMO_CAPABILITIES = StateCapabilities(
    max_value_bytes=MAX_VALUE_BYTES, max_key_bytes=MAX_KEY_BYTES, ttl=True
)

# Placeholders keep the expressions clear of DynamoDB's reserved words.
_NAMES = {"#pk": "pk", "#sk": "sk", "#ver": "ver", "#expires": "expires"}
_LIVE = "(attribute_not_exists(#expires) OR #expires > :now)"
_ABSENT = "(attribute_not_exists(#pk) OR #expires <= :now)"
_AT_VERSION = f"#ver = :ver AND {_LIVE}"


def _now() -> Decimal:
    return Decimal(f"{time.time():.3f}")


def _encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([key]).encode()).decode()


def _decode_cursor(cursor: str) -> str:
    try:
        (key,) = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (TypeError, ValueError, binascii.Error, UnicodeError) as exc:
        raise UnsupportedOperation(f"{cursor!r} is not a cursor returned by scan") from exc
    if not isinstance(key, str):
        raise UnsupportedOperation(f"{cursor!r} is not a cursor returned by scan")
    return key


class DynamoStateStore:
    """Versioned records in one DynamoDB table. Thread-safe (boto3 clients are)."""

    capabilities = DYNAMO_CAPABILITIES

    def __init__(self, config: AwsConfig, *, client: Any = None) -> None:
        self._config = config
        self.table = config.table
        # A client passed in belongs to the caller, who closes it.
        self._client = client if client is not None else make_client("dynamodb", config)
        self._closed = client is not None

    def ensure(self) -> None:
        """Make sure the table exists with TTL on `expires` (creating both if allowed).

        Idempotent. With `create=False` it only checks that the table exists.
        """
        try:
            with translated(f"describing table {self.table}"):
                status = self._client.describe_table(TableName=self.table)["Table"]["TableStatus"]
        except NotFound as exc:
            if not self._config.create:
                raise ConfigError(
                    f"DynamoDB table {self.table} does not exist in {self._config.region}: "
                    "create it (pk: S hash key, sk: S range key) or set create=true"
                ) from exc
            status = self._create_table()
        if status != "ACTIVE":
            with translated(f"waiting for table {self.table}"):
                self._client.get_waiter("table_exists").wait(
                    TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
                )
        if self._config.create:
            self._enable_ttl()

    # -- the StateStore protocol ---------------------------------------------------------------

    def get(self, partition: str, key: str) -> Record | None:
        with translated(f"reading {partition}/{key} from {self.table}"):
            item = self._client.get_item(
                TableName=self.table, Key=self._key(partition, key), ConsistentRead=True
            ).get("Item")
        if item is None or self._expired(item, _now()):
            return None
        return self._record(item)

    def put(
        self,
        partition: str,
        key: str,
        value: bytes,
        *,
        expect: Expect | str = ANY,
        ttl: float | None = None,
    ) -> str:
        if len(value) > MAX_VALUE_BYTES:
            raise TooLarge(
                f"value of {len(value)} bytes exceeds the store's limit of {MAX_VALUE_BYTES} bytes"
            )
        now = _now()
        version = uuid.uuid4().hex
        item = {
            **self._key(partition, key),
            "v": {"B": bytes(value)},
            "ver": {"S": version},
        }
        if ttl is not None:
            item["expires"] = {"N": str(now + Decimal(f"{ttl:.3f}"))}
        request: dict[str, Any] = {"TableName": self.table, "Item": item}
        request.update(self._condition(expect, now))
        with translated(f"writing {partition}/{key} to {self.table}"):
            try:
                self._client.put_item(**request)
            except botocore.exceptions.ClientError as exc:
                self._raise_conflict(exc, partition, key, expect)
                raise
        return version

    def delete(self, partition: str, key: str, *, expect: Expect | str = ANY) -> None:
        request: dict[str, Any] = {"TableName": self.table, "Key": self._key(partition, key)}
        request.update(self._condition(expect, _now()))
        with translated(f"deleting {partition}/{key} from {self.table}"):
            try:
                self._client.delete_item(**request)
            except botocore.exceptions.ClientError as exc:
                self._raise_conflict(exc, partition, key, expect)
                raise

    def scan(
        self, partition: str, *, prefix: str = "", limit: int = 100, cursor: str | None = None
    ) -> Page:
        if limit < 1:
            raise UnsupportedOperation(f"scan needs a limit of at least 1, got {limit}")
        self._check_key(partition, "partition")
        now = _now()
        values: dict[str, Any] = {":pk": {"S": partition}, ":now": {"N": str(now)}}
        condition = "#pk = :pk"
        if prefix:
            condition += " AND begins_with(#sk, :prefix)"
            values[":prefix"] = {"S": prefix}
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": condition,
            "FilterExpression": _LIVE,
            "ExpressionAttributeNames": {
                name: _NAMES[name] for name in ("#pk", "#expires") + (("#sk",) if prefix else ())
            },
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
        }
        start = None if cursor is None else _decode_cursor(cursor)
        records: list[Record] = []
        # DynamoDB applies Limit before the expiry filter: keep reading until the page is
        # full or the partition ends.
        while True:
            if start is not None:
                request["ExclusiveStartKey"] = self._key(partition, start)
            request["Limit"] = limit - len(records)
            with translated(f"scanning {partition} in {self.table}"):
                response = self._client.query(**request)
            records.extend(self._record(item) for item in response.get("Items", []))
            last = response.get("LastEvaluatedKey")
            if last is None:
                return Page(records, None)
            start = str(last["sk"]["S"])
            if len(records) >= limit:
                return Page(records, _encode_cursor(start))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()

    # -- internals --------------------------------------------------------------------------

    def _key(self, partition: str, key: str) -> dict[str, Any]:
        self._check_key(partition, "partition")
        self._check_key(key, "key")
        return {"pk": {"S": partition}, "sk": {"S": key}}

    @staticmethod
    def _check_key(text: str, what: str) -> None:
        size = len(text.encode("utf-8"))
        if size > MAX_KEY_BYTES:
            raise TooLarge(f"{what} of {size} UTF-8 bytes exceeds DynamoDB's {MAX_KEY_BYTES}")
        if size == 0:
            raise UnsupportedOperation(f"DynamoDB cannot store an empty {what}")

    @staticmethod
    def _condition(expect: Expect | str, now: Decimal) -> dict[str, Any]:
        if expect is ANY:
            return {}
        if expect is ABSENT:
            return {
                "ConditionExpression": _ABSENT,
                "ExpressionAttributeNames": {"#pk": "pk", "#expires": "expires"},
                "ExpressionAttributeValues": {":now": {"N": str(now)}},
            }
        return {
            "ConditionExpression": _AT_VERSION,
            "ExpressionAttributeNames": {"#ver": "ver", "#expires": "expires"},
            "ExpressionAttributeValues": {":ver": {"S": str(expect)}, ":now": {"N": str(now)}},
        }

    @staticmethod
    def _raise_conflict(
        exc: botocore.exceptions.ClientError, partition: str, key: str, expect: Expect | str
    ) -> None:
        if "ConditionalCheckFailedException" in error_codes(exc):
            wanted = "no record" if expect is ABSENT else f"version {expect}"
            raise Conflict(f"{partition}/{key}: expected {wanted}") from exc

    @staticmethod
    def _expired(item: dict[str, Any], now: Decimal) -> bool:
        expires = item.get("expires")
        return expires is not None and Decimal(expires["N"]) <= now

    @staticmethod
    def _record(item: dict[str, Any]) -> Record:
        return Record(str(item["sk"]["S"]), bytes(item["v"]["B"]), str(item["ver"]["S"]))

    def _create_table(self) -> str:
        with translated(f"creating table {self.table}"):
            try:
                response = self._client.create_table(
                    TableName=self.table,
                    KeySchema=[
                        {"AttributeName": "pk", "KeyType": "HASH"},
                        {"AttributeName": "sk", "KeyType": "RANGE"},
                    ],
                    AttributeDefinitions=[
                        {"AttributeName": "pk", "AttributeType": "S"},
                        {"AttributeName": "sk", "AttributeType": "S"},
                    ],
                    BillingMode="PAY_PER_REQUEST",
                )
                return str(response["TableDescription"]["TableStatus"])
            except botocore.exceptions.ClientError as exc:
                # Another process created it first.
                if "ResourceInUseException" not in error_codes(exc):
                    raise
                return "CREATING"

    def _enable_ttl(self) -> None:
        with translated(f"enabling TTL on {self.table}"):
            description = self._client.describe_time_to_live(TableName=self.table)
            status = description.get("TimeToLiveDescription", {}).get("TimeToLiveStatus")
            if status in ("ENABLED", "ENABLING"):
                return
            try:
                self._client.update_time_to_live(
                    TableName=self.table,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"},
                )
            except botocore.exceptions.ClientError as exc:
                # Another process enabled it in between.
                if "ValidationException" not in error_codes(exc):
                    raise
