"""The hooks a Switchboard plugin implements (pluggy, project name "switchboard").

A plugin is a module listed in the `switchboard` entry-point group with `@hookimpl`
functions. Keep the module light: import cloud SDKs inside the factories, not here.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import pluggy

from switchboard.interfaces import ProviderSpec

PROJECT = "switchboard"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def switchboard_providers() -> Sequence[ProviderSpec]:  # type: ignore[empty-body]
    """Return the providers this plugin offers (each with a unique `name`)."""


@hookspec
def switchboard_add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add provider-specific commands (`switchboard aws template ...`).

    Add parsers with `subparsers.add_parser(name, ...)` and set a `handler` default: a
    function taking the parsed `argparse.Namespace` and returning the exit code.
    """
