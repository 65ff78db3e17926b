"""`HttpExecutor` (`executor="gcp.http"`): task invocations go to a Cloud Run service or a
Cloud Function over HTTP.

Each `task.invoke` body (the wire JSON) is POSTed to `task_url`; the function there runs
it (`switchboard.providers.gcp.handlers.GcpHandlers.task_app`) and reports the outcome on
the invocations queue itself. A 2xx answer means the function has done so. With
`task_auth`, each request carries a Google ID token whose audience is `task_url` (fetched
by google-auth from Application Default Credentials; Cloud Run checks it for
`roles/run.invoker`).

`submit` hands the requests to a pool of `task_concurrency` threads and returns at once:
a Cloud Run request lasts as long as its task, and the engine must not wait for tasks
(a task's `timeout` is a timer the engine keeps). So the executor is not durable: a crash
of the submitting process before a request reaches the function loses that invocation,
as a crash of the local thread executor does (the step's `timeout`, when set, then fails
it). 429, 5xx and connection errors are retried with backoff; when they persist, or on
any other 4xx, the attempt is reported failed on the invocations queue, so the task's
retries (or `TaskFailed` in the workflow) take over instead of the run waiting forever.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from switchboard import wire
from switchboard.errors import ConfigError, ProviderError, TransientProviderError, describe
from switchboard.execution import Invocation, Outcome, failure, result_message
from switchboard.interfaces import ExecutorCapabilities, ExecutorHost, Queue
from switchboard.providers.gcp.config import GcpConfig

log = logging.getLogger("switchboard.gcp")

#: Cloud Run's limit on an HTTP/1 request body; larger invocations go by claim check.
MAX_PAYLOAD_BYTES = 32 * 1024 * 1024 - 64 * 1024
#: Attempts of one request before its failure is reported as the task's outcome.
_ATTEMPTS = 6
_FIRST_BACKOFF = 0.5
_MAX_BACKOFF = 10.0
#: ID tokens live an hour; fetch a new one well before.
_TOKEN_SECONDS = 45 * 60
_INVOCATIONS_CHANNEL = "invocations"


class HttpExecutor:
    """Delivers invocations to a task URL; not durable (see the module docstring)."""

    capabilities = ExecutorCapabilities(max_payload_bytes=MAX_PAYLOAD_BYTES)

    def __init__(self, config: GcpConfig, host: ExecutorHost) -> None:
        if not config.task_url:
            raise ConfigError(
                "the gcp.http executor needs task_url: pass task_url=https://... or set "
                "SWITCHBOARD_GCP_TASK_URL (the Cloud Run / Cloud Functions URL serving "
                "GcpHandlers.task_app)"
            )
        if config.task_concurrency < 1:
            raise ConfigError(
                f"the gcp provider's setting 'task_concurrency' must be at least 1, "
                f"got {config.task_concurrency}"
            )
        self.url = config.task_url
        self._auth = config.task_auth
        self._timeout = config.task_timeout
        self._host = host
        self._pool = ThreadPoolExecutor(config.task_concurrency, thread_name_prefix="gcp-http")
        self._invocations: Queue | None = None
        self._token: tuple[str, float] | None = None
        self._token_lock = threading.Lock()
        self._closed = False

    def submit(self, invocations: Sequence[bytes]) -> None:
        if self._closed:
            raise ProviderError("the gcp.http executor is closed")
        for body in invocations:
            self._pool.submit(self._deliver, bytes(body))

    def post(self, body: bytes) -> int:
        """POST one invocation; returns the 2xx status. 429, 5xx and connection errors raise
        `TransientProviderError`, any other answer `ProviderError`."""
        headers = {"Content-Type": "application/json"}
        if self._auth:
            headers["Authorization"] = f"Bearer {self._id_token()}"
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
            except Exception as exc:  # noqa: BLE001 - e.g. no credentials for the ID token
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
                self._invocations = self._host.open_queue(_INVOCATIONS_CHANNEL)
            self._invocations.send([wire.dumps(message)])
        except ProviderError as report_error:
            log.error("could not report the failed task request: %s", report_error)

    def _id_token(self) -> str:
        with self._token_lock:
            now = time.monotonic()
            if self._token is None or self._token[1] <= now:
                self._token = (_fetch_id_token(self.url), now + _TOKEN_SECONDS)
            return self._token[0]


def _fetch_id_token(audience: str) -> str:
    try:
        import google.auth.exceptions
        import google.auth.transport.requests
        import google.oauth2.id_token
    except ImportError as exc:
        raise ConfigError(
            "task_auth needs google-auth and requests: pip install 'switchboard-orchestrator[gcp]'"
        ) from exc
    try:
        token: Any = google.oauth2.id_token.fetch_id_token(  # type: ignore[no-untyped-call]
            google.auth.transport.requests.Request(), audience
        )
    except google.auth.exceptions.TransportError as exc:
        raise TransientProviderError(f"fetching an ID token for {audience} failed: {exc}") from exc
    except google.auth.exceptions.GoogleAuthError as exc:
        raise ProviderError(
            f"no ID token for {audience}: {exc}. Give Application Default Credentials of a "
            "service account (GOOGLE_APPLICATION_CREDENTIALS or the metadata server)"
        ) from exc
    return str(token)


def _text(data: bytes) -> str:
    text = data.decode(errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:500]
    return str(parsed.get("error", parsed) if isinstance(parsed, dict) else parsed)[:500]


def http_executor(config: GcpConfig, host: ExecutorHost) -> HttpExecutor:
    """The `gcp.http` executor factory."""
    return HttpExecutor(config, host)
