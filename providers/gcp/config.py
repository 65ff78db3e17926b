"""Settings of the gcp provider (Pub/Sub queues, Firestore state)."""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.config import setting


@dataclass(frozen=True)
class GcpConfig:
    project: str = setting(
        env=("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"),
        help="the Google Cloud project that holds the topics and the Firestore database",
    )
    prefix: str = setting(
        "switchboard",
        env=("SWITCHBOARD_GCP_PREFIX",),
        help="start of every topic and subscription name: {prefix}-{channel}",
    )
    pubsub_emulator_host: str | None = setting(
        None,
        env=("PUBSUB_EMULATOR_HOST",),
        help="host:port of a Pub/Sub emulator; the real service when unset",
    )
    firestore_emulator_host: str | None = setting(
        None,
        env=("FIRESTORE_EMULATOR_HOST",),
        help="host:port of a Firestore emulator; the real service when unset",
    )
    firestore_database: str = setting(
        "(default)",
        env=("SWITCHBOARD_GCP_FIRESTORE_DATABASE",),
        help="the Firestore database id",
    )
    collection: str = setting(
        "switchboard",
        env=("SWITCHBOARD_GCP_COLLECTION",),
        help="top-level Firestore collection holding one document per partition",
    )
    create_resources: bool = setting(
        True,
        env=("SWITCHBOARD_GCP_CREATE_RESOURCES",),
        help="create missing topics and subscriptions on first use (needs pubsub.editor)",
    )
