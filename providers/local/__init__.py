"""The embedded local provider: in-memory, or durable in one SQLite file.

Registered through the `switchboard` entry point exactly as a third-party plugin is.
"""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.hookspecs import hookimpl
from switchboard.interfaces import Broker, ProviderSpec, StateStore
from switchboard.providers.local.config import LocalConfig


def _broker(config: LocalConfig) -> Broker:
    from switchboard.providers.local.queue import MemoryBroker

    return MemoryBroker()


def _state(config: LocalConfig) -> StateStore:
    from switchboard.providers.local.state import MemoryStateStore

    return MemoryStateStore()


@hookimpl
def switchboard_providers() -> Sequence[ProviderSpec]:
    return [
        ProviderSpec(
            name="local",
            description="embedded: in memory, or durable in one SQLite file (path=...)",
            config=LocalConfig,
            broker=_broker,
            state=_state,
        )
    ]
