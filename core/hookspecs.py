"""The hooks a Switchboard plugin implements (pluggy, project name "switchboard").

A plugin is a module listed in the `switchboard` entry-point group with `@hookimpl`
functions. Keep the module light: import cloud SDKs inside the factories, not here.
"""

from __future__ import annotations

from collections.abc import Sequence

import pluggy

from switchboard.interfaces import ProviderSpec

PROJECT = "switchboard"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def switchboard_providers() -> Sequence[ProviderSpec]:  # type: ignore[empty-body]
    """Return the providers this plugin offers (each with a unique `name`)."""
