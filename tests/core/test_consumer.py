"""How a `Consumer` stops: it ends an interruptible queue's long poll instead of waiting it
out, and hands no delivery to its handler once it is stopping."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from switchboard.engine import Settlement
from switchboard.interfaces import Delivery
from switchboard.providers.local.queue import MemoryBroker, MemoryQueue
from switchboard.worker import Consumer

#: Far longer than any test here may take: a stop that waits out this poll fails them.
LONG_POLL = 120.0


def _receiving(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"{name}-receive" and t.is_alive()]


def _handled(calls: list[Delivery]) -> Callable[[Delivery], Future[Settlement]]:
    def handler(delivery: Delivery) -> Future[Settlement]:
        calls.append(delivery)
        future: Future[Settlement] = Future()
        future.set_result(Settlement("ack"))
        return future

    return handler


def test_stop_ends_the_long_poll_of_an_interruptible_queue() -> None:
    queue = MemoryBroker().queue("idle")
    consumer = Consumer(queue, _handled([]), poll=LONG_POLL, name="idle-test").start()
    time.sleep(0.2)  # its receive is waiting by now
    started = time.monotonic()
    consumer.stop(grace=10.0)
    took = time.monotonic() - started
    assert not _receiving("idle-test"), "the receive thread outlived stop()"
    assert took < 10.0, f"stop() took {took:.1f}s: it waited for the grace period"


class _HandsOutOnInterrupt(MemoryQueue):
    """A receive that waits until it is interrupted, then hands out the waiting message:
    a delivery that arrives just as the consumer stops."""

    def __init__(self) -> None:
        super().__init__("late", 5, dead_letters=None)
        self.interrupted = threading.Event()

    def interrupt(self) -> None:
        self.interrupted.set()

    def receive(
        self, max_messages: int = 1, *, wait: float = 0.0, lease: float = 30.0
    ) -> list[Delivery]:
        self.interrupted.wait(wait)
        return super().receive(max_messages, wait=0.0, lease=lease)


def test_a_delivery_received_while_stopping_is_released_not_handled() -> None:
    queue = _HandsOutOnInterrupt()
    queue.send([b"late"])
    calls: list[Delivery] = []
    consumer = Consumer(queue, _handled(calls), poll=LONG_POLL, name="late-test").start()
    time.sleep(0.2)
    consumer.stop(grace=10.0)
    assert not _receiving("late-test")
    assert calls == [], f"handled while stopping: {calls}"
    # Released: visible again at once, on its second delivery.
    again = MemoryQueue.receive(queue, 1, wait=5.0, lease=30.0)
    assert [(d.body, d.attempt) for d in again] == [(b"late", 2)]
