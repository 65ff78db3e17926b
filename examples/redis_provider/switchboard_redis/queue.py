"""Redis queues: at-least-once channels with leases, delays and a dead-letter channel.

One channel `name` is a few keys under `<prefix>:q:<name>:`:
  due      sorted set: message id -> when it is next visible (server ms): the send time
           plus `delay` while it waits, the end of its lease while it is out
  body     hash: message id -> body bytes
  attempt  hash: message id -> deliveries so far
  lease    hash: message id -> token of the lease out on it
  reason   hash: message id -> why it was dead-lettered (dead-letter channels)
  meta     hash: max_attempts, shared by everyone who opens the channel
  notify   list: one entry per send, so a waiting `receive` wakes with BLPOP, not a poll

Every change is one Lua script (run by EVALSHA), so a receive takes due messages and
leases them atomically, and ack, release, extend and dead_letter check the lease token in
the same step that acts on it. The dead-letter channel of `name` is the channel
`name-dlq`; moving a message there happens inside the receive script.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis

from switchboard.errors import LeaseLost, UnsupportedOperation
from switchboard.interfaces import Delivery, Queue, QueueCapabilities
from switchboard.limits import check_request, check_send
from switchboard_redis.client import NOW_MS, Script, connect, translated

CAPABILITIES = QueueCapabilities(
    # Bodies are Redis strings (512 MB at most); larger payloads go through the claim check
    # long before that, and a 64 MiB body is already a lot for one round trip.
    max_message_bytes=64 * 1024 * 1024,
    max_batch=1000,
    max_delay=365 * 24 * 3600.0,
    max_lease=24 * 3600.0,
    # Done by the receive script on the server, not by the core.
    native_dead_letter=True,
)

#: A dead-letter channel keeps its messages however often they are delivered.
_UNLIMITED = 2**31
#: Most bytes of bodies sent in one script call; a larger batch takes several calls
#: (`send` may then have enqueued a subset when it raises, as the interface allows).
_SEND_CHUNK_BYTES = 64 * 1024 * 1024
#: Longest a waiting `receive` sleeps between looks: it also catches messages whose delay
#: or lease ran out, which wake nobody.
_POLL = 0.5
#: Wake-ups kept per channel: enough for every waiting consumer; more would only be popped.
_NOTIFY_KEEP = 256
_CHANNEL_KEYS = ("due", "body", "attempt", "lease", "reason")

# Moves message `id` of the channel in KEYS[1..5] to the dead-letter channel whose five
# keys start at KEYS[dead] and whose notify list follows them. Expects `now` to be set.
_MOVE_TO_DEAD = """
local function move_to_dead(id, body, reason, dead)
    redis.call('ZREM', KEYS[1], id)
    for k = 2, 5 do redis.call('HDEL', KEYS[k], id) end
    redis.call('HSET', KEYS[dead + 1], id, body)
    redis.call('HDEL', KEYS[dead + 2], id)
    redis.call('HDEL', KEYS[dead + 3], id)
    redis.call('HSET', KEYS[dead + 4], id, reason)
    redis.call('ZADD', KEYS[dead], now, id)
    redis.call('LPUSH', KEYS[dead + 5], '1')
    redis.call('LTRIM', KEYS[dead + 5], 0, KEEP_LAST)
end
""".replace("KEEP_LAST", str(_NOTIFY_KEEP - 1))

# Lease checks: the token matches and the lease has not run out yet.
_HELD = """
local function held(id, token)
    if redis.call('HGET', KEYS[4], id) ~= token then return false end
    local until_ms = tonumber(redis.call('ZSCORE', KEYS[1], id))
    return until_ms ~= nil and until_ms > now
end
"""

# KEYS: due, body, notify. ARGV: delay_ms, then id, body pairs.
_SEND = (
    NOW_MS
    + """
