"""Wiring: one app connected to a queue provider, a state store and an executor.

`connect` resolves providers by name through the plugin registry (mixing them is fine:
`queue="aws", state="local"`), builds the components, and, with `workers > 0`, starts the
in-process worker: the engine consuming the invocations queue and, for a queue-based
executor, a pool consuming the tasks queue. `local` is `connect` on the local provider
with workers on.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from switchboard import wire
from switchboard.app import App
from switchboard.engine import Engine
from switchboard.errors import ConfigError
from switchboard.execution import TaskRunner
from switchboard.executors import INVOCATIONS_CHANNEL, QueueExecutor, queue_executor
from switchboard.history import RunView
from switchboard.index import RunIndex
from switchboard.interfaces import (
    Broker,
    ClaimingQueue,
    Delivery,
    Executor,
    ExecutorFactory,
    ExecutorHost,
    Queue,
    StateStore,
)
from switchboard.outbox import Outbox
from switchboard.plugins import Registry, registry
from switchboard.retry import retrying
from switchboard.status import RunStatus
from switchboard.threads import Overlap, Threads
from switchboard.tokens import Signer, resolve_secret
from switchboard.worker import Consumer, TaskPool

if TYPE_CHECKING:
    from switchboard.client import Client


T = TypeVar("T")

_active: weakref.WeakValueDictionary[str, Runtime] = weakref.WeakValueDictionary()

#: How many runs finished by this process's engine keep their final status in memory (so
#: waiting on one reads nothing), and the largest output and error (JSON bytes) kept.
RECENT_RUNS = 1024
RECENT_OUTPUT_BYTES = 4096


def active_runtime(app_name: str) -> Runtime | None:
    """The open runtime of the app called `app_name` in this process, if any."""
    return _active.get(app_name)


class Notice(threading.Event):
    """Set when something about a watched run changed; `status` holds its final status
    once an in-process engine has committed the run's end."""

    def __init__(self) -> None:
        super().__init__()
        self.status: RunStatus | None = None

    def finish(self, status: RunStatus) -> None:
        self.status = status
        self.set()

    def final(self) -> RunStatus | None:
        """The run's final status, once `finish` has been called (from another thread)."""
        return self.status


