"""The gcp provider: Pub/Sub queues, a Firestore state store, and the `gcp.http` executor
for Cloud Run / Cloud Functions (the default executor is the core tasks queue on Pub/Sub);
serverless entry points live in `switchboard.providers.gcp.handlers`.

Registered through the `switchboard` entry point exactly as a third-party plugin is. The
Google SDKs are imported only when a component is built.
"""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.errors import ConfigError
from switchboard.hookspecs import hookimpl
from switchboard.interfaces import Broker, Executor, ExecutorHost, ProviderSpec, StateStore
from switchboard.providers.gcp._google import MISSING_SDK
from switchboard.providers.gcp.config import GcpConfig


def _broker(config: GcpConfig) -> Broker:
    try:
        import google.cloud.pubsub_v1  # noqa: F401 - fail here, with the extra to install
    except ImportError as exc:
        raise ConfigError(MISSING_SDK) from exc
    from switchboard.providers.gcp.queue import PubSubBroker

    return PubSubBroker(config)


def _state(config: GcpConfig) -> StateStore:
    try:
        import google.cloud.firestore  # noqa: F401 - fail here, with the extra to install
    except ImportError as exc:
        raise ConfigError(MISSING_SDK) from exc
    from switchboard.providers.gcp.state import FirestoreStateStore

    return FirestoreStateStore(config)


def _http_executor(config: GcpConfig, host: ExecutorHost) -> Executor:
    from switchboard.providers.gcp.executor import HttpExecutor

    return HttpExecutor(config, host)


@hookimpl
def switchboard_providers() -> Sequence[ProviderSpec]:
    return [
        ProviderSpec(
            name="gcp",
            description="Google Cloud: Pub/Sub queues, Firestore state, Cloud Run over HTTP",
            config=GcpConfig,
            broker=_broker,
            state=_state,
            executors={"http": _http_executor},
            extra="gcp",
            requires=("google.cloud.pubsub_v1", "google.cloud.firestore"),
        )
    ]
