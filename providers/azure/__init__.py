"""The Azure provider: Service Bus queues and a Data Tables state store.

Importing this module needs no Azure SDK; the factories import it when a component is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from switchboard.errors import ConfigError
from switchboard.hookspecs import hookimpl
from switchboard.interfaces import ProviderSpec
from switchboard.providers.azure.config import AzureConfig

if TYPE_CHECKING:
    from switchboard.providers.azure.queue import ServiceBusBroker
    from switchboard.providers.azure.state import TablesStateStore

_MISSING_SDK = (
    "the azure provider needs azure-servicebus and azure-data-tables: "
    "pip install 'switchboard-orchestrator[azure]'"
)


def _missing_sdk(error: ImportError) -> bool:
    return (error.name or "").startswith("azure")


def make_broker(config: AzureConfig) -> ServiceBusBroker:
    """Service Bus queues named `{prefix}-{channel}` in the namespace the config names."""
    try:
        import azure.servicebus  # noqa: F401

        from switchboard.providers.azure.queue import ServiceBusBroker
    except ImportError as error:
        if _missing_sdk(error):
            raise ConfigError(_MISSING_SDK) from error
        raise
    return ServiceBusBroker.from_connection_string(
        config.require_servicebus(), prefix=config.prefix, create=config.create
    )


def make_state(config: AzureConfig) -> TablesStateStore:
    """The Data Tables state store on the configured table, created when `create` is on."""
    try:
        import azure.data.tables  # noqa: F401

        from switchboard.providers.azure.state import TablesStateStore
    except ImportError as error:
        if _missing_sdk(error):
            raise ConfigError(_MISSING_SDK) from error
        raise
    store = TablesStateStore.from_connection_string(config.require_tables(), config.table)
    if config.create:
        try:
            store.ensure()
        except BaseException:
            store.close()
            raise
    return store


@hookimpl
def switchboard_providers() -> list[ProviderSpec]:
    return [
        ProviderSpec(
            name="azure",
            description="Azure Service Bus queues and Azure Data Tables state",
            config=AzureConfig,
            broker=make_broker,
            state=make_state,
            extra="azure",
            requires=("azure.servicebus", "azure.data.tables"),
        )
    ]
