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
from switchboard.errors import MalformedMessage
from switchboard.interfaces import Queue
from switchboard.providers.local.state import MemoryStateStore

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

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


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
    with sb.local(app, executor="queue") as client:
        runtime = client.runtime
        runtime.invocations = RecordingQueue(runtime.invocations, sent)  # type: ignore[assignment]
        assert runtime.engine is not None
        runtime.engine.invocations = runtime.invocations
        executor_queue = runtime.executor.queue  # type: ignore[attr-defined]
        runtime.executor.queue = RecordingQueue(executor_queue, sent)  # type: ignore[attr-defined]
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
