"""Fixtures for the gcp provider tests: Google's Pub/Sub and Firestore emulators, each started
once per session on a free 127.0.0.1 port (or taken from PUBSUB_EMULATOR_HOST /
FIRESTORE_EMULATOR_HOST when set).

With `SWITCHBOARD_GCP_LIVE=1` and Google credentials (GOOGLE_CLOUD_PROJECT naming the
project) the same tests run against the real services instead. Every test gets its own
channel names and partitions, so nothing needs cleaning up between tests.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("google.cloud.pubsub_v1", reason="pip install 'switchboard-orchestrator[gcp]'")
pytest.importorskip("google.cloud.firestore", reason="pip install 'switchboard-orchestrator[gcp]'")

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `tests.emulators` lives beside this folder's parents
    sys.path.insert(0, str(ROOT))

from switchboard.config import build_config  # noqa: E402
from switchboard.providers.gcp.config import GcpConfig  # noqa: E402
from switchboard.providers.gcp.queue import PubSubBroker, PubSubQueue  # noqa: E402
from switchboard.providers.gcp.state import FirestoreStateStore  # noqa: E402
from tests.emulators.google import (  # noqa: E402
    Emulator,
    reset_firestore,
    start_firestore,
    start_pubsub,
)

LIVE = os.environ.get("SWITCHBOARD_GCP_LIVE") == "1"
PROJECT = "switchboard-test"


@pytest.fixture(scope="session")
def emulators() -> Iterator[tuple[Emulator | None, Emulator | None]]:
    """(Pub/Sub, Firestore), started side by side: each JVM takes seconds to come up."""
    if LIVE:
        import google.auth
        import google.auth.exceptions

        try:
            google.auth.default()
        except google.auth.exceptions.DefaultCredentialsError as exc:
            pytest.skip(f"SWITCHBOARD_GCP_LIVE=1 but no Google credentials: {exc}")
        yield None, None
        return
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(start_pubsub, PROJECT), pool.submit(start_firestore, PROJECT)]
    failures = [error for future in futures if (error := future.exception()) is not None]
    if failures:
        for future in futures:
            if future.exception() is None:
                future.result().stop()
        raise failures[0]
    pubsub, firestore = (future.result() for future in futures)
    if firestore.server is not None:
        reset_firestore(firestore.host, PROJECT)
    yield pubsub, firestore
    pubsub.stop()
    firestore.stop()


@pytest.fixture(scope="session")
def pubsub_emulator(emulators: tuple[Emulator | None, Emulator | None]) -> Emulator | None:
    return emulators[0]


@pytest.fixture(scope="session")
def firestore_emulator(emulators: tuple[Emulator | None, Emulator | None]) -> Emulator | None:
    return emulators[1]


@pytest.fixture(scope="session")
def gcp_config(pubsub_emulator: Emulator | None, firestore_emulator: Emulator | None) -> GcpConfig:
    """Settings as a user would give them; the prefix keeps this session's topics apart."""
    values: dict[str, object] = {
        "prefix": f"sbt-{uuid.uuid4().hex[:8]}",
        "collection": f"sbt-{uuid.uuid4().hex[:8]}",
    }
    if not LIVE:
        assert pubsub_emulator is not None and firestore_emulator is not None
        values.update(
            project=PROJECT,
            pubsub_emulator_host=pubsub_emulator.host,
            firestore_emulator_host=firestore_emulator.host,
        )
    return build_config(GcpConfig, values, provider="gcp")


@pytest.fixture(scope="session")
def broker(gcp_config: GcpConfig) -> Iterator[PubSubBroker]:
    broker = PubSubBroker(gcp_config)
    yield broker
    broker.close()


@pytest.fixture
def channel_name() -> str:
    return f"q-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def queue(broker: PubSubBroker, channel_name: str) -> PubSubQueue:
    return broker.queue(channel_name, max_attempts=5)


@pytest.fixture(scope="session")
def store(gcp_config: GcpConfig) -> Iterator[FirestoreStateStore]:
    store = FirestoreStateStore(gcp_config)
    yield store
    store.close()


@pytest.fixture
def partition() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"
