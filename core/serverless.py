"""Processing one batch of messages inside a serverless function invocation.

Each cloud's entry point (`switchboard.providers.<cloud>.handlers`) turns its trigger's
event into `Delivery`s of the queue it came from and calls `BatchProcessor.process`; what
comes back says which deliveries failed (to be retried by the trigger). Malformed messages
are dead-lettered here with their reason, so they never fail a batch forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, wait
from typing import Any

from switchboard.app import App
from switchboard.engine import Settlement
from switchboard.errors import ProviderError
from switchboard.interfaces import Delivery, Queue
from switchboard.runtime import Runtime, build_runtime
from switchboard.worker import TaskPool

log = logging.getLogger("switchboard.serverless")


class BatchProcessor:
    """Runs the engine (for the invocations queue) or tasks (for the tasks queue) on a batch.

    Live runs stay cached between invocations of a warm function, so a warm container
    resumes a run without replaying it. With a runtime built with `inline_tasks=True`, a
    lone awaited task runs inside the workflow function itself: a chain then costs one
    state write per step and no queue traffic, as in a long-running worker.
    """

    def __init__(self, runtime: Runtime, *, concurrency: int = 8) -> None:
        self.runtime = runtime
        self._tasks = TaskPool(runtime.task_runner.run, concurrency)

    def process(
        self, source: Queue, deliveries: Sequence[Delivery], *, deadline: float
    ) -> list[Delivery]:
        """Process `deliveries` from `source` (the invocations or the tasks queue) before
        `deadline` (a `time.monotonic()` value); return the deliveries that must be retried.

        Succeeded deliveries are left for the trigger to delete (it does, when the function
        reports success); dead-lettered ones are moved here.
        """
        is_tasks = source.name != self.runtime.invocations.name
        # Tasks run inline (where the runtime allows it) only in the first half of the
        # time left, so one started late still has the other half to finish.
        now = time.monotonic()
        settle_by = now + max(0.0, deadline - now) / 2
        futures: dict[Future[Settlement], Delivery] = {}
        for delivery in deliveries:
            if is_tasks:
                future = self._tasks(delivery)
            else:
                future = self.runtime.engine.handle(delivery, settle_by=settle_by)
            futures[future] = delivery
        done, not_done = wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        failed = [futures[future] for future in not_done]
        for future in done:
            delivery, settlement = futures[future], future.result()
            if settlement.action == "dead":
                try:
                    source.dead_letter(delivery, settlement.reason)
                except ProviderError as exc:
                    log.warning("could not dead-letter %s (%s); retrying it", delivery.id, exc)
                    failed.append(delivery)
            elif settlement.action == "release":
                failed.append(delivery)
        return failed


class ServerlessRuntime:
    """What a serverless entry point keeps while its process is warm: the app's runtime on
    one provider (no consumers; a lone awaited task inline unless `inline_tasks=False`),
    built on first use, and its `BatchProcessor`. Every cloud's handlers hold one."""

    def __init__(
        self,
        app: App,
        provider: str,
        *,
        executor: str | None = None,
        inline_tasks: bool = True,
        concurrency: int = 8,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.provider = provider
        self._executor = executor
        self._inline_tasks = inline_tasks
        self._concurrency = concurrency
        self.settings: dict[str, Any] = dict(settings or {})
        self._runtime: Runtime | None = None
        self._processor: BatchProcessor | None = None
        self._lock = threading.Lock()

    @property
    def runtime(self) -> Runtime:
        """The process's runtime, built on first use."""
        with self._lock:
            if self._runtime is None:
                self._runtime = build_runtime(
                    self.app,
                    self.provider,
                    executor=self._executor,
                    workers=0,
                    inline_tasks=self._inline_tasks,
                    settings=self.settings or None,
                )
            return self._runtime

    @property
    def processor(self) -> BatchProcessor:
        runtime = self.runtime
        with self._lock:
            if self._processor is None:
                self._processor = BatchProcessor(runtime, concurrency=self._concurrency)
            return self._processor

    def close(self) -> None:
        """Close the runtime, if it was built; the next use builds a new one."""
        with self._lock:
            runtime, self._runtime, self._processor = self._runtime, None, None
        if runtime is not None:
            runtime.close()
