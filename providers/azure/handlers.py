"""Azure Functions entry points: a Service Bus trigger for the invocations and tasks queues,
and the HTTP task endpoint of the `azure.http` executor.

Build one `AzureHandlers` per process, at module level of the function app, and call it from
the functions (Python v2 programming model; the `azure-functions` package is not needed by
Switchboard: any object with the attributes below is accepted):

    import azure.functions as func
    handlers = AzureHandlers(app)                  # settings as for sb.connect(app, "azure", ...)
    fa = func.FunctionApp()

    @fa.service_bus_queue_trigger(arg_name="msg", queue_name="switchboard-shop-invocations",
                                  connection="SWITCHBOARD_SERVICEBUS_CONNECTION_STRING")
    def invocations(msg: func.ServiceBusMessage) -> None:
        handlers.service_bus(msg, "switchboard-shop-invocations")

    # the same for "switchboard-shop-tasks" (the default executor's queue)

    @fa.route(route="tasks", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
    def tasks(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(status_code=handlers.task(req.get_body(), req.headers))

`handlers.queue_names()` gives the two queue names to bind. The runtime (`workers=0`: no
consumers, no threads until a message arrives) is built on the first call and kept, so a
warm instance resumes live runs without replaying.

Service Bus trigger (`service_bus(messages, queue_name)`): one message, or a list with
`cardinality="many"`. The host receives in peek-lock mode, renews the locks while the
function runs, completes the messages when it returns and abandons them when it raises
(autoCompleteMessages, the default): so a message that must be retried makes the call raise
`RetryDelivery`, and Service Bus delivers it again (with a batch, every message of it: the
ones that succeeded are then duplicates, which the engine ignores). After the queue's
MaxDeliveryCount deliveries Service Bus dead-letters a message itself.
A message's `attempt` is its `delivery_count` (the host counts from 1, unlike the AMQP
header, which azure-servicebus exposes counting from 0) plus the deliveries a delayed
release's copy carries over in its `switchboard-prior-attempts` property, as
`ServiceBusQueue.receive` computes it.

Malformed messages: a Python function holds only the message's lock token. The Python
worker has no settlement API (only the pre-release azurefunctions-extensions-bindings-
servicebus package offers message actions), and azure-servicebus settles only messages its
own receiver link received (its `$management` update-disposition by lock token is private,
and Service Bus documents that operation for deferred messages). So a message to dead-letter
is re-sent, body and message id intact, to a dead-letter channel this provider controls,
the queue `{channel}-dead-letters` (e.g.
`switchboard-shop-invocations-dead-letters`), with the reason in its
`switchboard-dead-letter-reason` property; the function then returns and the host completes
the original. Read them with `handlers.dead_letters(queue_name)` (deliveries carry
`reason`). Messages Service Bus dead-letters itself stay in the queue's `$DeadLetterQueue`.

HTTP task endpoint (`task(body, headers)`): runs one `task.invoke` POSTed by the
`azure.http` executor and answers 200 once its outcome is on the invocations queue; 400 for
a body that is no invocation of this app (the executor then reports the attempt failed
instead of retrying it); 401 when a function key is configured and the request's
`x-functions-key` header does not match it; 503 when the outcome could not be reported.
Behind the Functions host (`AuthLevel.FUNCTION`) the host checks the key before the function
runs, so configuring `function_key` there is optional; `task_app`, the same as a WSGI
application for serving elsewhere, refuses every request while no key is configured.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol, runtime_checkable

from switchboard.app import App
from switchboard.errors import (
    ConfigError,
    TransientProviderError,
    UnsupportedOperation,
)
from switchboard.executors import QueueExecutor
from switchboard.http_executor import StartResponse, WsgiApp, run_task_request, serve_post
from switchboard.interfaces import Delivery, Queue, QueueCapabilities
from switchboard.plugins import registry
from switchboard.providers.azure.config import AzureConfig
from switchboard.providers.azure.executor import FUNCTION_KEY_HEADER
from switchboard.providers.azure.queue import MAX_DELIVERY_REASON, PRIOR_ATTEMPTS, ServiceBusQueue
from switchboard.runtime import Runtime
from switchboard.serverless import BatchProcessor, ServerlessRuntime

log = logging.getLogger("switchboard.azure")

#: Suffix of the channel that keeps what a trigger dead-letters (see the module docstring).
DEAD_LETTER_CHANNEL_SUFFIX = "-dead-letters"
#: Kept free at the end of an invocation's time for returning.
_MARGIN = 1.0


@runtime_checkable
class TriggerMessage(Protocol):
    """What the Functions host passes a Service Bus trigger: `azure.functions.ServiceBusMessage`
    has these (and more); `application_properties` (or the older `user_properties`) is read
    when present."""

    @property
    def message_id(self) -> str | None: ...

    @property
    def delivery_count(self) -> int | None: ...

    @property
    def lock_token(self) -> str | None: ...

    def get_body(self) -> bytes: ...


#: A plain-dict message: {"body": bytes | str, "message_id", "delivery_count", "lock_token",
#: "application_properties"}, the same fields as `TriggerMessage`.
MessageDict = Mapping[str, Any]


class RetryDelivery(TransientProviderError):
    """Raised by `service_bus` so that the host abandons the message(s) and Service Bus
    delivers them again."""


@dataclass(frozen=True)
class TriggerHandle:
    """A trigger delivery's handle: the lock token the host holds (only the host settles)."""

    lock_token: str | None


