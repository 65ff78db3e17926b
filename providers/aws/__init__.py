"""The AWS provider: SQS queues, a DynamoDB state store and the `aws.lambda` executor
(boto3); the default executor is the core tasks queue on SQS. The Lambda entry point lives
in `switchboard.providers.aws.handlers`; `switchboard aws template` prints the stack.

Registered through the `switchboard` entry point like any plugin. Importing this module
does not import boto3; the factories do, and name the extra to install when it is missing.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from switchboard.errors import ConfigError
from switchboard.hookspecs import hookimpl
from switchboard.interfaces import Broker, Executor, ExecutorHost, ProviderSpec, StateStore
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


def _lambda_executor(config: AwsConfig, host: ExecutorHost) -> Executor:
    try:
        from switchboard.providers.aws.executor import LambdaExecutor
    except ImportError as exc:
        if _missing_sdk(exc):
            raise ConfigError(MISSING_SDK) from exc
        raise
    return LambdaExecutor(config, host)


@hookimpl
def switchboard_providers() -> Sequence[ProviderSpec]:
    return [
        ProviderSpec(
            name="aws",
            description="SQS queues (native dead-letter), a DynamoDB state store, Lambda tasks",
            config=AwsConfig,
            broker=_broker,
            state=_state,
            executors={"lambda": _lambda_executor},
            extra="aws",
            requires=("boto3",),
        )
    ]


@hookimpl
def switchboard_add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    aws = subparsers.add_parser("aws", help="AWS provider tools")
    commands = aws.add_subparsers(dest="aws_command", required=True)
    template = commands.add_parser(
        "template",
        help="print a CloudFormation template for an app (queues, DLQs, table, Lambda "
        "functions, event source mappings, least-privilege roles)",
    )
    template.add_argument("app", help="module:app")
    template.add_argument(
        "--executor",
        choices=("queue", "lambda"),
        default="queue",
        help="how tasks reach the task function: the tasks queue (default) or aws.lambda",
    )
    template.add_argument("--format", choices=("json", "yaml"), default="json")
    template.add_argument(
        "--max-attempts",
        type=int,
        default=10,
        help="deliveries of a message before its queue dead-letters it (as the runtime's)",
    )
    template.add_argument("--config", help="settings file (JSON or .toml): prefix, table")
    template.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="one aws setting"
    )
    template.set_defaults(handler=_template_command)


def _template_command(args: argparse.Namespace) -> int:
    # The CLI imports every plugin: keep the template code (and boto3) out until asked for.
    from switchboard.providers.aws.template import template_command

    return template_command(args)
