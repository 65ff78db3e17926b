"""The azure provider's settings: arguments or environment, connection strings or a namespace
and a table endpoint, and the errors that say what is missing."""

from __future__ import annotations

import importlib.util
import re
import uuid

import pytest

import switchboard as sb
from switchboard.plugins import registry
from switchboard.providers.azure import make_broker, make_state
from switchboard.providers.azure.config import AzureConfig
from tests.providers.azure.conftest import LIVE


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_SERVICEBUS_NAMESPACE", "ns.servicebus.windows.net")
    monkeypatch.setenv("AZURE_TABLES_ENDPOINT", "https://acct.table.core.windows.net")
    monkeypatch.setenv("AZURE_STORAGE_KEY", "a2V5")
    monkeypatch.setenv("SWITCHBOARD_AZURE_PREFIX", "shop")
    monkeypatch.setenv("SWITCHBOARD_AZURE_TASK_URL", "https://app.azurewebsites.net/api/tasks")
    monkeypatch.setenv("SWITCHBOARD_AZURE_FUNCTION_KEY", "k")
    config: AzureConfig = registry.config("azure", {"table": "runs"})
    assert config.servicebus_target() == ("namespace", "ns.servicebus.windows.net")
    assert config.tables_target() == ("endpoint", "https://acct.table.core.windows.net")
    assert (config.tables_account_key, config.tables_account_name()) == ("a2V5", "acct")
    assert (config.prefix, config.table, config.function_key) == ("shop", "runs", "k")
    assert config.task_url == "https://app.azurewebsites.net/api/tasks"


def test_missing_settings_say_what_to_give(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "SWITCHBOARD_SERVICEBUS_CONNECTION_STRING",
        "AZURE_SERVICEBUS_CONNECTION_STRING",
        "AZURE_SERVICEBUS_NAMESPACE",
        "AZURE_TABLES_CONNECTION_STRING",
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_TABLES_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    config: AzureConfig = registry.config("azure", {})
    with pytest.raises(sb.ConfigError, match="SWITCHBOARD_SERVICEBUS_CONNECTION_STRING"):
        make_broker(config)
    with pytest.raises(sb.ConfigError, match="tables_endpoint"):
        make_state(config)


def test_the_account_is_read_from_the_endpoint() -> None:
    def account(endpoint: str) -> str:
        return AzureConfig(tables_endpoint=endpoint).tables_account_name()

    assert account("https://acct.table.core.windows.net/") == "acct"
    assert account("http://127.0.0.1:10002/devstoreaccount1") == "devstoreaccount1"
    assert account("http://localhost:10002/devstoreaccount1/") == "devstoreaccount1"
    with pytest.raises(sb.ConfigError, match="names no account"):
        account("not a url")


@pytest.mark.skipif(
    importlib.util.find_spec("azure.identity") is not None,
    reason="azure-identity is installed: Azure AD auth would be attempted",
)
def test_azure_ad_auth_without_azure_identity_names_the_package() -> None:
    with pytest.raises(sb.ConfigError, match="pip install azure-identity"):
        make_broker(AzureConfig(servicebus_namespace="ns.servicebus.windows.net"))
    with pytest.raises(sb.ConfigError, match="pip install azure-identity"):
        make_state(AzureConfig(tables_endpoint="https://acct.table.core.windows.net"))


@pytest.mark.skipif(LIVE, reason="uses the development account's well-known key")
def test_a_table_endpoint_with_an_account_key_reaches_the_table_service(
    tables_connection_string: str,
) -> None:
    from tests.emulators.azurite import ACCOUNT_KEY

    match = re.search(r"TableEndpoint=([^;]+)", tables_connection_string)
    assert match is not None, tables_connection_string
    table = "ep" + uuid.uuid4().hex[:12]
    store = make_state(
        AzureConfig(tables_endpoint=match.group(1), tables_account_key=ACCOUNT_KEY, table=table)
    )
    try:
        version = store.put("p", "k/1", b"value")
        record = store.get("p", "k/1")
        assert record is not None and (record.value, record.version) == (b"value", version)
    finally:
        from azure.data.tables import TableServiceClient

        with TableServiceClient.from_connection_string(tables_connection_string) as service:
            service.delete_table(table)
        store.close()
