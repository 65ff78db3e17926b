"""Provider discovery, typed settings, mixing providers by name, and their errors."""

from __future__ import annotations

import types
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

import switchboard as sb
from switchboard.config import build_config, setting
from switchboard.errors import ConfigError, ProviderLoadError, UnknownName
from switchboard.hookspecs import hookimpl
from switchboard.interfaces import Broker, ProviderSpec
from switchboard.plugins import Registry
from switchboard.providers.local.queue import MemoryBroker
from switchboard.runtime import build_runtime


def test_local_registers_through_its_entry_point() -> None:
    registry = Registry()
    installed = registry.all()["local"]
    assert installed.package == "switchboard-orchestrator"
    assert installed.components == ["queue", "state", "executor:default", "executor:threads"]
    registry.plugin_manager.check_pending()


def test_a_plugin_that_fails_to_import_hides_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    real = importlib.metadata.entry_points

    def entry_points(group: str) -> Sequence[importlib.metadata.EntryPoint]:
        broken = importlib.metadata.EntryPoint("broken", "no_such_module_xyz", group)
        return [*real(group=group), broken]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    registry = Registry()
    assert "local" in registry.all()
    assert registry.all()["broken"].load_error is not None
    with pytest.raises(ProviderLoadError, match=r"the broken provider .* failed to load"):
        registry.get("broken")


def test_unknown_provider_and_setting_name_the_choices() -> None:
    app = sb.App("cfg")
    with pytest.raises(
        UnknownName, match=r"no provider named 'lokal'; installed providers: .*local"
    ):
        sb.connect(app, "lokal")
    with pytest.raises(ConfigError, match=r"no setting 'pth' \(did you mean 'path'\?\)"):
        sb.connect(app, "local", pth="x.db")
    with pytest.raises(ConfigError, match=r"synchronous.*must be one of full, normal"):
        sb.connect(app, "local", path=":memory:", synchronous="off")
    with pytest.raises(ConfigError, match=r"no executor 'rockets'; it offers: local.threads"):
        sb.connect(app, "local", executor="local.rockets")


@dataclass(frozen=True)
class _Settings:
    region: str = setting(env=("TEST_SB_REGION",), help="where")
    retries: int = setting(3)
    verbose: bool = setting(False)


def test_typed_settings_from_arguments_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(
        ConfigError, match=r"needs setting 'region': pass region=... or set TEST_SB_REGION"
    ):
        build_config(_Settings, {}, provider="demo")
    monkeypatch.setenv("TEST_SB_REGION", "eu-west-1")
    assert build_config(
        _Settings, {"retries": "5", "verbose": "yes"}, provider="demo"
    ) == _Settings("eu-west-1", 5, True)
    with pytest.raises(ConfigError, match=r"'retries' must be int, got 'many' from argument"):
        build_config(_Settings, {"retries": "many"}, provider="demo")


def test_providers_mix_by_name() -> None:
    brokers: list[Broker] = []

    def broker(config: object) -> Broker:
        made = MemoryBroker()
        brokers.append(made)
        return made

    plugin = types.SimpleNamespace()

    @hookimpl
    def switchboard_providers() -> Sequence[ProviderSpec]:
        return [
            ProviderSpec(
                name="elsewhere", description="queues only", config=_NoSettings, broker=broker
            )
        ]

    plugin.switchboard_providers = switchboard_providers
    registry = Registry()
    registry.register(plugin, package="tests")
    app = sb.App("mixed")

    @app.task
    def hello(name: str) -> str:
        return f"hello {name}"

    @app.workflow
    def greet(ctx: sb.Context, name: str) -> str:
        return hello(name)

    runtime = build_runtime(app, "local", queue="elsewhere", workers=2, reg=registry)
    client = sb.Client(runtime)
    with client:
        assert client.wait(client.start("greet", name="mix"), timeout=30).output == "hello mix"
    assert brokers, "the queues came from the other provider"
    with pytest.raises(ConfigError, match=r"offers no state"):
        build_runtime(app, "elsewhere", reg=registry)


@dataclass(frozen=True)
class _NoSettings:
    pass
