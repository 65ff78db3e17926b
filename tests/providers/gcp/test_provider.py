"""The gcp provider's registration: the plugin hook, its config, and a missing SDK."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid

import pytest

from switchboard.config import build_config
from switchboard.errors import (
    ConfigError,
    LeaseLost,
    NotFound,
    ProviderError,
    TransientProviderError,
)
from switchboard.interfaces import Broker, Queue, StateStore
from switchboard.providers.gcp import switchboard_providers
from switchboard.providers.gcp._google import lease_lost, translate
from switchboard.providers.gcp.config import GcpConfig


def test_provider_registers_broker_and_state(gcp_config: GcpConfig) -> None:
    (spec,) = switchboard_providers()
    assert spec.name == "gcp" and spec.extra == "gcp" and spec.config is GcpConfig
    assert spec.requires == ("google.cloud.pubsub_v1", "google.cloud.firestore")
    assert spec.broker is not None and spec.state is not None
    assert set(spec.executors) == {"http"}  # the default stays the core QueueExecutor
    broker = spec.broker(gcp_config)
    try:
        assert isinstance(broker, Broker)
        assert isinstance(broker.queue(f"q-{uuid.uuid4().hex[:8]}"), Queue)
    finally:
        broker.close()
        broker.close()  # safe twice
    store = spec.state(gcp_config)
    assert isinstance(store, StateStore)
    store.close()


def test_config_needs_a_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.delenv("GCLOUD_PROJECT", raising=False)
    with pytest.raises(ConfigError, match="project"):
        build_config(GcpConfig, {}, provider="gcp")
    monkeypatch.setenv("GCLOUD_PROJECT", "from-env")
    config = build_config(GcpConfig, {}, provider="gcp")
    assert (config.project, config.prefix, config.create) == (
        "from-env",
        "switchboard",
        True,
    )


def test_the_provider_imports_without_the_sdks_and_names_the_extra() -> None:
    script = """
import sys
for name in ("google.cloud.pubsub_v1", "google.cloud.firestore", "google.api_core"):
    sys.modules[name] = None  # importing it now raises ImportError
import switchboard.providers.gcp as gcp
from switchboard.errors import (
    ConfigError,
    LeaseLost,
    NotFound,
    ProviderError,
    TransientProviderError,
)
from switchboard.providers.gcp.config import GcpConfig
(spec,) = gcp.switchboard_providers()
for factory in (spec.broker, spec.state):
    try:
        factory(GcpConfig(project="p"))
    except ConfigError as exc:
        print(exc)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert "google-cloud-pubsub and google-cloud-firestore" in line
        assert "pip install 'switchboard-orchestrator[gcp]'" in line


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ServiceUnavailable", TransientProviderError),
        ("DeadlineExceeded", TransientProviderError),
        ("ResourceExhausted", TransientProviderError),
        ("Aborted", TransientProviderError),
        ("InternalServerError", TransientProviderError),
        ("NotFound", NotFound),
        ("PermissionDenied", ProviderError),
        ("InvalidArgument", ProviderError),
        ("FailedPrecondition", ProviderError),
    ],
)
def test_google_errors_translate_into_the_switchboard_hierarchy(
    name: str, expected: type[ProviderError]
) -> None:
    from google.api_core import exceptions as google

    translated = translate(getattr(google, name)("boom"), "publish to t")
    assert type(translated) is expected
    assert "publish to t" in str(translated) and "boom" in str(translated)


def test_an_invalid_ack_id_means_the_lease_is_lost() -> None:
    from google.api_core import exceptions as google

    invalid = google.InvalidArgument("Invalid ack id")  # type: ignore[no-untyped-call]
    unavailable = google.ServiceUnavailable("down")  # type: ignore[no-untyped-call]
    assert isinstance(lease_lost(invalid, "ack"), LeaseLost)
    assert type(lease_lost(unavailable, "ack")) is TransientProviderError


def test_a_missing_emulator_fails_naming_both_debian_packages() -> None:
    from tests.emulators.google import EmulatorMissing, find_jar

    with pytest.raises(EmulatorMissing) as raised:
        find_jar("switchboard-no-such-package", lambda name: True)
    message = str(raised.value)
    assert "google-cloud-cli-pubsub-emulator" in message
    assert "google-cloud-cli-firestore-emulator" in message


def test_emulators_named_by_the_environment_are_used_as_they_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.emulators.google import start_firestore, start_pubsub

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:1")
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:2")
    pubsub, firestore = start_pubsub("p"), start_firestore("p")
    assert (pubsub.host, pubsub.server) == ("127.0.0.1:1", None)
    assert (firestore.host, firestore.server) == ("127.0.0.1:2", None)
    pubsub.stop()  # not ours: nothing to stop
    firestore.stop()


def test_an_emulator_whose_port_was_taken_starts_on_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.emulators import google as emulators
    from tests.emulators.process import free_port

    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        spare = free_port()
        ports = iter([taken.getsockname()[1], spare])
        monkeypatch.setattr(emulators, "free_port", lambda: next(ports))
        emulator = emulators.start_pubsub("p")
    try:
        assert emulator.host == f"127.0.0.1:{spare}"
    finally:
        emulator.stop()
