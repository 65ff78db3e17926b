"""The serverless entry points (`GcpHandlers`) and the `gcp.http` executor, end to end on the
emulators.

Pub/Sub push is played faithfully from what really sits in the app's subscriptions: a
`PushDriver` pulls each message from the emulator, wraps it exactly as Pub/Sub wraps a push
request (or as Eventarc wraps a CloudEvent), hands it to the endpoint, and acknowledges it
on 2xx (or on a CloudEvent function that returns) and nacks it otherwise, as push does.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import switchboard as sb
from switchboard.errors import ConfigError, ProviderError, TransientProviderError
from switchboard.interfaces import ExecutorHost
from switchboard.providers.gcp import executor as http_module
from switchboard.providers.gcp._google import pubsub_clients
from switchboard.providers.gcp.config import GcpConfig
from switchboard.providers.gcp.executor import HttpExecutor
from switchboard.providers.gcp.handlers import (
    MESSAGE_PUBLISHED,
    GcpHandlers,
    RetryDelivery,
)
from switchboard.providers.gcp.queue import PubSubBroker
from tests.emulators.wsgi import LocalServer

RUN_TIMEOUT = 60.0


@pytest.fixture
def settings(gcp_config: GcpConfig) -> dict[str, Any]:
    """The provider settings a deployed function would be given (here: the emulators)."""
    return {
        field.name: getattr(gcp_config, field.name)
        for field in dataclasses.fields(gcp_config)
        if getattr(gcp_config, field.name) is not None
    }


def _app() -> sb.App:
    app = sb.App(f"fn-{uuid.uuid4().hex[:10]}")

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.workflow
    def flow(ctx: sb.Context, n: int) -> dict[str, Any]:
        a = add(n, 1)
        b, c = ctx.parallel(ctx.call(add, a, 2), ctx.call(add, a, 3))
        ctx.sleep(1.0)
        approval = ctx.wait_for_event("go")
        return {"sum": add(b, c), "approval": approval}

    return app


class CloudEvent:
    """What functions-framework hands a CloudEvent function: attributes by `event[name]`,
    the decoded JSON payload as `event.data` (the shape of `cloudevents.http.CloudEvent`)."""

    def __init__(self, attributes: dict[str, str], data: dict[str, Any]) -> None:
        self._attributes = attributes
        self.data = data

    def __getitem__(self, name: str) -> str:
        return self._attributes[name]


def push_request(subscription: str, received: Any) -> dict[str, Any]:
    """A push request's JSON for a pulled message, field for field as Pub/Sub sends it."""
    message = received.message
    published = message.publish_time.isoformat().replace("+00:00", "Z")
    body: dict[str, Any] = {
        "message": {
            "data": base64.b64encode(bytes(message.data)).decode(),
            "attributes": dict(message.attributes),
            "messageId": message.message_id,
            "message_id": message.message_id,
            "publishTime": published,
            "publish_time": published,
        },
        "subscription": subscription,
    }
    if received.delivery_attempt:
        body["deliveryAttempt"] = received.delivery_attempt
    return body


def cloud_event_for(subscription: str, received: Any) -> CloudEvent:
    """The CloudEvent Eventarc makes of a message published to a channel's topic."""
    request = push_request(subscription, received)
    topic = subscription.replace("/subscriptions/", "/topics/")
    message = {k: v for k, v in request["message"].items() if "_" not in k}
    return CloudEvent(
        {
            "specversion": "1.0",
            "id": received.message.message_id,
            "source": f"//pubsub.googleapis.com/{topic}",
            "type": MESSAGE_PUBLISHED,
            "datacontenttype": "application/json",
        },
        {"message": message, "subscription": "projects/p/subscriptions/eventarc-trigger"},
    )


class PushDriver:
    """Plays Pub/Sub push for one app's channels (and their delay companions)."""

    def __init__(
        self,
        broker: PubSubBroker,
        config: GcpConfig,
        app: sb.App,
        deliver: Callable[[str, Any], bool],
    ) -> None:
        self._broker = broker
        self._deliver = deliver
        base = f"projects/{config.project}/subscriptions/{config.prefix}-{app.name}"
        self.subscriptions = [
            f"{base}-{channel}{suffix}"
            for channel in ("invocations", "tasks")
            for suffix in ("", "-delay")
        ]
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(16)
        self.pushed = 0
        self.refused = 0
        self._threads = [
            threading.Thread(target=self._loop, args=(s,), daemon=True) for s in self.subscriptions
        ]

    def __enter__(self) -> PushDriver:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._pool.shutdown(wait=True)

    def _loop(self, subscription: str) -> None:
        while not self._stop.is_set():
            pulled = self._broker.pull(subscription, 10, timeout=0.5)
            if not pulled:
                time.sleep(0.05)
                continue
            self._broker.modify_ack_deadline(subscription, [r.ack_id for r in pulled], 60)
            for received in pulled:
                self._pool.submit(self._push, subscription, received)

    def _push(self, subscription: str, received: Any) -> None:
        ok = self._deliver(subscription, received)
        self.pushed += 1
        if ok:
            self._broker.acknowledge(subscription, [received.ack_id])
        else:
            self.refused += 1
            self._broker.modify_ack_deadline(subscription, [received.ack_id], 0)


