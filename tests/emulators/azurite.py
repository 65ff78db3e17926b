"""Azurite's Table service on a free 127.0.0.1 port, for the Azure Tables provider tests.

Azurite is pinned by the repository's package.json / package-lock.json; `npm ci` installs it
when node_modules is missing. Connect with the well-known development account.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.emulators.process import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
AZURITE_TABLE = ROOT / "node_modules" / ".bin" / "azurite-table"

# The development storage account every Azure Storage emulator accepts (documented by
# Microsoft; not a secret).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def connection_string(port: int) -> str:
    """The development account's connection string for a Table service on `port`."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"TableEndpoint=http://127.0.0.1:{port}/{ACCOUNT_NAME};"
    )


def ensure_installed() -> Path:
    """Install the pinned Azurite with `npm ci` if node_modules lacks it; return its binary."""
    if AZURITE_TABLE.exists():
        return AZURITE_TABLE
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "Azurite is not installed and npm is missing: install Node.js 20+ and run "
            f"`npm ci` in {ROOT}"
        )
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0 or not AZURITE_TABLE.exists():
        raise RuntimeError(f"`npm ci` failed to install Azurite:\n{result.stdout}\n{result.stderr}")
    return AZURITE_TABLE


class AzuriteTables:
    """One Azurite Table service we started (in-memory, telemetry off, quiet)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._workspace = tempfile.TemporaryDirectory(prefix="azurite-")
        self.server = ServerProcess(
            "azurite-table",
            [
                str(ensure_installed()),
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--silent",
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                str(self.port),
            ],
            ready=self._ready,
            timeout=60.0,
            cwd=self._workspace.name,  # anything Azurite writes lands here, not in the repo
        )

    @property
    def connection_string(self) -> str:
        return connection_string(self.port)

    def _ready(self) -> bool:
        from azure.data.tables import TableServiceClient

        # A real, authenticated request: listing tables succeeds only once Azurite serves.
        with TableServiceClient.from_connection_string(
            self.connection_string, retry_total=0, connection_timeout=1, read_timeout=2
        ) as service:
            list(service.list_tables())
        return True

    def start(self) -> AzuriteTables:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self._workspace.cleanup()

    def __enter__(self) -> AzuriteTables:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
