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


def connect(url: str) -> redis.Redis:
    try:
        return redis.Redis.from_url(url)
    except ValueError as exc:
        raise ConfigError(f"the redis provider's url {url!r} is not a Redis URL: {exc}") from exc


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
