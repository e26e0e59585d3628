"""The ``licensed`` process: triggers, the main loop, signals and the control socket.

Everything that can call for a check funnels into one queue, and the main thread
runs the checks one at a time (``licensed.enforcer``). The triggers:

* start, before ``READY=1``;
* the licence folder (inotify), at once when a change completes;
* the expiry instant and the next 00:00:01, each an APScheduler date job computed
  by the pure expiry rule and re-planned after every check. Cron triggers are not
  used: they skip or repeat 00:00:01 on DST days. The scheduler has no thread of
  its own (``licensed.scheduling``): the main loop waits for the next job in the
  same ``select`` as for everything else and runs it itself;
* the safety interval (``check_interval``), a deadline of the main loop counted
  from the end of the last check. It also bounds how late a planned job can be
  should the clock watch below be unavailable;
* a wall-clock step or a resume from suspend (``licensed.clockwatch``), which also
  makes the scheduler place its jobs again on the new wall-clock time;
* ``SIGHUP`` (reload the configuration, then check) and ``licensectl check`` over the
  control socket.

Jobs run with ``misfire_grace_time=None``: a job whose time has passed, because the
clock stepped or the machine slept, runs at once instead of being dropped as missed.
User counting runs in the scheduler's worker threads so a slow database never holds
up a licence decision; a changed count queues a check like any other trigger.
Signal handlers and worker threads reach the main loop only by queueing a check
and writing to its wake-up pipe.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import selectors
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from licensed import config as config_module
from licensed import logsetup
from licensed.clockwatch import ClockWatch
from licensed.config import Config
from licensed.control import ControlServer
from licensed.enforcer import Enforcer, Outcome
from licensed.errors import ConfigError
from licensed.notify import Notifier
from licensed.scheduling import INLINE, LoopScheduler
from licensed.units import UnitManager
from licensed.users import UserCounter, UserCountTracker
from licensed.watch import LicenceWatch

log = structlog.get_logger(__name__)

_PLANNED_JOBS = ("daily", "expiry", "settle", "retry")
EXIT_CONFIG = 2


class Daemon:
    """One running licensed."""

    def __init__(self, config: Config, config_path: Path | None) -> None:
        self.config = config
        self._config_path = config_path
        self._notifier = Notifier()
        self._pending: set[str] = set()
        self._pending_lock = threading.Lock()
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stopping = False
        self._safety_due = math.inf
        self._reload = False
        self._selector = selectors.DefaultSelector()
        self._units = UnitManager(mask_helper=config.mask_helper)
        self._counter, self._tracker = _counting(config)
        self.enforcer = Enforcer(config, self._units, self._tracker)
        self._scheduler = LoopScheduler(self._wake, UTC)
        self._watch = LicenceWatch(config.licence_file)
        self._clock = _clock_watch()
        self._control = ControlServer(config.control_socket, config.admin_group)

    # Life cycle.

    def run(self) -> int:
        """Check, report ready, then serve triggers until SIGTERM."""
        self._install_signal_handlers()
        log.info(
            "daemon_started",
            pid=os.getpid(),
            config=str(self._config_path or config_module.DEFAULT_PATH),
            licence_file=str(self.config.licence_file),
            timezone=str(self.config.zone.key),
            counting="on" if self._tracker else "off",
        )
        outcome = self._check("start")
        self._notifier.ready(self.enforcer.summary())
        self._start_scheduler()
        self._plan(outcome)
        try:
            self._loop()
        finally:
            self._shutdown()
        return 0

    def request(self, trigger: str) -> None:
        """Queue a check; safe from any thread, but not from a signal handler."""
        with self._pending_lock:
            self._pending.add(trigger)
        self._wake()

    def _due(self, trigger: str) -> None:
        """A planned job's time has come: queue its check (main thread only)."""
        # No wake-up needed: the loop runs the pending checks right after the jobs.
        with self._pending_lock:
            self._pending.add(trigger)

    def _wake(self) -> None:
        """Wake the main loop; safe from signal handlers (one write, no lock)."""
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_write, b"\0")

    def _loop(self) -> None:
        selector = self._selector
        selector.register(self._wake_read, selectors.EVENT_READ, self._drain_wake)
        selector.register(self._watch, selectors.EVENT_READ, self._licence_event)
        selector.register(self._control, selectors.EVENT_READ, self._control_event)
        if self._clock is not None:
            selector.register(self._clock, selectors.EVENT_READ, self._clock_event)

        ping_every = self._notifier.watchdog_interval
        next_ping = math.inf if ping_every is None else time.monotonic() + ping_every
        while not self._stopping:
            due = min(self._safety_due, next_ping)
            for key, _ in selector.select(timeout=self._wait_time(due)):
                handler: Callable[[], None] = key.data
                handler()
            if self._reload:
                self._reload_config()
            self._scheduler.run_due()
            now = time.monotonic()
            if now >= self._safety_due:
                self._safety_due = math.inf  # planned again after the check
                with self._pending_lock:
                    self._pending.add("interval")
            self._run_pending()
            if ping_every is not None and now >= next_ping:
                self._notifier.watchdog()
                next_ping = now + ping_every
        selector.close()

    def _wait_time(self, due: float) -> float | None:
        """Seconds until ``due`` (monotonic) or the next job; ``None``: no limit."""
        timeout = None if due == math.inf else max(0.0, due - time.monotonic())
        jobs_in = self._scheduler.timeout()
        if jobs_in is not None and (timeout is None or jobs_in < timeout):
            return jobs_in
        return timeout

    def _shutdown(self) -> None:
        self._notifier.stopping()
        log.info("daemon_stopping")
        self._scheduler.shutdown(wait=False)
        self._control.close()
        self._watch.close()
        self._units.close()
        if self._counter is not None:
            self._counter.close()

    # Triggers.

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_read, 4096):
                pass

    def _licence_event(self) -> None:
        if self._watch.changed():
            self.request("licence_changed")

    def _clock_event(self) -> None:
        if self._clock is not None and self._clock.consume():
            log.info("clock_set", now=datetime.now(UTC).isoformat())
            self._scheduler.wakeup()
            self.request("clock_set")

    def _control_event(self) -> None:
        self._control.serve(self._answer)

    def _answer(self, command: str) -> dict[str, Any] | None:
        if command == "check":
            # Plan like any other trigger: a systemd failure found here must get
            # its retry, not wait for the safety interval.
            outcome = self._check("control")
            self._plan(outcome)
            return outcome.document
        if command == "status":
            return self.enforcer.document
        return None

    def _run_pending(self) -> None:
        with self._pending_lock:
            triggers, self._pending = self._pending, set()
        # A check on the way out would start a component that systemd (or an
        # administrator) is stopping along with licensed, as at shutdown.
        if not triggers or self._stopping:
            return
        outcome = self._check("+".join(sorted(triggers)))
        if triggers & {"licence_changed", "daily", "start"}:
            self._count_soon()
        self._plan(outcome)

    def _check(self, trigger: str) -> Outcome:
        self._watch.ensure()
        outcome = self.enforcer.check(trigger)
        self._notifier.status(self.enforcer.summary())
        return outcome

    # Scheduling.

    def _start_scheduler(self) -> None:
        # No interval jobs: after the clock steps forward, APScheduler walks every
        # missed run of one, holding its lock (34 s for a step of 30 years at
        # 60 s), which stalls the main loop past the watchdog. The regular count
        # is a date job, planned again after each run.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        self._scheduler.start()
        self._count_soon()

    def _plan(self, outcome: Outcome) -> None:
        # The safety check is a deadline of the main loop, not a job: it moves
        # after every check, and replacing a job costs far more than a number.
        self._safety_due = time.monotonic() + self.config.check_interval
        planned = dict(outcome.wake_at)
        for name in _PLANNED_JOBS:
            when = planned.get(name)
            job = self._scheduler.get_job(name)
            if when is None:
                if job is not None:
                    self._scheduler.remove_job(name)
                continue
            # Replacing a job makes the scheduler work out its waits again; most
            # checks leave the expiry and midnight jobs where they were.
            if job is not None and job.next_run_time == when:
                continue
            self._scheduler.add_job(
                self._due,
                "date",
                run_date=when,
                args=(name,),
                id=name,
                replace_existing=True,
                executor=INLINE,
            )
        log.debug(
            "checks_planned",
            **{name: when.isoformat() for name, when in planned.items()},
        )

    # User counting, in the scheduler's worker threads.

    def _count_soon(self, delay: float = 0.0, job: str = "count_now") -> None:
        if self._tracker is None:
            return
        run_date = datetime.fromtimestamp(time.time() + delay, UTC)
        self._scheduler.add_job(
            self._count,
            "date",
            run_date=run_date,
            id=job,
            replace_existing=True,
        )

    def _count(self) -> None:
        tracker = self._tracker
        database = self.config.database
        if tracker is None or database is None:
            return
        before = tracker.current
        after = tracker.refresh()
        if (before.actual, before.stale) != (after.actual, after.stale):
            self.request("users_counted")
        if after.stale:
            # Its own job id, so a retry never replaces a recount just asked for.
            self._count_soon(tracker.retry_delay(), job="count_retry")
        self._count_soon(database.count_interval, job="count")

    # Signals and reloading.

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    # Signal handlers run in the main thread between two bytecodes, possibly while
    # it holds the pending-checks lock: taking that lock here could deadlock, so
    # they only set a flag and wake the loop, which acts on the flag.

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True
        self._wake()

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self._reload = True
        self._wake()

    def _reload_config(self) -> None:
        self._reload = False
        self._notifier.reloading()
        try:
            new = config_module.load(self._config_path)
        except ConfigError as exc:
            log.error("config_reload_failed", reason=str(exc))
            self.enforcer.set_error(
                "config", f"reload failed, old settings kept: {exc}"
            )
        else:
            self.enforcer.set_error("config", None)
            self._apply(new)
            log.info("config_reloaded", config=str(new.source))
        # systemd waits for READY=1 to end a reload, whatever its outcome.
        self._notifier.ready(self.enforcer.summary())
        self.request("reload")

    def _apply(self, new: Config) -> None:
        old = self.config
        self.config = new
        self.enforcer.config = new
        if new.licence_file != old.licence_file:
            self._selector.unregister(self._watch)
            self._watch.close()
            self._watch = LicenceWatch(new.licence_file)
            self._selector.register(
                self._watch, selectors.EVENT_READ, self._licence_event
            )
        if new.mask_helper != old.mask_helper:
            self._units.close()
            self._units = UnitManager(mask_helper=new.mask_helper)
            self.enforcer.units = self._units
        if new.database != old.database:
            if self._counter is not None:
                self._counter.close()
            self._counter, self._tracker = _counting(new)
            self.enforcer.users = self._tracker
        self._scheduler.remove_all_jobs()
        self._scheduler.shutdown(wait=False)
        self._scheduler = LoopScheduler(self._wake, UTC)
        self._start_scheduler()


