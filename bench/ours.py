"""licensed's own figures: P1, P1b, P2, P3, P4 and P6 (see ``docs/performance.md``).

Every measurement runs the real ``licensed`` (``tests.harness.daemon``) against a
real systemd in namespaces (``tests.harness.systemd``), on real files, with the
daemon logging at ``info`` as it does in production. The licences are signed on
the spot with dates relative to today, so the figures mean the same whenever the
benchmark runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.probes import NotifySocket, StatusWatch, UnitWatch
from bench.switching import SFB, SMD, STOPPED, Switcher, Switching, Target
from bench.zones import MadeUpZone, midnight_zone
from licensed import control
from licensed.expiry import expiry_instant
from licensed.licence import Licence
from licensed.users import DEFAULT_SCHEMA
from tests.harness.daemon import LICENSECTL, Daemon, Installation, wait_until
from tests.harness.licences import Vendor, make_licence, make_trial
from tests.harness.postgres import ThrowawayPostgres
from tests.harness.systemd import SandboxedSystemd

P2_LEAD = timedelta(seconds=3)
REAL_LEAD_S = 4
P2_BOUND_S = 30.0
"""How long a P2 case waits for SMD to stop; a case that times out counts this."""
CORE = "assistant-core.service"
_STOPPED_ACTUALS = frozenset({"masked", "stopped", "missing"})


@dataclass(frozen=True)
class ExpiryCase:
    """A trial's last valid day in a zone; the expiry instant follows it."""

    zone: str
    valid_until: date

    @property
    def instant(self) -> datetime:
        # Arithmetic on aware datetimes in a zone is wall-clock arithmetic, which
        # goes wrong across the very gaps some cases are about: work in UTC.
        return expiry_instant(self.valid_until, ZoneInfo(self.zone)).astimezone(UTC)


EXPIRY_CASES = (
    ExpiryCase("Europe/Zurich", date(2027, 1, 31)),
    ExpiryCase("America/Havana", date(2027, 3, 13)),
    ExpiryCase("UTC", date(2027, 6, 30)),
    ExpiryCase("Asia/Kolkata", date(2027, 2, 15)),
    ExpiryCase("America/New_York", date(2027, 11, 6)),
)


@dataclass(frozen=True)
class Licences:
    """Two full licences and an expired trial, issued yesterday by one vendor."""

    full_a: Target
    full_b: Target
    expired: Target

    @classmethod
    def signed_by(cls, vendor: Vendor) -> Licences:
        issued = _yesterday()
        trial = make_trial(
            issued.date() - timedelta(days=2),
            serial="AST-T001",
            issued=issued - timedelta(days=30),
        )
        return cls(
            full_a=_target(vendor, make_licence(serial="AST-0001", issued=issued)),
            full_b=_target(vendor, make_licence(serial="AST-0002", issued=issued)),
            expired=_target(vendor, trial, state="expired", components_run=False),
        )


def _yesterday() -> datetime:
    today = datetime.now(UTC).replace(second=0, microsecond=0)
    return today - timedelta(days=1)


def _target(
    vendor: Vendor,
    licence: Licence,
    state: str = "licensed",
    components_run: bool = True,
) -> Target:
    return Target(
        licence.serial, vendor.sign(licence), licence.serial, state, components_run
    )


def new_installation(root: Path, **options: Any) -> Installation:
    """An installation whose daemon logs at ``info``, as in production."""
    installation = Installation(root, **options)
    text = installation.config.read_text()
    installation.config.write_text(
        text.replace('log_level = "debug"', 'log_level = "info"')
    )
    return installation


def settled(document: Mapping[str, Any]) -> bool:
    """Whether every component is as the decision requires."""
    for component in document.get("components", []):
        if component["required"] == "running" and component["actual"] != "running":
            return False
        if component["required"] == "stopped" and component["actual"] not in (
            _STOPPED_ACTUALS
        ):
            return False
    return True


