"""Google's own Pub/Sub and Firestore emulators, started from the gcloud Debian packages.

The jars come from `google-cloud-cli-pubsub-emulator` and
`google-cloud-cli-firestore-emulator` (found with `dpkg -L`); `java` is started directly,
so stopping its PID stops the server. Readiness is a real client request with
`retry=None`. When PUBSUB_EMULATOR_HOST / FIRESTORE_EMULATOR_HOST are already set, the
servers they name are used instead and left running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from tests.emulators.process import ServerProcess, free_port

PUBSUB_PACKAGE = "google-cloud-cli-pubsub-emulator"
FIRESTORE_PACKAGE = "google-cloud-cli-firestore-emulator"


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
    port = free_port()
    host = f"127.0.0.1:{port}"

    def ready() -> bool:
        import grpc
        from google.pubsub_v1.services.publisher import PublisherClient
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

        channel = grpc.insecure_channel(host)
        try:
            client = PublisherClient(transport=PublisherGrpcTransport(channel=channel))
            client.list_topics(request={"project": f"projects/{project}"}, retry=None, timeout=2)
            return True
        finally:
            channel.close()

    server = ServerProcess(
        "pubsub-emulator",
        [_java(), "-jar", jar, "--host=127.0.0.1", f"--port={port}"],
        ready=ready,
    ).start()
    return Emulator(host, server)


def start_firestore(project: str) -> Emulator:
    """The Firestore emulator named by FIRESTORE_EMULATOR_HOST, or a new one on a free port."""
    existing = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if existing:
        return Emulator(existing)
    jar = find_jar(FIRESTORE_PACKAGE, lambda name: name == "cloud-firestore-emulator.jar")
    port = free_port()
    host = f"127.0.0.1:{port}"

    def ready() -> bool:
        import grpc
        from google.cloud.firestore_v1.services.firestore import FirestoreClient
        from google.cloud.firestore_v1.services.firestore.transports import (
            FirestoreGrpcTransport,
        )

        channel = grpc.insecure_channel(host)
        try:
            client = FirestoreClient(transport=FirestoreGrpcTransport(channel=channel))
            client.get_document(
                request={"name": f"projects/{project}/databases/(default)/documents/ready/probe"},
                retry=None,
                timeout=2,
                metadata=[("authorization", "Bearer owner")],
            )
        except Exception as exc:
            from google.api_core.exceptions import NotFound

            if not isinstance(exc, NotFound):  # NotFound is a real answer: it is up
                raise
        finally:
            channel.close()
        return True

    server = ServerProcess(
        "firestore-emulator",
        [
            _java(),
            "-cp",
            jar,
            "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
            "start",
            "--host=127.0.0.1",
            f"--port={port}",
        ],
        ready=ready,
    ).start()
    return Emulator(host, server)


def reset_firestore(host: str, project: str, database: str = "(default)") -> None:
    """Delete every document in the emulator's database (emulator-only endpoint)."""
    request = urllib.request.Request(
        f"http://{host}/emulator/v1/projects/{project}/databases/{database}/documents",
        method="DELETE",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
