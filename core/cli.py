"""The `switchboard` command.

Errors print as one line saying what is wrong and how to fix it (exit code 2); the
traceback only with `--debug`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from switchboard.app import App
from switchboard.client import Client
from switchboard.errors import RunFailed, SwitchboardError
from switchboard.runtime import build_runtime
from switchboard.status import TERMINAL, RunStatus


class UsageError(SwitchboardError):
    pass


# -- loading apps and settings --------------------------------------------------------------


def load_app(spec: str) -> App:
    """`module:attribute` (the module is imported from the current directory too), or a
    bare app name for commands that need no code (status, list, signal, ...)."""
    if ":" not in spec:
        return App(spec)
    module_name, _, attribute = spec.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name!r} for --app {spec}: {exc}") from exc
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise UsageError(f"{spec}: {attribute!r} in {module_name} is not a switchboard App")
    return app


def load_settings(path: str | None, pairs: Sequence[str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if path:
        text = Path(path).read_text()
        try:
            settings = tomllib.loads(text) if path.endswith(".toml") else json.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(
                f"--config {path}: not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {exc}"
            ) from exc
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--set {pair!r}: expected key=value")
        settings[key] = value
    return settings


def connect_from(args: argparse.Namespace, app: App, *, workers: int = 0, **options: Any) -> Client:
    settings = load_settings(args.config, args.set)
    nested = {k: v for k, v in settings.items() if isinstance(v, dict)}
    flat = {k: v for k, v in settings.items() if not isinstance(v, dict)}
    runtime = build_runtime(
        app,
        args.provider,
        queue=args.queue,
        state=args.state,
        executor=args.executor,
        workers=workers,
        config=nested,
        settings=flat,
        **options,
    )
    return Client(runtime)


def parse_json(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from exc


# -- commands -------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    data = parse_json(args.input, "--input")
    with connect_from(args, app, workers=args.workers) as client:
        if isinstance(data, dict):
            run_id = client.start(args.workflow, **data)
        elif isinstance(data, list):
            run_id = client.start(args.workflow, *data)
        elif data is None:
            run_id = client.start(args.workflow)
        else:
            run_id = client.start(args.workflow, data)
        print(f"run {run_id} started")
        status = follow(client, run_id, args.timeout)
    print(json.dumps(status.output, indent=2))
    return 0


def follow(client: Client, run_id: str, timeout: float | None) -> RunStatus:
    """Print a progress line per step event until the run finishes."""
    seen = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        events = client.history(run_id)
        for event in events[seen:]:
            line = describe_event(event.type, event.data)
            if line:
                print(line, flush=True)
        seen = len(events)
        status = client.status(run_id)
        if status.status in TERMINAL:
            if status.status != "completed":
                raise RunFailed(status)
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise UsageError(f"run {run_id} still {status.status} after {timeout}s (it goes on)")
        time.sleep(0.1)


def describe_event(kind: str, data: dict[str, Any]) -> str | None:
    seq = data.get("seq")
    if kind == "step.scheduled":
        return f"  step {seq} {data['kind']} {data['name']}: scheduled"
    if kind == "step.completed":
        return f"  step {seq}: completed (attempt {data.get('attempt', 1)})"
    if kind == "step.failed":
        error = data.get("error", {})
        retry = " , retrying" if data.get("retry_at") else ""
        reason = f"{error.get('type')}: {error.get('message')}"
        return f"  step {seq}: attempt {data.get('attempt')} failed: {reason}{retry}"
    if kind == "step.pending":
        return f"  step {seq}: waiting for an outside completion"
    if kind == "signal.received":
        return f"  signal {data['name']!r} received"
    if kind in ("run.completed", "run.failed", "run.cancelled"):
        return f"  run {kind.split('.')[1]}"
    return None


def cmd_worker(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        print(
            f"received {signal.Signals(signum).name}: finishing held work, taking no more",
            flush=True,
        )
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    client = connect_from(args, app, workers=args.concurrency)
    print(
        f"worker for app {app.name!r} on {args.provider}: {args.concurrency} task slots", flush=True
    )
    try:
        stop.wait()
    finally:
        client.runtime.close(grace=args.grace)
    print("worker stopped", flush=True)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with connect_from(args, load_app(args.app)) as client:
        status = client.status(args.run_id)
    print(json.dumps(status_dict(status), indent=2))
    return 0


def status_dict(status: RunStatus) -> dict[str, Any]:
    return {
        "run_id": status.run_id,
        "workflow": status.workflow,
        "status": status.status,
        "steps": [vars(step) for step in status.steps],
        "error": status.error,
        "output": status.output,
        "created": status.created,
        "updated": status.updated,
    }


def cmd_list(args: argparse.Namespace) -> int:
    with connect_from(args, load_app(args.app)) as client:
        runs = client.list(workflow=args.workflow, status=args.status)
    for run in runs:
        print(f"{run.run_id}  {run.status:9}  {run.workflow}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with connect_from(args, load_app(args.app)) as client:
        for event in client.history(args.run_id):
            print(json.dumps({"at": event.at, "type": event.type, **event.data}))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with connect_from(args, load_app(args.app)) as client:
        client.cancel(args.run_id)
    print(f"cancel requested for run {args.run_id}")
    return 0


def cmd_signal(args: argparse.Namespace) -> int:
    with connect_from(args, load_app(args.app)) as client:
        client.signal(args.run_id, args.name, parse_json(args.payload, "--payload"))
    print(f"signal {args.name!r} sent to run {args.run_id}")
    return 0


def cmd_complete(args: argparse.Namespace) -> int:
    with connect_from(args, load_app(args.app)) as client:
        if args.error is not None:
            client.fail(args.token, args.error)
        else:
            client.complete(args.token, parse_json(args.result, "--result"))
    print("task finished")
    return 0


def cmd_providers(args: argparse.Namespace) -> int:
    from switchboard.config import describe_settings
    from switchboard.plugins import registry

    for installed in registry.all().values():
        if installed.spec is None:
            print(
                f"{installed.name}  ({installed.package})  FAILED TO LOAD: {installed.load_error}"
            )
            continue
        extra = "installed" if installed.sdk_installed else f"missing: {installed.install_hint()}"
        print(f"{installed.name}  ({installed.package})  {installed.spec.description}")
        print(f"    components: {', '.join(installed.components)}")
        print(f"    SDK: {extra}")
        for name, env, help_text in describe_settings(installed.spec.config):
            print(
                f"    setting {name}"
                + (f" [{env}]" if env else "")
                + (f": {help_text}" if help_text else "")
            )
    return 0


def cmd_conformance(args: argparse.Namespace) -> int:
    try:
        from switchboard_conformance.cli import run as run_suite
    except ImportError as exc:
        raise UsageError(f"the conformance suite is not installed: {exc}") from exc
    return int(run_suite(args.name, args.config, args.keyword))


# -- parsing ----------------------------------------------------------------------------------


def _provider_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--provider",
        default=os.environ.get("SWITCHBOARD_PROVIDER", "local"),
        help="provider name (default: local; env SWITCHBOARD_PROVIDER)",
    )
    parser.add_argument("--queue", help="provider for queues, when mixing")
    parser.add_argument("--state", help="provider for the state store, when mixing")
    parser.add_argument("--executor", help="executor: queue, <provider> or <provider>.<name>")
    parser.add_argument("--config", help="settings file (JSON or .toml)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one setting of the provider (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description="Orchestration-as-code.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    app_env = os.environ.get("SWITCHBOARD_APP")

    run = sub.add_parser("run", help="start a run and follow it to the end")
    run.add_argument("app", help="module:app")
    run.add_argument("workflow")
    run.add_argument(
        "--input", help="JSON: an object gives keyword arguments, a list positional ones"
    )
    run.add_argument("--workers", type=int, default=4, help="task workers in this process")
    run.add_argument("--timeout", type=float)
    _provider_options(run)
    run.set_defaults(handler=cmd_run)

    worker = sub.add_parser("worker", help="process runs and tasks until SIGTERM")
    worker.add_argument("app", help="module:app")
    worker.add_argument("--concurrency", type=int, default=4, help="tasks run at once")
    worker.add_argument("--grace", type=float, default=30.0, help="seconds to finish held work")
    _provider_options(worker)
    worker.set_defaults(handler=cmd_worker)

    def with_app(name: str, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text)
        command.add_argument(
            "--app",
            default=app_env,
            required=app_env is None,
            help="module:app or the app's name (env SWITCHBOARD_APP)",
        )
        _provider_options(command)
        return command

    status = with_app("status", "show one run")
    status.add_argument("run_id")
    status.set_defaults(handler=cmd_status)
    listing = with_app("list", "list runs")
    listing.add_argument("--workflow")
    listing.add_argument("--status")
    listing.set_defaults(handler=cmd_list)
    hist = with_app("history", "print a run's recorded events")
    hist.add_argument("run_id")
    hist.set_defaults(handler=cmd_history)
    cancel = with_app("cancel", "cancel a run")
    cancel.add_argument("run_id")
    cancel.set_defaults(handler=cmd_cancel)
    sig = with_app("signal", "send an event to a run")
    sig.add_argument("run_id")
    sig.add_argument("name")
    sig.add_argument("--payload", help="JSON")
    sig.set_defaults(handler=cmd_signal)
    complete = with_app("complete", "finish a task that returned sb.pending()")
    complete.add_argument("token")
    complete.add_argument("--result", help="JSON result")
    complete.add_argument("--error", help="fail the task with this message instead")
    complete.set_defaults(handler=cmd_complete)

    providers = sub.add_parser("providers", help="list installed providers")
    providers.set_defaults(handler=cmd_providers)

    conformance = sub.add_parser("conformance", help="run the conformance suite on a provider")
    conformance.add_argument("name")
    conformance.add_argument("--config")
    conformance.add_argument("-k", dest="keyword")
    conformance.set_defaults(handler=cmd_conformance)

    from switchboard.plugins import registry

    registry.all()  # load every plugin, so each can add its commands
    registry.plugin_manager.hook.switchboard_add_commands(subparsers=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args))
    except RunFailed as exc:
        if args.debug:
            raise
        error = exc.status.error or {}
        print(f"error: {exc}", file=sys.stderr)
        if error.get("traceback"):
            print(error["traceback"].rstrip(), file=sys.stderr)
        return 1
    except (SwitchboardError, OSError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
