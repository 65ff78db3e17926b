"""Typed provider settings: one dataclass per provider, filled from arguments and environment.

A provider declares its settings as a dataclass; each field may name environment variables
to read (`setting(env=("AWS_REGION", "AWS_DEFAULT_REGION"))`). `build_config` validates a
user's mapping against it and raises one `ConfigError` that names the field and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from switchboard.errors import ConfigError

C = TypeVar("C")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def setting(
    default: Any = dataclasses.MISSING, *, env: tuple[str, ...] = (), help: str = ""
) -> Any:
    """Declare one provider setting: its default, environment variables and help text."""
    metadata = {"env": env, "help": help}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def build_config(cls: type[C], values: Mapping[str, Any], *, provider: str) -> C:
    """Build `cls` from `values`, falling back to each field's environment variables.

    Unknown names, missing required values and values of the wrong type raise
    `ConfigError` naming the provider, the field and what would be accepted.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, fields, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"the {provider} provider has no setting {name!r}{hint}; "
            f"valid settings: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in values:
            kwargs[name] = _coerce(values[name], hints[name], provider, name, source="argument")
            continue
        for var in f.metadata.get("env", ()):
            if os.environ.get(var) not in (None, ""):
                kwargs[name] = _coerce(os.environ[var], hints[name], provider, name, source=var)
                break
        else:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                envs = f.metadata.get("env", ())
                via_env = f" or set {' / '.join(envs)}" if envs else ""
                raise ConfigError(
                    f"the {provider} provider needs setting {name!r}: pass {name}=...{via_env}"
                    + (f" ({f.metadata['help']})" if f.metadata.get("help") else "")
                )
    return cls(**kwargs)


def describe_settings(cls: type) -> list[tuple[str, str, str]]:
    """(name, environment variables, help) for each setting, for `switchboard providers`."""
    return [
        (f.name, " / ".join(f.metadata.get("env", ())), f.metadata.get("help", ""))
        for f in dataclasses.fields(cls)
    ]


def _coerce(value: Any, hint: Any, provider: str, name: str, *, source: str) -> Any:
    """Convert a value (often a string from the environment or a CLI) to the field's type."""
    options = [hint]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
    target = options[0]
    try:
        if target is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(value)
        if target in (int, float, str):
            if isinstance(value, bool) and target is not str:
                raise ValueError(value)
            return target(value)
        return value
    except (TypeError, ValueError):
        expected = getattr(target, "__name__", str(target))
        raise ConfigError(
            f"the {provider} provider's setting {name!r} must be {expected}, "
            f"got {value!r} from {source}"
        ) from None
