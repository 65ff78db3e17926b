"""The opt-in pytest plugin: options, default fixtures and their failure messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _pytest(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (directory / "pytest.ini").write_text("[pytest]\n")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(directory),
            *args,
        ],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )


SUBCLASSES = """
from switchboard_conformance import QueueConformance, StateStoreConformance


class TestMyQueue(QueueConformance):
    pass


class TestMyState(StateStoreConformance):
    pass
"""


def test_a_fixture_not_overridden_fails_naming_the_fixture_to_override(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(SUBCLASSES)
    done = _pytest(tmp_path, "-k", "round_trip_byte_for_byte or missing_key_returns")
    assert done.returncode == 1, done.stdout
    assert "TestMyQueue has no provider to test: override the `broker` fixture" in done.stdout
    assert "TestMyState has no provider to test: override the `state_store` fixture" in done.stdout
    assert "--sb-provider NAME" in done.stdout


def test_sb_provider_builds_the_installed_provider(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(SUBCLASSES)
    done = _pytest(
        tmp_path,
        "-p",
        "switchboard_conformance.plugin",
        "--sb-provider",
        "local",
        "-k",
        "round_trip or missing",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_an_unknown_provider_is_a_usage_error_listing_the_installed_ones(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(SUBCLASSES)
    done = _pytest(tmp_path, "-p", "switchboard_conformance.plugin", "--sb-provider", "nope")
    assert done.returncode == 4
    assert "no provider named 'nope'" in done.stderr and "local" in done.stderr


def test_sb_config_gives_settings_and_timing(tmp_path: Path) -> None:
    (tmp_path / "test_timing.py").write_text(
        "from switchboard_conformance import QueueConformance\n\n\n"
        "class TestTiming(QueueConformance):\n"
        "    def test_timing_comes_from_the_config(self, conformance_timing, broker):\n"
        "        assert conformance_timing.settle == 0.25\n"
        "        assert conformance_timing.max_attempts == 5\n"
    )
    (tmp_path / "good.toml").write_text(
        'synchronous = "normal"\n\n[conformance]\nsettle = 0.25\nmax_attempts = 5\n'
    )
    plugin = ["-p", "switchboard_conformance.plugin", "--sb-provider", "local"]
    done = _pytest(tmp_path, *plugin, "--sb-config", "good.toml", "-k", "timing_comes")
    assert done.returncode == 0, done.stdout + done.stderr

    (tmp_path / "bad.json").write_text('{"synchronus": "normal"}')
    done = _pytest(tmp_path, *plugin, "--sb-config", "bad.json")
    assert done.returncode == 4
    assert "no setting 'synchronus' (did you mean 'synchronous'?)" in done.stderr

    (tmp_path / "broken.json").write_text("{not json")
    done = _pytest(tmp_path, *plugin, "--sb-config", "broken.json")
    assert done.returncode == 4 and "broken.json is not valid JSON" in done.stderr
