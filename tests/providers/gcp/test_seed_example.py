"""The seed project's README example on the gcp provider, run by two `switchboard worker
--provider gcp` processes against the emulators (see tests/seed_workers.py)."""

from __future__ import annotations

import os

import pytest

from switchboard.providers.gcp.config import GcpConfig
from tests.seed_workers import run_seed_on_workers


def test_seed_example_runs_on_switchboard_workers(
    gcp_config: GcpConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = dict(os.environ)
    env.update(
        GOOGLE_CLOUD_PROJECT=gcp_config.project,
        SWITCHBOARD_GCP_PREFIX=gcp_config.prefix,
        SWITCHBOARD_GCP_COLLECTION=gcp_config.collection,
    )
    for name, value in (
        ("PUBSUB_EMULATOR_HOST", gcp_config.pubsub_emulator_host),
        ("FIRESTORE_EMULATOR_HOST", gcp_config.firestore_emulator_host),
    ):
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    settings = {
        "project": gcp_config.project,
        "prefix": gcp_config.prefix,
        "collection": gcp_config.collection,
        "pubsub_emulator_host": gcp_config.pubsub_emulator_host,
        "firestore_emulator_host": gcp_config.firestore_emulator_host,
    }
    run_seed_on_workers(
        "gcp",
        monkeypatch,
        env=env,
        settings={name: value for name, value in settings.items() if value},
        timeout=45,
    )
