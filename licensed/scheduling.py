"""APScheduler run by the daemon's main loop instead of a scheduler thread.

APScheduler's ``BackgroundScheduler`` keeps a thread that sleeps until the next
job is due and hands each job to a worker thread. For licensed the jobs that matter
(the expiry instant, the next 00:00:01) only queue a check for the main thread, so
each went through three threads before anything happened, and every planned job
woke the scheduler's thread once more. ``LoopScheduler`` keeps APScheduler's own
machinery (job store, date triggers, misfire and coalescing rules) and leaves the
waiting to the main loop's ``select``, the way APScheduler's asyncio and Tornado
schedulers leave it to their event loops:

* the loop waits at most ``timeout()`` seconds, then calls ``run_due()``;
* ``wakeup()``, which APScheduler calls whenever jobs are added or removed, may be
  called from any thread: it marks the schedule as changed and wakes the loop.

Jobs on the ``inline`` executor run in the main thread inside ``run_due``; jobs on
the default executor (user counting, which may block on the database) run in a
small thread pool.

The wait is counted on the monotonic clock, like any timeout. A wall-clock step or
a resume from suspend must therefore call ``wakeup()`` so that the next job is
placed again on the new wall-clock time (``licensed.clockwatch`` reports both).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import tzinfo
from typing import Any

from apscheduler.executors.debug import DebugExecutor
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.base import BaseScheduler

INLINE = "inline"
"""The executor that runs a job in the main loop's thread, inside ``run_due``."""
_WORKERS = 2  # a recount and a retry may overlap; nothing else runs there


class LoopScheduler(BaseScheduler):  # type: ignore[misc]  # APScheduler is untyped
    """An APScheduler scheduler whose waiting is done by the caller's loop."""

    def __init__(self, wake_loop: Callable[[], None], zone: tzinfo) -> None:
        self._wake_loop = wake_loop
        self._changed = True
        self._next_due: float | None = None
        super().__init__(
            timezone=zone,
            executors={
                "default": ThreadPoolExecutor(_WORKERS),
                INLINE: DebugExecutor(),
            },
            # misfire_grace_time=None: a job whose time passed while the clock
            # stepped or the machine slept runs at once instead of being dropped.
            job_defaults={
                "misfire_grace_time": None,
                "coalesce": True,
                "max_instances": 1,
            },
        )

    def shutdown(self, wait: bool = True) -> None:
        # Abstract in BaseScheduler, though it does all the work: nothing of this
        # scheduler's own needs stopping.
        super().shutdown(wait)

    def wakeup(self) -> None:
        """The jobs changed or the clock moved; safe from any thread."""
        self._changed = True
        self._wake_loop()

    def timeout(self) -> float | None:
        """How long the loop may wait before ``run_due``; ``None`` when no job."""
        if self._changed:
            return 0.0
        if self._next_due is None:
            return None
        return max(0.0, self._next_due - time.monotonic())

    def run_due(self) -> None:
        """Run the jobs whose time has come and work out when the next one is."""
        due = self._next_due
        if not self._changed and (due is None or time.monotonic() < due):
            return
        # Cleared before the jobs are read: a change made meanwhile, from another
        # thread, sets it again and is seen at the next call.
        self._changed = False
        wait: Any = self._process_jobs()
        self._next_due = None if wait is None else time.monotonic() + float(wait)
