"""`switchboard conformance redis --config FILE`: the installed provider, found through its
entry point, passes the suite from the command line and prints the guarantee table."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path


def _switchboard() -> str:
    """The `switchboard` command of the environment running the tests."""
    beside = Path(sys.executable).with_name("switchboard")
    found = str(beside) if beside.exists() else shutil.which("switchboard")
    assert found, "the switchboard command is not installed: pip install switchboard-orchestrator"
    return found


def test_switchboard_conformance_redis_passes_and_prints_the_table(
    redis_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "redis.toml"
    config.write_text(f'url = "{redis_url}"\nprefix = "sbcli-{uuid.uuid4().hex[:12]}"\n')
    done = subprocess.run(
        [_switchboard(), "conformance", "redis", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert (
        "switchboard conformance: redis (queues, state store, workflows, executor, faults)"
        in output
    ), output
    assert "guarantee by guarantee" in output, output
    table = output[output.index("guarantee by guarantee") :]
    assert "PASS" in table and "FAIL " not in table, table
