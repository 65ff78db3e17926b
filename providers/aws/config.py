"""Settings of the AWS provider: arguments, else the standard AWS environment variables.

Credentials are optional settings: without them boto3's usual chain finds them
(environment, ~/.aws, an instance or function role).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from switchboard.config import setting
from switchboard.errors import ConfigError

_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+\Z")
_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,60}\Z")
_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,255}\Z")
_FUNCTION = re.compile(
    r"(arn:[a-z-]+:lambda:[a-z0-9-]+:\d{12}:function:)?[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9_$-]+)?\Z"
)


def _secret(help: str) -> Any:
    """A setting that carries credentials: kept out of the config's repr, and taken from
    boto3's usual chain when not given."""
    return dataclasses.field(default=None, repr=False, metadata={"env": (), "help": help})


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
    task_function: str | None = setting(
        None,
        env=("SWITCHBOARD_AWS_TASK_FUNCTION",),
        help="Lambda function (name or ARN) the aws.lambda executor invokes with each task",
    )
    access_key_id: str | None = _secret(
        "AWS access key id (default: boto3's chain, e.g. AWS_ACCESS_KEY_ID)"
    )
    secret_access_key: str | None = _secret(
        "AWS secret access key, given with access_key_id (default: boto3's chain)"
    )
    session_token: str | None = _secret("AWS session token of temporary credentials")
    session: Any = dataclasses.field(
        default=None,
        repr=False,
        metadata={
            "env": (),
            "help": "a boto3.session.Session to build the clients from (its credentials and "
            "event hooks apply); default: a new session per client",
        },
    )

    def __post_init__(self) -> None:
        problems = []
        if not _REGION.match(self.region):
            problems.append(f"region {self.region!r} is not an AWS region name (e.g. us-east-1)")
        if self.endpoint_url is not None and not self.endpoint_url.startswith(
            ("http://", "https://")
        ):
            problems.append(
                f"endpoint_url {self.endpoint_url!r} must be an http:// or https:// URL"
            )
        if not _PREFIX.match(self.prefix):
            problems.append(
                f"prefix {self.prefix!r} must be 1 to 60 letters, digits, hyphens or underscores"
            )
        if not _TABLE.match(self.table):
            problems.append(
                f"table {self.table!r} must be 3 to 255 letters, digits, '_', '-' or '.'"
            )
        if self.task_function is not None and not _FUNCTION.match(self.task_function):
            problems.append(
                f"task_function {self.task_function!r} is not a Lambda function name or ARN"
            )
        if (self.access_key_id is None) != (self.secret_access_key is None):
            problems.append("access_key_id and secret_access_key must be given together")
        if self.session_token is not None and self.access_key_id is None:
            problems.append("session_token needs access_key_id and secret_access_key")
        if self.session is not None and self.access_key_id is not None:
            problems.append("give either session or credentials, not both")
        if problems:
            raise ConfigError("the aws provider's settings are wrong: " + "; ".join(problems))
