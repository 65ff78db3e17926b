"""Settings of the AWS provider. Credentials are not settings: boto3's usual chain finds them."""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.config import setting


@dataclass(frozen=True)
class AwsConfig:
    region: str = setting(
        "us-east-1",
        env=("AWS_REGION", "AWS_DEFAULT_REGION"),
        help="AWS region of the queues and the table",
    )
    endpoint_url: str | None = setting(
        None,
        env=("AWS_ENDPOINT_URL",),
        help="talk to this endpoint instead of AWS (a local emulator such as moto)",
    )
    prefix: str = setting(
        "switchboard",
        env=("SWITCHBOARD_AWS_PREFIX",),
        help="queue names are PREFIX-NAME and PREFIX-NAME-dlq",
    )
    table: str = setting(
        "switchboard-state",
        env=("SWITCHBOARD_AWS_TABLE",),
        help="DynamoDB table of the state store",
    )
    create: bool = setting(
        True,
        env=("SWITCHBOARD_AWS_CREATE",),
        help="create missing queues and the table; set false where infrastructure is provisioned",
    )
