"""The Azure provider: Service Bus queues, a Data Tables state store, and the `azure.http`
executor for HTTP-triggered Azure Functions (the default executor is the core tasks queue on
Service Bus); serverless entry points live in `switchboard.providers.azure.handlers`.

Importing this module needs no Azure SDK; the factories import it when a component is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from switchboard.errors import ConfigError
from switchboard.hookspecs import hookimpl
from switchboard.interfaces import Executor, ExecutorHost, ProviderSpec
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
    how, where = config.servicebus_target()
    if how == "connection_string":
        return ServiceBusBroker.from_connection_string(
            where, prefix=config.prefix, create=config.create
        )
    return ServiceBusBroker.from_namespace(
        where,
        _azure_ad_credential("servicebus_namespace"),
        prefix=config.prefix,
        create=config.create,
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
    how, where = config.tables_target()
    if how == "connection_string":
        store = TablesStateStore.from_connection_string(where, config.table)
    else:
        credential: Any
        if config.tables_account_key:
            from azure.core.credentials import AzureNamedKeyCredential

            credential = AzureNamedKeyCredential(
                config.tables_account_name(), config.tables_account_key
            )
        else:
            credential = _azure_ad_credential("tables_endpoint")
        store = TablesStateStore.from_endpoint(where, config.table, credential)
    if config.create:
        try:
            store.ensure()
        except BaseException:
            store.close()
            raise
    return store


def _azure_ad_credential(setting: str) -> Any:
    """azure-identity's `DefaultAzureCredential` (environment, workload or managed identity,
    Azure CLI login, ...), for a namespace or endpoint given without a key."""
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError as error:
        raise ConfigError(
            f"the azure provider's setting {setting!r} without a key or connection string "
            "authenticates with Azure AD, which needs azure-identity: pip install azure-identity"
        ) from error
    return DefaultAzureCredential()


def make_http_executor(config: AzureConfig, host: ExecutorHost) -> Executor:
    """Task invocations POSTed to an HTTP-triggered function (`executor="azure.http"`)."""
    from switchboard.providers.azure.executor import HttpExecutor

    return HttpExecutor(config, host)


@hookimpl
def switchboard_providers() -> list[ProviderSpec]:
    return [
        ProviderSpec(
            name="azure",
            description="Azure Service Bus queues, Azure Data Tables state, Functions over HTTP",
            config=AzureConfig,
            broker=make_broker,
            state=make_state,
            executors={"http": make_http_executor},
            extra="azure",
            requires=("azure.servicebus", "azure.data.tables"),
        )
    ]