def _post(url: str, body: bytes, method: str = "POST") -> int:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _drive_runs(client: sb.Client, runs: int) -> list[Any]:
    run_ids = [client.start("flow", n=i) for i in range(runs)]
    for run_id in run_ids:
        client.signal(run_id, "go", {"run": run_id})
    return [client.wait(run_id, timeout=RUN_TIMEOUT).output for run_id in run_ids]


def _check(outputs: list[Any], runs: int) -> None:
    assert [output["sum"] for output in outputs] == [2 * i + 7 for i in range(runs)]


# -- Pub/Sub push --------------------------------------------------------------------------


@pytest.fixture
def push_setup(
    settings: dict[str, Any], broker: PubSubBroker, gcp_config: GcpConfig
) -> Iterator[tuple[sb.App, sb.Client, GcpHandlers, LocalServer]]:
    app = _app()
    handlers = GcpHandlers(app, timeout=30.0, **settings)
    server = LocalServer(handlers.push_app)
    client = sb.connect(app, "gcp", **settings)  # workers=0: only the endpoint runs things
    yield app, client, handlers, server
    client.close()
    server.stop()
    handlers.close()


def test_push_endpoint_drives_workflows_to_completion(
    push_setup: tuple[sb.App, sb.Client, GcpHandlers, LocalServer],
    broker: PubSubBroker,
    gcp_config: GcpConfig,
) -> None:
    app, client, _, server = push_setup

    def deliver(subscription: str, received: Any) -> bool:
        body = json.dumps(push_request(subscription, received)).encode()
        return 200 <= _post(server.url, body) < 300

    with PushDriver(broker, gcp_config, app, deliver) as driver:
        outputs = _drive_runs(client, 3)
        # A message that is not ours: dead-lettered by the endpoint, which then answers 2xx.
        client.runtime.invocations.send([b"\x00 not a switchboard message"])
        dead = client.runtime.invocations.dead_letters().receive(wait=20, lease=30)
    _check(outputs, 3)
    assert outputs[0]["approval"]["run"]
    assert [d.body for d in dead] == [b"\x00 not a switchboard message"]
    assert dead[0].reason and "not JSON" in dead[0].reason
    client.runtime.invocations.dead_letters().ack(dead)
    assert driver.pushed > 0


def test_push_requests_that_no_retry_can_fix_are_refused(
    push_setup: tuple[sb.App, sb.Client, GcpHandlers, LocalServer], gcp_config: GcpConfig
) -> None:
    app, _, handlers, server = push_setup
    ours = f"projects/{gcp_config.project}/subscriptions/{gcp_config.prefix}-{app.name}"
    message = {"data": base64.b64encode(b"{}").decode(), "attributes": {}, "messageId": "1"}
    assert handlers.push({"message": message}) == 400
    assert handlers.push({"message": message, "subscription": "projects/x/subscriptions/y"}) == 400
    assert handlers.push({"message": message, "subscription": f"{ours}-invocations-dlq"}) == 400
    bad_data = {**message, "data": "%%%"}
    assert handlers.push({"message": bad_data, "subscription": f"{ours}-invocations"}) == 400
    assert _post(server.url, b"not json") == 400
    assert _post(server.url, b"[]") == 400
    assert _post(server.url, b"", method="GET") == 405


