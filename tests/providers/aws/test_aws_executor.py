"""The `aws.lambda` executor: real Event invocations of a function in moto's Lambda.

moto stores the function and accepts the invocations (202) but runs no code, so the test
plays Lambda: each payload the executor sent, read back from the request, is given to
`lambda_handler` as its event, exactly as Lambda would give it to the task function.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
import zipfile
from typing import Any

import boto3
import pytest

import switchboard as sb
from switchboard.errors import ConfigError, TooLarge
from switchboard.interfaces import ExecutorHost
from switchboard.providers.aws.config import AwsConfig
from switchboard.providers.aws.executor import MAX_PAYLOAD_BYTES, LambdaExecutor
from switchboard.providers.aws.handlers import lambda_handler
from tests.providers.aws.conftest import LIVE

pytestmark = pytest.mark.skipif(
    LIVE, reason="needs moto's Lambda: on AWS the task function would run by itself"
)


def _settings(config: AwsConfig) -> dict[str, Any]:
    return {"endpoint_url": config.endpoint_url, "region": config.region, "prefix": config.prefix}


@pytest.fixture
def task_function(aws_config: AwsConfig) -> str:
    """A function in moto's Lambda (its code never runs there)."""
    session = boto3.session.Session(region_name=aws_config.region)
    iam = session.client("iam", endpoint_url=aws_config.endpoint_url)
    lam = session.client("lambda", endpoint_url=aws_config.endpoint_url)
    name = "sbt-tasks-" + uuid.uuid4().hex[:8]
    role = iam.create_role(
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": package.getvalue()},
    )
    return name


class Invocations:
    """Records every Invoke the provider's clients make (botocore event hooks on the
    session passed as the `session` setting)."""

    def __init__(self, region: str) -> None:
        self.session = boto3.session.Session(region_name=region)
        self.sent: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        self.session.events.register("before-parameter-build.lambda.Invoke", self._request)
        self.session.events.register("after-call.lambda.Invoke", self._response)

    def _request(self, params: dict[str, Any], **_: Any) -> None:
        with self.lock:
            self.sent.append(dict(params))

    def _response(self, parsed: dict[str, Any], **_: Any) -> None:
        with self.lock:
            self.statuses.append(int(parsed["StatusCode"]))

    def take(self) -> list[dict[str, Any]]:
        with self.lock:
            taken, self.sent = self.sent, []
        return taken


def test_tasks_go_to_the_function_by_event_invocations_and_runs_complete(
    aws_config: AwsConfig, task_function: str
) -> None:
    app = sb.App("lambdaexec" + uuid.uuid4().hex[:6])

    @app.task
    def add(x: int) -> int:
        return x + 1

    @app.task
    def explode() -> None:
        raise LookupError("no such parcel")

    @app.task
    def size(text: str) -> int:
        return len(text)

    @app.workflow
    def run(ctx: sb.Context, n: int, text: str) -> Any:
        x = add(n)
        fanned = ctx.parallel(*[ctx.call(add, i) for i in range(12)])
        try:
            explode()
        except sb.TaskFailed as exc:
            error = [exc.error_type, exc.message]
        return [x, sum(fanned), error, size(text)]

    calls = Invocations(aws_config.region)
    settings = _settings(aws_config)
    # The task function's handler, as Lambda would run it: same app, same settings.
    task_handler = lambda_handler(
        app, executor="aws.lambda", task_function=task_function, **settings
    )
    big = "x" * (MAX_PAYLOAD_BYTES + 10_000)  # beyond the Event limit: claim check
    with sb.connect(
        app,
        "aws",
        executor="aws.lambda",
        workers=1,
        inline_tasks=False,
        task_function=task_function,
        session=calls.session,
        **settings,
    ) as client:
        run_id = client.start("run", n=10, text=big)
        deadline = time.monotonic() + 60
        while client.status(run_id).status not in ("completed", "failed"):
            assert time.monotonic() < deadline, client.history(run_id)
            for params in calls.take():
                assert params["FunctionName"] == task_function
                assert params["InvocationType"] == "Event"
                assert len(params["Payload"]) <= MAX_PAYLOAD_BYTES
                event = json.loads(params["Payload"])
                assert task_handler(event, None) == {"status": "reported"}
            time.sleep(0.05)
        status = client.wait(run_id, timeout=5)
    assert status.output == [11, sum(range(1, 13)), ["LookupError", "no such parcel"], len(big)]
    assert calls.statuses and set(calls.statuses) == {202}
    assert len(calls.statuses) == 1 + 12 + 1 + 1


def test_a_malformed_task_event_is_dropped_not_retried(aws_config: AwsConfig) -> None:
    app = sb.App("lambdabad" + uuid.uuid4().hex[:6])
    handler = lambda_handler(
        app, executor="aws.lambda", task_function="unused", **_settings(aws_config)
    )
    result = handler({"kind": "task.invoke", "hello": 1}, None)
    assert result["status"] == "malformed"


def test_the_executor_needs_a_function_and_keeps_to_the_event_limit(
    aws_config: AwsConfig,
) -> None:
    app = sb.App("lambdacfg")
    with pytest.raises(ConfigError, match="task_function"):
        sb.connect(app, "aws", executor="aws.lambda", **_settings(aws_config))
    with pytest.raises(ConfigError, match="task_function 'no such name!'"):
        sb.connect(app, "aws", executor="aws.lambda", task_function="no such name!")

    host = ExecutorHost("lambdacfg", lambda body: None, lambda name: None, 1)  # type: ignore[arg-type,return-value]
    executor = LambdaExecutor(
        AwsConfig(**{**_settings(aws_config), "task_function": "anything"}), host
    )
    try:
        with pytest.raises(TooLarge):
            executor.submit([b"{}", b"x" * (MAX_PAYLOAD_BYTES + 1)])
    finally:
        executor.close()
        executor.close()
