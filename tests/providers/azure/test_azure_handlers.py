"""The Azure Functions entry points, fed as the Functions host feeds them.

Service Bus trigger: the messages really sit in the AMQP test broker; the test receives them
through azure-servicebus in peek-lock mode, wraps each as the host hands it to a Python
function (`get_body()`, `message_id`, `delivery_count` counted from 1, `lock_token`,
`application_properties`), calls the handler, then completes the message when the handler
returned and abandons it when it raised, as the host does (autoCompleteMessages).

HTTP: the `azure.http` executor POSTs to `AzureHandlers.task_app` served by wsgiref on
127.0.0.1, function key checked.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import switchboard as sb
from switchboard.errors import ProviderError, TransientProviderError
from switchboard.interfaces import ExecutorHost
from switchboard.providers.azure.config import AzureConfig
from switchboard.providers.azure.executor import HttpExecutor
from switchboard.providers.azure.handlers import (
    AzureHandlers,
    RetryDelivery,
    TriggerMessage,
    trigger_delivery,
)
from switchboard.providers.azure.queue import PRIOR_ATTEMPTS
from tests.emulators.wsgi import LocalServer

KEY = "test-function-key"


@dataclass
class HostMessage:
    """A Service Bus message as the Functions host hands it to a Python trigger (the part of
    `azure.functions.ServiceBusMessage` Switchboard reads)."""

    body: bytes
    message_id: str | None
    delivery_count: int
    lock_token: str
    application_properties: dict[str, Any] = field(default_factory=dict)

    def get_body(self) -> bytes:
        return self.body

    @classmethod
    def of(cls, received: Any) -> HostMessage:
        """Wrap a message received with azure-servicebus. The host (the .NET SDK) counts
        deliveries from 1; azure-servicebus shows the AMQP header's count, from 0."""
        properties = {
            (key.decode() if isinstance(key, bytes) else str(key)): value
            for key, value in (received.application_properties or {}).items()
        }
        return cls(
            body=b"".join(received.body),
            message_id=received.message_id,
            delivery_count=received.delivery_count + 1,
            lock_token=str(received.lock_token),
            application_properties=properties,
        )


@pytest.fixture
def settings(tables_connection_string: str, servicebus: Any) -> Iterator[dict[str, Any]]:
    table = "sb" + uuid.uuid4().hex[:12]
    yield {
        "tables_connection_string": tables_connection_string,
        "servicebus_connection_string": servicebus.connection_string,
        "table": table,
        "prefix": "fn" + uuid.uuid4().hex[:8],
    }
    from azure.data.tables import TableServiceClient

    with TableServiceClient.from_connection_string(tables_connection_string) as service:
        service.delete_table(table)


class FunctionsHost:
    """Plays the Functions host for Service Bus triggers: peek-lock receive, call the
    function, complete on return, abandon on an exception."""

    def __init__(self, client: Any, closing: list[threading.Thread]) -> None:
        self.client = client
        self._closing = closing
        self._receivers: dict[str, Any] = {}
        self.raised: list[BaseException] = []

    def receiver(self, queue_name: str) -> Any:
        if queue_name not in self._receivers:
            receiver = self.client.get_queue_receiver(queue_name, prefetch_count=0)
            self._receivers[queue_name] = receiver.__enter__()  # opens the link
        return self._receivers[queue_name]

    def send(self, queue_name: str, body: bytes) -> None:
        from azure.servicebus import ServiceBusMessage

        # keep_alive=0: no keep-alive thread, whose 1 s sleep the sender's close waits out.
        with self.client.get_queue_sender(queue_name, keep_alive=0) as sender:
            sender.send_messages(ServiceBusMessage(body, message_id=uuid.uuid4().hex))

    def trigger(
        self, handlers: AzureHandlers, queue_name: str, *, batch: bool, wait: float = 0.2
    ) -> int:
        """Deliver what is on `queue_name` to the function once; returns how many messages."""
        receiver = self.receiver(queue_name)
        received = receiver.receive_messages(max_message_count=10, max_wait_time=wait)
        groups = [received] if batch and received else [[m] for m in received]
        for group in groups:
            wrapped = [HostMessage.of(m) for m in group]
            try:
                handlers.service_bus(wrapped if batch else wrapped[0], queue_name)
            except RetryDelivery as exc:
                self.raised.append(exc)
                for message in group:
                    receiver.abandon_message(message)
            else:
                for message in group:
                    receiver.complete_message(message)
        return len(received)

    def close(self) -> None:
        """Close the receivers on background threads, which `host_client` joins: after its
        detach and close frames, the SDK's close waits up to a second for the receiver's
        keep-alive thread (a prefetch-0 receiver always has one) to end its sleep."""
        for receiver in self._receivers.values():
            closer = threading.Thread(target=receiver.close, name="close-host-receiver")
            closer.start()
            self._closing.append(closer)
        self._receivers.clear()