local visible_at = now + tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    redis.call('ZADD', KEYS[1], visible_at, ARGV[i])
end
local wakeups = math.min((#ARGV - 1) / 2, KEEP_LAST)
for i = 1, wakeups do redis.call('LPUSH', KEYS[3], '1') end
redis.call('LTRIM', KEYS[3], 0, KEEP_LAST)
""".replace("KEEP_LAST", str(_NOTIFY_KEEP - 1))
)

# KEYS: the channel's five keys, meta, then (when it has one) its dead-letter channel's
# five keys and notify list. ARGV: max_messages, lease_ms, token prefix, has dead letters.
# Returns {ms until the next message is due or -1, then id, body, attempt, token, reason
# for each delivery}.
_RECEIVE = (
    NOW_MS
    + _MOVE_TO_DEAD
    + """
local limit = tonumber(ARGV[1])
local lease_ms = tonumber(ARGV[2])
local max_attempts = nil
if ARGV[4] == '1' then
    max_attempts = tonumber(redis.call('HGET', KEYS[6], 'max_attempts') or '5')
end
local out = {-1}
local taken = 0
while taken < limit do
    local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit - taken)
    if #due == 0 then break end
    for _, id in ipairs(due) do
        local body = redis.call('HGET', KEYS[2], id)
        local attempt = tonumber(redis.call('HGET', KEYS[3], id) or '0')
        if not body then
            redis.call('ZREM', KEYS[1], id)
        elseif max_attempts ~= nil and attempt >= max_attempts then
            move_to_dead(id, body, 'delivered ' .. attempt .. ' times', 7)
        else
            local token = ARGV[3] .. ':' .. id
            redis.call('HSET', KEYS[3], id, attempt + 1)
            redis.call('HSET', KEYS[4], id, token)
            redis.call('ZADD', KEYS[1], now + lease_ms, id)
            out[#out + 1] = id
            out[#out + 1] = body
            out[#out + 1] = attempt + 1
            out[#out + 1] = token
            out[#out + 1] = redis.call('HGET', KEYS[5], id)
            taken = taken + 1
        end
    end
end
if taken == 0 then
    local next_due = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    if #next_due > 0 then out[1] = math.max(0, math.ceil(tonumber(next_due[2]) - now)) end
end
return out
"""
)

# KEYS: the channel's five keys. ARGV: id, token pairs. Settles each message still leased
# with that token (after the lease ran out but before another receive, it still settles).
_ACK = """
local settled = 0
for i = 1, #ARGV, 2 do
    local id = ARGV[i]
    if redis.call('HGET', KEYS[4], id) == ARGV[i + 1] then
        redis.call('ZREM', KEYS[1], id)
        for k = 2, 5 do redis.call('HDEL', KEYS[k], id) end
        settled = settled + 1
    end
end
return settled
"""

# KEYS: the channel's five keys, notify. ARGV: id, token, delay_ms. Returns 0 if not held.
_RELEASE = (
    NOW_MS
    + _HELD
    + """
if not held(ARGV[1], ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
if tonumber(ARGV[3]) == 0 then
    redis.call('LPUSH', KEYS[6], '1')
    redis.call('LTRIM', KEYS[6], 0, KEEP_LAST)
end
return 1
""".replace("KEEP_LAST", str(_NOTIFY_KEEP - 1))
)

# KEYS: the channel's five keys. ARGV: id, token, lease_ms. Returns 0 if not held.
_EXTEND = (
    NOW_MS
    + _HELD
    + """
if not held(ARGV[1], ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[1])
return 1
"""
)

# KEYS: the channel's five keys, then the dead-letter channel's five keys and notify.
# ARGV: id, token, reason. Returns 0 if not held.
_DEAD_LETTER = (
    NOW_MS
    + _HELD
    + _MOVE_TO_DEAD
    + """
if not held(ARGV[1], ARGV[2]) then return 0 end
move_to_dead(ARGV[1], redis.call('HGET', KEYS[2], ARGV[1]), ARGV[3], 6)
return 1
"""
)


class _Scripts:
    """The scripts, registered once per client."""

    def __init__(self, client: redis.Redis) -> None:
        self.send = Script(client, _SEND)
        self.receive = Script(client, _RECEIVE)
        self.ack = Script(client, _ACK)
        self.release = Script(client, _RELEASE)
        self.extend = Script(client, _EXTEND)
        self.dead_letter = Script(client, _DEAD_LETTER)


class RedisQueue:
    """One channel. Thread-safe: redis-py's client keeps a connection per concurrent call."""

    capabilities = CAPABILITIES

    def __init__(
        self,
        client: redis.Redis,
        scripts: _Scripts,
        prefix: str,
        name: str,
        max_attempts: int,
        *,
        dead: RedisQueue | None,
    ) -> None:
        self.name = name
        self.max_attempts = max_attempts
        self._client = client
        self._scripts = scripts
        self._dead = dead
        base = f"{prefix}:q:{name}:"
        self._keys = [base + part for part in _CHANNEL_KEYS]
        self._meta = base + "meta"
        self._notify = base + "notify"

    # -- the Queue protocol ------------------------------------------------------------------

    def send(self, bodies: Sequence[bytes], *, delay: float = 0.0) -> None:
        check_send(self, bodies, delay)
        chunk: list[Any] = []
        size = 0
        for body in bodies:
            if chunk and size + len(body) > _SEND_CHUNK_BYTES:
                self._send_chunk(chunk, delay)
                chunk, size = [], 0
            chunk += [uuid.uuid4().hex, bytes(body)]
            size += len(body)
        if chunk:
            self._send_chunk(chunk, delay)

    def receive(
        self, max_messages: int = 1, *, wait: float = 0.0, lease: float = 30.0
    ) -> list[Delivery]:
        check_request(self, count=max_messages, lease=lease)
        if max_messages < 1:
            return []
        deadline = time.monotonic() + wait
        while True:
            taken, next_due = self._take(max_messages, lease)
            remaining = deadline - time.monotonic()
            if taken or remaining <= 0:
                return taken
            pause = min(remaining, _POLL)
            if next_due is not None:
                pause = min(pause, next_due + 0.001)
            # BLPOP's timeout 0 would mean "forever".
            with translated(f"receive on {self.name!r}"):
                self._client.blpop([self._notify], timeout=max(pause, 0.001))

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        args: list[Any] = []
        for delivery in deliveries:
            args += [delivery.id, delivery.handle]
        with translated(f"ack on {self.name!r}"):
            self._scripts.ack(self._keys, args)

    def release(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        check_request(self, delay=delay)
        with translated(f"release on {self.name!r}"):
            held = self._scripts.release(
                [*self._keys, self._notify], [delivery.id, delivery.handle, _ms(delay)]
            )
        self._check_held(held, delivery)

    def extend(self, delivery: Delivery, lease: float) -> None:
        check_request(self, lease=lease)
        with translated(f"extend on {self.name!r}"):
            held = self._scripts.extend(self._keys, [delivery.id, delivery.handle, _ms(lease)])
        self._check_held(held, delivery)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        dead = self._dead_channel()
        with translated(f"dead_letter on {self.name!r}"):
            held = self._scripts.dead_letter(
                [*self._keys, *dead._keys, dead._notify], [delivery.id, delivery.handle, reason]
            )
        self._check_held(held, delivery)

    def dead_letters(self) -> Queue:
        return self._dead_channel()

    def close(self) -> None:
        """The broker owns the connection pool; nothing to release per channel."""

    # -- internals --------------------------------------------------------------------------

    def _send_chunk(self, args: list[Any], delay: float) -> None:
        with translated(f"send on {self.name!r}"):
            self._scripts.send([*self._keys[:2], self._notify], [_ms(delay), *args])

    def _take(self, max_messages: int, lease: float) -> tuple[list[Delivery], float | None]:
        """Deliveries taken now, and (when none) seconds until the next message is due."""
        keys = [*self._keys, self._meta]
        if self._dead is not None:
            keys += [*self._dead._keys, self._dead._notify]
        args = [max_messages, _ms(lease), uuid.uuid4().hex, int(self._dead is not None)]
        with translated(f"receive on {self.name!r}"):
            reply: list[Any] = self._scripts.receive(keys, args)
        next_due = None if int(reply[0]) < 0 else int(reply[0]) / 1000
        taken = []
        for i in range(1, len(reply), 5):
            message_id, body, attempt, token, reason = reply[i : i + 5]
            taken.append(
                Delivery(
                    bytes(body),
                    message_id.decode(),
                    int(attempt),
                    token.decode(),
                    reason.decode() if reason is not None else None,
                )
            )
        return taken, next_due

    def _dead_channel(self) -> RedisQueue:
        if self._dead is None:
            raise UnsupportedOperation(f"{self.name!r} is itself a dead-letter channel")
        return self._dead

    def _check_held(self, held: Any, delivery: Delivery) -> None:
        if not int(held):
            raise LeaseLost(f"the lease on message {delivery.id} in {self.name!r} is gone")


class RedisBroker:
    """Channels on one Redis database, shared by every process that opens the same names."""

    capabilities = CAPABILITIES

    def __init__(self, url: str, *, prefix: str = "switchboard") -> None:
        self._client = connect(url)
        self._scripts = _Scripts(self._client)
        self._prefix = prefix
        self._closed = False

    def queue(self, name: str, *, max_attempts: int = 5) -> RedisQueue:
        dead = RedisQueue(
            self._client, self._scripts, self._prefix, f"{name}-dlq", _UNLIMITED, dead=None
        )
        queue = RedisQueue(self._client, self._scripts, self._prefix, name, max_attempts, dead=dead)
        # The channel's setting, not this handle's: the receive script reads it.
        with translated(f"opening {name!r}"):
            self._client.hset(queue._meta, "max_attempts", max_attempts)
        return queue

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
