"""The redis-py client both components share: connecting, running Lua scripts, and turning
redis-py's exceptions into Switchboard's at the boundary."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import redis
import redis.exceptions

from switchboard.errors import ConfigError, ProviderError, TransientProviderError

#: Lua shared by scripts that need the server's clock, in milliseconds: every process then
#: agrees on when a lease ends or a record expires, whatever its own clock says.
NOW_MS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
"""


#: Connections one client keeps at most. A burst of more concurrent operations waits for a
#: free one (up to `POOL_WAIT` seconds) instead of failing: redis-py's default pool raises
#: "Too many connections" past 100 at once, which a worker's many run threads can reach.
POOL_SIZE = 100
POOL_WAIT = 20.0


def connect(url: str) -> redis.Redis:
    try:
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=POOL_WAIT
        )
    except ValueError as exc:
        raise ConfigError(f"the redis provider's url {url!r} is not a Redis URL: {exc}") from exc
    return redis.Redis(connection_pool=pool)


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Raise redis-py's errors as `TransientProviderError` (connection trouble, timeouts,
    a server still loading) or `ProviderError` (everything else), naming the operation."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise TransientProviderError(f"redis {what}: {type(exc).__name__}: {exc}") from exc
    except redis.exceptions.RedisError as exc:
        raise ProviderError(f"redis {what}: {type(exc).__name__}: {exc}") from exc


class Script:
    """A Lua script run with EVALSHA (redis-py loads it again after a server restart)."""

    def __init__(self, client: redis.Redis, source: str) -> None:
        self._script = client.register_script(source)

    def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return self._script(keys=list(keys), args=list(args))
