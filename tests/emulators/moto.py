"""moto's server (SQS, DynamoDB, ...) on a free 127.0.0.1 port, for the AWS provider tests.

It runs as its own process (`python -m moto.server`), so boto3 talks real HTTP to it.
Clients need a region and any non-empty credentials: `FAKE_ENV` holds both.
"""

from __future__ import annotations

import sys
import urllib.request

from tests.emulators.process import ServerProcess, free_port

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
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            ready=self._ready,
            timeout=60.0,
            env=FAKE_ENV,
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

    def reset(self) -> None:
        """Forget every queue, table and message (moto's own reset endpoint)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def start(self) -> MotoServer:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