def test_a_push_past_max_attempts_goes_to_the_dead_letter_channel(
    push_setup: tuple[sb.App, sb.Client, GcpHandlers, LocalServer], gcp_config: GcpConfig
) -> None:
    app, client, handlers, _ = push_setup
    subscription = (
        f"projects/{gcp_config.project}/subscriptions/{gcp_config.prefix}-{app.name}-tasks"
    )
    request = {
        "message": {
            "data": base64.b64encode(b"poison").decode(),
            "attributes": {"sb-id": "poison-1"},
            "messageId": "77",
        },
        "subscription": subscription,
        "deliveryAttempt": 99,
    }
    assert handlers.push(request) == 204
    # Attempts used before a delayed release travel in `sb-attempts`, as on the pull path.
    released = {
        "message": {
            "data": base64.b64encode(b"poison too").decode(),
            "attributes": {"sb-id": "poison-2", "sb-attempts": "9"},
            "messageId": "78",
        },
        "subscription": subscription,
        "deliveryAttempt": 2,
    }
    assert handlers.push(released) == 204
    tasks = client.runtime.channel("tasks")
    dead = tasks.dead_letters().receive(2, wait=20, lease=30)
    if len(dead) < 2:
        dead += tasks.dead_letters().receive(2, wait=20, lease=30)
    assert sorted((d.body, d.id) for d in dead) == [
        (b"poison", "poison-1"),
        (b"poison too", "poison-2"),
    ]
    assert all(d.reason and "max_attempts" in d.reason for d in dead)
    tasks.dead_letters().ack(dead)


def test_the_emulator_pushes_to_the_endpoint(
    settings: dict[str, Any], gcp_config: GcpConfig
) -> None:
    """Real push: the app's channels are push subscriptions, and the Pub/Sub emulator itself
    POSTs every message to the endpoint and retries what it does not acknowledge."""
    if gcp_config.pubsub_emulator_host is None:
        pytest.skip("real Pub/Sub cannot push to 127.0.0.1")
    app = _app()
    handlers = GcpHandlers(app, timeout=30.0, **settings)
    answers: list[str] = []

    def endpoint(environ: Any, start_response: Any) -> Any:
        def recording(status: str, headers: Any) -> Any:
            answers.append(status)
            return start_response(status, headers)

        return handlers.push_app(environ, recording)

    server = LocalServer(endpoint)
    publisher, subscriber = pubsub_clients(gcp_config)
    project = f"projects/{gcp_config.project}"
    for channel in ("invocations", "tasks"):
        base = f"{gcp_config.prefix}-{app.name}-{channel}"
        for suffix in ("", "-dlq", "-delay"):
            publisher.create_topic(request={"name": f"{project}/topics/{base}{suffix}"})
        for suffix, dead_letter in (("", True), ("-delay", False)):
            request: dict[str, Any] = {
                "name": f"{project}/subscriptions/{base}{suffix}",
                "topic": f"{project}/topics/{base}{suffix}",
                "push_config": {"push_endpoint": server.url},
                "ack_deadline_seconds": 60,
            }
            if dead_letter:
                request["dead_letter_policy"] = {
                    "dead_letter_topic": f"{project}/topics/{base}-dlq",
                    "max_delivery_attempts": 10,
                }
            subscriber.create_subscription(request=request)
    client = sb.connect(app, "gcp", **settings)  # finds the push subscriptions in place
    try:
        outputs = _drive_runs(client, 3)
        client.runtime.invocations.send([b"[1, 2, 3]"])
        dead = client.runtime.invocations.dead_letters().receive(wait=20, lease=30)
    finally:
        client.close()
        server.stop()
        handlers.close()
        publisher.stop()
        subscriber.close()
    _check(outputs, 3)
    assert [d.body for d in dead] == [b"[1, 2, 3]"]
    assert dead[0].reason and "expected a JSON object" in dead[0].reason
    assert answers and all(answer.startswith("204") for answer in answers), set(answers)


# -- CloudEvent functions ------------------------------------------------------------------


def test_cloud_event_function_drives_workflows_to_completion(
    settings: dict[str, Any], broker: PubSubBroker, gcp_config: GcpConfig
) -> None:
    app = _app()
    handlers = GcpHandlers(app, timeout=30.0, **settings)
    on_message = handlers.cloud_event  # what `@functions_framework.cloud_event` decorates
    retries = 0

    def deliver(subscription: str, received: Any) -> bool:
        nonlocal retries
        try:
            on_message(cloud_event_for(subscription, received))
        except RetryDelivery:
            retries += 1
            return False
        return True

    client = sb.connect(app, "gcp", **settings)
    try:
        with PushDriver(broker, gcp_config, app, deliver):
            outputs = _drive_runs(client, 3)
            client.runtime.invocations.send([b'{"v": 1, "kind": "run.start"}'])
            dead = client.runtime.invocations.dead_letters().receive(wait=20, lease=30)
        _check(outputs, 3)
        assert [d.body for d in dead] == [b'{"v": 1, "kind": "run.start"}']
        assert dead[0].reason and "run.start field" in dead[0].reason
        client.runtime.invocations.dead_letters().ack(dead)
        # Not a Pub/Sub event, or not one of ours: dropped (a retry could not help).
        on_message(CloudEvent({"type": "google.cloud.storage.object.v1.finalized", "id": "1"}, {}))
        foreign = CloudEvent(
            {"type": MESSAGE_PUBLISHED, "id": "2", "source": "//pubsub.googleapis.com/x"},
            {"message": {"data": "", "attributes": {}, "messageId": "2"}},
        )
        on_message(foreign)
    finally:
        client.close()
        handlers.close()


