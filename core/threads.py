"""`Threads`: the threads a runtime runs its run drivers and its client's writes on.

A thread that finishes its work waits `idle_seconds` for more before it ends, and work
goes to a waiting thread before a new one starts: starting a thread costs whoever waits
for it 100-400 us here, handing work to a waiting one 40-60 us.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")


class Threads:
    """A pool that grows with the work at hand and shrinks when idle."""

    def __init__(self, name: str, idle_seconds: float) -> None:
        self._name = name
        self._idle_seconds = idle_seconds
        self._work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._idle = 0  # threads waiting for work that no `run` has counted on yet
        self._closed = False
        self._lock = threading.Lock()

    def run(self, work: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._work.put(work)
                return
        self.spawn(work)

    def submit(self, work: Callable[[], T]) -> Future[T]:
        """Run `work` on a thread; its result or exception comes in the future."""
        future: Future[T] = Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(work())
                except BaseException as exc:  # noqa: BLE001 - the caller gets it
                    future.set_exception(exc)

        self.run(run)
        return future

    def overlap(self, work: Callable[[], T]) -> Overlap[T]:
        """Run `work` on a thread while the caller goes on; see `Overlap`."""
        return Overlap(self.submit(work), work)

    def spawn(self, work: Callable[[], None] | None = None) -> None:
        """Start a thread, running `work` first if given."""
        threading.Thread(target=self._serve, args=(work,), name=self._name, daemon=True).start()

    def close(self) -> None:
        """Let every waiting thread end, and every busy one when its work is done."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
            for _ in range(idle):
                self._work.put(None)

    def _serve(self, work: Callable[[], None] | None) -> None:
        while True:
            if work is not None:
                work()
            with self._lock:
                if self._closed:
                    return
                self._idle += 1
            try:
                work = self._work.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    # Work put meanwhile was counted on a waiting thread: take it.
                    try:
                        work = self._work.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        return
            if work is None:
                return


class Overlap(Generic[T]):
    """Work handed to a thread to overlap with the caller's own. Asked for its outcome
    before any thread has begun it, the caller runs it itself: a write that a fast store
    finishes in microseconds then costs no hand-off to a thread and back (40-60 us each
    way here), while a slow one (a network round trip) still overlaps."""

    def __init__(self, future: Future[T], work: Callable[[], T]) -> None:
        self._future = future
        self._work = work

    def result(self) -> T:
        return self._settled().result()

    def exception(self) -> BaseException | None:
        return self._settled().exception()

    def _settled(self) -> Future[T]:
        if self._future.cancel():  # no thread has begun it (and none will): run it here
            done: Future[T] = Future()
            try:
                done.set_result(self._work())
            except BaseException as exc:  # noqa: BLE001 - the caller gets it
                done.set_exception(exc)
            self._future = done
        return self._future
