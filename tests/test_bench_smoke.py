"""The bench still works: its smoke mode on Switchboard's own workloads (not the peers,
which need their own virtual environments). Numbers are checked to exist, never timed."""

from __future__ import annotations

from pathlib import Path

from bench import run


def test_bench_smoke_produces_numbers(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    report = run.main(
        [
            "--smoke",
            "--systems",
            "switchboard",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
        ]
    )

    keys = {series.workload.key for series in report.series}
    assert keys == {"W1", "W2", "W3", "W4"}
    assert {series.system for series in report.series} == set(run.SWITCHBOARD_SYSTEMS)
    for series in report.series:
        assert not series.failures, (series.system, series.workload.name, series.failures)
        assert not series.wrong_outputs, (series.system, series.workload.name)
        assert series.steps_per_second is not None and series.steps_per_second > 0
        assert series.us_per_step is not None and series.us_per_step > 0

    assert report.writes
    for row in report.writes:
        assert row["puts"] > 0, row
        if "commits" in row:
            assert row["commits"] > 0, row

    assert not report.aws_cost_error, report.aws_cost_error
    assert {(row["deployment"], row["workload"]) for row in report.aws_cost} == {
        (deployment, workload)
        for deployment in ("workers", "lambda")
        for workload in ("chain of 5", "fan-out of 5")
    }
    for row in report.aws_cost:
        assert row["write_units"] > 0 and row["total_per_million"] > 0, row

    text = out.read_text()
    assert "## Results" in text
    assert "W3 fan-out of 5" in text
    assert "Switchboard (SQLite)" in text
    assert "## AWS: requests and dollars per 1M steps" in text
