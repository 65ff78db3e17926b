"""Settings of the local provider."""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.config import setting


@dataclass(frozen=True)
class LocalConfig:
    path: str | None = setting(
        None,
        env=("SWITCHBOARD_LOCAL_PATH",),
        help="SQLite file for durable queues and state; in memory when unset",
    )
    synchronous: str = setting(
        "full",
        env=("SWITCHBOARD_LOCAL_SYNCHRONOUS",),
        help="SQLite synchronous mode: full (default) or normal; never off",
    )
