"""The provider-neutral `QueueExecutor`: task invocations travel on a tasks queue.

Whatever takes them off that queue runs them: `switchboard worker`, `sb.connect(...,
workers=N)`, or a serverless function triggered by the queue.
"""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.interfaces import ExecutorCapabilities, ExecutorHost, Queue


class QueueExecutor:
    """Durable as its queue: `submit` returns once the queue has the invocations."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.capabilities = ExecutorCapabilities(queue.capabilities.max_message_bytes)

    def submit(self, invocations: Sequence[bytes]) -> None:
        size = self.queue.capabilities.max_batch
        for start in range(0, len(invocations), size):
            self.queue.send(invocations[start : start + size])

    def close(self) -> None:
        self.queue.close()


#: The channels every runtime opens for an app: results and starts to the engine...
INVOCATIONS_CHANNEL = "invocations"
#: ...and, with the `QueueExecutor`, task invocations to the workers.
TASKS_CHANNEL = "tasks"


def queue_executor(config: object, host: ExecutorHost) -> QueueExecutor:
    """The default executor of every provider that does not name its own."""
    return QueueExecutor(host.open_queue(TASKS_CHANNEL))
