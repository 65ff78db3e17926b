"""Settings of the Azure provider (Service Bus queues, Data Tables state, the `azure.http`
executor for HTTP-triggered Azure Functions)."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from switchboard.config import setting
from switchboard.errors import ConfigError

SERVICEBUS_EXAMPLE = (
    "Endpoint=sb://NAMESPACE.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;"
    "SharedAccessKey=..."
)
TABLES_EXAMPLE = (
    "DefaultEndpointsProtocol=https;AccountName=ACCOUNT;AccountKey=...;"
    "EndpointSuffix=core.windows.net"
)


@dataclass(frozen=True)
class AzureConfig:
    """Where the Azure provider keeps its queues and state."""

    servicebus_connection_string: str | None = setting(
        None,
        env=("SWITCHBOARD_SERVICEBUS_CONNECTION_STRING", "AZURE_SERVICEBUS_CONNECTION_STRING"),
        help=f"Service Bus connection string, e.g. {SERVICEBUS_EXAMPLE}",
    )
    servicebus_namespace: str | None = setting(
        None,
        env=("AZURE_SERVICEBUS_NAMESPACE",),
        help="fully qualified Service Bus namespace (NAMESPACE.servicebus.windows.net), used "
        "when no connection string is given, with Azure AD auth (DefaultAzureCredential: "
        "pip install azure-identity)",
    )
    tables_connection_string: str | None = setting(
        None,
        env=("AZURE_TABLES_CONNECTION_STRING", "AZURE_STORAGE_CONNECTION_STRING"),
        help=f"Storage account (Tables) connection string, e.g. {TABLES_EXAMPLE}",
    )
    tables_endpoint: str | None = setting(
        None,
        env=("AZURE_TABLES_ENDPOINT",),
        help="Table service endpoint (https://ACCOUNT.table.core.windows.net), used when no "
        "connection string is given: with tables_account_key, else Azure AD auth "
        "(DefaultAzureCredential: pip install azure-identity)",
    )
    tables_account_key: str | None = setting(
        None,
        env=("AZURE_TABLES_ACCOUNT_KEY", "AZURE_STORAGE_KEY"),
        help="storage account key for tables_endpoint (the account name is taken from the "
        "endpoint: its first host label, or its first path segment for an emulator)",
    )
    table: str = setting(
        "switchboard",
        env=("SWITCHBOARD_AZURE_TABLE",),
        help="the table holding every record (3-63 letters and digits)",
    )
    prefix: str = setting(
        "switchboard",
        env=("SWITCHBOARD_AZURE_PREFIX",),
        help="queue names are PREFIX-NAME (dead letters in each queue's $DeadLetterQueue)",
    )
    create: bool = setting(
        True,
        env=("SWITCHBOARD_AZURE_CREATE",),
        help="create the missing table and queues (needs Manage rights on the namespace); "
        "set false where infrastructure is provisioned",
    )

    task_url: str | None = setting(
        None,
        env=("SWITCHBOARD_AZURE_TASK_URL",),
        help="URL of the HTTP-triggered function that runs tasks (executor azure.http), e.g. "
        "https://APP.azurewebsites.net/api/tasks",
    )
    function_key: str | None = setting(
        None,
        env=("SWITCHBOARD_AZURE_FUNCTION_KEY",),
        help="function key sent as x-functions-key with each task request (azure.http), and "
        "checked by the task endpoint (AzureHandlers.task)",
    )
    task_timeout: float = setting(
        230.0,
        env=("SWITCHBOARD_AZURE_TASK_TIMEOUT",),
        help="seconds a task request may take, the task included (azure.http; an HTTP-triggered "
        "function must answer within 230 s, the Azure load balancer's idle timeout)",
    )
    task_concurrency: int = setting(
        32,
        env=("SWITCHBOARD_AZURE_TASK_CONCURRENCY",),
        help="task requests in flight at once from one process (azure.http)",
    )

    def servicebus_target(self) -> tuple[str, str]:
        """How to reach Service Bus: `("connection_string", value)` or `("namespace", host)`,
        else a `ConfigError` saying how to give one."""
        if self.servicebus_connection_string:
            return "connection_string", self.servicebus_connection_string
        if self.servicebus_namespace:
            return "namespace", self.servicebus_namespace
        raise ConfigError(
            "the azure provider needs setting 'servicebus_connection_string' (or "
            "'servicebus_namespace' with Azure AD auth) for its queues: pass "
            "servicebus_connection_string=... or set SWITCHBOARD_SERVICEBUS_CONNECTION_STRING / "
            f"AZURE_SERVICEBUS_CONNECTION_STRING, e.g. {SERVICEBUS_EXAMPLE!r}"
        )

    def tables_target(self) -> tuple[str, str]:
        """How to reach the Table service: `("connection_string", value)` or
        `("endpoint", url)`, else a `ConfigError` saying how to give one."""
        if self.tables_connection_string:
            return "connection_string", self.tables_connection_string
        if self.tables_endpoint:
            return "endpoint", self.tables_endpoint
        raise ConfigError(
            "the azure provider needs setting 'tables_connection_string' (or 'tables_endpoint') "
            "for its state store: pass tables_connection_string=... or set "
            "AZURE_TABLES_CONNECTION_STRING / AZURE_STORAGE_CONNECTION_STRING, e.g. "
            f"{TABLES_EXAMPLE!r}"
        )

    def tables_account_name(self) -> str:
        """The storage account of `tables_endpoint`: the first host label
        (ACCOUNT.table.core.windows.net), or the first path segment (http://127.0.0.1:10002/
        devstoreaccount1, as emulators address accounts)."""
        parsed = urllib.parse.urlsplit(self.tables_endpoint or "")
        segment = parsed.path.strip("/").split("/", 1)[0]
        host = parsed.hostname or ""
        is_address = host == "localhost" or host.replace(".", "").isdigit() or ":" in host
        name = segment if segment and is_address else host.split(".", 1)[0]
        if not name:
            raise ConfigError(
                f"the azure provider's setting 'tables_endpoint' names no account: "
                f"{self.tables_endpoint!r} (expected https://ACCOUNT.table.core.windows.net)"
            )
        return name
