"""The SQLite file's group commit: what one writer's error does to the others in its batch."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from switchboard.errors import Conflict, TransientProviderError
from switchboard.providers.local.sqlite import Database


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database.acquire(str(tmp_path / "g.db"), "full")
    db.write(lambda c: c.execute("CREATE TABLE t (k TEXT PRIMARY KEY)").rowcount)
    yield db
    db.release()


def insert(key: str) -> Callable[[sqlite3.Connection], int]:
    return lambda c: c.execute("INSERT INTO t (k) VALUES (?)", (key,)).rowcount


def rows(database: Database) -> list[str]:
    return [str(row[0]) for row in database.read("SELECT k FROM t ORDER BY k", ())]


def one_batch(database: Database, works: list[Callable[[sqlite3.Connection], int]]) -> list[object]:
    """Run `works` as one batch: a first writer leads while the others queue behind it."""
    outcomes: list[object] = [None] * (len(works) + 1)

    def writer(index: int, work: Callable[[sqlite3.Connection], int]) -> None:
        try:
            outcomes[index] = database.write(work)
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes[index] = exc

    def until(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 5
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.001)

    threads = [threading.Thread(target=writer, args=(len(works), insert("lead")))]
    with database.lock:  # the leader waits here, holding a batch of its own write only
        threads[0].start()
        until(lambda: database._leading and not database._pending, "no leader took a batch")
        for index, work in enumerate(works):
            threads.append(threading.Thread(target=writer, args=(index, work)))
            threads[-1].start()
        until(lambda: len(database._pending) == len(works), "the writers did not queue up")
    for thread in threads:
        thread.join(5)
    assert outcomes[-1] == 1, "the leader's own write"
    return outcomes[:-1]


def test_an_error_raised_before_any_change_reaches_its_writer_alone(database: Database) -> None:
    def refuses(c: sqlite3.Connection) -> int:
        raise Conflict("refused")

    outcomes = one_batch(database, [insert("a"), refuses, insert("b")])
    assert outcomes[0] == 1 and outcomes[2] == 1, outcomes
    assert isinstance(outcomes[1], Conflict), outcomes
    assert rows(database) == ["a", "b", "lead"], "the rest of the batch must commit"


def test_an_sqlite_error_fails_the_whole_batch_and_commits_none_of_it(
    database: Database,
) -> None:
    outcomes = one_batch(
        database,
        [insert("a"), lambda c: c.execute("INSERT INTO missing VALUES (1)").rowcount, insert("b")],
    )
    assert all(isinstance(outcome, TransientProviderError) for outcome in outcomes), outcomes
    assert rows(database) == ["lead"], "no write of the failed batch may commit"


def test_a_batch_commits_every_writer_in_one_transaction(database: Database) -> None:
    commits = 0
    commit = database._commit

    def counting(batch: list[Any], previous: list[Any]) -> None:
        nonlocal commits
        commits += 1
        commit(batch, previous)

    database._commit = counting  # type: ignore[method-assign]
    outcomes = one_batch(database, [insert(f"k{i}") for i in range(5)])
    assert outcomes == [1] * 5
    assert commits == 2, "the leader's own write, then one transaction for the five queued"
    assert rows(database) == [*(f"k{i}" for i in range(5)), "lead"]


def test_many_writers_each_return_once_their_own_write_is_committed(database: Database) -> None:
    """Writers keep arriving while leaders commit batch after batch and hand the lead on:
    every write returns its own result, and is readable once it has returned."""
    unseen: list[str] = []
    errors: list[BaseException] = []

    def writer(thread: int) -> None:
        try:
            for i in range(25):
                key = f"t{thread:02d}-{i:02d}"
                assert database.write(insert(key)) == 1
                if not database.read("SELECT 1 FROM t WHERE k = ?", (key,)):
                    unseen.append(key)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert not unseen, f"returned before committed: {unseen[:5]}"
    assert len(rows(database)) == 24 * 25
    assert not database._leading and not database._pending, "the lead was not given up"


def synchronous_seen(c: sqlite3.Connection) -> int:
    """The `synchronous` level the transaction running `c` will commit with (2 FULL, 1 NORMAL)."""
    return int(c.execute("PRAGMA synchronous").fetchone()[0])


def test_a_batch_of_bookkeeping_writes_commits_without_an_fsync(database: Database) -> None:
    assert database.write(synchronous_seen, durable=False) == 1
    assert database.write(synchronous_seen) == 2
    assert database.write(synchronous_seen, durable=False) == 1


def test_a_durable_write_in_a_batch_makes_the_whole_batch_fsync(database: Database) -> None:
    outcomes: list[object] = [None, None]

    def soft(index: int) -> None:
        outcomes[index] = database.write(synchronous_seen, durable=False)

    with database.lock:  # the first writer leads alone; the two below share the next batch
        lead = threading.Thread(target=soft, args=(0,))
        lead.start()
        while not (database._leading and not database._pending):
            time.sleep(0.001)
        durable = threading.Thread(
            target=lambda: outcomes.__setitem__(1, database.write(synchronous_seen))
        )
        other: list[object] = []
        late = threading.Thread(
            target=lambda: other.append(database.write(synchronous_seen, durable=False))
        )
        durable.start()
        late.start()
        while len(database._pending) < 2:
            time.sleep(0.001)
    for thread in (lead, durable, late):
        thread.join(5)
    assert outcomes == [1, 2] and other == [2], (outcomes, other)


def test_with_synchronous_normal_no_write_fsyncs(tmp_path: Path) -> None:
    db = Database.acquire(str(tmp_path / "n.db"), "normal")
    try:
        assert db.write(synchronous_seen) == 1
    finally:
        db.release()


def test_a_lone_single_statement_write_is_its_own_transaction(database: Database) -> None:
    statements: list[str] = []
    database._connection.set_trace_callback(statements.append)
    try:
        assert database.write(insert("alone"), single=True) == 1
        assert database.write(insert("wrapped")) == 1
    finally:
        database._connection.set_trace_callback(None)
    assert [s.split()[0] for s in statements] == ["INSERT", "BEGIN", "INSERT", "COMMIT"]
    assert rows(database) == ["alone", "wrapped"]


def test_a_single_statement_write_that_fails_changes_nothing(database: Database) -> None:
    database.write(insert("taken"))
    with pytest.raises(TransientProviderError):
        database.write(insert("taken"), single=True)  # the primary key refuses it
    assert rows(database) == ["taken"]
    assert not database._connection.in_transaction
