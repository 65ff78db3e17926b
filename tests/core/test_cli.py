"""The `switchboard` command, run as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent.parent


def switchboard(
    *args: str, cwd: Path = ROOT, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def test_run_prints_progress_and_output() -> None:
    done = switchboard(
        "run", "examples.shop.shop:app", "fulfil", "--input", '{"order": {"id": "o-7", "total": 5}}'
    )
    assert done.returncode == 0, done.stderr
    assert "step 1 task pack: scheduled" in done.stdout
    assert "step 3: waiting for an outside completion" in done.stdout
    output = json.loads(done.stdout[done.stdout.index("{\n") :])
    assert output["label"] == "parcel-o-7"


def test_failed_run_exits_non_zero_with_the_error(tmp_path: Path) -> None:
    (tmp_path / "failing.py").write_text(
        "import switchboard as sb\napp = sb.App('failing')\n"
        "@app.workflow\ndef boom(ctx):\n    raise KeyError('sku-9')\n"
    )
    done = switchboard("run", "failing:app", "boom", cwd=tmp_path)
    assert done.returncode == 1
    assert "error: run" in done.stderr and "failed: KeyError" in done.stderr


def test_errors_are_one_line_unless_debug() -> None:
    done = switchboard("run", "examples.shop.shop:app", "nope")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: app 'shop' has no workflow named 'nope'; "
        "known workflows: fulfil, fulfil_with_signal"
    )
    debug = switchboard("--debug", "run", "examples.shop.shop:app", "nope")
    assert "Traceback" in debug.stderr
    bad_config = switchboard("run", "examples.shop.shop:app", "fulfil", "--set", "pth=x")
    assert bad_config.returncode == 2 and "did you mean 'path'" in bad_config.stderr


def test_providers_lists_packages_components_and_extras() -> None:
    done = switchboard("providers")
    assert done.returncode == 0
    assert "local  (switchboard-orchestrator)" in done.stdout
    assert "components: queue, state, executor:default, executor:threads" in done.stdout


def test_worker_status_list_signal_history_on_a_shared_database(tmp_path: Path) -> None:
    db = str(tmp_path / "shared.db")
    common = ["--set", f"path={db}"]
    worker = subprocess.Popen(
        [sys.executable, "-m", "switchboard.cli", "worker", "examples.shop.shop:app", *common],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sys.path.insert(0, str(ROOT))
        import switchboard as sb
        from examples.shop.shop import app

        with sb.connect(app, "local", path=db) as client:
            run_id = client.start("fulfil_with_signal", order={"id": "o-8", "total": 1})
            deadline = time.monotonic() + 30
            while client.status(run_id).status != "waiting":
                assert time.monotonic() < deadline, "the worker process should take the run"
                time.sleep(0.05)
        app_args = ["--app", "examples.shop.shop:app", *common]
        listed = switchboard("list", *app_args, "--status", "waiting")
        assert run_id in listed.stdout
        sent = switchboard("signal", *app_args, run_id, "approved", "--payload", '{"by": "cli"}')
        assert sent.returncode == 0, sent.stderr
        deadline = time.monotonic() + 30
        while True:
            status = json.loads(switchboard("status", *app_args, run_id).stdout)
            if status["status"] == "completed":
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert status["output"]["approval"] == {"by": "cli"}
        history = switchboard("history", *app_args, run_id).stdout.splitlines()
        assert json.loads(history[0])["type"] == "run.created"
        assert json.loads(history[-1])["type"] == "run.completed"
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "received SIGTERM" in out and "worker stopped" in out
    os.environ.pop("SWITCHBOARD_APP", None)


def test_complete_and_fail_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "approvals.py").write_text(
        "import os\n"
        "import switchboard as sb\n"
        "app = sb.App('approvals')\n"
        "@app.task\n"
        "def ask():\n"
        "    # Written whole, then renamed: the test reads the token once the file exists.\n"
        "    with open('token.tmp', 'w') as out:\n"
        "        out.write(sb.current_task().token)\n"
        "    os.replace('token.tmp', 'token.txt')\n"
        "    return sb.pending()\n"
        "@app.workflow\n"
        "def run(ctx):\n"
        "    first = ask()\n"
        "    try:\n"
        "        ask()\n"
        "    except sb.TaskFailed as exc:\n"
        "        return [first, exc.message]\n"
    )
    db = str(tmp_path / "approvals.db")
    common = ["--app", "approvals:app", "--set", f"path={db}"]
    runner = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "switchboard.cli",
            "run",
            "approvals:app",
            "run",
            "--set",
            f"path={db}",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    token_file = tmp_path / "token.txt"
    try:
        for finish in (["--result", '{"ok": true}'], ["--error", "vendor said no"]):
            deadline = time.monotonic() + 30
            while not token_file.exists():
                assert time.monotonic() < deadline, "the task never handed out its token"
                time.sleep(0.05)
            token = token_file.read_text()
            token_file.unlink()
            done = switchboard("complete", *common, token, *finish, cwd=tmp_path)
            assert done.returncode == 0, done.stderr
        again = switchboard("complete", *common, token, "--result", "1", cwd=tmp_path)
        assert again.returncode == 2 and "already used" in again.stderr
        out, err = runner.communicate(timeout=60)
        assert runner.returncode == 0, err
    finally:
        if runner.poll() is None:  # a failed assertion must not leave the worker running
            runner.kill()
            runner.communicate()
    assert '"vendor said no"' in out and '"ok": true' in out
