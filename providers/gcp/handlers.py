"""Serverless entry points on Google Cloud: Pub/Sub push, CloudEvent functions, and the
HTTP endpoint of the `gcp.http` executor.

Build one `GcpHandlers` per process, at module level, and point the platform at its
methods; the runtime (`workers=0`: no consumers, no threads until a message arrives) is
built on the first call and kept, so a warm instance resumes live runs without replaying:

    handlers = GcpHandlers(app)                  # settings as for sb.connect(app, "gcp", ...)
    application = handlers.push_app              # WSGI: Cloud Run behind a push subscription
    on_message = handlers.cloud_event            # functions-framework: @cloud_event target
    tasks = handlers.task_app                    # WSGI: the service behind task_url

- `push(request)` takes a push request's JSON (`{"message": {"data", "attributes",
  "messageId", ...}, "subscription": ..., "deliveryAttempt"?: n}`) and returns the HTTP
  status: 204 acknowledges, 503 asks Pub/Sub to push again (its retry policy spaces the
  attempts), 400 refuses a request that is not a push from one of this app's
  subscriptions. `push_app` is the same as a WSGI app.
- `cloud_event(event)` takes an Eventarc / functions-framework CloudEvent of type
  `google.cloud.pubsub.topic.v1.messagePublished` and raises `RetryDelivery` to have it
  delivered again; the channel is told by the event's `source` (its topic), since the
  trigger's subscription is named by Eventarc.
- `task(body)` / `task_app` run one `task.invoke` POSTed by the `gcp.http` executor and
  answer 200 once its outcome is on the invocations queue; 400 for a body that is no
  invocation of this app (the executor then reports the attempt failed instead of
  retrying it), 503 when the outcome could not be reported.

Which queue a message came from is told by its subscription or topic name
(`{prefix}-{app}-invocations`, `{prefix}-{app}-tasks`, and their `-delay` companions):
push each of them to the endpoint. Messages are handed to the core `BatchProcessor`, which
runs the engine for the invocations queue and tasks for the tasks queue; malformed ones are
dead-lettered there (published to the `-dlq` topic, then acknowledged). A message pushed
from a `-delay` subscription is passed on to its channel once due: within the request if
it is due before `timeout`, else the endpoint asks for it again later, so a delay is never
cut short, but may run late by up to the subscription's retry backoff (set the push
subscription's retry policy, e.g. 10 s to 60 s).

Tasks: with the default executor they travel on the `-tasks` channel, pushed to this same
endpoint (or another function of the app). The `gcp.http` executor POSTs from background
threads, which a request-scoped function may freeze once it has answered: use it where the
engine runs in a long-lived process (`switchboard worker`, Cloud Run with CPU always
allocated), not from inside a push or CloudEvent function.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

from switchboard.app import App
from switchboard.errors import (
    ConfigError,
    ProviderError,
    SwitchboardError,
    TransientProviderError,
)
from switchboard.executors import TASKS_CHANNEL
from switchboard.http_executor import StartResponse, WsgiApp, run_task_request, serve_post
from switchboard.runtime import Runtime
from switchboard.serverless import BatchProcessor, ServerlessRuntime

log = logging.getLogger("switchboard.gcp")

MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
_PUBSUB_SOURCE = "//pubsub.googleapis.com/"
ACK, RETRY, BAD_REQUEST = (
    HTTPStatus.NO_CONTENT,
    HTTPStatus.SERVICE_UNAVAILABLE,
    HTTPStatus.BAD_REQUEST,
)
#: Kept free at the end of a request's time for answering.
_MARGIN = 1.0


class RetryDelivery(TransientProviderError):
    """Raised by `cloud_event` so that the platform delivers the event again."""


class BadRequest(SwitchboardError):
    """A request that no retry can make right: not a push from one of the app's channels."""


