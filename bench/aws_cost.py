"""What a workflow step costs on AWS: every billable request counted with botocore event
hooks against moto's server, priced at list prices beside Step Functions (issue 4).

    .venv/bin/python -m bench.aws_cost           # prints the table (bench.run includes it)
    .venv/bin/python -m bench.aws_cost --smoke   # tiny sizes

Two deployments, each running one chain of `size` steps and one fan-out of `size` tasks
(every task `x + 1`):

- **workers**: `switchboard worker` processes, i.e. `sb.connect(app, "aws", workers=4)`:
  the engine and the tasks-queue consumers long-poll SQS; a lone awaited task runs inline.
- **lambda**: what `switchboard aws template` deploys: the workflow function fed by the
  invocations queue and the task function fed by the tasks queue, both `lambda_handler`.
  Lambda's SQS pollers (their ReceiveMessage and DeleteMessageBatch are billed to the
  account) are played by `tests.emulators.lambda_sqs`; each handler call is one Lambda
  request.

Counted: every request the deployment makes, from the run's start (the trigger's writes
and send included) until its last message is deleted. Not counted: the caller polling for
the result (an unmetered client watches), one-time setup (queue and table creation), and
idle polls (receives that return nothing), which cost per second of uptime rather than per
step and are reported apart.

Prices (us-east-1 list prices the issue names, dollars per million): SQS requests $0.40,
each 64 KiB chunk of a request's payload billed as one request; DynamoDB on-demand
$0.625 per write request unit and $0.125 per read request unit; Lambda $0.20 per request
(duration is left out: it is the task's own cost); Step Functions Standard $25 per state
transition, at least one per step. DynamoDB units come from item sizes by the documented
rule (attribute names plus values; a write unit per 1 KB, a strongly consistent read unit
per 4 KB; https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/
CapacityUnitCalculations.html), because moto reports a fixed ConsumedCapacity.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3

import switchboard as sb
from bench.workloads import RESULT_PREFIX, app, chain, fan_out
from switchboard.client import Client
from tests.emulators.lambda_sqs import deliver_batch
from tests.emulators.moto import FAKE_ENV, MotoServer

SQS_PER_MILLION = 0.40
WRITE_UNIT_PER_MILLION = 0.625
READ_UNIT_PER_MILLION = 0.125
LAMBDA_PER_MILLION = 0.20
STEP_FUNCTIONS_PER_MILLION = 25.0
#: The issue's target for any deployment and workload.
TARGET_PER_MILLION = 2.50

SQS_CHUNK = 64 * 1024
WRITE_UNIT = 1024
READ_UNIT = 4096

# -- counting -------------------------------------------------------------------------------


def _value_bytes(value: Mapping[str, Any]) -> int:
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "B":
        return len(data)
    if kind == "N":
        digits = str(data).lstrip("-").replace(".", "").strip("0") or "0"
        return 1 + math.ceil(len(digits) / 2)
    if kind == "BOOL" or kind == "NULL":
        return 1
    raise ValueError(f"no size rule for DynamoDB type {kind}")


def item_bytes(item: Mapping[str, Mapping[str, Any]]) -> int:
    """An item's size as DynamoDB bills it: attribute names plus values."""
    return sum(len(name.encode()) + _value_bytes(value) for name, value in item.items())


def _message_bytes(body: str, attributes: Mapping[str, Mapping[str, Any]] | None) -> int:
    size = len(body.encode())
    for name, value in (attributes or {}).items():
        data = value.get("BinaryValue") or value.get("StringValue") or ""
        size += len(name.encode()) + len(value["DataType"]) + len(data)
    return size


@dataclass
class Usage:
    """Billable usage while metering was on."""

    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    sqs_requests: int = 0
    idle_receives: int = 0
    write_units: int = 0
    read_units: int = 0
    lambda_requests: int = 0

    def dollars(self) -> dict[str, float]:
        return {
            "sqs": self.sqs_requests * SQS_PER_MILLION / 1e6,
            "dynamodb": (
                self.write_units * WRITE_UNIT_PER_MILLION + self.read_units * READ_UNIT_PER_MILLION
            )
            / 1e6,
            "lambda": self.lambda_requests * LAMBDA_PER_MILLION / 1e6,
        }


