"""Settings of the redis provider."""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.config import setting


@dataclass(frozen=True)
class RedisConfig:
    url: str = setting(
        "redis://127.0.0.1:6379/0",
        env=("SWITCHBOARD_REDIS_URL",),
        help="redis-py URL of the server, e.g. redis://host:6379/0 or rediss://... for TLS",
    )
    prefix: str = setting(
        "switchboard",
        env=("SWITCHBOARD_REDIS_PREFIX",),
        help="prefix of every Redis key this provider writes, so apps can share a database",
    )
