"""Google's own Pub/Sub and Firestore emulators, started from the gcloud Debian packages.

The jars come from `google-cloud-cli-pubsub-emulator` and
`google-cloud-cli-firestore-emulator` (found with `dpkg -L`); `java` is started directly,
so stopping its PID stops the server. Readiness is a real client request with
`retry=None`. When PUBSUB_EMULATOR_HOST / FIRESTORE_EMULATOR_HOST are already set, the
servers they name are used instead and left running.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.emulators.process import ServerProcess, free_port

PUBSUB_PACKAGE = "google-cloud-cli-pubsub-emulator"
FIRESTORE_PACKAGE = "google-cloud-cli-firestore-emulator"
_PORT_ATTEMPTS = 3
_BIND_FAILED = "Address already in use"


class EmulatorMissing(RuntimeError):
    """An emulator jar or java is missing: the tests fail rather than use a fake."""


def find_jar(package: str, predicate: Callable[[str], bool]) -> str:
    """The path of the jar in Debian package `package` that `predicate` accepts."""
    try:
        listing = subprocess.run(
            ["dpkg", "-L", package], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        listing = None
    if listing is not None and listing.returncode == 0:
        for path in listing.stdout.splitlines():
            if path.endswith(".jar") and predicate(os.path.basename(path)) and os.path.isfile(path):
                return path
    raise EmulatorMissing(
        f"the {package} Debian package is not installed (no jar found by `dpkg -L {package}`). "
        f"The gcp tests need Google's emulators: install {PUBSUB_PACKAGE} and "
        f"{FIRESTORE_PACKAGE} (apt-get install {PUBSUB_PACKAGE} {FIRESTORE_PACKAGE}) "
        "and Java 17+, or set PUBSUB_EMULATOR_HOST / FIRESTORE_EMULATOR_HOST to running ones."
    )


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise EmulatorMissing("the Google emulators need Java 17+ on PATH (`java` not found)")
    return java


@dataclass
class Emulator:
    """A running emulator: `host` is "127.0.0.1:PORT"; `server` is None if not ours."""

    host: str
    server: ServerProcess | None = None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def start_pubsub(project: str) -> Emulator:
    """The Pub/Sub emulator named by PUBSUB_EMULATOR_HOST, or a new one on a free port."""
    existing = os.environ.get("PUBSUB_EMULATOR_HOST")
    if existing:
        return Emulator(existing)
    jar = find_jar(PUBSUB_PACKAGE, lambda name: name.startswith("cloud-pubsub-emulator"))
    java = _java()
    return _start(
        "pubsub-emulator",
        lambda port: [java, "-jar", jar, "--host=127.0.0.1", f"--port={port}"],
        lambda host: _pubsub_ready(host, project),
    )


def start_firestore(project: str) -> Emulator:
    """The Firestore emulator named by FIRESTORE_EMULATOR_HOST, or a new one on a free port."""
    existing = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if existing:
        return Emulator(existing)
    jar = find_jar(FIRESTORE_PACKAGE, lambda name: name == "cloud-firestore-emulator.jar")
    java = _java()
    return _start(
        "firestore-emulator",
        lambda port: [
            java,
            "-cp",
            jar,
            "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
            "start",
            "--host=127.0.0.1",
            f"--port={port}",
        ],
        lambda host: _firestore_ready(host, project),
    )


def _start(name: str, argv: Callable[[int], list[str]], ready: Callable[[str], bool]) -> Emulator:
    """Start on a free port; try another if the port was taken between choosing and binding
    (the Firestore emulator also binds a random WebSocket port first, which can collide)."""
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        port = free_port()
        host = f"127.0.0.1:{port}"
        started: list[ServerProcess] = []
        server = ServerProcess(
            name, argv(port), ready=functools.partial(_probe, started, ready, host)
        )
        started.append(server)
        try:
            server.start()
        except RuntimeError:
            log = Path(server.log_path).read_text(errors="replace")
            if _BIND_FAILED in log and attempt < _PORT_ATTEMPTS:
                continue
            raise
        return Emulator(host, server)
    raise AssertionError("unreachable")


def _probe(started: list[ServerProcess], ready: Callable[[str], bool], host: str) -> bool:
    """`ready`, but stop a server that could not bind its port: the Pub/Sub emulator logs
    the failure and hangs instead of exiting, which would cost the whole start timeout."""
    server = started[0]
    if _BIND_FAILED in Path(server.log_path).read_text(errors="replace"):
        server.stop()
        return False
    return ready(host)


def _pubsub_ready(host: str, project: str) -> bool:
    import grpc  # type: ignore[import-untyped]
    from google.pubsub_v1.services.publisher import PublisherClient
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    channel = grpc.insecure_channel(host)
    try:
        client = PublisherClient(transport=PublisherGrpcTransport(channel=channel))
        client.list_topics(request={"project": f"projects/{project}"}, retry=None, timeout=2)
        return True
    finally:
        channel.close()


def _firestore_ready(host: str, project: str) -> bool:
    import grpc
    from google.api_core.exceptions import NotFound
    from google.cloud.firestore_v1.services.firestore import FirestoreClient
    from google.cloud.firestore_v1.services.firestore.transports import FirestoreGrpcTransport

    channel = grpc.insecure_channel(host)
    try:
        client = FirestoreClient(transport=FirestoreGrpcTransport(channel=channel))
        client.get_document(
            request={"name": f"projects/{project}/databases/(default)/documents/ready/probe"},
            retry=None,
            timeout=2,
            metadata=[("authorization", "Bearer owner")],
        )
    except NotFound:
        pass  # a real answer: the server is up
    finally:
        channel.close()
    return True


def reset_firestore(host: str, project: str, database: str = "(default)") -> None:
    """Delete every document in the emulator's database (emulator-only endpoint)."""
    request = urllib.request.Request(
        f"http://{host}/emulator/v1/projects/{project}/databases/{database}/documents",
        method="DELETE",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
