"""`switchboard aws template module:app`: the CloudFormation template, checked by cfn-lint."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchboard.cli import main
from switchboard.config import build_config
from switchboard.providers.aws.config import AwsConfig
from switchboard.providers.aws.queue import native_name

CFN_LINT = Path(sys.executable).with_name("cfn-lint")

APP_MODULE = textwrap.dedent(
    """
    import switchboard as sb

    app = sb.App("shop_orders")

    @app.task
    def charge(amount: int) -> int:
        return amount
    """
)


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "tplapp.py").write_text(APP_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "tplapp", raising=False)
    return tmp_path


def _template(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["aws", "template", "tplapp:app", *args]) == 0
    return capsys.readouterr().out


def _actions(role: dict[str, Any]) -> dict[str, set[str]]:
    """Action -> the logical ids of the resources it is allowed on."""
    allowed: dict[str, set[str]] = {}
    for policy in role["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            for resource in statement["Resource"]:
                assert resource != "*", statement
                target = resource["Fn::GetAtt"][0] if "Fn::GetAtt" in resource else "TaskFunction"
                for action in statement["Action"]:
                    allowed.setdefault(action, set()).add(target)
    return allowed


def test_the_template_passes_cfn_lint_in_both_formats_and_executors(
    app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = []
    for executor in ("queue", "lambda"):
        for fmt in ("json", "yaml"):
            text = _template(
                capsys, "--executor", executor, "--format", fmt, "--set", "prefix=prod"
            )
            path = app_dir / f"stack-{executor}.{fmt}"
            path.write_text(text)
            files.append(str(path))
    # Informational checks too: a clean template has nothing at any level.
    lint = subprocess.run(
        [str(CFN_LINT), "--include-checks", "I", "--", *files],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert json.loads(Path(files[0]).read_text()) == yaml.safe_load(Path(files[1]).read_text())


def test_the_resources_are_the_ones_the_provider_uses(
    app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = json.loads(
        _template(capsys, "--set", "prefix=prod", "--set", "table=prod-runs", "--max-attempts", "7")
    )
    resources = template["Resources"]
    config = build_config(AwsConfig, {"prefix": "prod"}, provider="aws")
    for logical, channel in (("Invocations", "invocations"), ("Tasks", "tasks")):
        name = native_name(config.prefix, f"shop-orders-{channel}")
        queue = resources[f"{logical}Queue"]["Properties"]
        assert queue["QueueName"] == name
        assert queue["MaximumMessageSize"] == 1_048_576  # what the provider checks for
        assert queue["RedrivePolicy"] == {
            "deadLetterTargetArn": {"Fn::GetAtt": [f"{logical}DeadLetterQueue", "Arn"]},
            "maxReceiveCount": 7,
        }
        assert resources[f"{logical}DeadLetterQueue"]["Properties"]["QueueName"] == f"{name}-dlq"
    table = resources["StateTable"]["Properties"]
    assert table["TableName"] == "prod-runs"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires", "Enabled": True}
    assert {(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]} == {
        ("pk", "HASH"),
        ("sk", "RANGE"),
    }
    for role, queue in (("Workflow", "InvocationsQueue"), ("Task", "TasksQueue")):
        mapping = resources[f"{role}EventSource"]["Properties"]
        assert mapping["EventSourceArn"] == {"Fn::GetAtt": [queue, "Arn"]}
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        function = resources[f"{role}Function"]["Properties"]
        assert function["Handler"] == {"Ref": "Handler"}
        assert function["Environment"]["Variables"]["SWITCHBOARD_AWS_CREATE"] == "false"
        assert function["Environment"]["Variables"]["SWITCHBOARD_AWS_TABLE"] == "prod-runs"

    workflow = _actions(resources["WorkflowRole"])
    tasks = _actions(resources["TaskRole"])
    assert workflow["sqs:SendMessage"] == {
        "InvocationsQueue",
        "InvocationsDeadLetterQueue",
        "TasksQueue",
    }
    assert workflow["sqs:ReceiveMessage"] == {"InvocationsQueue"}
    assert tasks["sqs:ReceiveMessage"] == {"TasksQueue"}
    assert tasks["sqs:SendMessage"] == {"InvocationsQueue", "TasksDeadLetterQueue"}
    assert "dynamodb:Query" in workflow and "dynamodb:Query" not in tasks
    for allowed in (workflow, tasks):
        assert allowed["dynamodb:PutItem"] == {"StateTable"}
        assert not {a for a in allowed if a.endswith("*") or a.startswith(("iam:", "s3:"))}
        assert "lambda:InvokeFunction" not in allowed


def test_with_the_lambda_executor_the_workflow_invokes_the_task_function(
    app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    resources = json.loads(_template(capsys, "--executor", "lambda"))["Resources"]
    assert "TasksQueue" not in resources and "TaskEventSource" not in resources
    assert set(_actions(resources["WorkflowRole"])["lambda:InvokeFunction"]) == {"TaskFunction"}
    task_name = resources["TaskFunction"]["Properties"]["FunctionName"]
    variables = resources["WorkflowFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["SWITCHBOARD_AWS_TASK_FUNCTION"] == task_name
    assert variables["SWITCHBOARD_EXECUTOR"] == "aws.lambda"


def test_a_wrong_app_or_setting_is_one_line(
    app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["aws", "template", "nosuchmodule:app"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot import 'nosuchmodule'")
    assert main(["aws", "template", "tplapp:app", "--set", "prefix=no spaces"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the aws provider's settings are wrong: prefix 'no spaces'")
    assert len(err.strip().splitlines()) == 1