class TriggerQueue:
    """A queue as a Service Bus-triggered function sees it: messages arrive from the host,
    which also settles them, so `receive`, `ack`, `release` and `extend` raise
    `UnsupportedOperation`; `send` goes to the queue; `dead_letter` re-sends the message to the
    dead-letter channel `dead_letters()` (see the module docstring)."""

    def __init__(self, queue: Queue, dead_letters: Callable[[], Queue]) -> None:
        self.queue = queue
        self.name = queue.name
        self.max_attempts = queue.max_attempts
        self.capabilities: QueueCapabilities = queue.capabilities
        self._open_dead_letters = dead_letters
        self._dead_letters: Queue | None = None
        self._lock = threading.Lock()

    def send(self, bodies: Sequence[bytes], *, delay: float = 0.0) -> None:
        self.queue.send(bodies, delay=delay)

    def receive(
        self, max_messages: int = 1, *, wait: float = 0.0, lease: float = 30.0
    ) -> list[Delivery]:
        raise UnsupportedOperation("a triggered function receives from the Functions host")

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        raise UnsupportedOperation("the Functions host completes a triggered function's messages")

    def release(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        raise UnsupportedOperation("raise from the function: the Functions host abandons it")

    def extend(self, delivery: Delivery, lease: float) -> None:
        raise UnsupportedOperation("the Functions host renews a triggered function's locks")

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Re-send the message (body and id) with `reason` to `dead_letters()`; the host then
        completes the original when the function returns."""
        target = self.dead_letters()
        if not isinstance(target, ServiceBusQueue):
            raise ConfigError("dead-lettering from a trigger needs the azure provider's queues")
        target.send_dead_letter(delivery.body, message_id=delivery.id, reason=reason)
        log.warning("dead-lettered message %s from %s: %s", delivery.id, self.name, reason)

    def dead_letters(self) -> Queue:
        with self._lock:
            if self._dead_letters is None:
                self._dead_letters = self._open_dead_letters()
            return self._dead_letters

    def close(self) -> None:
        with self._lock:
            dead_letters, self._dead_letters = self._dead_letters, None
        if dead_letters is not None:
            dead_letters.close()


class AzureHandlers:
    """The Azure Functions entry points of one app; build one per process."""

    def __init__(
        self,
        app: App,
        *,
        executor: str | None = None,
        inline_tasks: bool = True,
        timeout: float = 270.0,
        concurrency: int = 8,
        **settings: Any,
    ) -> None:
        """`settings` configure the azure provider as `sb.connect(app, "azure", ...)` does (the
        environment fills the rest); `executor` is chosen as there (default: the tasks
        queue). With `inline_tasks` (the default) a lone awaited task runs in the
        invocations function itself, during the first half of the invocation's time, rather
        than through the executor. `timeout` bounds one invocation's work: keep it below the
        function app's `functionTimeout` (5 minutes by default on the Consumption plan) and
        the trigger's `maxAutoLockRenewalDuration`."""
        self._app = app
        self.timeout = timeout
        self._serverless = ServerlessRuntime(
            app,
            "azure",
            executor=executor,
            inline_tasks=inline_tasks,
            concurrency=concurrency,
            settings=settings,
        )
        self._sources: dict[str, TriggerQueue] = {}
        #: The configured function key, read with the settings on first use (None: none).
        self._function_key: str | None = None
        self._key_read = False
        self._lock = threading.Lock()

    @property
    def runtime(self) -> Runtime:
        """The process's runtime, built on first use."""
        return self._serverless.runtime

    @property
    def processor(self) -> BatchProcessor:
        return self._serverless.processor

    def _configured_key(self) -> str | None:
        with self._lock:
            if not self._key_read:
                config: AzureConfig = registry.config("azure", self._serverless.settings)
                self._function_key, self._key_read = config.function_key, True
            return self._function_key

    def queue_names(self) -> dict[str, str]:
        """The Service Bus queues to bind triggers to, by channel: the invocations queue, and
        the tasks queue when the executor is the default one."""
        return {source.name: _entity(source.queue) for source in self._triggered().values()}

    def dead_letters(self, queue_name: str) -> Queue:
        """The channel holding what the trigger on `queue_name` dead-lettered."""
        return self._source(queue_name).dead_letters()

    def close(self) -> None:
        with self._lock:
            sources, self._sources = list(self._sources.values()), {}
        for source in sources:
            source.close()
        self._serverless.close()

    # -- the Service Bus trigger ---------------------------------------------------------------

    def service_bus(
        self,
        messages: TriggerMessage | MessageDict | Sequence[TriggerMessage | MessageDict],
        queue_name: str,
    ) -> None:
        """Process what a Service Bus trigger on `queue_name` (the queue's name as bound, or
        its channel name) was given; raise `RetryDelivery` if any of it must be retried."""
        deadline = time.monotonic() + self.timeout - _MARGIN
        source = self._source(queue_name)
        batch = [messages] if _is_single(messages) else list(messages)  # type: ignore[arg-type]
        deliveries: list[Delivery] = []
        for message in batch:
            delivery = trigger_delivery(message)  # type: ignore[arg-type]
            if delivery.attempt > source.max_attempts:
                # A delayed release's copy counting its original's deliveries, which the
                # queue's MaxDeliveryCount does not see.
                source.dead_letter(
                    delivery,
                    f"{MAX_DELIVERY_REASON}: delivery {delivery.attempt} would exceed "
                    f"max_attempts {source.max_attempts}",
                )
                continue
            deliveries.append(delivery)
        if not deliveries:
            return
        failed = self.processor.process(source, deliveries, deadline=deadline)
        if failed:
            raise RetryDelivery(
                f"{len(failed)} of {len(deliveries)} messages from {queue_name} must be "
                f"delivered again: {', '.join(d.id for d in failed)}"
            )

    # -- the azure.http task endpoint ----------------------------------------------------------

    def task(self, body: bytes, headers: Mapping[str, str] | None = None) -> int:
        """Run one `task.invoke` POSTed by the `azure.http` executor; returns the status."""
        runtime = self.runtime
        key = self._configured_key()
        if key and not key_matches(headers, key):
            log.error("refusing a task request: missing or wrong %s", FUNCTION_KEY_HEADER)
            return HTTPStatus.UNAUTHORIZED
        return run_task_request(runtime.task_runner.run, body)

    def task_app(
        self, environ: Mapping[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """`task` as a WSGI application; refuses everything while no function key is set."""

        def respond(body: bytes, headers: Mapping[str, str]) -> int:
            if not self._configured_key():
                log.error("refusing a task request: no function_key is configured")
                return HTTPStatus.UNAUTHORIZED
            return self.task(body, headers)

        return serve_post(environ, start_response, respond)

    # -- internals -------------------------------------------------------------------------------

    def _triggered(self) -> dict[str, TriggerQueue]:
        """The sources a trigger may name, by channel name."""
        runtime = self.runtime
        with self._lock:
            if not self._sources:
                queues = [runtime.invocations]
                if isinstance(runtime.executor, QueueExecutor):
                    queues.append(runtime.executor.queue)
                for queue in queues:
                    self._sources[queue.name] = TriggerQueue(
                        queue, _dead_letter_opener(runtime, queue)
                    )
            return self._sources

    def _source(self, queue_name: str) -> TriggerQueue:
        sources = self._triggered()
        wanted = queue_name.casefold()
        for source in sources.values():
            if wanted in (source.name.casefold(), _entity(source.queue).casefold()):
                return source
        raise ConfigError(
            f"{queue_name!r} is not a queue of app {self._app.name!r}; bind the trigger to one "
            f"of {sorted(_entity(s.queue) for s in sources.values())}"
        )


def trigger_delivery(message: TriggerMessage | MessageDict) -> Delivery:
    """The `Delivery` a trigger's message stands for, as `ServiceBusQueue.receive` would give
    the same message (body, id, attempt)."""
    if isinstance(message, Mapping):
        raw = message.get("body", b"")
        body = raw.encode() if isinstance(raw, str) else bytes(raw)
        message_id, count = message.get("message_id"), message.get("delivery_count")
        lock_token, properties = message.get("lock_token"), message.get("application_properties")
    else:
        body = bytes(message.get_body())
        message_id, count, lock_token = (
            message.message_id,
            message.delivery_count,
            message.lock_token,
        )
        properties = getattr(message, "application_properties", None)
        if not properties:
            properties = getattr(message, "user_properties", None)
    prior = _prior_attempts(properties)
    return Delivery(
        body=body,
        id=str(message_id or lock_token or ""),
        attempt=prior + max(int(count or 1), 1),
        handle=TriggerHandle(str(lock_token) if lock_token else None),
    )


def key_matches(headers: Mapping[str, str] | None, key: str) -> bool:
    """Whether `headers` carry `key` in `x-functions-key` (header names in any case)."""
    given = ""
    for name, value in (headers or {}).items():
        if name.lower() == FUNCTION_KEY_HEADER:
            given = value
            break
    return bool(given) and hmac.compare_digest(given.encode(), key.encode())


def task_endpoint(run_task: Callable[[bytes], None], function_key: str) -> WsgiApp:
    """A WSGI app running invocations POSTed with `function_key` in `x-functions-key` by
    `run_task`, e.g. `ExecutorHost.run_task`."""
    if not function_key:
        raise ConfigError("a task endpoint needs a function key")

    def respond(body: bytes, headers: Mapping[str, str]) -> int:
        if not key_matches(headers, function_key):
            return HTTPStatus.UNAUTHORIZED
        return run_task_request(run_task, body)

    def app(environ: Mapping[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return serve_post(environ, start_response, respond)

    return app


def _dead_letter_opener(runtime: Runtime, queue: Queue) -> Callable[[], Queue]:
    return lambda: runtime.broker.queue(
        queue.name + DEAD_LETTER_CHANNEL_SUFFIX, max_attempts=queue.max_attempts
    )


def _entity(queue: Queue) -> str:
    return str(getattr(queue, "entity", queue.name))


def _is_single(messages: object) -> bool:
    return isinstance(messages, Mapping) or not isinstance(messages, Sequence)


def _prior_attempts(properties: Any) -> int:
    if not isinstance(properties, Mapping):
        return 0
    value = properties.get(PRIOR_ATTEMPTS, properties.get(PRIOR_ATTEMPTS.encode()))
    try:
        return max(int(value), 0) if value is not None else 0
    except (TypeError, ValueError):
        return 0
