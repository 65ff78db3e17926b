"""A Redis state store: versioned records, compare-and-set and ordered scans.

One partition is three keys under `<prefix>:s:`:
  meta:<partition>   hash: key -> "<version>\\n<expiry in server ms, or empty>"
  value:<partition>  hash: key -> value bytes
  keys:<partition>   sorted set of the keys, all with score 0, so ZRANGEBYLEX lists them
                     in the order of their UTF-8 bytes (Redis compares members with memcmp)

Each operation is one Lua script (EVALSHA), so a version check and the write it guards are
one atomic step. Versions are random UUIDs: unique per write, even across a flushed
database. TTL is kept per record and checked against the server's clock on every read; an
expired record is removed by the next get, put, delete or scan that meets it (Redis 7.0
cannot expire one field of a hash by itself).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

from switchboard.errors import Conflict
from switchboard.interfaces import ABSENT, ANY, Expect, Page, Record, StateCapabilities
from switchboard.limits import check_limit, check_write
from switchboard_redis.client import NOW_MS, Script, connect, translated

CAPABILITIES = StateCapabilities(
    # Redis strings hold 512 MB; records this large are already the core's chunking job.
    max_value_bytes=64 * 1024 * 1024,
    max_key_bytes=64 * 1024,
    ttl=True,
)

# KEYS: meta, value, keys of one partition. Defines `current(key)`: the record's version,
# or false when it is missing or expired (an expired one is removed on the way).
_CURRENT = (
    NOW_MS
    + """
local function current(key)
    local meta = redis.call('HGET', KEYS[1], key)
    if not meta then return false end
    local newline = string.find(meta, '\\n', 1, true)
    local expires = string.sub(meta, newline + 1)
    if expires ~= '' and tonumber(expires) <= now then
        redis.call('HDEL', KEYS[1], key)
        redis.call('HDEL', KEYS[2], key)
        redis.call('ZREM', KEYS[3], key)
        return false
    end
    return string.sub(meta, 1, newline - 1)
end

local function meets(version, mode, expected)
    if mode == 'absent' then return not version end
    if mode == 'version' then return version == expected end
    return true
end
"""
)

# ARGV: key. Returns {version, value} or nil.
_GET = (
    _CURRENT
    + """
local version = current(ARGV[1])
if not version then return nil end
return {version, redis.call('HGET', KEYS[2], ARGV[1])}
"""
)

# ARGV: key, mode (any|absent|version), expected version, new version, ttl_ms or '', value.
# Returns {1} when written, {0, current version or nil} on a conflict.
_PUT = (
    _CURRENT
    + """
local version = current(ARGV[1])
if not meets(version, ARGV[2], ARGV[3]) then return {0, version} end
local expires = ''
if ARGV[5] ~= '' then expires = string.format('%.3f', now + tonumber(ARGV[5])) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4] .. '\\n' .. expires)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[6])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
return {1}
"""
)

# ARGV: key, mode, expected version. Returns {1} when done, {0, current version} otherwise.
_DELETE = (
    _CURRENT
    + """
local version = current(ARGV[1])
if not meets(version, ARGV[2], ARGV[3]) then return {0, version} end
if version then
    redis.call('HDEL', KEYS[1], ARGV[1])
    redis.call('HDEL', KEYS[2], ARGV[1])
    redis.call('ZREM', KEYS[3], ARGV[1])
end
return {1}
"""
)

# ARGV: ZRANGEBYLEX min and max, limit. Returns {1 if more keys follow else 0, last key
# looked at, then key, version, value of each live record}.
_SCAN = (
    _CURRENT
    + """
