"""`switchboard conformance NAME [--config FILE] [-k EXPR]`: the suite against one provider.

`run` writes a test module with one subclass per suite the provider has components for,
runs pytest on it in a fresh process (so assertion rewriting and the provider's imports
start clean) with the plugin's `--sb-provider` fixtures and `--sb-table`, and returns
pytest's exit code: non-zero on any failure.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from switchboard.errors import ConfigError
from switchboard.interfaces import ProviderSpec
from switchboard.plugins import registry
from switchboard_conformance.fixtures import load_settings, split_timing

#: Each suite class, with whether a provider has what it tests: the whole suite, workflows
#: and fault injection included, for a provider with queues and a state store.
SUITES: list[tuple[str, str, Callable[[ProviderSpec], bool]]] = [
    ("QueueConformance", "queues", lambda spec: spec.broker is not None),
    ("StateStoreConformance", "state store", lambda spec: spec.state is not None),
    ("WorkflowConformance", "workflows", lambda spec: bool(spec.broker and spec.state)),
    ("ExecutorConformance", "executor", lambda spec: bool(spec.broker and spec.state)),
    ("FaultConformance", "faults", lambda spec: bool(spec.broker and spec.state)),
]


def run(
    provider: str,
    config_path: str | None = None,
    keyword: str | None = None,
    *,
    pytest_args: Sequence[str] = (),
) -> int:
    """Run the suite against the installed `provider`; print the guarantee table.

    `config_path` is a JSON or TOML file of the provider's settings (its `[conformance]`
    section holds `ConformanceTiming` fields); `keyword` selects tests as pytest's `-k`.
    Returns 0 when every selected test passed or was skipped, non-zero otherwise (2 when
    the provider or its configuration is unusable).
    """
    try:
        spec = registry.get(provider)
        settings, _ = split_timing(load_settings(config_path) if config_path else {})
        registry.config(provider, settings)
    except ConfigError as exc:
        print(f"switchboard conformance: {exc}", file=sys.stderr)
        return 2
    suites = [(suite, what) for suite, what, offered in SUITES if offered(spec)]
    missing = [what for _, what, offered in SUITES if not offered(spec)]
    if not suites:
        print(f"switchboard conformance: the {provider} provider offers nothing the suite tests")
        return 2
    print(
        f"switchboard conformance: {provider} ({', '.join(what for _, what in suites)})"
        + (f"; not offered, not tested: {', '.join(missing)}" if missing else ""),
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="switchboard-conformance-") as directory:
        root = Path(directory)
        (root / "pytest.ini").write_text("[pytest]\n")
        module = root / "test_conformance.py"
        module.write_text(_test_module(provider, [suite for suite, _ in suites]))
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(module),
            "-p",
            "switchboard_conformance.plugin",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            directory,
            "--sb-provider",
            provider,
            "--sb-table",
            "-rfEs",
        ]
        if config_path:
            command += ["--sb-config", str(Path(config_path).resolve())]
        if keyword:
            command += ["-k", keyword]
        return subprocess.call([*command, *pytest_args], cwd=directory)


def _test_module(provider: str, suites: list[str]) -> str:
    lines = [
        f'"""The Switchboard conformance suite against the {provider} provider."""',
        "",
        f"from switchboard_conformance import {', '.join(suites)}",
    ]
    for suite in suites:
        lines += ["", "", f"class Test{suite}({suite}):", "    pass"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="switchboard conformance",
        description="Run the conformance suite against an installed provider.",
    )
    parser.add_argument("provider", metavar="NAME", help="provider name (switchboard providers)")
    parser.add_argument("--config", metavar="FILE", help="JSON or TOML file of its settings")
    parser.add_argument("-k", dest="keyword", metavar="EXPR", help="select tests as pytest -k")
    args = parser.parse_args(argv)
    return run(args.provider, args.config, args.keyword)


if __name__ == "__main__":
    raise SystemExit(main())
