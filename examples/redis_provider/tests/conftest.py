"""A redis-server of our own for the test session: a free port on 127.0.0.1, ready when it
answers a real PING, stopped by its PID, its log shown when it fails to start.

Without `redis-server` on PATH the tests skip loudly; in CI (`CI=true`), where everything
must be installed, they fail instead, naming the Debian package.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

MISSING = (
    "redis-server is not installed: install the Debian package redis-server "
    "(apt-get install redis-server) to run the redis provider's conformance tests"
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process we started and own: no persistence, 127.0.0.1 only."""

    def __init__(self, executable: str, directory: Path, *, timeout: float = 30.0) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = directory / "redis-server.log"
        self._argv = [
            executable,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(directory),
            "--daemonize", "no",
        ]  # fmt: skip
        self._timeout = timeout
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self._argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with code {self.process.returncode} before it was "
                    f"ready:\n{self.log_tail()}"
                )
            if self._answers_ping():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server was not ready after {self._timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the process group we started, by its PID: politely first."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def _answers_ping(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.exceptions.RedisError:
            return False
        finally:
            client.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of the session's redis-server."""
    executable = shutil.which("redis-server")
    if executable is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"in CI every server must be installed: {MISSING}", pytrace=False)
        warnings.warn(MISSING, stacklevel=1)
        pytest.skip(MISSING)
    with tempfile.TemporaryDirectory(prefix="switchboard-redis-") as directory:
        server = RedisServer(executable, Path(directory)).start()
        try:
            yield server.url
        finally:
            server.stop()