class GcpHandlers:
    """The serverless entry points of one app; build one per process."""

    def __init__(
        self,
        app: App,
        *,
        executor: str | None = None,
        inline_tasks: bool = True,
        timeout: float = 300.0,
        concurrency: int = 8,
        **settings: Any,
    ) -> None:
        """`settings` configure the gcp provider as `sb.connect(app, "gcp", ...)` does (the
        environment fills the rest); `executor` is chosen as there (default: the tasks
        channel). With `inline_tasks` (the default) a lone awaited task runs in the
        invocations endpoint itself, during the first half of the request's time, rather
        than through the executor. `timeout` bounds one request's work: keep it below the
        push subscription's ack deadline (at most 600 s) or the function's timeout."""
        self._app = app
        self.timeout = timeout
        self._serverless = ServerlessRuntime(
            app,
            "gcp",
            executor=executor,
            inline_tasks=inline_tasks,
            concurrency=concurrency,
            settings=settings,
        )

    @property
    def runtime(self) -> Runtime:
        """The process's runtime, built on first use."""
        return self._serverless.runtime

    @property
    def processor(self) -> BatchProcessor:
        return self._serverless.processor

    def close(self) -> None:
        self._serverless.close()

    # -- Pub/Sub push ------------------------------------------------------------------------

    def push(self, request: Mapping[str, Any]) -> int:
        """Handle one push request's JSON; returns the HTTP status to answer with."""
        try:
            message = request.get("message")
            subscription = request.get("subscription")
            if not isinstance(message, Mapping) or not isinstance(subscription, str):
                raise BadRequest("expected {'message': {...}, 'subscription': 'projects/...'}")
            attempt = request.get("deliveryAttempt", message.get("deliveryAttempt"))
            done = self._handle(subscription, message, attempt)
        except BadRequest as exc:
            log.error("refusing a push request: %s", exc)
            return BAD_REQUEST
        except ProviderError as exc:
            log.warning("push delivery will be retried: %s", exc)
            return RETRY
        return ACK if done else RETRY

    def push_app(
        self, environ: Mapping[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """`push` as a WSGI application (POST the push request's JSON)."""

        def respond(body: bytes) -> int:
            try:
                request = json.loads(body)
            except ValueError:
                log.error("refusing a push request: the body is not JSON")
                return BAD_REQUEST
            if not isinstance(request, Mapping):
                log.error("refusing a push request: the body is not a JSON object")
                return BAD_REQUEST
            return self.push(request)

        return serve_post(environ, start_response, lambda body, _headers: respond(body))

    # -- CloudEvent functions ----------------------------------------------------------------

    def cloud_event(self, cloud_event: Any) -> None:
        """A functions-framework CloudEvent function for Pub/Sub-triggered functions."""
        event_type = _event_attribute(cloud_event, "type")
        if event_type != MESSAGE_PUBLISHED:
            log.error(
                "ignoring a CloudEvent of type %r (expected %s)", event_type, MESSAGE_PUBLISHED
            )
            return
        data = getattr(cloud_event, "data", None)
        if isinstance(data, bytes | str):
            data = json.loads(data)
        message = data.get("message") if isinstance(data, Mapping) else None
        source = str(_event_attribute(cloud_event, "source") or "")
        resource = source.removeprefix(_PUBSUB_SOURCE) if source else ""
        if not resource and isinstance(data, Mapping):
            resource = str(data.get("subscription") or "")
        try:
            if not isinstance(message, Mapping):
                raise BadRequest("the event's data holds no Pub/Sub message")
            done = self._handle(resource, message, message.get("deliveryAttempt"))
        except BadRequest as exc:
            # Delivering it again cannot help: log it and let it go.
            log.error("dropping CloudEvent %s: %s", _event_attribute(cloud_event, "id"), exc)
            return
        if not done:
            raise RetryDelivery(f"CloudEvent {_event_attribute(cloud_event, 'id')}: retry later")

    # -- the gcp.http task endpoint ----------------------------------------------------------

    def task(self, body: bytes) -> int:
        """Run one `task.invoke` POSTed by the `gcp.http` executor; returns the status."""
        return run_task_request(self.runtime.task_runner.run, body)

    def task_app(
        self, environ: Mapping[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """`task` as a WSGI application."""
        return serve_post(environ, start_response, lambda body, _headers: self.task(body))

    # -- shared ------------------------------------------------------------------------------

    def _handle(self, resource: str, message: Mapping[str, Any], attempt: Any) -> bool:
        """Process one pushed message; True when it may be acknowledged."""
        deadline = time.monotonic() + self.timeout
        runtime = self.runtime
        route_of = getattr(runtime.broker, "route", None)
        if route_of is None:
            raise ConfigError("GcpHandlers need the gcp provider's Pub/Sub queues")
        route = route_of(resource)
        tasks_name = f"{runtime.app.name}-{TASKS_CHANNEL}"
        if route is None or route[0] not in (runtime.invocations.name, tasks_name):
            raise BadRequest(f"{resource!r} is not a channel of app {runtime.app.name!r}")
        name, role = route
        if role == "dlq":
            raise BadRequest(f"{resource!r} holds dead letters: read them, do not push them")
        queue = (
            runtime.invocations
            if name == runtime.invocations.name
            else runtime.channel(TASKS_CHANNEL)
        )
        data, attributes, message_id = _message_parts(message)
        if role == "delay":
            remaining = queue.forward_delayed(data, attributes)  # type: ignore[attr-defined]
            if remaining <= 0:
                return True
            if time.monotonic() + remaining > deadline - _MARGIN:
                return False
            time.sleep(remaining)
            return bool(queue.forward_delayed(data, attributes) <= 0)  # type: ignore[attr-defined]
        delivery = queue.pushed(  # type: ignore[attr-defined]
            data,
            attributes,
            message_id,
            delivery_attempt=_attempt(attempt),
            subscription=resource,
        )
        if delivery is None:
            return True  # past max_attempts: already on the dead-letter topic
        failed = self.processor.process(queue, [delivery], deadline=deadline - _MARGIN)
        return not failed


def task_endpoint(run_task: Callable[[bytes], None]) -> WsgiApp:
    """A WSGI app running POSTed invocations with `run_task`, e.g. `ExecutorHost.run_task`."""

    def app(environ: Mapping[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return serve_post(
            environ, start_response, lambda body, _headers: run_task_request(run_task, body)
        )

    return app


def _message_parts(message: Mapping[str, Any]) -> tuple[bytes, dict[str, str], str]:
    try:
        data = base64.b64decode(message.get("data") or "", validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise BadRequest(f"message data is not base64: {exc}") from exc
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        raise BadRequest("message attributes must be a JSON object")
    message_id = message.get("messageId") or message.get("message_id") or ""
    return data, {str(k): str(v) for k, v in attributes.items()}, str(message_id)


def _attempt(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _event_attribute(event: Any, name: str) -> Any:
    """A CloudEvent attribute (`event["type"]`, as cloudevents' CloudEvent offers it)."""
    try:
        return event[name]
    except (KeyError, TypeError):
        return getattr(event, name, None)
