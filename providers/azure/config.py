"""Settings of the Azure provider (Service Bus queues, Data Tables state)."""

from __future__ import annotations

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
        help="fully qualified Service Bus namespace for Azure AD auth "
        "(NAMESPACE.servicebus.windows.net); not supported yet",
    )
    tables_connection_string: str | None = setting(
        None,
        env=("AZURE_TABLES_CONNECTION_STRING", "AZURE_STORAGE_CONNECTION_STRING"),
        help=f"Storage account (Tables) connection string, e.g. {TABLES_EXAMPLE}",
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

    def require_servicebus(self) -> str:
        """The Service Bus connection string, or a `ConfigError` saying how to give one."""
        if self.servicebus_connection_string:
            return self.servicebus_connection_string
        hint = (
            " (servicebus_namespace / Azure AD auth is not supported yet: use a connection string)"
            if self.servicebus_namespace
            else ""
        )
        raise ConfigError(
            "the azure provider needs setting 'servicebus_connection_string' for its queues: pass "
            "servicebus_connection_string=... or set SWITCHBOARD_SERVICEBUS_CONNECTION_STRING / "
            f"AZURE_SERVICEBUS_CONNECTION_STRING, e.g. {SERVICEBUS_EXAMPLE!r}{hint}"
        )

    def require_tables(self) -> str:
        """The Tables connection string, or a `ConfigError` saying how to give one."""
        if self.tables_connection_string:
            return self.tables_connection_string
        raise ConfigError(
            "the azure provider needs setting 'tables_connection_string' for its state store: "
            "pass tables_connection_string=... or set AZURE_TABLES_CONNECTION_STRING / "
            f"AZURE_STORAGE_CONNECTION_STRING, e.g. {TABLES_EXAMPLE!r}"
        )
