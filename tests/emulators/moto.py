"""moto's server (SQS, DynamoDB, ...) on a free 127.0.0.1 port, for the AWS provider tests.

It runs as its own process, so boto3 talks real HTTP to it. Clients need a region and any
non-empty credentials: `FAKE_ENV` holds both.

Two deviations from `moto_server`, both in `serve`:
- DynamoDB requests are served one at a time. moto's threaded server checks a put's
  condition and writes without a lock, so two racing conditional writes can both succeed
  (measured: 1 round in 300 with 8 writers), which real DynamoDB never allows. SQS
  requests stay concurrent, so a long poll blocks nobody.
- moto's SQS reads the clock through datetime arithmetic for every queued message on every
  send and receive, so a queue filling up to 1,000 messages took 40 s to send them (0.4 s
  per SendMessageBatch at the end). `serve` gives it the same clock from `time.time()`:
  the same 1,000 messages are sent in 4 s and received in 5 s; behaviour is unchanged.
Lambda runs without Docker (`_lambda_without_docker`): functions can be created and
invoked, but their code never runs; tests feed the invoked payloads to the handler.
Run directly: `python -m tests.emulators.moto PORT` from the repository root.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tests.emulators.process import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]

#: What boto3 needs to talk to moto; never real credentials.
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoServer:
    """One moto server process we started."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server = ServerProcess(
            "moto",
            [sys.executable, "-m", "tests.emulators.moto", str(self.port)],
            ready=self._ready,
            timeout=60.0,
            env=FAKE_ENV,
            cwd=ROOT,
        )

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        import boto3
        import botocore.config

        # A real, signed SQS request: it succeeds only once moto serves.
        client = boto3.session.Session(
            aws_access_key_id=FAKE_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=FAKE_ENV["AWS_REGION"],
        ).client(
            "sqs",
            endpoint_url=self.endpoint_url,
            config=botocore.config.Config(
                retries={"max_attempts": 0}, connect_timeout=1, read_timeout=2
            ),
        )
        try:
            client.list_queues()
        finally:
            client.close()
        return True

    def start(self) -> MotoServer:
        self.server.start()
        self._lambda_without_docker()
        return self

    def _lambda_without_docker(self) -> None:
        """moto's docker-free Lambda backend: functions are stored and invocations accepted
        (an Event invocation answers 202), but no function code runs."""
        import json
        import urllib.request

        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/config",
            data=json.dumps({"lambda": {"use_docker": False}}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(port: int) -> None:
    """Serve moto's app on 127.0.0.1:`port` like `moto_server`, DynamoDB one request at a time."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    _cheap_sqs_clock()
    app = DomainDispatcherApplication(create_backend_app)
    dynamodb = threading.Lock()

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # moto builds the whole response inside the call, so the lock covers the work.
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            with dynamodb:
                return app(environ, start_response)  # type: ignore[no-any-return]
        return app(environ, start_response)  # type: ignore[no-any-return]

    run_simple("127.0.0.1", port, application, threaded=True, request_handler=MotoRequestHandler)


def _cheap_sqs_clock() -> None:
    """Give moto's SQS models the current time from `time.time()` (see the module doc)."""
    import time

    import moto.sqs.models as sqs_models

    namespace = vars(sqs_models)  # where the models look the clock up
    slow_unix_time = namespace["unix_time"]

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else float(slow_unix_time(dt))

    def unix_time_millis(dt: Any = None) -> float:
        return unix_time(dt) * 1000.0

    namespace.update(unix_time=unix_time, unix_time_millis=unix_time_millis)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
