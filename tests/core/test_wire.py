"""The wire format: what the engine sends matches the published JSON Schema, and the
decoder refuses what the schema refuses."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

import jsonschema
import pytest

import switchboard as sb
from switchboard import history, wire
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


def _bad_first_entries() -> list[dict[str, Any]]:
    created = {"e": "run.created", "app": "a", "workflow": "w", "input": {}}
    good = {"v": 1, "n": 0, "at": 1.5, "consumed": [], "events": [created]}
    return [
        {key: value for key, value in good.items() if key != "at"},
        {**good, "at": "now"},
        {**good, "at": -1.5},
        {**good, "consumed": ["m1"]},
        {**good, "n": 1},
    ]


def test_decoder_refuses_a_first_entry_of_another_app() -> None:
    """What the schema cannot say: the entry's run is of the message's app."""
    created = {"e": "run.created", "app": "b", "workflow": "w", "input": {}}
    entry = {"v": 1, "n": 0, "at": 1.5, "consumed": [], "events": [created]}
    message = wire.envelope(wire.RUN_START, app="a", run="r", entry=entry)
    with pytest.raises(MalformedMessage, match="first history entry"):
        wire.decode(json.dumps(message).encode())


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
        *(
            {"v": 1, "kind": "run.start", "id": "x", "app": "a", "run": "r", "entry": entry}
            for entry in _bad_first_entries()
        ),
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


PLAIN_AND_NOT = [
    0,
    -7,
    10**30,
    1.5,
    -0.0,
    1e300,
    True,
    False,
    None,
    "",
    'quote " back \\ é \u2028 \x00 \U0001f600',
    [1, "x"],
    {"k": [None]},
    (1, 2),
    float("inf"),
]


@pytest.mark.parametrize("value", PLAIN_AND_NOT)
def test_scalar_json_is_what_dumps_writes_for_a_plain_scalar_and_none_otherwise(
    value: Any,
) -> None:
    if wire.plain(value):
        assert wire.scalar_json(value) == wire.to_json(value)
    else:
        assert wire.scalar_json(value) is None


@pytest.mark.parametrize("value", [v for v in PLAIN_AND_NOT if v != float("inf")])
def test_task_input_is_what_json_gives_back_with_the_text_to_json_writes(value: Any) -> None:
    for args, kwargs in [((value,), {}), ((1, value, "x"), {}), ((), {}), ((value,), {"k": value})]:
        recorded = wire.task_input(args, kwargs, "t")
        expected = wire.to_json({"args": list(args), "kwargs": kwargs})
        assert recorded.json == expected
        assert recorded == json.loads(expected)
        assert type(recorded["args"]) is list


def test_task_input_names_the_task_when_it_is_not_json() -> None:
    with pytest.raises(SerializationError, match="the input of task 'charge' is not JSON"):
        wire.task_input((object(),), {}, "charge")
    with pytest.raises(SerializationError, match="the input of task 'charge' is not JSON"):
        wire.task_input((float("nan"),), {}, "charge")
    with pytest.raises(SerializationError, match="the result of task 'charge' is not JSON"):
        wire.normalize({1: object()}, what="the result of task", name="charge")


def _entries() -> list[tuple[list[str], list[dict[str, Any]]]]:
    """History entries shaped as the engine writes them, the fast shapes and others."""
    cases: list[tuple[list[str], list[dict[str, Any]]]] = []
    for value in PLAIN_AND_NOT:
        if isinstance(value, float) and value == float("inf"):
            continue
        args_json = wire.to_json({"args": [value], "kwargs": {"k": value}})
        recorded = wire.encoded(json.loads(args_json), args_json)
        scheduled = {
            "e": "step.scheduled",
            "seq": 3,
            "kind": "task",
            "name": 'naïve "task"',
            "digest": "0123456789abcdef",
            "input": recorded,
        }
        cases.append(([], [{"e": "step.completed", "seq": 2, "attempt": 1, "result": value}]))
        cases.append((["01jb0000000000000000000000"], [scheduled]))
        cases.append(([], [{**scheduled, "input": json.loads(args_json)}]))  # not Encoded
        # Names and digests written without escaping, and ones that must be escaped.
        for name, digest in [
            ("charge", "0a1b"),
            ("naïve_tâche", "ff"),
            ("a.b", "0a"),
            ("charge", 'x"y'),
            ("charge", "é\\"),
            ("ok", ""),
        ]:
            cases.append(([], [{**scheduled, "name": name, "digest": digest}]))
    cases.append(
        (
            ["a", "b"],
            [
                {"e": "run.started"},
                {"e": "step.completed", "seq": 1, "attempt": 2, "result": 1, "cache": {"x": 1}},
                {
                    "e": "step.scheduled",
                    "seq": 4,
                    "kind": "sleep",
                    "name": "sleep",
                    "digest": "ab",
                    "due": 1.25,
                },
                {"e": "run.completed", "output": {"total": [1, 2]}},
            ],
        )
    )
    return cases


@pytest.mark.parametrize(("consumed", "events"), _entries())
def test_encode_entry_writes_what_dumps_writes_byte_for_byte(
    consumed: list[str], events: list[dict[str, Any]]
) -> None:
    at = 1796238777.8036315
    entry = {"v": wire.VERSION, "n": 12, "at": at, "consumed": consumed, "events": events}
    written = history.encode_entry(12, at, consumed, events)
    assert b'"at":1796238777.803632,' in written
    assert written == _dumps_entry(entry)


@pytest.mark.parametrize(
    ("at", "written"),
    [
        (1.5, "1.500000"),
        (0.0, "0.000000"),
        (1796238777.0000004, "1796238777.000000"),
        (1796238777.9999996, "1796238778.000000"),
        (1796238777.123456, "1796238777.123456"),
    ],
)
def test_encode_entry_writes_at_to_the_microsecond(at: float, written: str) -> None:
    entry = json.loads(history.encode_entry(0, at, [], []))
    assert f'"at":{written},' in history.encode_entry(0, at, [], []).decode()
    assert entry["at"] == float(written) and abs(entry["at"] - at) <= 5e-7


def test_encode_entry_refuses_an_event_that_is_not_json() -> None:
    event = {"e": "step.completed", "seq": 1, "attempt": 1, "result": float("nan")}
    with pytest.raises(SerializationError, match="a history event is not JSON-serializable"):
        history.encode_entry(0, 1.0, [], [event])


def test_every_history_entry_of_a_rich_run_is_what_dumps_writes_of_it() -> None:
    """The engine's own entries, from a run with the usual and the unusual steps, decode
    and encode again to the same bytes: the fast encoder wrote them as `dumps` would."""
    app = sb.App("entries")

    @app.task
    def double(x: Any) -> Any:
        sb.current_task().cache["seen"] = True
        return x if not isinstance(x, int) else x * 2

    @app.workflow
    def rich(ctx: sb.Context) -> Any:
        plain = double(21)
        nested = double({"deep": ["é", 1.5, None]})
        both = ctx.parallel(ctx.call(double, 1), ctx.call(double, "two"))
        ctx.sleep(0.01)
        return [plain, nested, both, ctx.cache.get("seen")]

    store = MemoryStateStore()
    runtime = Runtime(app, MemoryBroker(), store, queue_executor, None, workers=2)
    with Client(runtime) as client:
        run_id = client.start("rich")
        output = client.wait(run_id, timeout=30).output
    assert output == [42, {"deep": ["é", 1.5, None]}, [2, "two"], True]
    records = store.scan(run_id, prefix=history.PREFIX, limit=1000).records
    assert len(records) > 3
    for record in records:
        entry = json.loads(record.value)
        assert _dumps_entry(entry) == record.value


def _dumps_entry(entry: dict[str, Any]) -> bytes:
    """What `encode_entry` writes of `entry`: `dumps` of it, but `at` to the microsecond."""
    at = f'"at":{entry["at"]:.6f},'.encode()
    return wire.dumps({**entry, "at": 0}).replace(b'"at":0,', at, 1)


def test_new_id_is_the_time_and_random_bits_in_26_base32_digits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wire.time, "time", lambda: 1_700_000_000.123)
    monkeypatch.setattr(wire.ids, "random_bits", lambda bits: (1 << bits) - 1)
    value = (1_700_000_000_123 << 80) | ((1 << 80) - 1)
    digits = ""
    for _ in range(26):  # the plain definition, a digit at a time
        value, index = divmod(value, 32)
        digits = "0123456789abcdefghjkmnpqrstvwxyz"[index] + digits
    assert wire.new_id() == digits


def test_new_ids_sort_by_creation_time(monkeypatch: pytest.MonkeyPatch) -> None:
    made = []
    for millis in (1, 2, 1_000, 1 << 47):
        monkeypatch.setattr(wire.time, "time", lambda m=millis: m / 1000)
        made.append(wire.new_id())
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(len(i) == 26 for i in made)


def test_digest_is_blake2b_of_eight_bytes_as_histories_record_it() -> None:
    """Recorded histories hold these digests: another value would fail their replay."""
    for data in (b"", b'{"args":[1],"kwargs":{}}', "é".encode() * 1000):
        assert wire.digest(data) == hashlib.blake2b(data, digest_size=8).hexdigest()
    assert wire.digest(b"a") != wire.digest(b"b")  # the shared state is never updated
    assert wire.digest(b"a") == wire.digest(b"a")