def ensure_components_running(sandbox: SandboxedSystemd) -> None:
    """Undo whatever enforcement left: unmask and start SMD and SfB.

    Every phase starts from here: licensed leaves alone a mask it did not set
    (the peer's, or a previous daemon's), as it would an administrator's. A unit
    left failed (or Core, which SfB needs) is reset and started once more.
    """
    sandbox.systemctl("unmask", "--runtime", SMD, SFB)
    if sandbox.systemctl("start", SMD, SFB, check=False).returncode == 0:
        return

    sandbox.systemctl("reset-failed", check=False)
    started = sandbox.systemctl("start", CORE, SMD, SFB, check=False)
    if started.returncode != 0:
        status = sandbox.systemctl("status", CORE, SMD, SFB, check=False).stdout
        raise RuntimeError(
            f"cannot start the components before a phase: {started.stderr}\n{status}"
        )


# P1, P1b and the floor: one daemon, replaced licences.


@dataclass
class Running:
    """A daemon on an installation, with the status folder watched."""

    installation: Installation
    daemon: Daemon
    status: StatusWatch
    licences: Licences
    installed: Target


@contextlib.contextmanager
def running_daemon(root: Path, sandbox: SandboxedSystemd) -> Iterator[Running]:
    """Start licensed on a full licence and wait until the components run."""
    ensure_components_running(sandbox)
    installation = new_installation(root, check_interval=3600)
    licences = Licences.signed_by(installation.vendor)
    installation.licence_file.write_bytes(licences.full_a.data)
    status = StatusWatch(installation.status_file)
    daemon = Daemon(installation, env={"DBUS_SYSTEM_BUS_ADDRESS": sandbox.bus_address})
    try:
        daemon.wait_started()
        wait_until(lambda: settled(installation.status()), timeout=10)
        yield Running(installation, daemon, status, licences, licences.full_a)
    finally:
        daemon.stop()
        status.close()


def switch(running: Running, units: UnitWatch, to: Target, runs: int) -> Switching:
    """Alternate between the installed licence and ``to``; end on a full one."""

    def settle(
        target: Target, start: float, document: Mapping[str, Any] | None
    ) -> None:
        if document is None or not settled(document):
            running.status.wait_for(lambda d: target.shown_in(d) and settled(d))
        # The status is published before the check's tail (reconciling, logging,
        # planning the next checks). A round trip on the control socket, which
        # the main loop serves only between checks, makes the next run start on
        # an idle daemon instead of queueing behind that tail.
        control.ask(running.installation.control_socket, "status", timeout=10)

    switcher = Switcher(
        running.installation.licence_file,
        running.installation.root / "incoming" / "bench.lic",
        running.status,
        units,
        settle,
    )
    even = runs + runs % 2
    return switcher.run((running.installed, to), even)


# P2: the expiry instant under libfaketime.


@dataclass(frozen=True)
class Lateness:
    """How late SMD was stopped after one expiry instant, from the daemon's log."""

    case: ExpiryCase
    component_stopped: float
    unit_stopped: float
    timed_out: str | None = None


def measure_expiry(
    root: Path, sandbox: SandboxedSystemd, faketime: str, cases: tuple[ExpiryCase, ...]
) -> list[Lateness]:
    """Run a daemon a little before each case's instant; read when SMD stopped."""
    return [
        _expiry_case(root / f"expiry-{n}", sandbox, faketime, case)
        for n, case in enumerate(cases)
    ]


def _expiry_case(
    root: Path, sandbox: SandboxedSystemd, faketime: str, case: ExpiryCase
) -> Lateness:
    ensure_components_running(sandbox)
    installation = new_installation(root, timezone=case.zone, check_interval=3600)
    installation.install(
        make_trial(case.valid_until, issued=case.instant - timedelta(days=20))
    )
    env = {
        "DBUS_SYSTEM_BUS_ADDRESS": sandbox.bus_address,
        "TZ": "UTC",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_DONT_RESET": "1",
    }
    start = case.instant - P2_LEAD
    prefix = (faketime, "-f", f"@{start:%Y-%m-%d %H:%M:%S}")
    daemon = Daemon(installation, env=env, command_prefix=prefix)
    try:
        wait_until(
            lambda: daemon.logged("component_stopped", unit=SMD), timeout=P2_BOUND_S
        )
    except TimeoutError:
        return Lateness(case, P2_BOUND_S, P2_BOUND_S, timed_out=str(daemon.log_path))
    finally:
        _stop_under_faketime(daemon)
    instant = case.instant
    return Lateness(
        case,
        (_event_time(daemon, "component_stopped", unit=SMD) - instant).total_seconds(),
        (_event_time(daemon, "unit_stopped", unit=SMD) - instant).total_seconds(),
    )


