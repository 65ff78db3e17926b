"""`Outbox`: many threads sending single messages to one queue, coalesced into batches.

Group commit, as databases do it: a sender whose body finds no send in flight sends at
once (no added latency for a lone message); bodies that arrive while a send is in flight
wait and go together in the next one, up to the queue's `max_batch`. Twenty task workers
reporting results at once then cost a couple of requests, not twenty.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

from switchboard.interfaces import Queue
from switchboard.retry import retrying


@dataclass(slots=True)
class _Item:
    body: bytes
    done: bool = False
    error: BaseException | None = None


class Outbox:
    """Sends bodies to `queue`; `send` returns once its own body was accepted."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue
        self._waiting: list[_Item] = []
        self._sending = False
        self._changed = threading.Condition()

    def send(self, body: bytes) -> None:
        """Send `body` (retrying transient failures), in a batch with whatever other threads
        are sending meanwhile. Raises what the batch's send raised; as with `Queue.send`,
        the body may have been enqueued all the same."""
        item = _Item(body)
        with self._changed:
            self._waiting.append(item)
        while True:
            with self._changed:
                while self._sending and not item.done:
                    self._changed.wait()
                if item.done:
                    break
                # No send in flight: this thread sends the oldest waiting bodies, its own
                # among them unless more than a batch arrived before it (then it goes on).
                self._sending = True
                size = self._queue.capabilities.max_batch
                batch, self._waiting = self._waiting[:size], self._waiting[size:]
            error: BaseException | None = None
            try:
                retrying(functools.partial(self._queue.send, [entry.body for entry in batch]))
            except BaseException as exc:
                error = exc
                raise
            finally:
                with self._changed:
                    for entry in batch:
                        entry.done, entry.error = True, error
                    self._sending = False
                    self._changed.notify_all()
        if item.error is not None:
            raise item.error
