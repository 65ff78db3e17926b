"""The gcp provider: Pub/Sub queues and a Firestore state store (no executors yet).

Registered through the `switchboard` entry point exactly as a third-party plugin is. The
Google SDKs are imported only when a component is built.
"""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.errors import ConfigError
from switchboard.hookspecs import hookimpl
from switchboard.interfaces import Broker, ProviderSpec, StateStore
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


@hookimpl
def switchboard_providers() -> Sequence[ProviderSpec]:
    return [
        ProviderSpec(
            name="gcp",
            description="Google Cloud: Pub/Sub queues, Firestore state",
            config=GcpConfig,
            broker=_broker,
            state=_state,
            extra="gcp",
            requires=("google.cloud.pubsub_v1", "google.cloud.firestore"),
        )
    ]
