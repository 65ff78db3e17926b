"""`HttpExecutor` (`executor="azure.http"`): task invocations go to an HTTP-triggered Azure
Function (`switchboard.http_executor` does the delivery).

Each request carries the function key in the `x-functions-key` header (the Functions host
checks it for `AuthLevel.FUNCTION`). The function there runs the invocation
(`switchboard.providers.azure.handlers.AzureHandlers.task`) and reports the outcome on the
invocations queue itself. Like every HTTP executor it is not durable: see
`switchboard.http_executor`.

Limits: the Functions host accepts request bodies up to 100 MB; larger invocations go through
the core's claim check. An HTTP-triggered function must answer within 230 s (the Azure load
balancer's idle timeout) whatever its `functionTimeout`: longer tasks belong on the tasks
queue (the default executor) or should return `sb.pending()` and finish by token.
"""

from __future__ import annotations

from switchboard.errors import ConfigError
from switchboard.http_executor import HttpTaskExecutor
from switchboard.interfaces import ExecutorHost
from switchboard.providers.azure.config import AzureConfig

#: The Functions host's limit on an HTTP request (100 MB), less room for headers.
MAX_PAYLOAD_BYTES = 100 * 1024 * 1024 - 64 * 1024
#: The header an HTTP-triggered function reads its function key from.
FUNCTION_KEY_HEADER = "x-functions-key"


class HttpExecutor(HttpTaskExecutor):
    """`azure.http`: POSTs to `task_url` with the function key."""

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
        super().__init__(
            "azure.http",
            config.task_url,
            host,
            max_payload_bytes=MAX_PAYLOAD_BYTES,
            timeout=config.task_timeout,
            concurrency=config.task_concurrency,
            auth_hint="check function_key / SWITCHBOARD_AZURE_FUNCTION_KEY",
        )
        self._key = config.function_key

    def headers(self) -> dict[str, str]:
        return {FUNCTION_KEY_HEADER: self._key}
