"""What the gcp provider's modules share: building Google clients and translating their errors.

The SDKs are imported here, inside functions, so `switchboard.providers.gcp` imports
without them.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

from switchboard.errors import (
    ConfigError,
    LeaseLost,
    NotFound,
    ProviderError,
    TooLarge,
    TransientProviderError,
)
from switchboard.providers.gcp.config import GcpConfig

MISSING_SDK = (
    "the gcp provider needs google-cloud-pubsub and google-cloud-firestore: "
    "pip install 'switchboard-orchestrator[gcp]'"
)

# The emulator channel needs these too: grpc's default 4 MiB receive limit would refuse
# pulls of large messages (the SDK sets them only on channels it builds for the service).
_UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def pubsub_clients(config: GcpConfig) -> tuple[Any, Any]:
    """A (PublisherClient, SubscriberClient) pair for the configured service or emulator."""
    try:
        from google.cloud import pubsub_v1
    except ImportError as exc:
        raise ConfigError(MISSING_SDK) from exc
    if not config.pubsub_emulator_host:
        return pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    import grpc  # type: ignore[import-untyped]
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    host = config.pubsub_emulator_host
    publisher = pubsub_v1.PublisherClient(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(host, options=_UNLIMITED))
    )
    subscriber = pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host, options=_UNLIMITED))
    )
    return publisher, subscriber


def firestore_client(config: GcpConfig) -> Any:
    """A Firestore client for the configured database, on the service or the emulator."""
    try:
        from google.cloud import firestore
    except ImportError as exc:
        raise ConfigError(MISSING_SDK) from exc
    if not config.firestore_emulator_host:
        return firestore.Client(project=config.project, database=config.firestore_database)
    from google.auth.credentials import AnonymousCredentials

    client = firestore.Client(
        project=config.project,
        database=config.firestore_database,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )
    # The SDK reads FIRESTORE_EMULATOR_HOST once, in the constructor, and opens its channel
    # lazily: setting the host here lets the config (not only the environment) choose it.
    client._emulator_host = config.firestore_emulator_host
    return client


def translate(exc: BaseException, action: str) -> ProviderError:
    """Turn an exception from a Google SDK into Switchboard's hierarchy."""
    from google.api_core import exceptions as google

    if isinstance(exc, ProviderError):
        return exc
    message = f"{action} failed: {type(exc).__name__}: {exc}"
    if isinstance(
        exc,
        google.ServiceUnavailable
        | google.DeadlineExceeded
        | google.TooManyRequests  # ResourceExhausted is one
        | google.Aborted
        | google.InternalServerError
        | google.RetryError
        | concurrent.futures.TimeoutError,
    ):
        return TransientProviderError(message)
    if isinstance(exc, google.NotFound):
        return NotFound(message)
    if type(exc).__name__ == "MessageTooLargeError":
        return TooLarge(message)
    return ProviderError(message)


def lease_lost(exc: BaseException, action: str) -> ProviderError:
    """Like `translate`, but an invalid ack id means the lease is gone."""
    from google.api_core import exceptions as google

    if isinstance(exc, google.InvalidArgument):
        return LeaseLost(f"{action} failed, the lease is gone: {exc}")
    return translate(exc, action)