class Runtime:
    """The components of one connection, and the in-process worker when there is one."""

    def __init__(
        self,
        app: App,
        broker: Broker,
        store: StateStore,
        executor_factory: ExecutorFactory,
        executor_config: Any,
        *,
        workers: int = 0,
        inline_tasks: bool | None = None,
        max_attempts: int = 10,
        lease: float = 30.0,
        max_inflight: int = 256,
        close_components: bool = True,
    ) -> None:
        if app.retention is not None and not store.capabilities.ttl:
            raise ConfigError(
                f"app {app.name!r} sets retention, which needs a state store with the TTL "
                f"capability; {type(store).__name__} has none: use the aws or local state "
                "store, or drop retention"
            )
        self.app = app
        #: False when the caller owns the broker and store (and closes them itself).
        self._close_components = close_components
        self.broker = broker
        self.store = store
        self.blobs = wire.Blobs(store)
        self.index = RunIndex(store, app.name)
        self.max_attempts = max_attempts
        self.invocations = self.channel(INVOCATIONS_CHANNEL)
        # Results of tasks finishing together travel in one request.
        self._outbox = Outbox(self.invocations)
        self.signer = Signer(resolve_secret(app.name, app.secret, store))
        self.task_runner = TaskRunner(app, self.blobs, self.report)
        host = ExecutorHost(app.name, self.task_runner.run, self.channel, max(1, workers))
        self.executor: Executor = executor_factory(executor_config, host)
        self._watchers: dict[str, list[Notice]] = {}
        self._recent: OrderedDict[str, RunStatus] = OrderedDict()
        # Run drivers and the client's writes share one pool; two threads start now, so
        # the first `client.start` does not wait for one.
        self._threads = Threads("switchboard", idle_seconds=60.0)
        for _ in range(2):
            self._threads.spawn()
        self._watch_lock = threading.Lock()
        # The engine starts no thread until a message arrives: serverless handlers use it
        # without consumers.
        self.engine = Engine(
            app,
            store,
            self.blobs,
            self.invocations,
            self.executor,
            self.signer,
            self.index,
            inline_tasks=workers > 0 if inline_tasks is None else inline_tasks,
            on_finished=self._finished,
            threads=self._threads,
        )
        self._consumers: list[Consumer] = []
        #: The consumer of the invocations queue, which `send_start` hands claimed starts to.
        self._intake: Consumer | None = None
        self._pool: TaskPool | None = None
        if workers > 0:
            for _ in range(2):  # for the first runs' drivers
                self._threads.spawn()
            self._intake = Consumer(
                self.invocations,
                self.engine.handle,
                name="invocations",
                lease=lease,
                max_inflight=max_inflight,
            )
            self._consumers.append(self._intake)
            if isinstance(self.executor, QueueExecutor):
                self._pool = TaskPool(self.task_runner.run, workers)
                self._consumers.append(
                    Consumer(
                        self.executor.queue,
                        self._pool,
                        name="tasks",
                        lease=lease,
                        max_inflight=workers * 2,
                    )
                )
            for consumer in self._consumers:
                consumer.start()
        _active[app.name] = self

    @property
    def consumers(self) -> tuple[Consumer, ...]:
        """The in-process worker's queue consumers (none with `workers=0`)."""
        return tuple(self._consumers)

    def in_background(self, work: Callable[[], T]) -> Overlap[T]:
        """Run `work` on a helper thread, or on the caller's if it asks for the outcome
        first (for a client overlapping its writes; see `Overlap`)."""
        return self._threads.overlap(work)

    def channel(self, name: str) -> Queue:
        """A channel of this app on the runtime's queue provider. Channel names hold only
        letters, digits and hyphens, so an app name's `_` becomes `-`."""
        return self.broker.queue(
            f"{self.app.name.replace('_', '-')}-{name}", max_attempts=self.max_attempts
        )

    def report(self, message: dict[str, Any]) -> None:
        """Send a message to the invocations queue (claim check when it is too large)."""
        limit = self.invocations.capabilities.max_message_bytes
        self.report_encoded(wire.encode(message, limit, self.blobs))

    def report_encoded(self, body: bytes) -> None:
        """Send a message already encoded within the invocations queue's size limit."""
        self._outbox.send(body)

    def send_start(self, body: bytes) -> Delivery | None:
        """Send a run's start message (encoded within the queue's size limit).

        When this process consumes the invocations queue and the queue can claim on send,
        the message is enqueued already delivered to this process, and returned: pass it
        to `adopt` once the run's first entry is written (it has a slot of the consumer's
        `max_inflight` reserved; with none free, it is sent as usual), and the consumer
        starts the run at once. No trip through the queue, no other worker racing for
        it, and if this process dies first, the lease ends and any worker gets it.
        """
        consumer = self._intake
        queue = self.invocations
        # With no slot free (max_inflight runs held), the run waits in the queue instead.
        if consumer is None or not queue.capabilities.claim_on_send or not consumer.reserve():
            self.report_encoded(body)
            return None
        claiming = cast(ClaimingQueue, queue)
        try:
            return retrying(lambda: claiming.send_claimed(body, lease=consumer.lease))
        except BaseException:
            consumer.unreserve()
            raise

    def adopt(self, delivery: Delivery, *, created: bool) -> None:
        """Handle a start message `send_start` claimed, as if the consumer had received it;
        `created`: the client wrote the entry it carries (see `Engine.handle`)."""
        assert self._intake is not None  # only a claimed start comes here
        self._intake.adopt(delivery, functools.partial(self.engine.handle, created=created))

    # -- local completion notices, so `client.wait` need not poll an in-process engine --------

    def watch(self, run_id: str) -> Notice:
        """A notice set when the run changes; already finished if this process's engine
        ended the run lately."""
        notice = Notice()
        with self._watch_lock:
            status = self._recent.get(run_id)
            if status is None:
                self._watchers.setdefault(run_id, []).append(notice)
        if status is not None:
            notice.finish(status)
        return notice

    def unwatch(self, run_id: str, notice: Notice) -> None:
        with self._watch_lock:
            notices = self._watchers.get(run_id, [])
            if notice in notices:
                notices.remove(notice)
            if not notices:
                self._watchers.pop(run_id, None)

    def _finished(self, view: RunView) -> None:
        """The engine committed the end of a run: tell its watchers, with its status, and
        keep the status for a later `watch` (a final status never changes)."""
        status = view.to_status()
        small = len(wire.dumps([status.output, status.error])) <= RECENT_OUTPUT_BYTES
        with self._watch_lock:
            notices = self._watchers.pop(view.run_id, [])
            if small:
                self._recent[view.run_id] = status
                if len(self._recent) > RECENT_RUNS:
                    self._recent.popitem(last=False)
        for notice in notices:
            notice.finish(status)

    def close(self, grace: float = 10.0) -> None:
        """Stop the worker (finishing or releasing held work), then close the components."""
        if _active.get(self.app.name) is self:
            del _active[self.app.name]
        for consumer in self._consumers:
            consumer.stop_taking()
        for consumer in self._consumers:
            consumer.stop(grace)
        self.engine.close()
        if self._pool is not None:
            self._pool.close()
        self._threads.close()
        self.executor.close()
        if self._close_components:
            self.store.close()
            self.broker.close()


