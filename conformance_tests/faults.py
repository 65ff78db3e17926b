"""Fault injection: wrap any provider's queues and state store so they misbehave the way
real systems do, and check that runs still complete exactly right.

Faults: duplicate deliveries (a body delivered again as a new message), lost acks (the ack
is dropped, so the message comes back after its lease), reordering (batches shuffled),
transient errors from queue and store operations at a configurable rate (raised *before*
the operation, or *after* it took effect: the ambiguous kind), and killed workers (every
operation of a killed runtime raises `Killed`, a BaseException that no handler catches,
so its threads die mid-task or mid-replay holding whatever they held).
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import pytest

import switchboard as sb
from switchboard.client import Client
from switchboard.errors import TransientProviderError
from switchboard.interfaces import (
    ANY,
    Broker,
    ClaimingQueue,
    Delivery,
    Expect,
    InterruptibleQueue,
    Page,
    Queue,
    QueueCapabilities,
    Record,
    StateCapabilities,
    StateStore,
)
from switchboard.runtime import Runtime
from switchboard_conformance.fixtures import ConformanceTiming, unique_name
from switchboard_conformance.guarantees import Guarantee, checks, guarantee
from switchboard_conformance.workflow import ONCE, ExecutorChoice, _Runs, assert_each_outcome_once

T = TypeVar("T")

NO_LOSS = Guarantee(
    "Workflow", "faults", "A crash anywhere (worker killed mid-task or mid-replay) loses no run"
)
DUPLICATES_HARMLESS = Guarantee(
    "Workflow", "faults", "Duplicate deliveries and duplicate results are harmless"
)


class Killed(BaseException):
    """Raised by every operation of a killed worker: its threads die where they stand."""


@dataclass
class Faults:
    """Probabilities of each fault per operation (0 turns it off)."""

    duplicate: float = 0.0
    lost_ack: float = 0.0
    reorder: bool = False
    transient: float = 0.0
    seed: int = 7

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()

    def roll(self, kind: str, probability: float) -> bool:
        with self._lock:
            hit = self._random.random() < probability
            if hit:
                self.counts[kind] += 1
            return hit

    def shuffle(self, items: list[T]) -> None:
        with self._lock:
            self._random.shuffle(items)


class KillSwitch:
    def __init__(self) -> None:
        self.killed = False

    def check(self) -> None:
        if self.killed:
            raise Killed


def _faulty(faults: Faults, switch: KillSwitch, operation: Callable[[], T], name: str) -> T:
    """Run `operation`, maybe failing transiently before or after it."""
    switch.check()
    if faults.roll(f"transient before {name}", faults.transient / 2):
        raise TransientProviderError(f"injected: {name} failed before it ran")
    result = operation()
    switch.check()
    if faults.roll(f"transient after {name}", faults.transient / 2):
        raise TransientProviderError(f"injected: {name} failed after it took effect")
    return result


class FaultyQueue:
    def __init__(self, inner: Queue, faults: Faults, switch: KillSwitch) -> None:
        self._inner, self._faults, self._switch = inner, faults, switch
        self.name: str = inner.name
        self.max_attempts: int = inner.max_attempts
        self.capabilities: QueueCapabilities = inner.capabilities

    def send(self, bodies: Sequence[bytes], *, delay: float = 0.0) -> None:
        _faulty(self._faults, self._switch, lambda: self._inner.send(bodies, delay=delay), "send")

    def send_claimed(self, body: bytes, *, lease: float) -> Delivery:
        inner = cast(ClaimingQueue, self._inner)  # called only where claim_on_send holds
        return _faulty(
            self._faults,
            self._switch,
            lambda: inner.send_claimed(body, lease=lease),
            "send_claimed",
        )

    def interrupt(self) -> None:
        # Local to this process, nothing to fail: passed through untouched.
        cast(InterruptibleQueue, self._inner).interrupt()  # called only where interruptible

    def receive(
        self, max_messages: int = 1, *, wait: float = 0.0, lease: float = 30.0
    ) -> list[Delivery]:
        deliveries = _faulty(
            self._faults,
            self._switch,
            lambda: self._inner.receive(max_messages, wait=wait, lease=lease),
            "receive",
        )
        again = [
            d.body for d in deliveries if self._faults.roll("duplicate", self._faults.duplicate)
        ]
        if again:
            self._inner.send(again)
        if self._faults.reorder:
            self._faults.shuffle(deliveries)
        return deliveries

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        kept = [d for d in deliveries if not self._faults.roll("lost ack", self._faults.lost_ack)]
        _faulty(self._faults, self._switch, lambda: self._inner.ack(kept), "ack")

    def release(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        _faulty(
            self._faults,
            self._switch,
            lambda: self._inner.release(delivery, delay=delay),
            "release",
        )

    def extend(self, delivery: Delivery, lease: float) -> None:
        _faulty(self._faults, self._switch, lambda: self._inner.extend(delivery, lease), "extend")

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._switch.check()
        self._inner.dead_letter(delivery, reason)

    def dead_letters(self) -> Queue:
        return self._inner.dead_letters()

    def close(self) -> None:
        self._inner.close()


class FaultyBroker:
    def __init__(self, inner: Broker, faults: Faults, switch: KillSwitch) -> None:
        self._inner, self._faults, self._switch = inner, faults, switch
        self.capabilities: QueueCapabilities = inner.capabilities

    def queue(self, name: str, *, max_attempts: int = 5) -> Queue:
        return FaultyQueue(
            self._inner.queue(name, max_attempts=max_attempts), self._faults, self._switch
        )

    def close(self) -> None:
        pass  # the fixture owns the real broker


class FaultyStateStore:
    def __init__(self, inner: StateStore, faults: Faults, switch: KillSwitch) -> None:
        self._inner, self._faults, self._switch = inner, faults, switch
        self.capabilities: StateCapabilities = inner.capabilities

    def get(self, partition: str, key: str) -> Record | None:
        return _faulty(self._faults, self._switch, lambda: self._inner.get(partition, key), "get")

    def put(
        self,
        partition: str,
        key: str,
        value: bytes,
        *,
        expect: Expect | str = ANY,
        ttl: float | None = None,
    ) -> str:
        return _faulty(
            self._faults,
            self._switch,
            lambda: self._inner.put(partition, key, value, expect=expect, ttl=ttl),
            "put",
        )

    def delete(self, partition: str, key: str, *, expect: Expect | str = ANY) -> None:
        _faulty(
            self._faults,
            self._switch,
            lambda: self._inner.delete(partition, key, expect=expect),
            "delete",
        )

    def scan(
        self, partition: str, *, prefix: str = "", limit: int = 100, cursor: str | None = None
    ) -> Page:
        return _faulty(
            self._faults,
            self._switch,
            lambda: self._inner.scan(partition, prefix=prefix, limit=limit, cursor=cursor),
            "scan",
        )

    def close(self) -> None:
        pass  # the fixture owns the real store


class FaultConformance(_Runs):
    """Runs complete exactly right while the provider misbehaves and workers die."""

    #: Runs started under faults (CI size; raise it for a soak).
    runs = 500
    #: Workers killed, one after another, while the runs are going.
    kills = 3
    faults = Faults(duplicate=0.05, lost_ack=0.05, reorder=True, transient=0.02)
    run_timeout = 600.0

    @pytest.fixture
    def worker_factory(
        self,
        broker: Broker,
        state_store: StateStore,
        executor: ExecutorChoice,
        conformance_timing: ConformanceTiming,
    ) -> Iterator[Callable[[sb.App], tuple[Client, KillSwitch]]]:
        """Start a worker runtime on faulty wrappers of the provider's components."""
        started: list[tuple[Client, KillSwitch]] = []
        faults = Faults(
            duplicate=self.faults.duplicate,
            lost_ack=self.faults.lost_ack,
            reorder=self.faults.reorder,
            transient=self.faults.transient,
        )

        def start(app: sb.App) -> tuple[Client, KillSwitch]:
            switch = KillSwitch()
            runtime = Runtime(
                app,
                FaultyBroker(broker, faults, switch),
                FaultyStateStore(state_store, faults, switch),
                executor.factory,
                executor.config,
                workers=4,
                lease=max(conformance_timing.lease * 2, 2.0),
                close_components=False,
            )
            started.append((Client(runtime), switch))
            return started[-1]

        yield start
        for client, switch in started:
            if not switch.killed:
                client.close()

    # Killed workers' threads die of `Killed`, as intended.
    @pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
    @checks(NO_LOSS, DUPLICATES_HARMLESS, ONCE)
    def test_runs_complete_exactly_right_under_faults_and_kills(
        self, worker_factory: Callable[[sb.App], tuple[Client, KillSwitch]], state_store: StateStore
    ) -> None:
        app = sb.App(unique_name("faults"))

        @app.task(retries=2, retry_delay=0.05)
        def add(x: int, y: int) -> int:
            time.sleep(0.001)
            return x + y

        @app.workflow
        def run(ctx: sb.Context, n: int) -> int:
            a = add(n, 1)
            b, c = ctx.parallel(ctx.call(add, a, 2), ctx.call(add, a, 3))
            return add(b, c)

        client, switch = worker_factory(app)
        run_ids = [client.start("run", n=i) for i in range(self.runs)]
        for _ in range(self.kills):
            time.sleep(0.5)
            switch.killed = True  # dies mid-task, mid-replay, wherever its threads are
            client, switch = worker_factory(app)
        deadline = time.monotonic() + self.run_timeout
        outputs: dict[str, Any] = {}
        for index, run_id in enumerate(run_ids):
            remaining = max(1.0, deadline - time.monotonic())
            try:
                outputs[run_id] = client.wait(run_id, timeout=remaining).output
            except sb.WaitTimeout:
                pytest.fail(
                    guarantee(NO_LOSS, f"run {index} ({run_id}) never finished"), pytrace=False
                )
        wrong = {i: outputs[r] for i, r in enumerate(run_ids) if outputs[r] != 2 * i + 7}
        assert not wrong, guarantee(
            DUPLICATES_HARMLESS, f"wrong outputs (run -> output): {dict(list(wrong.items())[:5])}"
        )
        for run_id in run_ids:
            assert_each_outcome_once(state_store, run_id)
