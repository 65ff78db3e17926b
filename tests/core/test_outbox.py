"""The outbox: concurrent single sends coalesce into batch requests, none lost."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest

from switchboard.errors import ProviderError
from switchboard.outbox import Outbox
from switchboard.providers.local.queue import MemoryBroker


class SlowQueue:
    """A memory queue whose sends take a while and are counted."""

    def __init__(self, fail: bool = False) -> None:
        self._inner = MemoryBroker().queue("outbox")
        self.capabilities = self._inner.capabilities
        self.calls: list[int] = []
        self.fail = fail

    def send(self, bodies: Sequence[bytes], *, delay: float = 0.0) -> None:
        self.calls.append(len(bodies))
        threading.Event().wait(0.05)
        if self.fail:
            raise ProviderError("the queue refused the batch")
        self._inner.send(bodies, delay=delay)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _send_all(outbox: Outbox, count: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def one(index: int) -> None:
        try:
            outbox.send(b"m%d" % index)
        except ProviderError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return errors


def test_a_lone_send_goes_at_once() -> None:
    queue = SlowQueue()
    Outbox(queue).send(b"alone")  # type: ignore[arg-type]
    assert queue.calls == [1]
    assert [d.body for d in queue.receive(10)] == [b"alone"]


def test_concurrent_sends_coalesce_and_none_is_lost() -> None:
    queue = SlowQueue()
    assert _send_all(Outbox(queue), 50) == []  # type: ignore[arg-type]
    assert sum(queue.calls) == 50
    assert len(queue.calls) < 10, f"50 concurrent sends took {len(queue.calls)} requests"
    assert max(queue.calls) <= queue.capabilities.max_batch
    received = {d.body for d in queue.receive(50)}
    assert received == {b"m%d" % i for i in range(50)}


def test_every_sender_of_a_failed_batch_sees_the_error() -> None:
    queue = SlowQueue(fail=True)
    errors = _send_all(Outbox(queue), 20)  # type: ignore[arg-type]
    assert len(errors) == 20


@pytest.mark.parametrize("count", [1, 3])
def test_senders_return_only_after_their_body_was_sent(count: int) -> None:
    queue = SlowQueue()
    outbox = Outbox(queue)  # type: ignore[arg-type]
    assert _send_all(outbox, count) == []
    assert len(queue.receive(10)) == count