def _executor_factory(
    name: str | None, default_provider: str, reg: Registry
) -> tuple[ExecutorFactory, str | None]:
    """Resolve `executor=`: "queue" (core), "<provider>" (its default) or "<provider>.<name>"."""
    if name == "queue":
        return queue_executor, None
    provider, _, variant = (name or default_provider).partition(".")
    spec = reg.get(provider)
    if not variant:
        factory = spec.executors.get("default")
        return (factory, provider) if factory else (queue_executor, None)
    if variant not in spec.executors:
        known = ", ".join(f"{provider}.{n}" for n in spec.executors if n != "default") or "none"
        raise ConfigError(
            f"the {provider} provider has no executor {variant!r}; it offers: {known}"
        )
    return spec.executors[variant], provider


def build_runtime(
    app: App,
    provider: str = "local",
    *,
    queue: str | None = None,
    state: str | None = None,
    executor: str | None = None,
    workers: int = 0,
    inline_tasks: bool | None = None,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    settings: Mapping[str, Any] | None = None,
    reg: Registry = registry,
    **options: Any,
) -> Runtime:
    queue_name, state_name = queue or provider, state or provider
    executor_factory, executor_provider = _executor_factory(executor, provider, reg)
    named = set(filter(None, (queue_name, state_name, executor_provider)))
    if settings and provider not in named:
        raise ConfigError(
            f"settings {sorted(settings)} were given for provider {provider!r}, which builds "
            f"nothing here; pass them as config={{'<provider>': {{...}}}}"
        )
    values = {name: dict((config or {}).get(name, {})) for name in named}
    if settings:
        values.setdefault(provider, {}).update(settings)
    unused = set(config or {}) - named
    if unused:
        raise ConfigError(f"config given for providers that are not used: {sorted(unused)}")
    configs = {name: reg.config(name, values[name]) for name in named}

    def component(name: str, kind: str) -> Callable[[Any], Any]:
        spec = reg.get(name)
        factory = getattr(spec, kind)
        if factory is None:
            raise ConfigError(
                f"the {name} provider offers no {kind}; try another provider for {kind}"
            )
        return lambda cfg: factory(cfg)

    broker = component(queue_name, "broker")(configs[queue_name])
    store = component(state_name, "state")(configs[state_name])
    return Runtime(
        app,
        broker,
        store,
        executor_factory,
        configs.get(executor_provider) if executor_provider else None,
        workers=workers,
        inline_tasks=inline_tasks,
        **options,
    )


def connect(
    app: App,
    provider: str = "local",
    *,
    queue: str | None = None,
    state: str | None = None,
    executor: str | None = None,
    workers: int = 0,
    inline_tasks: bool | None = None,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    **settings: Any,
) -> Client:
    """A client for `app` on the named provider(s).

    `**settings` configure `provider`; `config={"aws": {...}}` configures others when
    mixing (`queue="aws", state="local"`). With `workers=N` this process also runs the
    engine and N task workers.
    """
    from switchboard.client import Client

    runtime = build_runtime(
        app,
        provider,
        queue=queue,
        state=state,
        executor=executor,
        workers=workers,
        inline_tasks=inline_tasks,
        config=config,
        settings=settings,
    )
    return Client(runtime)


def local(app: App, path: str | None = None, *, workers: int = 4, **settings: Any) -> Client:
    """Run `app` embedded: in memory, or durable in the SQLite file `path`."""
    if path is not None:
        settings["path"] = path
    return connect(app, "local", workers=workers, **settings)
