"""The AWS provider: SQS queues and a DynamoDB state store (boto3).

Registered through the `switchboard` entry point like any plugin. Importing this module
does not import boto3; the factories do, and name the extra to install when it is missing.
"""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.errors import ConfigError
from switchboard.hookspecs import hookimpl
from switchboard.interfaces import Broker, ProviderSpec, StateStore
from switchboard.providers.aws.config import AwsConfig

MISSING_SDK = "the aws provider needs boto3: pip install 'switchboard-orchestrator[aws]'"


def _missing_sdk(exc: ImportError) -> bool:
    return (exc.name or "").split(".")[0] in ("boto3", "botocore")


def _broker(config: AwsConfig) -> Broker:
    try:
        from switchboard.providers.aws.queue import SqsBroker
    except ImportError as exc:
        if _missing_sdk(exc):
            raise ConfigError(MISSING_SDK) from exc
        raise
    return SqsBroker(config)


def _state(config: AwsConfig) -> StateStore:
    try:
        from switchboard.providers.aws.state import DynamoStateStore
    except ImportError as exc:
        if _missing_sdk(exc):
            raise ConfigError(MISSING_SDK) from exc
        raise
    store = DynamoStateStore(config)
    store.ensure()
    return store


@hookimpl
def switchboard_providers() -> Sequence[ProviderSpec]:
    return [
        ProviderSpec(
            name="aws",
            description="SQS queues (native dead-letter) and a DynamoDB state store",
            config=AwsConfig,
            broker=_broker,
            state=_state,
            extra="aws",
            requires=("boto3",),
        )
    ]
