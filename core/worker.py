"""Long-polling consumers: the worker side of a runtime.

A `Consumer` takes deliveries from one queue, hands each to a handler that returns a
future `Settlement`, keeps the leases of unsettled deliveries alive, and settles them
(acks in batches). The same class serves the invocations queue (handler: the engine) and
the tasks queue (handler: a thread pool running tasks). On `stop` it takes no more work,
lets what it holds finish for a grace period, and releases the rest.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import cast

from switchboard.engine import Settlement
from switchboard.errors import LeaseLost, MalformedMessage, ProviderError
from switchboard.interfaces import Delivery, InterruptibleQueue, Queue

log = logging.getLogger("switchboard.worker")

Handler = Callable[[Delivery], "Future[Settlement]"]


class Consumer:
    def __init__(
        self,
        source: Queue,
        handler: Handler,
        *,
        max_inflight: int = 64,
        lease: float = 30.0,
        poll: float = 0.5,
        name: str = "consumer",
    ) -> None:
        self.source = source
        self._handler = handler
        self._max_inflight = max_inflight
        self._lease = min(lease, source.capabilities.max_lease)
        self._poll = poll
        self._name = name
        self._inflight: dict[str, tuple[Delivery, float]] = {}
        #: Slots taken by `reserve` for deliveries `adopt` will bring.
        self._reserved = 0
        self._settled: queue.SimpleQueue[tuple[Delivery, Settlement] | None] = queue.SimpleQueue()
        self._room = threading.Condition()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._receive_loop, name=f"{name}-receive", daemon=True),
            threading.Thread(target=self._settle_loop, name=f"{name}-settle", daemon=True),
        ]

    def start(self) -> Consumer:
        for thread in self._threads:
            thread.start()
        return self

    @property
    def holding(self) -> int:
        """Deliveries received and not yet settled."""
        with self._room:
            return len(self._inflight)

    @property
    def lease(self) -> float:
        """The lease, in seconds, this consumer takes (and keeps extending) on a delivery."""
        return self._lease

    def reserve(self) -> bool:
        """Take a slot for a delivery `adopt` will bring, if one is free: adopted
        deliveries count against `max_inflight` like received ones (a receive already
        waiting when the slot is taken may still bring its batch)."""
        with self._room:
            if self._stopping.is_set() or self._taken() >= self._max_inflight:
                return False
            self._reserved += 1
            return True

    def unreserve(self) -> None:
        """Give back a slot `reserve` took, for a delivery that will not come."""
        with self._room:
            self._reserved -= 1
            self._room.notify_all()

    def adopt(self, delivery: Delivery, handler: Handler | None = None) -> None:
        """Handle, in a slot taken with `reserve`, a delivery this consumer did not
        receive (one from `send_claimed`, under `lease`) as if it had: hand it to the
        handler (or to `handler`, for this one), keep its lease alive, settle it. A
        stopping consumer gives it back at once."""
        with self._room:
            self._reserved -= 1
            stopping = self._stopping.is_set()
            if not stopping:
                self._inflight[delivery.id] = (delivery, time.monotonic())
        if stopping:
            self._release(delivery)
            return
        self._dispatch(delivery, handler or self._handler)

    def _taken(self) -> int:
        """Slots in use: deliveries held and slots reserved (call it holding `_room`)."""
        return len(self._inflight) + self._reserved

    def stop_taking(self) -> None:
        """Take no more work (the first half of `stop`; lets many consumers stop at once).
        An `InterruptibleQueue`'s waiting receive ends now, not after its long poll."""
        self._stopping.set()
        with self._room:
            self._room.notify_all()
        self._interrupt()

    def stop(self, grace: float = 10.0) -> None:
        """Take no more work; wait up to `grace` for held deliveries, release the rest."""
        self.stop_taking()
        deadline = time.monotonic() + grace
        with self._room:  # `_forget` notifies it as deliveries settle
            while self._inflight and (left := deadline - time.monotonic()) > 0:
                self._room.wait(left)
        self._settled.put(None)
        receiving, settling = self._threads
        # Interrupted again until it ends: a receive that began just after an interrupt
        # waits as usual.
        while receiving.is_alive() and time.monotonic() < deadline:
            self._interrupt()
            receiving.join(0.05)
        settling.join(max(0.1, deadline - time.monotonic()))
        for delivery, _ in list(self._inflight.values()):
            self._release(delivery)
        self._inflight.clear()

    # -- receiving ---------------------------------------------------------------------------

    def _receive_loop(self) -> None:
        batch = self.source.capabilities.max_batch
        while not self._stopping.is_set():
            with self._room:
                while self._taken() >= self._max_inflight and not self._stopping.is_set():
                    self._room.wait(0.5)
                room = self._max_inflight - self._taken()
            if self._stopping.is_set():
                return
            try:
                deliveries = self.source.receive(
                    min(room, batch), wait=self._poll, lease=self._lease
                )
            except ProviderError as exc:
                log.warning("%s: receive failed (%s); retrying", self._name, exc)
                time.sleep(1.0)
                continue
            if self._stopping.is_set():
                # Received as the consumer stopped: no handler takes them now.
                for delivery in deliveries:
                    self._release(delivery)
                return
            now = time.monotonic()
            for delivery in deliveries:
                with self._room:
                    self._inflight[delivery.id] = (delivery, now)
                self._dispatch(delivery, self._handler)

    def _interrupt(self) -> None:
        if self.source.capabilities.interruptible:
            cast(InterruptibleQueue, self.source).interrupt()

    def _dispatch(self, delivery: Delivery, handler: Handler) -> None:
        try:
            future = handler(delivery)
        except Exception as exc:  # a handler bug must not stop the consumer
            log.exception("%s: handler failed on %s", self._name, delivery.id)
            future = Future()
            future.set_result(Settlement("release", delay=5.0, reason=str(exc)))
        future.add_done_callback(lambda f: self._settled.put((delivery, f.result())))

    # -- settling ----------------------------------------------------------------------------

    def _settle_loop(self) -> None:
        next_extend = time.monotonic() + self._lease / 3
        while True:
            items = self._drain(timeout=max(0.01, next_extend - time.monotonic()))
            acks: list[Delivery] = []
            for item in items:
                if item is not None:
                    self._settle(*item, acks)
            self._ack(acks)
            if None in items:
                return
            if time.monotonic() >= next_extend:
                self._extend_held()
                next_extend = time.monotonic() + self._lease / 3

    def _drain(self, timeout: float) -> list[tuple[Delivery, Settlement] | None]:
        """Everything settled so far, waiting up to `timeout` for the first one."""
        try:
            items = [self._settled.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                items.append(self._settled.get_nowait())
            except queue.Empty:
                return items

    def _settle(self, delivery: Delivery, settlement: Settlement, acks: list[Delivery]) -> None:
        if settlement.action == "ack":
            acks.append(delivery)
            return
        if settlement.action == "dead":
            self._safely(lambda: self.source.dead_letter(delivery, settlement.reason))
        else:
            self._safely(lambda: self.source.release(delivery, delay=settlement.delay))
        self._forget([delivery])

    def _ack(self, acks: list[Delivery]) -> None:
        size = self.source.capabilities.max_batch
        for start in range(0, len(acks), size):
            chunk = acks[start : start + size]
            self._safely(lambda c=chunk: self.source.ack(c))  # type: ignore[misc]
        self._forget(acks)

    def _forget(self, deliveries: list[Delivery]) -> None:
        if not deliveries:
            return
        with self._room:
            for delivery in deliveries:
                self._inflight.pop(delivery.id, None)
            self._room.notify_all()

    def _extend_held(self) -> None:
        """Deliveries still held after a third of their lease get a fresh lease."""
        cutoff = time.monotonic() - self._lease / 3
        with self._room:
            held = [(d, t) for d, t in self._inflight.values() if t <= cutoff]
        for delivery, _ in held:
            try:
                self.source.extend(delivery, self._lease)
                with self._room:
                    if delivery.id in self._inflight:
                        self._inflight[delivery.id] = (delivery, time.monotonic())
            except LeaseLost:
                log.warning(
                    "%s: lease on %s was lost; it will be redelivered", self._name, delivery.id
                )
            except ProviderError as exc:
                log.warning("%s: could not extend %s: %s", self._name, delivery.id, exc)

    def _release(self, delivery: Delivery) -> None:
        self._safely(lambda: self.source.release(delivery))

    def _safely(self, operation: Callable[[], None]) -> None:
        try:
            operation()
        except ProviderError as exc:
            # The message comes back after its lease: at-least-once covers this.
            log.warning(
                "%s: settling failed (%s); the message will be redelivered", self._name, exc
            )


class TaskPool:
    """The tasks-queue handler: runs each invocation on a thread pool."""

    def __init__(self, run_task: Callable[[bytes], None], concurrency: int) -> None:
        self._run_task = run_task
        self._pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="task")

    def __call__(self, delivery: Delivery) -> Future[Settlement]:
        return self._pool.submit(self._run, delivery)

    def _run(self, delivery: Delivery) -> Settlement:
        try:
            self._run_task(delivery.body)
        except MalformedMessage as exc:
            log.warning("dead-lettering task message %s: %s", delivery.id, exc)
            return Settlement("dead", reason=str(exc))
        except ProviderError as exc:
            log.warning("could not report task outcome (%s); retrying later", exc)
            return Settlement("release", delay=5.0)
        return Settlement("ack")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
