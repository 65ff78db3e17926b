"""The wire format: what the engine sends matches the published JSON Schema, and the
decoder refuses what the schema refuses."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import pytest

import switchboard as sb
from switchboard import wire
from switchboard.client import Client
from switchboard.errors import MalformedMessage, SerializationError
from switchboard.executors import queue_executor
from switchboard.interfaces import Broker, Queue
from switchboard.providers.local.queue import MemoryBroker
from switchboard.providers.local.state import MemoryStateStore
from switchboard.runtime import Runtime

SCHEMA = json.loads(resources.files("switchboard").joinpath("schema/wire-v1.json").read_text())
jsonschema.Draft202012Validator.check_schema(SCHEMA)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


class RecordingQueue:
    """Wraps a queue and keeps a copy of every body sent through it."""

    def __init__(self, inner: Queue, sent: list[bytes]) -> None:
        self._inner, self._sent = inner, sent

    def send(self, bodies: Any, *, delay: float = 0.0) -> None:
        self._sent.extend(bodies)
        self._inner.send(bodies, delay=delay)

    def send_claimed(self, body: bytes, *, lease: float) -> Any:
        self._sent.append(body)
        return self._inner.send_claimed(body, lease=lease)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class RecordingBroker:
    """Opens recording queues: every channel the runtime uses is seen."""

    def __init__(self, inner: Broker, sent: list[bytes]) -> None:
        self._inner, self._sent = inner, sent
        self.capabilities = inner.capabilities

    def queue(self, name: str, *, max_attempts: int = 5) -> Queue:
        return RecordingQueue(self._inner.queue(name, max_attempts=max_attempts), self._sent)  # type: ignore[return-value]

    def close(self) -> None:
        self._inner.close()


def test_every_message_of_a_rich_run_matches_the_schema() -> None:
    app = sb.App("schema")

    @app.task(retries=1, retry_delay=0.01, timeout=5)
    def flaky() -> str:
        if sb.current_task().attempt == 1:
            raise RuntimeError("first attempt fails")
        sb.current_task().cache["seen"] = True
        return "ok"

    @app.task
    def later() -> Any:
        return sb.pending()

    @app.workflow
    def run(ctx: sb.Context) -> Any:
        ctx.sleep(0.05)
        step = ctx.call(later)
        return [flaky(), ctx.wait_for_event("go"), step.seq]

    sent: list[bytes] = []
    runtime = Runtime(
        app,
        RecordingBroker(MemoryBroker(), sent),
        MemoryStateStore(),
        queue_executor,
        None,
        workers=4,
    )
    with Client(runtime) as client:
        run_id = client.start("run")
        client.signal(run_id, "go", {"n": 1})
        assert client.wait(run_id, timeout=30).output == ["ok", {"n": 1}, 1]
        doomed = client.start("run")
        client.cancel(doomed)
        with pytest.raises(sb.RunFailed):
            client.wait(doomed, timeout=30)
    kinds = set()
    for body in sent:
        message = json.loads(body)
        errors = sorted(VALIDATOR.iter_errors(message), key=str)
        assert not errors, (message, [e.message for e in errors])
        kinds.add(message["kind"])
    assert {
        "run.start",
        "task.invoke",
        "task.result",
        "timer.fired",
        "run.signal",
        "run.cancel",
    } <= kinds


@pytest.mark.parametrize(
    "message",
    [
        {"v": 2, "kind": "run.start", "id": "x", "app": "a", "run": "r"},
        {"v": 1, "kind": "run.nope", "id": "x", "app": "a", "run": "r"},
        {"v": 1, "kind": "task.result", "id": "x", "app": "a", "run": "r", "seq": 1},
        {
            "v": 1,
            "kind": "task.result",
            "id": "x",
            "app": "a",
            "run": "r",
            "seq": 1,
            "attempt": 1,
            "task": "t",
            "outcome": "maybe",
        },
        {
            "v": 1,
            "kind": "timer.fired",
            "id": "x",
            "app": "a",
            "run": "r",
            "seq": "1",
            "attempt": 1,
            "purpose": "sleep",
            "due": 1.0,
        },
        {"v": 1, "kind": "run.signal", "id": "x", "app": "a", "run": "r"},
        {"v": 1, "kind": "run.start", "id": "x", "app": "a"},
    ],
)
def test_decoder_and_schema_refuse_the_same_malformed_messages(message: dict[str, Any]) -> None:
    assert list(VALIDATOR.iter_errors(message)), "the schema must refuse it"
    with pytest.raises(MalformedMessage):
        wire.decode(json.dumps(message).encode())


def test_claim_check_round_trips_and_detects_damage() -> None:
    store = MemoryStateStore()
    blobs = wire.Blobs(store)
    message = wire.envelope(wire.RUN_SIGNAL, app="a", run="r1", name="big", payload="y" * 5000)
    body = wire.encode(message, 1000, blobs)
    assert len(body) < 1000 and not list(VALIDATOR.iter_errors(json.loads(body)))
    assert wire.decode(body, blobs)["payload"] == "y" * 5000
    chunk = store.scan("r1", prefix="b/").records[0]
    store.put("r1", chunk.key, b"tampered")
    with pytest.raises(MalformedMessage, match="does not match its checksum"):
        wire.decode(body, blobs)


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, "x", None, True, {"b": "é\u2028"}]},
        "text",
        10**30,
        -0.0,
        [],
        {1: "int key", "k": {}},
    ],
)
def test_dumps_writes_what_compact_json_dumps_writes(value: Any) -> None:
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert wire.dumps(value) == expected.encode()


def test_dumps_refuses_what_is_not_json_naming_it() -> None:
    circular: list[Any] = []
    circular.append(circular)
    for value, reason in [
        (float("nan"), "Out of range float"),
        ({"when": object()}, "type object"),
        (circular, "circular"),
    ]:
        with pytest.raises(
            SerializationError, match=f"the thing is not JSON-serializable.*{reason}"
        ):
            wire.dumps(value, what="the thing")
