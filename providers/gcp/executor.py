"""`HttpExecutor` (`executor="gcp.http"`): task invocations go to a Cloud Run service or a
Cloud Function over HTTP (`switchboard.http_executor` does the delivery).

The service there runs each POSTed invocation
(`switchboard.providers.gcp.handlers.GcpHandlers.task_app`) and reports the outcome on the
invocations queue itself. With `task_auth`, each request carries a Google ID token whose
audience is `task_url` (fetched by google-auth from Application Default Credentials; Cloud
Run checks it for `roles/run.invoker`). Like every HTTP executor it is not durable: see
`switchboard.http_executor`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from switchboard.errors import ConfigError, ProviderError, TransientProviderError
from switchboard.http_executor import HttpTaskExecutor
from switchboard.interfaces import ExecutorHost
from switchboard.providers.gcp.config import GcpConfig

#: Cloud Run's limit on an HTTP/1 request body; larger invocations go by claim check.
MAX_PAYLOAD_BYTES = 32 * 1024 * 1024 - 64 * 1024
#: ID tokens live an hour; fetch a new one well before.
_TOKEN_SECONDS = 45 * 60


class HttpExecutor(HttpTaskExecutor):
    """`gcp.http`: POSTs to `task_url`, with an ID token when `task_auth` is set."""

    def __init__(self, config: GcpConfig, host: ExecutorHost) -> None:
        if not config.task_url:
            raise ConfigError(
                "the gcp.http executor needs task_url: pass task_url=https://... or set "
                "SWITCHBOARD_GCP_TASK_URL (the Cloud Run / Cloud Functions URL serving "
                "GcpHandlers.task_app)"
            )
        super().__init__(
            "gcp.http",
            config.task_url,
            host,
            max_payload_bytes=MAX_PAYLOAD_BYTES,
            timeout=config.task_timeout,
            concurrency=config.task_concurrency,
            auth_hint="check the service account's roles/run.invoker and task_auth",
        )
        self._auth = config.task_auth
        self._token: tuple[str, float] | None = None
        self._token_lock = threading.Lock()

    def headers(self) -> dict[str, str]:
        if not self._auth:
            return {}
        with self._token_lock:
            now = time.monotonic()
            if self._token is None or self._token[1] <= now:
                self._token = (_fetch_id_token(self.url), now + _TOKEN_SECONDS)
            return {"Authorization": f"Bearer {self._token[0]}"}


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
