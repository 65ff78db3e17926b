"""Settings of the gcp provider (Pub/Sub queues, Firestore state, HTTP task executor).

Credentials come from Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS,
`gcloud auth application-default login`, or the metadata server); emulator hosts and the
project from their standard environment variables.
"""

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
    create: bool = setting(
        True,
        env=("SWITCHBOARD_GCP_CREATE",),
        help="create missing topics and subscriptions on first use (needs pubsub.editor)",
    )
    task_url: str | None = setting(
        None,
        env=("SWITCHBOARD_GCP_TASK_URL",),
        help="URL of the Cloud Run service / Cloud Function that runs tasks (executor gcp.http)",
    )
    task_auth: bool = setting(
        False,
        env=("SWITCHBOARD_GCP_TASK_AUTH",),
        help="send a Google ID token (audience: task_url) with each task request (gcp.http)",
    )
    task_timeout: float = setting(
        900.0,
        env=("SWITCHBOARD_GCP_TASK_TIMEOUT",),
        help="seconds a task request may take, the task included (gcp.http; Cloud Run: <= 3600)",
    )
    task_concurrency: int = setting(
        32,
        env=("SWITCHBOARD_GCP_TASK_CONCURRENCY",),
        help="task requests in flight at once from one process (gcp.http)",
    )