@pytest.fixture(scope="module")
def host_client(servicebus: Any) -> Iterator[tuple[Any, list[threading.Thread]]]:
    """The hosts' client (it only makes handlers, each with its own connection), and the
    threads closing their receivers, joined before it closes."""
    from azure.servicebus import ServiceBusClient

    client = ServiceBusClient.from_connection_string(servicebus.connection_string)
    closing: list[threading.Thread] = []
    yield client, closing
    for closer in closing:
        closer.join()
    client.close()


@pytest.fixture
def host(host_client: tuple[Any, list[threading.Thread]]) -> Iterator[FunctionsHost]:
    functions_host = FunctionsHost(*host_client)
    yield functions_host
    functions_host.close()


def _app(name: str) -> sb.App:
    app = sb.App(name + uuid.uuid4().hex[:6])

    @app.task
    def add(x: int) -> int:
        return x + 1

    @app.workflow
    def run(ctx: sb.Context, n: int) -> int:
        x = add(n)
        ctx.sleep(0.5)
        return x + int(sum(ctx.parallel(*[ctx.call(add, i) for i in range(3)])))

    return app


def test_service_bus_triggers_drive_a_run_and_dead_letter_garbage(
    settings: dict[str, Any], host: FunctionsHost
) -> None:
    app = _app("trig")
    handlers = AzureHandlers(app, **settings)
    try:
        names = handlers.queue_names()
        invocations = names[f"{app.name}-invocations"]
        tasks = names[f"{app.name}-tasks"]
        assert invocations == f"{settings['prefix']}-{app.name}-invocations"
        with sb.connect(app, "azure", **settings) as client:
            run_id = client.start("run", n=10)
            host.send(invocations, b"not json at all")
            deadline = time.monotonic() + 60
            while client.status(run_id).status not in ("completed", "failed"):
                assert time.monotonic() < deadline, client.history(run_id)
                host.trigger(handlers, invocations, batch=False)
                host.trigger(handlers, tasks, batch=True)
            status = client.status(run_id)
        assert status.status == "completed", status
        assert status.output == 11 + 1 + 2 + 3
        assert host.raised == []
        # The garbage was re-sent to the trigger's dead-letter channel with its reason; the
        # original was completed (nothing of it is left on the queue).
        dead = handlers.dead_letters(invocations).receive(10, wait=5)
        assert [d.body for d in dead] == [b"not json at all"]
        assert dead[0].reason and "JSON" in dead[0].reason, dead[0].reason
        handlers.dead_letters(invocations).ack(dead)
        assert host.trigger(handlers, invocations, batch=False, wait=0.5) == 0
    finally:
        handlers.close()


def test_a_delivery_not_processed_in_time_raises_and_comes_back(
    settings: dict[str, Any], host: FunctionsHost
) -> None:
    app = sb.App("slow" + uuid.uuid4().hex[:6])

    @app.task
    def nap() -> str:
        time.sleep(2.0)
        return "rested"

    @app.workflow
    def run(ctx: sb.Context) -> str:
        return str(nap())

    # The task runs in the task function, whose invocation runs out of time.
    handlers = AzureHandlers(app, inline_tasks=False, timeout=1.5, **settings)
    try:
        tasks = handlers.queue_names()[f"{app.name}-tasks"]
        invocations = handlers.queue_names()[f"{app.name}-invocations"]
        with sb.connect(app, "azure", **settings) as client:
            run_id = client.start("run")
            deadline = time.monotonic() + 60
            while not host.raised:
                assert time.monotonic() < deadline, client.history(run_id)
                host.trigger(handlers, invocations, batch=False)
                host.trigger(handlers, tasks, batch=False)
            assert "must be delivered again" in str(host.raised[0])
            # Abandoned by the host, the invocation is delivered again, counted.
            handlers.timeout = 30.0
            again = host.receiver(tasks).receive_messages(max_message_count=1, max_wait_time=5)
            assert [HostMessage.of(m).delivery_count for m in again] == [2]
            host.receiver(tasks).abandon_message(again[0])
            while client.status(run_id).status != "completed":
                assert time.monotonic() < deadline, client.history(run_id)
                host.trigger(handlers, invocations, batch=False)
                host.trigger(handlers, tasks, batch=False)
            assert client.status(run_id).output == "rested"
    finally:
        handlers.close()


def test_trigger_messages_become_deliveries_as_the_queue_would_give_them() -> None:
    plain = trigger_delivery(
        {"body": "{}", "message_id": "m1", "delivery_count": 3, "lock_token": "t"}
    )
    assert (plain.body, plain.id, plain.attempt) == (b"{}", "m1", 3)
    copy = HostMessage(b"x", "m2", 1, "t2", {PRIOR_ATTEMPTS: 4})
    assert isinstance(copy, TriggerMessage)
    assert trigger_delivery(copy).attempt == 5


