"""The guarantee-by-guarantee table printed at the end of a conformance run (`--sb-table`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from switchboard_conformance.guarantees import Guarantee, checked_by

PASS, FAIL, SKIP, NOT_RUN = "PASS", "FAIL", "SKIP", "NOT RUN"


@dataclass
class _Outcome:
    status: str = NOT_RUN
    #: Skip reason, or the failing phase.
    detail: str = ""
    #: The failure's text, to tell which of the test's guarantees it names.
    failure: str = ""
    notes: list[str] = field(default_factory=list)


class GuaranteeTable:
    """Collects each test's outcome against the guarantees it checks, prints one row each."""

    def __init__(self) -> None:
        self._checks: dict[str, tuple[Guarantee, ...]] = {}
        self._outcomes: dict[str, _Outcome] = {}

    def pytest_itemcollected(self, item: pytest.Item) -> None:
        promises = checked_by(getattr(item, "function", None))
        if promises:
            self._checks[item.nodeid] = promises
            self._outcomes[item.nodeid] = _Outcome()

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        for item in items:
            if item.nodeid in self._outcomes:
                self._outcomes[item.nodeid].detail = "deselected"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        outcome = self._outcomes.get(report.nodeid)
        if outcome is None:
            return
        if report.when == "teardown":
            outcome.notes = [str(v) for k, v in report.user_properties if k == "sb_note"]
        if report.failed:
            phase = "" if report.when == "call" else f" in {report.when}"
            outcome.status, outcome.detail = FAIL, f"failed{phase}"
            outcome.failure += report.longreprtext
        elif report.skipped and outcome.status != FAIL:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else "skipped"
            outcome.status, outcome.detail = SKIP, reason.removeprefix("Skipped: ")
        elif report.when == "call" and report.passed and outcome.status == NOT_RUN:
            outcome.status = PASS

    def rows(self) -> list[tuple[Guarantee, str, list[str]]]:
        """(guarantee, status, details) in the order the guarantees were first collected."""
        by_promise: dict[Guarantee, list[tuple[str, _Outcome]]] = {}
        for nodeid, promises in self._checks.items():
            outcome = self._outcomes[nodeid]
            named = {p for p in promises if outcome.status == FAIL and p.text in outcome.failure}
            # A test that failed on one guarantee's check leaves its others undecided.
            undecided = _Outcome(NOT_RUN, "not reached", notes=outcome.notes)
            for promise in promises:
                seen = undecided if named and promise not in named else outcome
                by_promise.setdefault(promise, []).append((nodeid, seen))
        rows = []
        for promise, tests in by_promise.items():
            statuses = {outcome.status for _, outcome in tests}
            status = next(s for s in (FAIL, PASS, SKIP, NOT_RUN) if s in statuses)
            details = []
            for nodeid, outcome in tests:
                test = nodeid.split("::", 1)[-1]
                if outcome.status == FAIL:
                    details.append(f"{outcome.detail}: {test}")
                elif outcome.status == SKIP:
                    details.append(f"skipped: {outcome.detail} ({test})")
                elif outcome.detail not in ("", "deselected") and status != PASS:
                    details.append(f"{outcome.detail}: {test}")
                details += [f"{note} ({test})" for note in outcome.notes]
            rows.append((promise, status, details))
        return rows

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        rows = self.rows()
        if not rows:
            return
        terminalreporter.section("Switchboard conformance: guarantee by guarantee")
        width = max(len(promise.where) for promise, _, _ in rows)
        colours = {PASS: {"green": True}, FAIL: {"red": True}, SKIP: {"yellow": True}}
        for promise, status, details in rows:
            terminalreporter.write(f"{status:<8}", **colours.get(status, {}))
            terminalreporter.write(f"{promise.where:<{width}}  {promise.text}\n")
            for detail in details:
                terminalreporter.write(f"{'':<8}{'':<{width}}    - {detail}\n")
        counts = {s: sum(status == s for _, status, _ in rows) for s in (PASS, FAIL, SKIP, NOT_RUN)}
        terminalreporter.write_line(
            f"{len(rows)} guarantees: "
            + ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
        )
