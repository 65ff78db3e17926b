"""Switchboard on Redis: a third-party provider, registered through the `switchboard`
entry point like any other.

Nothing heavy happens at import: redis-py is imported when a component is built.
"""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.errors import ConfigError
from switchboard.hookspecs import hookimpl
from switchboard.interfaces import Broker, ProviderSpec, StateStore
from switchboard_redis.config import RedisConfig

__all__ = ["RedisConfig", "switchboard_providers"]

_MISSING_SDK = "the redis provider needs redis-py: pip install 'redis>=5'"


def _broker(config: RedisConfig) -> Broker:
    try:
        from switchboard_redis.queue import RedisBroker
    except ImportError as exc:
        raise ConfigError(_MISSING_SDK) from exc
    return RedisBroker(config.url, prefix=config.prefix)


def _state(config: RedisConfig) -> StateStore:
    try:
        from switchboard_redis.state import RedisStateStore
    except ImportError as exc:
        raise ConfigError(_MISSING_SDK) from exc
    return RedisStateStore(config.url, prefix=config.prefix)


@hookimpl
def switchboard_providers() -> Sequence[ProviderSpec]:
    # No executor of its own: tasks travel on a Redis queue through the core's QueueExecutor.
    return [
        ProviderSpec(
            name="redis",
            description="queues and state store on one redis-server (url=redis://...)",
            config=RedisConfig,
            broker=_broker,
            state=_state,
            requires=("redis",),
        )
    ]