def test_a_copy_past_max_attempts_is_dead_lettered_not_run(
    settings: dict[str, Any], host: FunctionsHost
) -> None:
    app = _app("max")
    handlers = AzureHandlers(app, **settings)
    try:
        invocations = handlers.queue_names()[f"{app.name}-invocations"]
        worn = HostMessage(b'{"v": 1}', "worn", 1, "lock", {PRIOR_ATTEMPTS: 10})
        handlers.service_bus([worn], invocations)  # runtime max_attempts is 10
        dead = handlers.dead_letters(invocations).receive(1, wait=5)
        assert [(d.id, d.body) for d in dead] == [("worn", b'{"v": 1}')]
        assert dead[0].reason and dead[0].reason.startswith("MaxDeliveryCountExceeded")
        handlers.dead_letters(invocations).ack(dead)
        with pytest.raises(sb.ConfigError, match="not a queue of app"):
            handlers.service_bus([worn], "someone-elses-queue")
    finally:
        handlers.close()


# -- the azure.http executor and the task endpoint ---------------------------------------------


def test_http_executor_runs_tasks_through_the_task_endpoint(settings: dict[str, Any]) -> None:
    app = _app("http")
    handlers = AzureHandlers(app, function_key=KEY, **settings)
    server = LocalServer(handlers.task_app, path="/api/tasks")
    try:
        with sb.connect(
            app,
            "azure",
            executor="azure.http",
            workers=1,
            task_url=server.url,
            function_key=KEY,
            **settings,
        ) as client:
            assert isinstance(client.runtime.executor, HttpExecutor)
            run_id = client.start("run", n=1)
            assert client.wait(run_id, timeout=60).output == 2 + 1 + 2 + 3
    finally:
        server.stop()
        handlers.close()


def test_the_task_endpoint_checks_the_function_key(settings: dict[str, Any]) -> None:
    app = _app("key")
    handlers = AzureHandlers(app, function_key=KEY, **settings)
    keyless = AzureHandlers(app, **settings)
    server, open_server = (
        LocalServer(handlers.task_app, path="/api/tasks"),
        LocalServer(keyless.task_app, path="/api/tasks"),
    )
    try:
        host = ExecutorHost(app.name, lambda body: None, lambda name: None, 1)  # type: ignore[arg-type,return-value]

        def executor(url: str, key: str) -> HttpExecutor:
            return HttpExecutor(AzureConfig(task_url=url, function_key=key), host)

        with pytest.raises(ProviderError, match="401") as refused:
            executor(server.url, "wrong").post(b"{}")
        assert not isinstance(refused.value, TransientProviderError)
        assert "function_key" in str(refused.value)
        with pytest.raises(ProviderError, match="400"):  # the right key, but no invocation
            executor(server.url, KEY).post(b"{}")
        with pytest.raises(ProviderError, match="401"):  # no key configured: never open
            executor(open_server.url, KEY).post(b"{}")
        # Behind the Functions host, which checks keys itself, a keyless handler serves.
        assert keyless.task(b"{}", {}) == 400
        assert handlers.task(b"{}", {"X-Functions-Key": KEY}) == 400
        assert handlers.task(b"{}", {"x-functions-key": "nope"}) == 401
    finally:
        server.stop()
        open_server.stop()
        handlers.close()
        keyless.close()


@pytest.mark.parametrize(
    ("status", "transient"), [(429, True), (500, True), (503, True), (404, False)]
)
def test_http_executor_classifies_answers(status: int, transient: bool) -> None:
    def answer(environ: Any, start_response: Any) -> list[bytes]:
        start_response(f"{status} Whatever", [("Content-Type", "application/json")])
        return [b'{"error": "nope"}']

    server = LocalServer(answer, path="/api/tasks")
    host = ExecutorHost("a", lambda body: None, lambda name: None, 1)  # type: ignore[arg-type,return-value]
    executor = HttpExecutor(AzureConfig(task_url=server.url, function_key=KEY), host)
    try:
        with pytest.raises(ProviderError, match=f"{status}: nope") as raised:
            executor.post(b"{}")
        assert isinstance(raised.value, TransientProviderError) is transient
    finally:
        executor.close()
        server.stop()


def test_http_executor_connection_errors_are_transient() -> None:
    server = LocalServer(lambda environ, start_response: [], path="/api/tasks")
    url = server.url
    server.stop()  # nothing listens there any more
    host = ExecutorHost("a", lambda body: None, lambda name: None, 1)  # type: ignore[arg-type,return-value]
    executor = HttpExecutor(AzureConfig(task_url=url, function_key=KEY), host)
    with pytest.raises(TransientProviderError):
        executor.post(b"{}")
    executor.close()


def test_http_executor_needs_a_url_and_a_key() -> None:
    host = ExecutorHost("a", lambda body: None, lambda name: None, 1)  # type: ignore[arg-type,return-value]
    with pytest.raises(sb.ConfigError, match="SWITCHBOARD_AZURE_TASK_URL"):
        HttpExecutor(AzureConfig(function_key=KEY), host)
    with pytest.raises(sb.ConfigError, match="SWITCHBOARD_AZURE_FUNCTION_KEY"):
        HttpExecutor(AzureConfig(task_url="http://127.0.0.1:9/"), host)
