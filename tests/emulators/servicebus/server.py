"""Start the Service Bus test broker for a test session, on a free port on 127.0.0.1.

Two ways, both ready only once a real azure-servicebus call has succeeded:

- `start_broker()`: in a thread of the test process (the default for tests). It starts in
  milliseconds, `Broker.configure_queue` can give each test's queue its own lock duration
  and max delivery count, and `stop()` closes every connection and joins the thread.
- `start_broker_process()`: `python -m tests.emulators.servicebus` under `ServerProcess`
  (teardown by PID, log kept), for a broker that must outlive or be isolated from the
  test process; per-queue settings are then only the command-line defaults.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..process import ServerProcess, free_port
from .broker import Broker, connection_string
from .store import QueueSettings

REPO_ROOT = Path(__file__).resolve().parents[3]
PROBE_QUEUE = "readiness-probe"


def sdk_ready(conn_str: str) -> bool:
    """A real SDK round trip: SASL, $cbs put-token and a $management peek."""
    from azure.servicebus import ServiceBusClient

    with (
        ServiceBusClient.from_connection_string(conn_str, retry_total=0) as client,
        client.get_queue_receiver(PROBE_QUEUE) as receiver,
    ):
        receiver.peek_messages(max_message_count=1, timeout=5)
    return True


def start_broker(
    *,
    max_delivery_count: int = QueueSettings.max_delivery_count,
    lock_duration: float = QueueSettings.lock_duration,
) -> Broker:
    """An in-process broker, already answering the SDK. Call `stop()` when done."""
    broker = Broker(
        "127.0.0.1",
        free_port(),
        max_delivery_count=max_delivery_count,
        lock_duration=lock_duration,
    ).start()
    try:
        sdk_ready(broker.connection_string)
    except Exception:
        broker.stop()
        raise
    return broker


def start_broker_process(
    *,
    max_delivery_count: int = QueueSettings.max_delivery_count,
    lock_duration: float = QueueSettings.lock_duration,
    timeout: float = 30.0,
) -> tuple[ServerProcess, str]:
    """The broker as a child process; returns it (call `stop()`) and its connection string."""
    port = free_port()
    conn_str = connection_string("127.0.0.1", port)
    server = ServerProcess(
        "servicebus-broker",
        [
            sys.executable,
            "-m",
            "tests.emulators.servicebus",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--max-delivery-count",
            str(max_delivery_count),
            "--lock-duration",
            str(lock_duration),
        ],
        ready=lambda: sdk_ready(conn_str),
        timeout=timeout,
        cwd=REPO_ROOT,
    )
    return server.start(), conn_str
