"""Provider discovery: the pluggy manager over the `switchboard` entry-point group.

Entry points are loaded one at a time, so a third-party plugin that fails to import hides
nothing else: its error is kept and raised as `ProviderLoadError` only when that provider
is asked for (and shown by `switchboard providers`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pluggy

from switchboard import hookspecs
from switchboard.config import build_config
from switchboard.errors import ConfigError, ProviderLoadError, UnknownName
from switchboard.interfaces import ProviderSpec

GROUP = "switchboard"


@dataclass(frozen=True)
class InstalledProvider:
    """A provider as `switchboard providers` shows it."""

    name: str
    #: The distribution that ships it (from the entry point), or "(registered)".
    package: str
    spec: ProviderSpec | None
    #: Why its plugin could not be loaded, when it could not.
    load_error: str | None = None

    @property
    def components(self) -> list[str]:
        if self.spec is None:
            return []
        parts = ["queue"] * bool(self.spec.broker) + ["state"] * bool(self.spec.state)
        return parts + [f"executor:{name}" for name in self.spec.executors]

    @property
    def sdk_installed(self) -> bool:
        """Whether every module the provider requires can be imported."""
        if self.spec is None:
            return False
        return all(_importable(module) for module in self.spec.requires)

    def install_hint(self) -> str:
        extra = self.spec.extra if self.spec else None
        return f"pip install 'switchboard-orchestrator[{extra}]'" if extra else ""


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


class Registry:
    """Every provider reachable through the `switchboard` entry points (plus any registered
    in code with `register`)."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._providers: dict[str, InstalledProvider] = {}
        self._loaded = False
        self._lock = threading.Lock()

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        return self._pm

    def register(self, plugin: ModuleType | object, *, package: str = "(registered)") -> None:
        """Add a plugin object or module (tests, embedded apps) as if it were an entry point."""
        self._ensure_loaded()
        self._pm.register(plugin)
        self._collect(plugin, package)

    def all(self) -> dict[str, InstalledProvider]:
        self._ensure_loaded()
        return dict(sorted(self._providers.items()))

    def get(self, name: str) -> ProviderSpec:
        """The provider called `name`; `UnknownName` lists the valid ones."""
        installed = self.all().get(name)
        if installed is None:
            known = ", ".join(self.all()) or "none"
            raise UnknownName(
                f"no provider named {name!r}; installed providers: {known} "
                "(see `switchboard providers`)"
            )
        if installed.spec is None:
            raise ProviderLoadError(
                f"the {name} provider ({installed.package}) failed to load: {installed.load_error}"
            )
        return installed.spec

    def config(self, name: str, values: dict[str, Any]) -> Any:
        """Build and validate the provider's typed settings from `values` and environment.

        A provider whose SDK is not installed is refused first, naming the extra to install.
        """
        installed = self.all().get(name)
        spec = self.get(name)
        if installed is not None and not installed.sdk_installed:
            missing = [m for m in spec.requires if not _importable(m)]
            raise ConfigError(
                f"the {name} provider needs {', '.join(missing)}: {installed.install_hint()}"
            )
        return build_config(spec.config, values, provider=name)

    # -- loading ----------------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            for entry_point in importlib.metadata.entry_points(group=GROUP):
                package = entry_point.dist.name if entry_point.dist else entry_point.value
                try:
                    plugin = entry_point.load()
                    self._pm.register(plugin, name=f"{GROUP}:{entry_point.name}")
                except Exception as exc:  # noqa: BLE001 - any import failure is reported later
                    self._providers[entry_point.name] = InstalledProvider(
                        entry_point.name, package, None, f"{type(exc).__name__}: {exc}"
                    )
                    continue
                self._collect(plugin, package)

    def _collect(self, plugin: object, package: str) -> None:
        hook = getattr(plugin, "switchboard_providers", None)
        if hook is None:
            return
        for spec in hook():
            self._providers[spec.name] = InstalledProvider(spec.name, package, spec)


registry = Registry()