class Meter:
    """Counts every request of clients made from `session` afterwards (botocore hooks)."""

    def __init__(self, session: boto3.session.Session) -> None:
        self._lock = threading.Lock()
        self.usage = Usage()
        self.on = False
        session.events.register("provide-client-params", self._params)
        session.events.register("after-call", self._response)

    def reset(self) -> None:
        with self._lock:
            self.usage, self.on = Usage(), True

    def stop(self) -> Usage:
        with self._lock:
            self.on = False
            return self.usage

    def lambda_request(self) -> None:
        with self._lock:
            if self.on:
                self.usage.lambda_requests += 1

    def _params(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        """Writes and sends are billed by what is sent (a failed condition included)."""
        service, operation = model.service_model.service_name, model.name
        write_units = sqs_requests = 0
        if service == "dynamodb" and operation == "PutItem":
            write_units = math.ceil(item_bytes(params["Item"]) / WRITE_UNIT)
        elif service == "dynamodb" and operation in ("DeleteItem", "UpdateItem"):
            write_units = 1
        elif service == "sqs" and operation in ("SendMessage", "SendMessageBatch"):
            entries = params["Entries"] if operation == "SendMessageBatch" else [params]
            size = sum(
                _message_bytes(e["MessageBody"], e.get("MessageAttributes")) for e in entries
            )
            sqs_requests = max(1, math.ceil(size / SQS_CHUNK))
        with self._lock:
            if self.on:
                self.usage.write_units += write_units
                self.usage.sqs_requests += sqs_requests

    def _response(self, parsed: Mapping[str, Any], model: Any, **_: Any) -> None:
        service, operation = model.service_model.service_name, model.name
        with self._lock:
            if not self.on:
                return
            usage = self.usage
            if service == "sqs":
                if operation == "ReceiveMessage" and not parsed.get("Messages"):
                    usage.idle_receives += 1
                    return
                usage.calls[f"sqs.{operation}"] += 1
                usage.sqs_requests += self._sqs_units(operation, parsed)
            elif service == "dynamodb":
                usage.calls[f"dynamodb.{operation}"] += 1
                if operation == "GetItem":
                    size = item_bytes(parsed["Item"]) if "Item" in parsed else 0
                    usage.read_units += max(1, math.ceil(size / READ_UNIT))
                elif operation == "Query":
                    size = sum(item_bytes(item) for item in parsed.get("Items", []))
                    usage.read_units += max(1, math.ceil(size / READ_UNIT))
            else:
                usage.calls[f"{service}.{operation}"] += 1
                if service == "lambda" and operation == "Invoke":
                    usage.lambda_requests += 1

    @staticmethod
    def _sqs_units(operation: str, parsed: Mapping[str, Any]) -> int:
        """Requests billed for a call, 64 KiB of payload to a request (sends: `_params`)."""
        if operation in ("SendMessage", "SendMessageBatch"):
            return 0
        if operation != "ReceiveMessage":
            return 1
        size = sum(
            _message_bytes(m.get("Body", ""), m.get("MessageAttributes"))
            for m in parsed.get("Messages", [])
        )
        return max(1, math.ceil(size / SQS_CHUNK))


# -- deployments ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    endpoint_url: str
    prefix: str
    table: str

    def settings(self) -> dict[str, Any]:
        return {
            "endpoint_url": self.endpoint_url,
            "region": FAKE_ENV["AWS_REGION"],
            "prefix": self.prefix,
            "table": self.table,
        }

    def unmetered(self) -> dict[str, Any]:
        """Settings of a client on its own session (the fake credentials moto takes)."""
        return {
            **self.settings(),
            "access_key_id": FAKE_ENV["AWS_ACCESS_KEY_ID"],
            "secret_access_key": FAKE_ENV["AWS_SECRET_ACCESS_KEY"],
        }


def _session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=FAKE_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=FAKE_ENV["AWS_REGION"],
    )


def _wait(watcher: Client, run_id: str, expected: int, timeout: float = 120.0) -> None:
    """Wait with the unmetered client: the caller's polling is not the workflow's cost."""
    output = watcher.wait(run_id, timeout=timeout).output
    if output != expected:
        raise AssertionError(f"run {run_id} returned {output}, expected {expected}")