def _stop_under_faketime(daemon: Daemon) -> None:
    """Stop the daemon, not only the ``faketime`` wrapper around it.

    faketime runs the daemon as its child and does not pass SIGTERM on: stopping
    the wrapper alone would leave the daemon running, orphaned.
    """
    children = Path(f"/proc/{daemon.process.pid}/task/{daemon.process.pid}/children")
    with contextlib.suppress(FileNotFoundError):
        for pid in children.read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
    daemon.stop()


def _event_time(daemon: Daemon, event: str, **fields: object) -> datetime:
    for entry in daemon.events():
        if entry.get("event") == event and all(
            entry.get(k) == v for k, v in fields.items()
        ):
            return datetime.fromisoformat(entry["timestamp"])
    raise RuntimeError(
        f"the daemon did not log {event} {fields}; see {daemon.log_path}"
    )


@dataclass(frozen=True)
class RealLateness:
    """How late SMD was stopped after an expiry instant on the real clock."""

    zone: MadeUpZone
    gap: bool
    component_stopped: float
    observed: float
    timed_out: str | None = None


def measure_expiry_real(
    root: Path, sandbox: SandboxedSystemd, units: UnitWatch, gaps: tuple[bool, ...]
) -> list[RealLateness]:
    """Per case, a made-up zone whose expiry instant is a few seconds away."""
    folder = root / "zones"
    folder.mkdir(parents=True, exist_ok=True)
    return [
        _real_case(
            root / f"real-{n}",
            folder,
            name=f"Bench/Night{n}",
            sandbox=sandbox,
            units=units,
            gap=gap,
        )
        for n, gap in enumerate(gaps)
    ]


def _real_case(
    root: Path,
    folder: Path,
    *,
    name: str,
    sandbox: SandboxedSystemd,
    units: UnitWatch,
    gap: bool,
) -> RealLateness:
    ensure_components_running(sandbox)
    zone = midnight_zone(folder, name, int(time.time()) + REAL_LEAD_S, gap)
    installation = new_installation(root, timezone=name, check_interval=3600)
    issued = zone.instant - timedelta(days=20)
    installation.install(make_trial(zone.valid_until, issued=issued))
    env = {"DBUS_SYSTEM_BUS_ADDRESS": sandbox.bus_address, "PYTHONTZPATH": str(folder)}

    since = time.perf_counter()
    daemon = Daemon(installation, env=env)
    try:
        stopped = units.wait_for(SMD, STOPPED, since, REAL_LEAD_S + P2_BOUND_S)
        wait_until(
            lambda: daemon.logged("component_stopped", unit=SMD), timeout=P2_BOUND_S
        )
    except TimeoutError:
        return RealLateness(zone, gap, P2_BOUND_S, P2_BOUND_S, str(daemon.log_path))
    finally:
        daemon.stop()
    logged = _event_time(daemon, "component_stopped", unit=SMD)
    return RealLateness(
        zone,
        gap,
        (logged - zone.instant).total_seconds(),
        stopped.wall - zone.instant.timestamp(),
    )


# P4 and P3: start to READY=1 with a database, then the idle cost.


@dataclass
class Started:
    """The start-up samples and the daemon of the last start, still running."""

    samples: list[float] = field(default_factory=list)
    daemon: Daemon | None = None


