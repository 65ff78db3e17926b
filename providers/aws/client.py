"""boto3 clients for the AWS provider, and the one place botocore errors become ours.

Importing this module imports boto3: only the component modules (queue, state) do, and
only when a factory builds a component.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from switchboard.errors import (
    ConfigError,
    Conflict,
    LeaseLost,
    NotFound,
    ProviderError,
    TransientProviderError,
)
from switchboard.providers.aws.config import AwsConfig

# Error codes that mean "try again later". SQS speaks JSON with query-compatible codes, so
# both spellings appear.
_TRANSIENT = {
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "TransactionConflictException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "KmsThrottled",
    "KMS.ThrottlingException",
    # Lambda: throttled, or the function is being created or updated.
    "TooManyRequestsException",
    "EC2ThrottledException",
    "ServiceException",
    "ResourceNotReadyException",
    "ResourceConflictException",
}
# The receipt handle no longer addresses a live lease.
_LEASE_LOST = {
    "ReceiptHandleIsInvalid",
    "InvalidReceiptHandle",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
}
_NOT_FOUND = {
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
    "ResourceNotFoundException",
}


def make_client(service: str, config: AwsConfig) -> Any:
    """A thread-safe low-level client for `service`: on `config.session` when given (whose
    event hooks then see every request), else on a session of its own."""
    session = config.session
    if session is None:
        session = boto3.session.Session(
            region_name=config.region,
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key,
            aws_session_token=config.session_token,
        )
    elif not isinstance(session, boto3.session.Session):
        raise ConfigError(
            f"the aws provider's setting 'session' must be a boto3.session.Session, "
            f"got {type(session).__name__}"
        )
    return session.client(
        service,
        region_name=config.region,
        endpoint_url=config.endpoint_url,
        config=botocore.config.Config(
            retries={"mode": "standard", "max_attempts": 4},
            max_pool_connections=32,
            # A long poll holds the connection for up to 20 s.
            read_timeout=40,
            connect_timeout=10,
        ),
    )


def error_codes(exc: botocore.exceptions.ClientError) -> set[str]:
    """The error's codes: SQS gives its JSON code and the older query code."""
    error = exc.response.get("Error", {})
    return {str(error[name]) for name in ("Code", "QueryErrorCode") if error.get(name)}


def classify(
    codes: set[str], status: int, message: str, *, sender_fault: bool = True
) -> ProviderError:
    """Our exception for AWS error codes (also used for failed entries of a batch)."""
    code = " / ".join(sorted(codes))
    if codes & _LEASE_LOST:
        return LeaseLost(f"{message} ({code}): the lease expired; the message will come back")
    if "ConditionalCheckFailedException" in codes:
        return Conflict(message)
    if codes & _NOT_FOUND:
        return NotFound(f"{message} ({code})")
    if codes & _TRANSIENT or status >= 500 or not sender_fault:
        return TransientProviderError(f"{message} ({code}); retrying may succeed")
    return ProviderError(f"{message} ({code})")


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Run an AWS call, raising `switchboard.errors` instead of botocore exceptions."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        detail = f"{action} failed: {error.get('Message') or exc}"
        raise classify(error_codes(exc), status, detail) from exc
    except (
        botocore.exceptions.NoCredentialsError,
        botocore.exceptions.PartialCredentialsError,
        botocore.exceptions.NoRegionError,
    ) as exc:
        raise ConfigError(
            f"{action} failed: {exc}; configure AWS credentials and region as for boto3 "
            "(environment, ~/.aws, or an instance role)"
        ) from exc
    except (
        botocore.exceptions.ConnectionError,
        botocore.exceptions.HTTPClientError,
    ) as exc:
        raise TransientProviderError(f"{action} failed: {exc}") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise ProviderError(f"{action} failed: {exc}") from exc
