"""`ThreadExecutor`: runs tasks on a thread pool in this process (in-memory mode).

Not durable: a crash loses submitted tasks, as it loses everything else kept in memory.
The durable local mode uses the core `QueueExecutor` over the SQLite queue instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from switchboard.interfaces import ExecutorCapabilities, ExecutorHost

log = logging.getLogger("switchboard.local")


class ThreadExecutor:
    capabilities = ExecutorCapabilities(max_payload_bytes=64 * 1024 * 1024)

    def __init__(self, host: ExecutorHost) -> None:
        self._host = host
        self._pool = ThreadPoolExecutor(max(1, host.concurrency), thread_name_prefix="task")

    def submit(self, invocations: Sequence[bytes]) -> None:
        for body in invocations:
            self._pool.submit(self._run, body)

    def _run(self, body: bytes) -> None:
        try:
            self._host.run_task(body)
        except Exception:  # keep the pool alive; the run's timers cover a lost task
            log.exception("task invocation could not run")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
