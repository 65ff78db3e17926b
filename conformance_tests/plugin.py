"""The opt-in pytest plugin: `pytest -p switchboard_conformance.plugin --sb-provider NAME`.

With `--sb-provider`, the suite's default fixtures build that installed provider through
`switchboard.plugins.registry`; `--sb-config` gives its settings (a JSON or TOML mapping,
whose optional `[conformance]` section holds `ConformanceTiming` fields); `--sb-table`
prints a guarantee-by-guarantee table at the end of the run.
"""

from __future__ import annotations

import pytest

from switchboard.errors import ConfigError
from switchboard.plugins import registry
from switchboard_conformance.fixtures import PROVIDER, ProviderChoice, load_settings, split_timing
from switchboard_conformance.report import GuaranteeTable


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("switchboard", "Switchboard conformance suite")
    group.addoption(
        "--sb-provider",
        metavar="NAME",
        help="installed provider the suite's default fixtures build (see `switchboard providers`)",
    )
    group.addoption(
        "--sb-config",
        metavar="FILE",
        help="JSON or TOML mapping of the provider's settings; [conformance] holds timing",
    )
    group.addoption(
        "--sb-table",
        action="store_true",
        help="print a guarantee-by-guarantee table of the results",
    )


def pytest_configure(config: pytest.Config) -> None:
    name: str | None = config.getoption("sb_provider")
    path: str | None = config.getoption("sb_config")
    if name is None and path is not None:
        raise pytest.UsageError("--sb-config needs --sb-provider NAME")
    if name is not None:
        try:
            settings, timing = split_timing(load_settings(path) if path else {})
            spec = registry.get(name)
            config.stash[PROVIDER] = ProviderChoice(
                name, spec, registry.config(name, settings), timing
            )
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from exc
    if config.getoption("sb_table"):
        config.pluginmanager.register(GuaranteeTable(), "switchboard-guarantee-table")
