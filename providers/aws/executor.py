"""`LambdaExecutor` (`executor="aws.lambda"`): each task invocation is an asynchronous
`Invoke` (InvocationType=Event) of the Lambda function `task_function`.

The function runs the app's `lambda_handler` (`switchboard.providers.aws.handlers`), which
takes the `task.invoke` message as its event, runs the task and reports the outcome on the
invocations queue. Lambda queues an accepted event durably and answers 202, so `submit`
returns once every invocation is accepted: the executor is as durable as Lambda's own
event queue. A function error is retried by Lambda twice; a task's own failures are
outcomes, not function errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from switchboard.errors import ConfigError, NotFound, ProviderError, TooLarge
from switchboard.interfaces import ExecutorCapabilities, ExecutorHost
from switchboard.providers.aws.client import make_client, translated
from switchboard.providers.aws.config import AwsConfig

#: Lambda's limit for an asynchronous invocation's payload was 256 KiB (raised to 1 MB in
#: 2025); keeping under the older one works in every region. Larger invocations reach the
#: function by the core's claim check.
MAX_PAYLOAD_BYTES = 256 * 1024 - 1024
#: Invocations sent at once by one `submit` (a fan-out is many requests).
_PARALLEL_INVOKES = 16


class LambdaExecutor:
    """Invokes `task_function` once per task invocation; durable once `submit` returns."""

    capabilities = ExecutorCapabilities(max_payload_bytes=MAX_PAYLOAD_BYTES)

    def __init__(self, config: AwsConfig, host: ExecutorHost, *, client: Any = None) -> None:
        if not config.task_function:
            raise ConfigError(
                "the aws.lambda executor needs task_function: pass task_function=NAME or set "
                "SWITCHBOARD_AWS_TASK_FUNCTION (a Lambda function running "
                "switchboard.providers.aws.handlers.lambda_handler for this app)"
            )
        self.function = config.task_function
        self._app_name = host.app_name
        # A client passed in belongs to the caller, who closes it.
        self._client = client if client is not None else make_client("lambda", config)
        self._owns_client = client is None
        self._pool = ThreadPoolExecutor(_PARALLEL_INVOKES, thread_name_prefix="aws-lambda")
        self._closed = False

    def submit(self, invocations: Sequence[bytes]) -> None:
        if self._closed:
            raise ProviderError("the aws.lambda executor is closed")
        for body in invocations:
            if len(body) > MAX_PAYLOAD_BYTES:
                raise TooLarge(
                    f"task invocation of {len(body)} bytes exceeds the aws.lambda executor's "
                    f"limit of {MAX_PAYLOAD_BYTES} bytes"
                )
        if len(invocations) == 1:
            self.invoke(invocations[0])
            return
        # Every invocation is attempted; the first failure is raised once all have answered.
        futures = [self._pool.submit(self.invoke, bytes(body)) for body in invocations]
        errors = [exc for exc in (future.exception() for future in futures) if exc is not None]
        if errors:
            raise errors[0]

    def invoke(self, body: bytes) -> None:
        """Hand one invocation to Lambda's event queue (`InvocationType=Event`)."""
        try:
            with translated(f"invoking Lambda function {self.function}"):
                response = self._client.invoke(
                    FunctionName=self.function, InvocationType="Event", Payload=bytes(body)
                )
        except NotFound as exc:
            raise ProviderError(
                f"{exc}: deploy the function or set task_function to the one running "
                f"the tasks of app {self._app_name!r}"
            ) from exc
        status = int(response.get("StatusCode", 0))
        if status != 202:
            raise ProviderError(
                f"Lambda function {self.function} answered {status} to an Event invocation "
                "(202 expected)"
            )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True)
        if self._owns_client:
            self._client.close()
