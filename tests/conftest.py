"""Shared fixtures of the project's own tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import switchboard as sb


@pytest.hookimpl(tryfirst=True)
def pytest_collectreport(report: pytest.CollectReport) -> None:
    """In CI every SDK and local server is installed, so a whole module or folder skipped
    at collection (a missing SDK or emulator) is an error, not a quiet skip."""
    if os.environ.get("CI") and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may be: {report.longrepr}"


@pytest.fixture(params=["memory", "sqlite"])
def local_mode(request: pytest.FixtureRequest) -> str:
    """Run a test on the in-memory and on the durable SQLite local provider."""
    return str(request.param)


@pytest.fixture
def run_app(local_mode: str, tmp_path: Path) -> Iterator[Callable[..., sb.Client]]:
    """Open `sb.local(app)` in the mode under test; closed at teardown."""
    clients: list[sb.Client] = []

    def open_client(app: sb.App, **options: Any) -> sb.Client:
        path = str(tmp_path / "runs.db") if local_mode == "sqlite" else None
        client = sb.local(app, path=path, **options)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()