def _settle(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the deployment never went quiet")
        time.sleep(0.05)


Workload = tuple[str, Any, int]  # (name, workflow, expected output)


def _workloads(size: int) -> list[Workload]:
    return [
        (f"chain of {size}", chain, size),
        (f"fan-out of {size}", fan_out, size * (size + 1) // 2),
    ]


def measure_workers(setup: Setup, size: int) -> dict[str, Usage]:
    session = _session()
    meter = Meter(session)
    results: dict[str, Usage] = {}
    with (
        sb.connect(app, "aws", workers=4, session=session, **setup.settings()) as client,
        sb.connect(app, "aws", **setup.unmetered()) as watcher,
    ):
        consumers = client.runtime.consumers
        for name, workflow, expected in _workloads(size):
            meter.reset()
            run_id = client.start(workflow, size)
            _wait(watcher, run_id, expected)
            # The last delivery is acked just after the run completes.
            _settle(lambda: all(consumer.holding == 0 for consumer in consumers))
            results[name] = meter.stop()
    return results


class _EventSourceMappings:
    """Lambda's pollers on the invocations and tasks queues, invoking `handler`."""

    def __init__(self, sqs: Any, urls: list[str], handler: Any, meter: Meter) -> None:
        self._sqs, self._urls, self._handler, self._meter = sqs, urls, handler, meter
        self._quiet = {url: threading.Event() for url in urls}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, args=(url,)) for url in urls]

    def _invoke(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        self._meter.lambda_request()
        result: dict[str, Any] = self._handler(event, context)
        return result

    def _poll(self, url: str) -> None:
        while not self._stop.is_set():
            batch = deliver_batch(self._sqs, url, self._invoke, wait=1)
            if batch is None:
                self._quiet[url].set()
            else:
                self._quiet[url].clear()

    @contextlib.contextmanager
    def running(self) -> Iterator[_EventSourceMappings]:
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(30)

    def drained(self) -> bool:
        """Every queue answered a poll with nothing since work last arrived."""
        for quiet in self._quiet.values():
            quiet.clear()
        for quiet in self._quiet.values():
            quiet.wait(30)
        return all(quiet.is_set() for quiet in self._quiet.values())


def measure_lambda(setup: Setup, size: int) -> dict[str, Usage]:
    from switchboard.providers.aws.handlers import lambda_handler

    session = _session()
    meter = Meter(session)
    handler = lambda_handler(app, session=session, **setup.settings())
    handler({"Records": []}, None)  # a cold start builds the runtime: setup, not a step
    results: dict[str, Usage] = {}
    with (
        sb.connect(app, "aws", session=session, **setup.settings()) as trigger,
        sb.connect(app, "aws", **setup.unmetered()) as watcher,
    ):
        urls = [
            trigger.runtime.invocations.url,  # type: ignore[attr-defined]
            trigger.runtime.executor.queue.url,  # type: ignore[attr-defined]
        ]
        sqs = session.client("sqs", endpoint_url=setup.endpoint_url)
        mappings = _EventSourceMappings(sqs, urls, handler, meter)
        with mappings.running():
            for name, workflow, expected in _workloads(size):
                meter.reset()
                run_id = trigger.start(workflow, size)
                _wait(watcher, run_id, expected)
                _settle(mappings.drained)
                results[name] = meter.stop()
    return results


# -- report ---------------------------------------------------------------------------------


def measure(size: int) -> list[dict[str, Any]]:
    """Each deployment and workload: its usage per step and dollars per million steps."""
    rows: list[dict[str, Any]] = []
    moto = MotoServer().start()
    try:
        for deployment, run in (("workers", measure_workers), ("lambda", measure_lambda)):
            setup = Setup(moto.endpoint_url, f"cost-{uuid.uuid4().hex[:8]}", "cost-state")
            for workload, usage in run(setup, size).items():
                dollars = usage.dollars()
                per_million = {k: v / size * 1e6 for k, v in dollars.items()}
                total = sum(per_million.values())
                rows.append(
                    {
                        "deployment": deployment,
                        "workload": workload,
                        "steps": size,
                        "calls": dict(sorted(usage.calls.items())),
                        "sqs_requests": usage.sqs_requests,
                        "write_units": usage.write_units,
                        "read_units": usage.read_units,
                        "lambda_requests": usage.lambda_requests,
                        "idle_receives": usage.idle_receives,
                        "per_million": per_million,
                        "total_per_million": total,
                        "step_functions_ratio": STEP_FUNCTIONS_PER_MILLION / total
                        if total
                        else None,
                    }
                )
    finally:
        moto.stop()
    return rows


def render(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines for RESULTS.md."""
    lines = [
        "| deployment | workload | SQS requests/step | DynamoDB WRU/step | RRU/step "
        "| Lambda requests/step | $ per 1M steps | vs Step Functions ($25) | target <= $2.50 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        steps = row["steps"]
        ratio = row["step_functions_ratio"]
        lines.append(
            f"| {row['deployment']} | {row['workload']} | {row['sqs_requests'] / steps:.2f} "
            f"| {row['write_units'] / steps:.2f} | {row['read_units'] / steps:.2f} "
            f"| {row['lambda_requests'] / steps:.2f} | ${row['total_per_million']:.2f} "
            f"| {f'{ratio:.0f}x cheaper' if ratio else '-'} "
            f"| {'met' if row['total_per_million'] <= TARGET_PER_MILLION else 'NOT met'} |"
        )
    lines += ["", "Requests by operation (whole run; idle polls apart):", ""]
    for row in rows:
        calls = ", ".join(f"{name} {count}" for name, count in row["calls"].items())
        lines.append(
            f"- {row['deployment']}, {row['workload']}: {calls}; idle receives "
            f"{row['idle_receives']}"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes")
    parser.add_argument("--size", type=int, help="steps per workload (default 100, smoke 5)")
    args = parser.parse_args(argv)
    rows = measure(args.size or (5 if args.smoke else 100))
    print("\n".join(render(rows)))
    print(RESULT_PREFIX + json.dumps(rows), flush=True)


if __name__ == "__main__":
    main()
