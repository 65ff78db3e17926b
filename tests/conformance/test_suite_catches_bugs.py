"""The suite tests itself: every deliberately broken provider must fail it, naming the guarantee.

One pytest subprocess runs, for each broken provider, the suite's tests that check the
guarantee it breaks, plus the same tests against the unbroken reference as a control (so a
failure cannot come from the fast timing used here). Its JUnit XML is then read back.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest

from switchboard_conformance.broken import BROKEN, BrokenProvider

RUNNER = """
from switchboard_conformance import ConformanceTiming, QueueConformance, StateStoreConformance
from switchboard_conformance.broken import BROKEN, conformance_class

import pytest
from switchboard.providers.local.queue import MemoryBroker
from switchboard.providers.local.state import MemoryStateStore

FAST = ConformanceTiming(lease=0.5, settle=0.5, delay=0.5, ttl=0.5, max_attempts=2)

for _broken in BROKEN:
    globals()[f"TestBroken_{_broken.name}"] = conformance_class(_broken, FAST)


class TestReferenceQueue(QueueConformance):
    @pytest.fixture
    def broker(self):
        return MemoryBroker()

    @pytest.fixture
    def conformance_timing(self):
        return FAST


class TestReferenceState(StateStoreConformance):
    @pytest.fixture
    def state_store(self):
        return MemoryStateStore()

    @pytest.fixture
    def conformance_timing(self):
        return FAST
"""


@dataclass
class Run:
    #: (class name, test name) -> failure text, or None when it passed.
    results: dict[tuple[str, str], str | None]
    output: str


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    directory = tmp_path_factory.mktemp("broken")
    (directory / "test_broken_providers.py").write_text(textwrap.dedent(RUNNER))
    selected: set[str] = set()
    for broken in BROKEN:
        assert broken.tests(), f"no test checks {broken.breaks}"
        selected |= {f"TestBroken_{broken.name}::{test}" for test in broken.tests()}
        reference = "TestReferenceQueue" if broken.broker else "TestReferenceState"
        selected |= {f"{reference}::{test}" for test in broken.tests()}
    report = directory / "report.xml"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "switchboard_conformance.plugin",
            "--sb-table",
            "--rootdir",
            str(directory),
            "-o",
            "addopts=",
            "-q",
            "--junitxml",
            str(report),
            *(f"test_broken_providers.py::{nodeid}" for nodeid in sorted(selected)),
        ],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
    )
    results: dict[tuple[str, str], str | None] = {}
    for case in ET.parse(report).iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        text = None if problem is None else f"{problem.get('message')}\n{problem.text}"
        results[(case.get("classname", "").rsplit(".", 1)[-1], case.get("name", ""))] = text
    assert len(results) == len(selected), completed.stdout[-3000:] + completed.stderr[-3000:]
    return Run(results, completed.stdout)


def test_there_are_at_least_ten_distinct_bugs() -> None:
    assert len({broken.name for broken in BROKEN}) >= 10
    assert len({broken.breaks for broken in BROKEN}) >= 10


def test_the_reference_passes_every_selected_test(run: Run) -> None:
    failed = {
        key: text for key, text in run.results.items()
        if key[0].startswith("TestReference") and text is not None
    }  # fmt: skip
    assert not failed, failed


@pytest.mark.parametrize("broken", BROKEN, ids=[broken.name for broken in BROKEN])
def test_the_suite_fails_the_broken_provider_naming_the_guarantee(
    run: Run, broken: BrokenProvider
) -> None:
    outcomes = {test: run.results[(f"TestBroken_{broken.name}", test)] for test in broken.tests()}
    failures = {test: text for test, text in outcomes.items() if text is not None}
    assert failures, f"{broken.name} passed every test of '{broken.breaks}': {sorted(outcomes)}"
    naming = [test for test, text in failures.items() if broken.breaks.text in text]
    assert naming, (
        f"{broken.name} failed, but no failure names '{broken.breaks.text}':\n"
        + "\n".join(f"{test}: {text[:500]}" for test, text in failures.items())
    )


def test_the_table_shows_the_broken_guarantees_as_failed(run: Run) -> None:
    assert "Switchboard conformance: guarantee by guarantee" in run.output
    table = run.output.split("guarantee by guarantee", 1)[1]
    for broken in BROKEN:
        row = f"FAIL    {broken.breaks.where}"
        lines = [line for line in table.splitlines() if line.startswith(row)]
        assert any(broken.breaks.text in line for line in lines), (broken.name, table[:4000])