# -- the gcp.http executor and its task endpoint --------------------------------------------


def test_http_executor_runs_tasks_on_the_task_endpoint(settings: dict[str, Any]) -> None:
    app = _app()
    service = GcpHandlers(app, **settings)  # the Cloud Run service behind task_url
    requests: list[str] = []

    def task_app(environ: Any, start_response: Any) -> Any:
        requests.append(environ["REQUEST_METHOD"])
        return service.task_app(environ, start_response)

    server = LocalServer(task_app)
    client = sb.connect(
        app,
        "gcp",
        executor="gcp.http",
        workers=2,
        inline_tasks=False,
        task_url=server.url,
        **settings,
    )
    try:
        assert isinstance(client.runtime.executor, HttpExecutor)
        outputs = _drive_runs(client, 3)
        _check(outputs, 3)
        assert requests == ["POST"] * 3 * 4  # every task of every run went over HTTP
        assert _post(server.url, b'{"v": 1, "kind": "task.invoke"}') == 400
        assert _post(server.url, b"", method="GET") == 405
    finally:
        client.close()
        server.stop()
        service.close()


def test_a_refused_task_request_fails_the_attempt(settings: dict[str, Any]) -> None:
    """A 4xx from the task URL is reported as the attempt's error, so the run does not hang."""

    def refuse(environ: Any, start_response: Any) -> list[bytes]:
        start_response("403 Forbidden", [("Content-Type", "text/plain")])
        return [b"caller lacks roles/run.invoker"]

    app = sb.App(f"fn-{uuid.uuid4().hex[:10]}")

    @app.task
    def work() -> str:
        return "never"

    @app.workflow
    def run(ctx: sb.Context) -> str:
        try:
            return work()
        except sb.TaskFailed as exc:
            return f"{exc.error_type}: {exc.message}"

    server = LocalServer(refuse)
    client = sb.connect(
        app,
        "gcp",
        executor="gcp.http",
        workers=1,
        inline_tasks=False,
        task_url=server.url,
        **settings,
    )
    try:
        output = client.wait(client.start("run"), timeout=RUN_TIMEOUT).output
    finally:
        client.close()
        server.stop()
    assert output.startswith("ProviderError") and "403" in output
    assert "roles/run.invoker" in output


def _host() -> ExecutorHost:
    def no_queue(name: str) -> Any:
        raise AssertionError("not used")

    return ExecutorHost("app", lambda body: None, no_queue, 1)


def test_http_executor_classifies_answers_and_sends_an_id_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[str, str | None]] = []
    answers = iter(["202 Accepted", "429 Too Many Requests", "503 Service Unavailable", "404 Nf"])

    def app(environ: Any, start_response: Any) -> list[bytes]:
        seen.append((environ["REQUEST_METHOD"], environ.get("HTTP_AUTHORIZATION")))
        start_response(next(answers), [("Content-Type", "text/plain")])
        return [b"answer"]

    fetched: list[str] = []

    def fetch(audience: str) -> str:
        fetched.append(audience)
        return "id-token"

    monkeypatch.setattr(http_module, "_fetch_id_token", fetch)
    server = LocalServer(app)
    config = GcpConfig(project="p", task_url=server.url, task_auth=True)
    executor = HttpExecutor(config, _host())
    try:
        assert executor.post(b"{}") == 202
        with pytest.raises(TransientProviderError, match="429"):
            executor.post(b"{}")
        with pytest.raises(TransientProviderError, match="503"):
            executor.post(b"{}")
        with pytest.raises(ProviderError, match="404") as refused:
            executor.post(b"{}")
        assert not isinstance(refused.value, TransientProviderError)
    finally:
        executor.close()
        executor.close()  # safe twice
        server.stop()
    assert seen == [("POST", "Bearer id-token")] * 4
    assert fetched == [server.url]  # fetched once, then reused
    down = HttpExecutor(GcpConfig(project="p", task_url=server.url), _host())
    with pytest.raises(TransientProviderError):
        down.post(b"{}")  # nothing listens there any more
    down.close()
    assert executor.capabilities.max_payload_bytes <= 32 * 1024 * 1024


def test_http_executor_needs_a_task_url() -> None:
    with pytest.raises(ConfigError, match="task_url"):
        HttpExecutor(GcpConfig(project="p"), _host())
