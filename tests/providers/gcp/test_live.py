"""Whether this folder ran against real Google Cloud: shown as a skip (with `pytest -ra`)
when it did not, so an emulator-only run never passes for a live one."""

from __future__ import annotations

import os

import pytest

from switchboard.providers.gcp.config import GcpConfig

LIVE = os.environ.get("SWITCHBOARD_GCP_LIVE") == "1"


@pytest.mark.skipif(
    not LIVE,
    reason="real GCP not targeted (the emulators were): set SWITCHBOARD_GCP_LIVE=1, "
    "GOOGLE_CLOUD_PROJECT and Application Default Credentials to run this folder against "
    "real Pub/Sub and Firestore",
)
def test_the_suite_targets_real_gcp(gcp_config: GcpConfig) -> None:
    assert gcp_config.pubsub_emulator_host is None, "PUBSUB_EMULATOR_HOST is set"
    assert gcp_config.firestore_emulator_host is None, "FIRESTORE_EMULATOR_HOST is set"
