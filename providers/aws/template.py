"""`switchboard aws template module:app`: a CloudFormation template for one app.

The stack holds what `ensure()` creates for development (the invocations and tasks queues
with their dead-letter queues, the DynamoDB table with TTL on `expires`) plus two Lambda
functions running `lambda_handler`: the workflow runtime, fed by the invocations queue, and
the task runner, fed by the tasks queue (or invoked directly with `--executor lambda`).
Each function has a role allowing only the calls the code makes, on only these resources.
Queue and table names are computed here exactly as the provider computes them, and the
functions run with `create=false`, so they use the stack's resources and create nothing.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from switchboard.app import App
from switchboard.cli import load_app, load_settings
from switchboard.config import build_config
from switchboard.errors import ConfigError
from switchboard.executors import INVOCATIONS_CHANNEL, TASKS_CHANNEL
from switchboard.providers.aws.config import AwsConfig
from switchboard.providers.aws.queue import SQS_MAX_BYTES, SQS_RETENTION, native_name

#: The functions' longest run, in seconds (Parameter `Timeout` is capped to it), and the
#: queues' visibility timeout: six times that, as Lambda's SQS guide advises.
MAX_FUNCTION_TIMEOUT = 120
VISIBILITY_TIMEOUT = 6 * MAX_FUNCTION_TIMEOUT

# What the code calls (besides the event source mapping's own three SQS actions):
# - opening a channel with create=false: GetQueueUrl and GetQueueAttributes (size check)
#   on the queue and its dead-letter queue;
# - sending (results, timers, dispatched tasks) and dead-lettering: SendMessage;
#   dead-lettering also deletes the original (DeleteMessage, granted with the mapping);
# - the state store: DescribeTable (ensure), GetItem, PutItem, and Query (loading a run:
#   the workflow function only).
_OPEN_QUEUE = ["sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
_EVENT_SOURCE = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
_SEND = ["sqs:SendMessage"]
_TABLE_TASKS = ["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem"]
_TABLE_WORKFLOW = [*_TABLE_TASKS, "dynamodb:Query"]
_LOGS = ["logs:CreateLogStream", "logs:PutLogEvents"]


def _arn(resource: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [resource, "Arn"]}


def _statement(actions: list[str], resources: list[Any]) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": sorted(set(actions)), "Resource": resources}


def build_template(
    app: App, config: AwsConfig, *, executor: str = "queue", max_attempts: int = 10
) -> dict[str, Any]:
    """The CloudFormation template (a JSON-able dict) of `app` on the aws provider."""
    if executor not in ("queue", "lambda"):
        raise ConfigError(f"executor must be 'queue' or 'lambda', got {executor!r}")
    if not 1 <= max_attempts <= 1000:
        raise ConfigError(
            f"max_attempts must be 1 to 1000 (SQS's maxReceiveCount), got {max_attempts}"
        )
    channel = app.name.replace("_", "-")
    on_queue = executor == "queue"
    names = {"Invocations": native_name(config.prefix, f"{channel}-{INVOCATIONS_CHANNEL}")}
    if on_queue:
        names["Tasks"] = native_name(config.prefix, f"{channel}-{TASKS_CHANNEL}")
    task_function_name = {"Fn::Sub": "${AWS::StackName}-tasks"}

    resources: dict[str, Any] = {}
    for logical, name in names.items():
        common = {
            "MessageRetentionPeriod": SQS_RETENTION,
            "MaximumMessageSize": SQS_MAX_BYTES,
            "SqsManagedSseEnabled": True,
        }
        resources[f"{logical}DeadLetterQueue"] = {
            "Type": "AWS::SQS::Queue",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {"QueueName": f"{name}-dlq", **common},
        }
        resources[f"{logical}Queue"] = {
            "Type": "AWS::SQS::Queue",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "QueueName": name,
                **common,
                "VisibilityTimeout": VISIBILITY_TIMEOUT,
                "RedrivePolicy": {
                    "deadLetterTargetArn": _arn(f"{logical}DeadLetterQueue"),
                    "maxReceiveCount": max_attempts,
                },
            },
        }
    resources["StateTable"] = {
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "TableName": config.table,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "TimeToLiveSpecification": {"AttributeName": "expires", "Enabled": True},
        },
    }

    def queue_arns(*logicals: str) -> list[Any]:
        return [_arn(logical) for logical in logicals]

    every_queue = [f"{q}{kind}" for q in names for kind in ("Queue", "DeadLetterQueue")]
    workflow_statements = [
        _statement(_OPEN_QUEUE, queue_arns(*every_queue)),
        _statement(_EVENT_SOURCE + _SEND, queue_arns("InvocationsQueue")),
        _statement(_SEND, queue_arns("InvocationsDeadLetterQueue")),
        _statement(_TABLE_WORKFLOW, [_arn("StateTable")]),
    ]
    task_statements = [
        _statement(_OPEN_QUEUE, queue_arns(*every_queue)),
        _statement(_SEND, queue_arns("InvocationsQueue")),
        _statement(_TABLE_TASKS, [_arn("StateTable")]),
    ]
    if on_queue:
        workflow_statements.append(_statement(_SEND, queue_arns("TasksQueue")))
        task_statements += [
            _statement(_EVENT_SOURCE, queue_arns("TasksQueue")),
            _statement(_SEND, queue_arns("TasksDeadLetterQueue")),
        ]
    else:
        workflow_statements.append(
            _statement(
                ["lambda:InvokeFunction"],
                [
                    {
                        "Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:"
                        "${AWS::AccountId}:function:${AWS::StackName}-tasks"
                    }
                ],
            )
        )

    environment = {
        "SWITCHBOARD_AWS_PREFIX": config.prefix,
        "SWITCHBOARD_AWS_TABLE": config.table,
        "SWITCHBOARD_AWS_CREATE": "false",
    }
    if not on_queue:
        environment["SWITCHBOARD_EXECUTOR"] = "aws.lambda"
        environment["SWITCHBOARD_AWS_TASK_FUNCTION"] = task_function_name  # type: ignore[assignment]

    for role, statements in (("Workflow", workflow_statements), ("Task", task_statements)):
        resources[f"{role}LogGroup"] = {
            "Type": "AWS::Logs::LogGroup",
            # The logs go with the stack; the queues and the table (runs) are kept.
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "LogGroupName": {"Fn::Sub": f"/switchboard/${{AWS::StackName}}/{role.lower()}"},
                "RetentionInDays": 30,
            },
        }
        resources[f"{role}Role"] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                "Policies": [
                    {
                        "PolicyName": f"switchboard-{role.lower()}",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": [
                                _statement(_LOGS, [_arn(f"{role}LogGroup")]),
                                *statements,
                            ],
                        },
                    }
                ],
            },
        }
        function: dict[str, Any] = {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Description": f"switchboard {role.lower()} function of app {app.name}",
                "Runtime": {"Ref": "Runtime"},
                "Handler": {"Ref": "Handler"},
                "Code": {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}},
                "Role": _arn(f"{role}Role"),
                "MemorySize": {"Ref": "MemorySize"},
                "Timeout": {"Ref": "Timeout"},
                "LoggingConfig": {"LogGroup": {"Ref": f"{role}LogGroup"}},
                "Environment": {"Variables": environment},
            },
        }
        if role == "Task":
            function["Properties"]["FunctionName"] = task_function_name
        resources[f"{role}Function"] = function

    sources = [("Workflow", "InvocationsQueue")]
    if on_queue:
        sources.append(("Task", "TasksQueue"))
    for role, queue in sources:
        resources[f"{role}EventSource"] = {
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": {
                "EventSourceArn": _arn(queue),
                "FunctionName": {"Ref": f"{role}Function"},
                "BatchSize": 10,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            },
        }

    outputs = {f"{logical}QueueUrl": {"Value": {"Ref": f"{logical}Queue"}} for logical in names}
    outputs["StateTableName"] = {"Value": {"Ref": "StateTable"}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"Switchboard app {app.name} on AWS: SQS, DynamoDB and Lambda",
        "Parameters": {
            "CodeBucket": {
                "Type": "String",
                "Description": "S3 bucket holding the deployment package (the app, its "
                "dependencies and switchboard-orchestrator[aws])",
            },
            "CodeKey": {"Type": "String", "Description": "S3 key of the deployment package"},
            "Handler": {
                "Type": "String",
                "Default": "handler.handler",
                "Description": "module.attribute of lambda_handler(app) in the package",
            },
            "Runtime": {
                "Type": "String",
                "Default": "python3.12",
                "AllowedValues": ["python3.11", "python3.12", "python3.13"],
            },
            "MemorySize": {"Type": "Number", "Default": 512, "MinValue": 128, "MaxValue": 10240},
            "Timeout": {
                "Type": "Number",
                "Default": 60,
                "MinValue": 10,
                "MaxValue": MAX_FUNCTION_TIMEOUT,
                "Description": f"seconds; the queues' visibility timeout is {VISIBILITY_TIMEOUT}",
            },
        },
        "Resources": resources,
        "Outputs": outputs,
    }


def render(template: dict[str, Any], output_format: str) -> str:
    if output_format == "json":
        return json.dumps(template, indent=2) + "\n"
    try:
        import yaml
    except ImportError as exc:
        raise ConfigError(
            "--format yaml needs PyYAML (pip install pyyaml); or use --format json"
        ) from exc

    class NoAliases(yaml.SafeDumper):
        """CloudFormation refuses YAML aliases: write shared parts out each time."""

        def ignore_aliases(self, data: Any) -> bool:
            return True

    return str(yaml.dump(template, Dumper=NoAliases, sort_keys=False, default_flow_style=False))


def template_command(args: argparse.Namespace) -> int:
    """`switchboard aws template`: print the template of `args.app`."""
    app = load_app(args.app)
    # Only prefix and table shape the template; the rest is validated all the same.
    config = build_config(AwsConfig, load_settings(args.config, args.set), provider="aws")
    template = build_template(app, config, executor=args.executor, max_attempts=args.max_attempts)
    print(render(template, args.format), end="")
    return 0
