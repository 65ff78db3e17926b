"""The threads run drivers run on: reused when free, more when runs overlap, ended on close."""

from __future__ import annotations

import threading
import time

from switchboard.engine import _Threads


def until(condition: object, what: str) -> None:
    deadline = time.monotonic() + 5
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def test_a_free_thread_takes_the_next_work_instead_of_a_new_thread_starting() -> None:
    threads = _Threads(idle_seconds=5)
    seen: list[int] = []
    for _ in range(5):
        done = threading.Event()
        threads.run(lambda done=done: (seen.append(threading.get_ident()), done.set()))
        assert done.wait(5)
        until(lambda: threads._idle == 1, "the thread did not come back")
    assert len(set(seen)) == 1, "each work ran on a new thread"
    threads.close()


def test_overlapping_work_gets_threads_of_its_own() -> None:
    threads = _Threads(idle_seconds=5)
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
    threads = _Threads(idle_seconds=0.05)
    threads.spawn()
    until(lambda: threads._idle == 1, "the thread never waited")
    until(lambda: threads._idle == 0, "the idle thread did not end")
    done = threading.Event()
    threads.run(done.set)  # no idle thread: a new one starts
    assert done.wait(5)
    threads.close()
