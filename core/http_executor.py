"""`HttpTaskExecutor`: task invocations POSTed to a function over HTTP.

The shared part of `gcp.http` (Cloud Run, Cloud Functions) and `azure.http` (HTTP-triggered
Azure Functions); each provider subclasses it for its URL, limits and authentication
(`headers`). Each `task.invoke` body (the wire JSON) is POSTed to `url`; the function there
runs it and reports the outcome on the invocations queue itself, so a 2xx answer means it
has done so.

`submit` hands the requests to a pool of `concurrency` threads and returns at once: a
request lasts as long as its task, and the engine must not wait for tasks (a task's
`timeout` is a timer the engine keeps). So the executor is not durable: a crash of the
submitting process before a request reaches the function loses that invocation, as a crash
of the local thread executor does (the step's `timeout`, when set, then fails it). 429, 5xx
and connection errors are retried with backoff; when they persist, or on any other 4xx,
the attempt is reported failed on the invocations queue, so the task's retries (or
`TaskFailed` in the workflow) take over instead of the run waiting forever.

The function's side of the same protocol is here too: `run_task_request` answers one
POSTed invocation with the status the executor expects (200 done, 400 malformed, 503
retry), and `serve_post` turns such a handler into a WSGI application.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

from switchboard import wire
from switchboard.errors import (
    ConfigError,
    MalformedMessage,
    ProviderError,
    TransientProviderError,
    describe,
)
from switchboard.execution import Invocation, Outcome, failure, result_message
from switchboard.executors import INVOCATIONS_CHANNEL
from switchboard.interfaces import ExecutorCapabilities, ExecutorHost, Queue

log = logging.getLogger("switchboard.http")

#: Attempts of one request before its failure is reported as the task's outcome.
ATTEMPTS = 6
_FIRST_BACKOFF = 0.5
_MAX_BACKOFF = 10.0

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[Mapping[str, Any], StartResponse], Iterable[bytes]]


class HttpTaskExecutor:
    """Delivers invocations to a task URL; not durable (see the module docstring)."""

    def __init__(
        self,
        name: str,
        url: str,
        host: ExecutorHost,
        *,
        max_payload_bytes: int,
        timeout: float,
        concurrency: int,
        auth_hint: str = "",
    ) -> None:
        """`name` is the executor's (`gcp.http`); `auth_hint` is added to the message of a
        401 or 403 answer (which setting holds the credentials)."""
        if concurrency < 1:
            raise ConfigError(
                f"the {name} executor's setting 'task_concurrency' must be at least 1, "
                f"got {concurrency}"
            )
        self.name = name
        self.url = url
        self.capabilities = ExecutorCapabilities(max_payload_bytes=max_payload_bytes)
        self._host = host
        self._timeout = timeout
        self._auth_hint = auth_hint
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix=name)
        self._invocations: Queue | None = None
        self._closed = False

    def headers(self) -> dict[str, str]:
        """Headers of every request besides the content type: a provider's authentication.
        May raise (credentials missing); the attempt is then reported failed, retryable."""
        return {}

    def submit(self, invocations: Sequence[bytes]) -> None:
        if self._closed:
            raise ProviderError(f"the {self.name} executor is closed")
        for body in invocations:
            self._pool.submit(self._deliver, bytes(body))

    def post(self, body: bytes) -> int:
        """POST one invocation; returns the 2xx status. 429, 5xx and connection errors raise
        `TransientProviderError`, any other answer `ProviderError`."""
        headers = {"Content-Type": "application/json", **self.headers()}
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                response.read()
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            message = f"POST {self.url} answered {exc.code}: {_text(exc.read())}"
            if exc.code == 429 or exc.code >= 500:
                raise TransientProviderError(message) from exc
            if exc.code in (401, 403) and self._auth_hint:
                message += f" ({self._auth_hint})"
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
        for attempt in range(1, ATTEMPTS + 1):
            if self._closed:
                return  # shutting down: what is still open is re-dispatched by the next engine
            try:
                self.post(body)
                return
            except TransientProviderError as exc:
                if attempt == ATTEMPTS:
                    self._report_failure(body, exc, retryable=True)
                    return
                log.info("task request failed (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF)
            except ProviderError as exc:
                self._report_failure(body, exc, retryable=False)
                return
            except Exception as exc:  # noqa: BLE001 - e.g. no credentials for `headers`
                self._report_failure(body, exc, retryable=True)
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
                self._invocations = self._host.open_queue(INVOCATIONS_CHANNEL)
            self._invocations.send([wire.dumps(message)])
        except ProviderError as report_error:
            log.error("could not report the failed task request: %s", report_error)


def _text(data: bytes) -> str:
    """The gist of an error answer's body (its JSON `error` field when there is one)."""
    text = data.decode(errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:500]
    return str(parsed.get("error", parsed) if isinstance(parsed, dict) else parsed)[:500]


# -- the function's side ---------------------------------------------------------------------


def run_task_request(run_task: Callable[[bytes], None], body: bytes) -> int:
    """Run a POSTed `task.invoke` with `run_task` (a `TaskRunner.run`); the HTTP status:
    200 once the outcome is reported, 400 for a malformed invocation (no retry can help),
    503 when the outcome could not be reported (the executor retries)."""
    try:
        run_task(body)
    except MalformedMessage as exc:
        log.error("refusing a task request: %s", exc)
        return HTTPStatus.BAD_REQUEST
    except ProviderError as exc:
        log.warning("task outcome could not be reported (%s); asking for a retry", exc)
        return HTTPStatus.SERVICE_UNAVAILABLE
    return HTTPStatus.OK


def serve_post(
    environ: Mapping[str, Any],
    start_response: StartResponse,
    handle: Callable[[bytes, Mapping[str, str]], int],
) -> Iterable[bytes]:
    """Answer one WSGI request: a POST's body and headers (names in lower case) go to
    `handle`, whose HTTP status is the answer; any other method is 405, and an exception
    in `handle` is logged and answered 500, so the caller retries."""
    if environ.get("REQUEST_METHOD") != "POST":
        status = HTTPStatus.METHOD_NOT_ALLOWED
    else:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        try:
            status = HTTPStatus(handle(body, _request_headers(environ)))
        except Exception:  # a bug or an outage: answer, and let the caller retry
            log.exception("request failed")
            status = HTTPStatus.INTERNAL_SERVER_ERROR
    text = f"{status.value} {status.phrase}"
    start_response(text, [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
    return [text.encode()]


def _request_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = str(environ["CONTENT_TYPE"])
    return headers