def _counting(
    config: Config,
) -> tuple[UserCounter | None, UserCountTracker | None]:
    database = config.database
    if database is None:
        log.info("user_counting_off", reason="the configuration has no [database]")
        return None, None
    counter = UserCounter(
        database.conninfo,
        database.query,
        connect_timeout=database.connect_timeout,
        statement_timeout=database.statement_timeout,
    )
    return counter, UserCountTracker(counter)


def _clock_watch() -> ClockWatch | None:
    try:
        return ClockWatch()
    except OSError as exc:
        log.warning("clock_watch_unavailable", reason=str(exc))
        return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``licensed`` command."""
    parser = argparse.ArgumentParser(
        prog="licensed",
        description=(
            "The licence-enforcement daemon of Assistant. It keeps SMD and Core's "
            "SfB function in line with the installed licence and publishes the "
            "status file. Normally started by systemd (licensed.service)."
        ),
        epilog="Exit codes: 0 stopped cleanly; 2 configuration error.",
    )
    parser.add_argument("--config", type=Path, help="configuration file")
    args = parser.parse_args(argv)

    try:
        config = config_module.load(args.config)
    except ConfigError as exc:
        print(f"licensed: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
    logsetup.configure(config.log_format, config.log_level)
    return Daemon(config, args.config).run()
