"""The embedded local provider: in-memory, or durable in one SQLite file.

Registered through the `switchboard` entry point exactly as a third-party plugin is.
"""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.hookspecs import hookimpl
from switchboard.interfaces import Broker, Executor, ExecutorHost, ProviderSpec, StateStore
from switchboard.providers.local.config import LocalConfig


def _broker(config: LocalConfig) -> Broker:
    from switchboard.providers.local.queue import MemoryBroker, SqliteBroker

    return SqliteBroker(config.path, config.synchronous) if config.path else MemoryBroker()


def _state(config: LocalConfig) -> StateStore:
    from switchboard.providers.local.state import MemoryStateStore, SqliteStateStore

    if config.path:
        return SqliteStateStore(config.path, config.synchronous)
    return MemoryStateStore()


def _default_executor(config: LocalConfig, host: ExecutorHost) -> Executor:
    """Threads in memory; the durable tasks queue when state is durable too."""
    if config.path is not None:
        from switchboard.executors import queue_executor

        return queue_executor(config, host)
    return _threads(config, host)


def _threads(config: LocalConfig, host: ExecutorHost) -> Executor:
    from switchboard.providers.local.executor import ThreadExecutor

    return ThreadExecutor(host)


@hookimpl
def switchboard_providers() -> Sequence[ProviderSpec]:
    return [
        ProviderSpec(
            name="local",
            description="embedded: in memory, or durable in one SQLite file (path=...)",
            config=LocalConfig,
            broker=_broker,
            state=_state,
            executors={"default": _default_executor, "threads": _threads},
        )
    ]
