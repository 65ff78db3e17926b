"""The README's examples run as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent.parent


def test_seed_example_runs_with_only_the_provider_changed(tmp_path: Path) -> None:
    for extra in ([], ["--db", str(tmp_path / "seed.db")]):
        done = subprocess.run(
            [sys.executable, "examples/seed_switchboard/run.py", *extra],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "completed, cache {'some_bool_field': True, 'report_mailed': True}" in done.stdout
        assert "step.scheduled  step 1 generate_report_task" in done.stdout
        assert "step.scheduled  step 2 another_task" in done.stdout


# The seed README's main.py, verbatim.
SEED_MAIN = """\
# main.py (your orchestrator's handler)

from switchboard import InitWorkflow, Call, ParallelCall, Done, DB, Cloud, GetCache

def workflow_handler(context):
    # Initialize the database connection
    db = DB(Cloud.AWS)

    # Initialize the workflow with the context
    InitWorkflow(
        cloud=Cloud.AWS,
        name="my_first_workflow",
        db=db,
        context=context
    )

    # Retrieve data passed between workflow steps or from executed tasks
    data = GetCache()

    # Execute a single task and wait for it to complete
    Call("process_data_task")

    # Conditionally execute multiple tasks in parallel
    if data["some_bool_field"]:
        ParallelCall(
            "generate_report_task",
            "another_task"
        )

    # Mark the workflow as complete
    return Done()
"""


def _code(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_seed_workflow_differs_from_the_seed_readme_only_in_the_provider() -> None:
    ours = (ROOT / "examples/seed_switchboard/main.py").read_text()
    assert _code(ours) == _code(SEED_MAIN.replace("Cloud.AWS", "Cloud.LOCAL"))
    assert _code(ours) != _code(SEED_MAIN), "the provider line did change"


def test_shop_demo() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.shop.demo"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert '"approved_by": "risk-desk"' in done.stdout and '"by": "demo"' in done.stdout
