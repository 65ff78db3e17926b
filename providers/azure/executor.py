"""`HttpExecutor` (`executor="azure.http"`): task invocations go to an HTTP-triggered Azure
Function.

Each `task.invoke` body (the wire JSON) is POSTed to `task_url` with the function key in the
`x-functions-key` header (the Functions host checks it for `AuthLevel.FUNCTION`). The function
there runs it (`switchboard.providers.azure.handlers.AzureHandlers.task`) and reports the
outcome on the invocations queue itself; a 2xx answer means it has done so.

`submit` hands the requests to a pool of `task_concurrency` threads and returns at once: a
request lasts as long as its task, and the engine must not wait for tasks (a task's `timeout`
is a timer the engine keeps). So the executor is not durable: a crash of the submitting
process before a request reaches the function loses that invocation, as a crash of the local
thread executor does (the step's `timeout`, when set, then fails it). 429, 5xx and connection
errors are retried with backoff; when they persist, or on any other 4xx (401: a wrong key),
the attempt is reported failed on the invocations queue, so the task's retries (or
`TaskFailed` in the workflow) take over instead of the run waiting forever.

Limits: the Functions host accepts request bodies up to 100 MB; larger invocations go through
the core's claim check. An HTTP-triggered function must answer within 230 s (the Azure load
balancer's idle timeout) whatever its `functionTimeout`: longer tasks belong on the tasks
queue (the default executor) or should return `sb.pending()` and finish by token.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from switchboard import wire
from switchboard.errors import ConfigError, ProviderError, TransientProviderError, describe
from switchboard.execution import Invocation, Outcome, failure, result_message
from switchboard.interfaces import ExecutorCapabilities, ExecutorHost, Queue
from switchboard.providers.azure.config import AzureConfig

log = logging.getLogger("switchboard.azure")

#: The Functions host's limit on an HTTP request (100 MB), less room for headers.
MAX_PAYLOAD_BYTES = 100 * 1024 * 1024 - 64 * 1024
#: The header an HTTP-triggered function reads its function key from.
FUNCTION_KEY_HEADER = "x-functions-key"
#: Attempts of one request before its failure is reported as the task's outcome.
_ATTEMPTS = 6
_FIRST_BACKOFF = 0.5
_MAX_BACKOFF = 10.0
_INVOCATIONS_CHANNEL = "invocations"


class HttpExecutor:
    """Delivers invocations to an HTTP-triggered function; not durable (see the module
    docstring)."""

    capabilities = ExecutorCapabilities(max_payload_bytes=MAX_PAYLOAD_BYTES)

    def __init__(self, config: AzureConfig, host: ExecutorHost) -> None:
        if not config.task_url:
            raise ConfigError(
                "the azure.http executor needs task_url: pass task_url=https://APP."
                "azurewebsites.net/api/FUNCTION or set SWITCHBOARD_AZURE_TASK_URL (the "
                "HTTP-triggered function serving AzureHandlers.task)"
            )
        if not config.function_key:
            raise ConfigError(
                "the azure.http executor needs function_key: pass function_key=... or set "
                "SWITCHBOARD_AZURE_FUNCTION_KEY (the function's key, from `az functionapp "
                "function keys list` or the portal)"
            )
        if config.task_concurrency < 1:
            raise ConfigError(
                f"the azure provider's setting 'task_concurrency' must be at least 1, "
                f"got {config.task_concurrency}"
            )
        self.url = config.task_url
        self._key = config.function_key
        self._timeout = config.task_timeout
        self._host = host
        self._pool = ThreadPoolExecutor(config.task_concurrency, thread_name_prefix="azure-http")
        self._invocations: Queue | None = None
        self._closed = False

    def submit(self, invocations: Sequence[bytes]) -> None:
        if self._closed:
            raise ProviderError("the azure.http executor is closed")
        for body in invocations:
            self._pool.submit(self._deliver, bytes(body))

    def post(self, body: bytes) -> int:
        """POST one invocation; returns the 2xx status. 429, 5xx and connection errors raise
        `TransientProviderError`, any other answer `ProviderError`."""
        headers = {"Content-Type": "application/json", FUNCTION_KEY_HEADER: self._key}
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                response.read()
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            detail = _text(exc.read())
            message = f"POST {self.url} answered {exc.code}: {detail}"
            if exc.code == 429 or exc.code >= 500:
                raise TransientProviderError(message) from exc
            if exc.code in (401, 403):
                message += " (check function_key / SWITCHBOARD_AZURE_FUNCTION_KEY)"
            raise ProviderError(message) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise TransientProviderError(f"POST {self.url} failed: {exc}") from exc
        if not 200 <= status < 300:
            raise ProviderError(f"POST {self.url} answered {status}")
        return status

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- internals --------------------------------------------------------------------------

    def _deliver(self, body: bytes) -> None:
        delay = _FIRST_BACKOFF
        for attempt in range(1, _ATTEMPTS + 1):
            if self._closed:
                return  # shutting down: what is still open is re-dispatched by the next engine
            try:
                self.post(body)
                return
            except TransientProviderError as exc:
                if attempt == _ATTEMPTS:
                    self._report_failure(body, exc, retryable=True)
                    return
                log.info("task request failed (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF)
            except ProviderError as exc:
                self._report_failure(body, exc, retryable=False)
                return

    def _report_failure(self, body: bytes, exc: BaseException, *, retryable: bool) -> None:
        """Tell the engine this attempt failed, so the run does not wait for it forever."""
        if self._closed:
            return
        try:
            invocation = Invocation.from_message(wire.decode(body))
        except Exception:  # noqa: BLE001 - a claim-checked body: only the task's timeout helps
            log.error("task request failed and could not be reported: %s", describe(exc))
            return
        log.warning(
            "task %s (run %s, step %d) could not be delivered: %s",
            invocation.task,
            invocation.run,
            invocation.seq,
            exc,
        )
        outcome = Outcome("error", error=failure(exc, retryable=retryable))
        message = result_message(self._host.app_name, invocation, outcome)
        try:
            if self._invocations is None:
                self._invocations = self._host.open_queue(_INVOCATIONS_CHANNEL)
            self._invocations.send([wire.dumps(message)])
        except ProviderError as report_error:
            log.error("could not report the failed task request: %s", report_error)


def _text(data: bytes) -> str:
    text = data.decode(errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:500]
    return str(parsed.get("error", parsed) if isinstance(parsed, dict) else parsed)[:500]


def http_executor(config: AzureConfig, host: ExecutorHost) -> HttpExecutor:
    """The `azure.http` executor factory."""
    return HttpExecutor(config, host)
