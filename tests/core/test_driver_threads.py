"""The runtime's threads: reused when free, more when work overlaps, ended on close."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import pytest

from switchboard.threads import Overlap, Threads


def until(condition: object, what: str) -> None:
    deadline = time.monotonic() + 5
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def test_a_free_thread_takes_the_next_work_instead_of_a_new_thread_starting() -> None:
    threads = Threads("test", idle_seconds=5)
    seen: list[int] = []
    for _ in range(5):
        done = threading.Event()
        threads.run(lambda done=done: (seen.append(threading.get_ident()), done.set()))
        assert done.wait(5)
        until(lambda: threads._idle == 1, "the thread did not come back")
    assert len(set(seen)) == 1, "each work ran on a new thread"
    threads.close()


def test_overlapping_work_gets_threads_of_its_own() -> None:
    threads = Threads("test", idle_seconds=5)
    release = threading.Event()
    running: list[int] = []
    for _ in range(3):
        threads.run(lambda: (running.append(threading.get_ident()), release.wait(5)))
    until(lambda: len(running) == 3, "work waited for a busy thread")
    assert len(set(running)) == 3
    release.set()
    until(lambda: threads._idle == 3, "the threads did not come back")
    threads.close()
    ours = set(running)
    until(lambda: not any(t.ident in ours for t in threading.enumerate()), "threads lingered")


def test_an_idle_thread_ends_after_idle_seconds() -> None:
    threads = Threads("test", idle_seconds=0.05)
    threads.spawn()
    until(lambda: threads._idle == 1, "the thread never waited")
    until(lambda: threads._idle == 0, "the idle thread did not end")
    done = threading.Event()
    threads.run(done.set)  # no idle thread: a new one starts
    assert done.wait(5)
    threads.close()


def test_submitted_work_returns_its_result_or_its_exception_in_a_future() -> None:
    threads = Threads("test", idle_seconds=5)

    def fails() -> int:
        raise ValueError("no")

    assert threads.submit(lambda: 41 + 1).result(5) == 42
    with pytest.raises(ValueError, match="no"):
        threads.submit(fails).result(5)
    threads.close()


def test_overlapped_work_no_thread_has_begun_runs_on_the_caller_once() -> None:
    ran_on: list[int] = []

    def work() -> int:
        ran_on.append(threading.get_ident())
        return 42

    def fails() -> int:
        ran_on.append(threading.get_ident())
        raise ValueError("here")

    # A future no thread takes up: as if every thread were still on its way to it.
    overlap = Overlap(Future(), work)
    assert overlap.result() == 42
    assert overlap.result() == 42 and overlap.exception() is None
    assert ran_on == [threading.get_ident()], "not run once, on the caller's thread"
    failing = Overlap(Future(), fails)
    with pytest.raises(ValueError, match="here"):
        failing.result()
    assert isinstance(failing.exception(), ValueError)
    assert len(ran_on) == 2


def test_overlapped_work_a_thread_has_begun_is_waited_for() -> None:
    threads = Threads("test", idle_seconds=5)
    started, release = threading.Event(), threading.Event()
    ran_on: list[int] = []

    def work() -> int:
        ran_on.append(threading.get_ident())
        started.set()
        release.wait(5)
        raise ValueError("late")

    overlap = threads.overlap(work)
    assert started.wait(5)
    threading.Timer(0.05, release.set).start()
    with pytest.raises(ValueError, match="late"):
        overlap.result()
    assert isinstance(overlap.exception(), ValueError)
    assert ran_on and ran_on != [threading.get_ident()], "the caller ran it"
    assert len(ran_on) == 1
    threads.close()
