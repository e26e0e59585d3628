"""The loop-driven APScheduler: jobs run when due, in the loop's thread or a worker.

A real scheduler with real date jobs; the loop is a real ``select`` on a real pipe,
and the wall clock is moved with ``time_machine`` (which leaves the monotonic clock
alone, as a real clock step does).
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from licensed.scheduling import INLINE, LoopScheduler

BOUND_S = 5.0


class Loop:
    """A minimal main loop: a wake-up pipe, a select and ``run_due``."""

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.scheduler = LoopScheduler(self.wake, UTC)
        self.ran: list[tuple[str, str]] = []

    def wake(self) -> None:
        os.write(self.write_end, b"\0")

    def job(self, name: str) -> None:
        self.ran.append((name, threading.current_thread().name))

    def turn(self, bound: float = BOUND_S) -> None:
        """One turn of the loop: wait as the scheduler says (at most ``bound``)."""
        timeout = self.scheduler.timeout()
        readable, _, _ = select.select(
            [self.read_end], [], [], bound if timeout is None else min(timeout, bound)
        )
        if readable:
            os.read(self.read_end, 4096)
        self.scheduler.run_due()

    def turn_until(self, done: threading.Event | None = None) -> None:
        """Turn until a job ran (or ``done`` is set), within ``BOUND_S``."""
        deadline = time.monotonic() + BOUND_S
        while not (done.is_set() if done else self.ran):
            if time.monotonic() > deadline:
                raise TimeoutError("no job ran in time")
            self.turn(bound=0.1)

    def close(self) -> None:
        self.scheduler.shutdown(wait=True)
        os.close(self.read_end)
        os.close(self.write_end)


@pytest.fixture
def loop() -> Iterator[Loop]:
    loop = Loop()
    loop.scheduler.start()
    yield loop
    loop.close()


def in_(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_a_date_job_runs_in_the_loops_thread_when_due(loop: Loop) -> None:
    """If an inline job is due, run_due runs it in the thread that calls it."""
    loop.scheduler.add_job(
        loop.job, "date", run_date=in_(0.2), args=("expiry",), executor=INLINE
    )

    loop.turn()  # the add woke the loop; the job is not due yet
    assert loop.ran == []
    assert 0.0 < (loop.scheduler.timeout() or 0.0) <= 0.2

    loop.turn_until()

    assert loop.ran == [("expiry", threading.current_thread().name)]
    assert loop.scheduler.get_job("expiry") is None


def test_without_jobs_the_loop_may_wait_indefinitely(loop: Loop) -> None:
    """If no job is planned, timeout() says so instead of inventing a wake-up."""
    loop.turn()

    assert loop.scheduler.timeout() is None


def test_a_job_planned_in_the_past_runs_at_once(loop: Loop) -> None:
    """If a job's time has already passed, it runs at the next turn, not dropped."""
    loop.scheduler.add_job(
        loop.job, "date", run_date=in_(-3600), args=("late",), executor=INLINE
    )

    loop.turn()

    assert [name for name, _ in loop.ran] == ["late"]


def test_a_clock_stepped_past_a_job_runs_it_once_woken(loop: Loop) -> None:
    """If the wall clock jumps past a job, a wakeup runs it without the long wait."""
    loop.scheduler.add_job(
        loop.job, "date", run_date=in_(3600), args=("midnight",), executor=INLINE
    )
    loop.turn()
    assert (loop.scheduler.timeout() or 0.0) > 3000

    with time_machine.travel(in_(3601), tick=True):
        loop.scheduler.wakeup()  # what the clock watch does on a step
        loop.turn()

    assert [name for name, _ in loop.ran] == ["midnight"]


def test_a_job_added_from_another_thread_wakes_the_loop(loop: Loop) -> None:
    """If a worker thread plans a job, the loop's select returns at once."""
    loop.turn()
    assert loop.scheduler.timeout() is None

    worker = threading.Thread(
        target=loop.scheduler.add_job,
        args=(loop.job, "date"),
        kwargs={"run_date": in_(0), "args": ("count",), "executor": INLINE},
    )
    worker.start()
    worker.join(BOUND_S)
    readable, _, _ = select.select([loop.read_end], [], [], BOUND_S)

    assert readable
    assert loop.scheduler.timeout() == 0.0
    loop.turn()
    assert [name for name, _ in loop.ran] == ["count"]


def test_default_jobs_run_in_a_worker_thread(loop: Loop) -> None:
    """If a job is on the default executor, it runs outside the loop's thread."""
    done = threading.Event()

    def slow_job() -> None:
        loop.job("user_count")
        done.set()

    loop.scheduler.add_job(slow_job, "date", run_date=in_(0))

    loop.turn_until(done)

    assert done.wait(BOUND_S)
    ((name, thread),) = loop.ran
    assert name == "user_count"
    assert thread != threading.current_thread().name