local keys = redis.call('ZRANGEBYLEX', KEYS[3], ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {0, ''}
for _, key in ipairs(keys) do
    local version = current(key)
    if version then
        out[#out + 1] = key
        out[#out + 1] = version
        out[#out + 1] = redis.call('HGET', KEYS[2], key)
    end
end
if #keys > 0 then
    local last = keys[#keys]
    out[2] = last
    if #keys == tonumber(ARGV[3]) and
        #redis.call('ZRANGEBYLEX', KEYS[3], '(' .. last, ARGV[2], 'LIMIT', 0, 1) > 0 then
        out[1] = 1
    end
end
return out
"""
)

_CURSOR_MARK = "k"


class RedisStateStore:
    """Records on one Redis database. Thread-safe, like the redis-py client it holds."""

    capabilities = CAPABILITIES

    def __init__(self, url: str, *, prefix: str = "switchboard") -> None:
        self._client = connect(url)
        self._prefix = prefix
        self._get = Script(self._client, _GET)
        self._put = Script(self._client, _PUT)
        self._delete = Script(self._client, _DELETE)
        self._scan = Script(self._client, _SCAN)
        self._closed = False

    def get(self, partition: str, key: str) -> Record | None:
        with translated(f"get {partition}/{key}"):
            reply = self._get(self._keys(partition), [key])
        if reply is None:
            return None
        version, value = reply
        return Record(key, bytes(value), version.decode())

    def put(
        self,
        partition: str,
        key: str,
        value: bytes,
        *,
        expect: Expect | str = ANY,
        ttl: float | None = None,
    ) -> str:
        check_write(self.capabilities, key, value, ttl)
        version = uuid.uuid4().hex
        ttl_ms = "" if ttl is None else repr(round(ttl * 1000, 3))
        with translated(f"put {partition}/{key}"):
            reply = self._put(
                self._keys(partition), [key, *_expectation(expect), version, ttl_ms, bytes(value)]
            )
        _raise_on_conflict(reply, expect, partition, key)
        return version

    def delete(self, partition: str, key: str, *, expect: Expect | str = ANY) -> None:
        with translated(f"delete {partition}/{key}"):
            reply = self._delete(self._keys(partition), [key, *_expectation(expect)])
        _raise_on_conflict(reply, expect, partition, key)

    def scan(
        self, partition: str, *, prefix: str = "", limit: int = 100, cursor: str | None = None
    ) -> Page:
        check_limit(limit)
        start = prefix.encode()
        low = b"[" + start if start else b"-"
        if cursor is not None:
            after = _decode_cursor(cursor)
            if after >= start:
                low = b"(" + after
        end = _prefix_end(start)
        high = b"(" + end if end is not None else b"+"
        with translated(f"scan {partition}"):
            reply: list[Any] = self._scan(self._keys(partition), [low, high, limit])
        records = [
            Record(reply[i].decode(), bytes(reply[i + 2]), reply[i + 1].decode())
            for i in range(2, len(reply), 3)
        ]
        more, last = int(reply[0]), bytes(reply[1])
        return Page(records, _encode_cursor(last) if more else None)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()

    def _keys(self, partition: str) -> list[str]:
        base = f"{self._prefix}:s:"
        return [f"{base}meta:{partition}", f"{base}value:{partition}", f"{base}keys:{partition}"]


def _expectation(expect: Expect | str) -> tuple[str, str]:
    if expect is ANY:
        return "any", ""
    if expect is ABSENT:
        return "absent", ""
    return "version", str(expect)


def _raise_on_conflict(reply: list[Any], expect: Expect | str, partition: str, key: str) -> None:
    if int(reply[0]):
        return
    current = reply[1].decode() if len(reply) > 1 and reply[1] is not None else None
    if expect is ABSENT:
        raise Conflict(f"{partition}/{key} already exists")
    raise Conflict(f"{partition}/{key} is at version {current}, expected {expect}")


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest byte string above every string starting with `prefix` (None: no bound).
    UTF-8 never holds 0xff, so the last byte can always be raised."""
    return prefix[:-1] + bytes([prefix[-1] + 1]) if prefix else None


def _encode_cursor(last_key: bytes) -> str:
    """An opaque, never empty cursor: the last key looked at (the next page starts after it,
    so records written or deleted meanwhile shift nothing)."""
    return _CURSOR_MARK + base64.urlsafe_b64encode(last_key).decode()


def _decode_cursor(cursor: str) -> bytes:
    if not cursor.startswith(_CURSOR_MARK):
        raise ValueError(f"not a cursor of this store: {cursor!r}")
    try:
        return base64.urlsafe_b64decode(cursor[len(_CURSOR_MARK) :])
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not a cursor of this store: {cursor!r}") from exc