def measure_start(
    root: Path, sandbox: SandboxedSystemd, postgres: ThrowawayPostgres, runs: int
) -> Started:
    """Start licensed ``runs`` times, timing process start to ``READY=1``."""
    ensure_components_running(sandbox)
    postgres.create_database("licensed_bench")
    postgres.psql(DEFAULT_SCHEMA, dbname="licensed_bench")
    conninfo = postgres.conninfo("licensed_bench")
    installation = new_installation(
        root, extra=f'\n[database]\nconninfo = "{conninfo}"\n'
    )
    installation.install(make_licence(issued=_yesterday()))
    started = Started()
    for number in range(runs):
        daemon, elapsed = _start_once(installation, sandbox)
        started.samples.append(elapsed)
        if number < runs - 1:
            daemon.stop()
        else:
            started.daemon = daemon
    return started


def _start_once(
    installation: Installation, sandbox: SandboxedSystemd
) -> tuple[Daemon, float]:
    notify = NotifySocket(installation.root / "notify.sock")
    env = {
        "NOTIFY_SOCKET": str(notify.path),
        "DBUS_SYSTEM_BUS_ADDRESS": sandbox.bus_address,
    }
    try:
        start = time.perf_counter()
        daemon = Daemon(installation, env=env)
        ready = notify.wait_ready()
    finally:
        notify.close()
    return daemon, ready - start


@dataclass(frozen=True)
class Idle:
    """CPU time over an idle window, scaled to an hour, and resident memory."""

    window: float
    cpu_per_hour: float
    ticks_per_hour: float
    rss_mb: float
    peak_rss_mb: float
    private_mb: float
    proportional_mb: float


def measure_idle(daemon: Daemon, window: float) -> Idle:
    """Let the daemon idle for ``window`` seconds after its first user count."""
    installation = daemon.installation
    wait_until(lambda: installation.status()["users"]["actual"] is not None, 10)
    pid = daemon.process.pid

    before = _thread_cpu_ns(pid), _cpu_ticks(pid)
    time.sleep(window)  # the measurement itself: an idle window, not a wait
    after = _thread_cpu_ns(pid), _cpu_ticks(pid)
    ticks = after[1] - before[1]
    # schedstat counts each thread's CPU time to the nanosecond, but a thread
    # that ended during the window takes its count with it; utime + stime keep
    # it, in 10 ms ticks. The precise figure when every thread lived through.
    if before[0].keys() <= after[0].keys():
        used = sum(ns - before[0].get(tid, 0) for tid, ns in after[0].items()) / 1e9
    else:
        used = ticks
    memory = _memory_kib(pid)
    return Idle(
        window,
        used * 3600 / window,
        ticks * 3600 / window,
        memory["VmRSS"] / 1024,
        memory["VmHWM"] / 1024,
        (memory["Private_Clean"] + memory["Private_Dirty"]) / 1024,
        memory["Pss"] / 1024,
    )


def _thread_cpu_ns(pid: int) -> dict[int, int]:
    """Each thread's CPU time so far, in nanoseconds (schedstat)."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            times[int(task.name)] = int((task / "schedstat").read_text().split()[0])
    return times


def _cpu_ticks(pid: int) -> float:
    """utime + stime in clock ticks (10 ms), threads that ended included."""
    # Fields 14 and 15 of /proc/PID/stat, counted after the command name, which
    # may itself contain spaces and parentheses.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _memory_kib(pid: int) -> dict[str, int]:
    values = {}
    for name in ("status", "smaps_rollup"):
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Pss", "Private_Clean", "Private_Dirty"):
                values[key] = int(rest.split()[0])
    return values


# P6: licensectl as a whole process.


def ctl_command() -> tuple[str, str]:
    """``status`` once licensectl has it, else ``show``; and the figure's label."""
    probe = subprocess.run(
        [str(LICENSECTL), "status", "--help"], capture_output=True, check=False
    )
    if probe.returncode == 0:
        return "status", "P6 licensectl status"
    return "show", "P6 licensectl show (no status yet)"


def measure_ctl(installation: Installation, command: str, runs: int) -> list[float]:
    """Wall time of ``licensectl COMMAND``, process start to exit."""
    argv = [str(LICENSECTL), "--config", str(installation.config), command]
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, check=False)
        samples.append(time.perf_counter() - start)
        if done.returncode not in (0, 1, 3):
            raise RuntimeError(
                f"licensectl {command} exited {done.returncode}: {done.stderr!r}"
            )
    return samples
