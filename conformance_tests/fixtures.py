"""What every conformance class shares: timing knobs and the provider chosen on the command line.

A provider author either overrides the fixtures (`broker`, `state_store`, and
`conformance_timing` for slow backends) in a subclass, or runs pytest with
`-p switchboard_conformance.plugin --sb-provider NAME [--sb-config FILE]`, in which case the
default fixtures build that installed provider through `switchboard.plugins.registry`.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from switchboard.errors import ConfigError
from switchboard.interfaces import ProviderSpec

#: The section of a `--sb-config` file that holds `ConformanceTiming` fields rather than
#: provider settings.
TIMING_SECTION = "conformance"


@dataclass(frozen=True)
class ConformanceTiming:
    """How long the suite waits for time-based behaviour; override for slow backends.

    Override the `conformance_timing` fixture (or put these fields under `[conformance]`
    in the `--sb-config` file), e.g. `ConformanceTiming(lease=10, settle=5)` for Pub/Sub,
    whose shortest ack deadline is 10 s.
    """

    #: Lease, in seconds, used by the tests that let a lease expire.
    lease: float = 1.0
    #: Slack after a deadline for its effect to be seen (redelivery, expiry), in seconds.
    settle: float = 1.0
    #: Delay used by the delayed `send` and `release` tests, in seconds.
    delay: float = 1.0
    #: How early a "not before" deadline may be observed (clock skew with the service).
    tolerance: float = 0.05
    #: `ttl` used by the TTL test, in seconds.
    ttl: float = 1.0
    #: `max_attempts` of the dead-letter tests (Pub/Sub accepts 5 at least).
    max_attempts: int = 3
    #: Longest the 1,000-message test may take, in seconds.
    bulk_timeout: float = 60.0


@dataclass(frozen=True)
class ProviderChoice:
    """The provider named with `--sb-provider`, with its settings already validated."""

    name: str
    spec: ProviderSpec
    config: Any
    timing: ConformanceTiming


#: Where `plugin.pytest_configure` keeps the `ProviderChoice`.
PROVIDER = pytest.StashKey[ProviderChoice]()


def load_settings(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML (by suffix `.toml`) file holding one mapping of settings."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the conformance config file {file}: {exc}") from exc
    try:
        data: Any = tomllib.loads(text) if file.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "TOML" if file.suffix == ".toml" else "JSON"
        raise ConfigError(f"{file} is not valid {kind}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{file} must hold one mapping of settings, not {type(data).__name__}")
    return data


def split_timing(settings: dict[str, Any]) -> tuple[dict[str, Any], ConformanceTiming]:
    """Separate the `[conformance]` timing section from the provider's own settings."""
    values = dict(settings)
    section = values.pop(TIMING_SECTION, {})
    if not isinstance(section, dict):
        raise ConfigError(f"[{TIMING_SECTION}] must be a mapping of ConformanceTiming fields")
    known = {f.name: f.type for f in dataclasses.fields(ConformanceTiming)}
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ConfigError(
            f"[{TIMING_SECTION}] has no setting {unknown[0]!r}; valid: {', '.join(known)}"
        )
    try:
        fields: dict[str, Any] = {
            name: int(value) if known[name] == "int" else float(value)
            for name, value in section.items()
        }
        timing = ConformanceTiming(**fields)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{TIMING_SECTION}] holds a value that is not a number: {exc}") from exc
    return values, timing


def chosen_provider(request: pytest.FixtureRequest, fixture: str, returns: str) -> ProviderChoice:
    """The `--sb-provider` choice, or a failure telling the author which fixture to override."""
    choice = request.config.stash.get(PROVIDER, None)
    if choice is None:
        cls = request.cls.__name__ if request.cls is not None else "your test class"
        pytest.fail(
            f"{cls} has no provider to test: override the `{fixture}` fixture in {cls} "
            f"(it must return {returns}), or run pytest with "
            "`-p switchboard_conformance.plugin --sb-provider NAME [--sb-config FILE]`",
            pytrace=False,
        )
    return choice


def unique_name(kind: str = "sbconf") -> str:
    """A fresh channel or partition name (letters, digits and hyphens), so tests can share
    one backend and leftovers of earlier runs never interfere."""
    return f"{kind}-{uuid.uuid4().hex[:24]}"


class Conformance:
    """Fixtures every conformance class shares."""

    @pytest.fixture
    def conformance_timing(self, request: pytest.FixtureRequest) -> ConformanceTiming:
        """Timing knobs; override for a slow backend."""
        choice = request.config.stash.get(PROVIDER, None)
        return choice.timing if choice is not None else ConformanceTiming()
