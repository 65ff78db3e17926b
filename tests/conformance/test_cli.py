"""`switchboard_conformance.cli.run`: the suite against an installed provider, with its table."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from switchboard_conformance import guarantees as g
from switchboard_conformance.cli import run

#: A third-party provider, installed the way a real one is: an entry point in the
#: `switchboard` group, here from a dist-info directory put on PYTHONPATH.
BROKEN_PLUGIN = """
from dataclasses import dataclass

from switchboard.hookspecs import hookimpl
from switchboard.interfaces import ProviderSpec
from switchboard_conformance.broken import AckIsNoop, CasIgnoresVersion, WrappedBroker


@dataclass(frozen=True)
class Settings:
    pass


@hookimpl
def switchboard_providers():
    return [
        ProviderSpec(
            name="broken",
            description="acks do nothing, compare-and-set ignores versions",
            config=Settings,
            broker=lambda config: WrappedBroker(AckIsNoop),
            state=lambda config: CasIgnoresVersion(),
        )
    ]
"""


def test_run_against_local_passes_and_prints_the_table(capfd: pytest.CaptureFixture[str]) -> None:
    assert run("local", None, "round_trip or missing or paginates") == 0
    out = capfd.readouterr().out
    assert (
        "switchboard conformance: local (queues, state store, workflows, executor, faults)" in out
    )
    assert "guarantee by guarantee" in out
    assert f"PASS    {g.GET_MISSING.where}" in out and g.GET_MISSING.text in out
    assert "NOT RUN" in out


def test_run_refuses_an_unknown_provider(capfd: pytest.CaptureFixture[str]) -> None:
    assert run("no-such-provider") == 2
    assert "no provider named 'no-such-provider'" in capfd.readouterr().err


def test_run_refuses_a_bad_config(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.toml").write_text("[conformance]\nlease = 'slow'\n")
    assert run("local", str(tmp_path / "bad.toml")) == 2
    assert "not a number" in capfd.readouterr().err


def test_run_fails_a_broken_third_party_provider_naming_the_guarantees(tmp_path: Path) -> None:
    (tmp_path / "sb_broken_provider.py").write_text(textwrap.dedent(BROKEN_PLUGIN))
    dist = tmp_path / "sb_broken_provider-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: sb-broken-provider\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text("[switchboard]\nbroken = sb_broken_provider\n")
    (tmp_path / "fast.toml").write_text("[conformance]\nlease = 0.5\nsettle = 0.5\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "switchboard_conformance.cli",
            "broken",
            "--config",
            str(tmp_path / "fast.toml"),
            "-k",
            "acked_message_is_never or compare_and_set or the_same_name",
        ],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    rows = done.stdout.split("guarantee by guarantee", 1)[1].splitlines()
    for broken in (g.ACK, g.PUT_ATOMIC):
        assert any(r.startswith(f"FAIL    {broken.where}") and broken.text in r for r in rows), rows
    assert any(r.startswith("PASS") and g.SAME_CHANNEL.text in r for r in rows), rows
