"""Faults around the real daemon: its database, systemd, the status folder, the
licence file, SIGKILL and the clock.

Each test runs ``licensed`` as a process against a real systemd (a sandbox), and
where it matters a real PostgreSQL, then breaks one thing the daemon depends on and
checks two promises: a fault of the checker never changes the licence decision or
the components, and once the cause is gone the daemon converges without help.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bench.kill_storm import Storm
from bench.probes import UnitWatch
from licensed.control import ask
from licensed.expiry import expiry_instant
from licensed.users import DEFAULT_SCHEMA
from tests.harness.daemon import Daemon, Installation, wait_until
from tests.harness.fixtures_postgres import Database
from tests.harness.licences import make_licence, make_trial
from tests.harness.postgres import SCRAM_GROUP
from tests.harness.prereq import require
from tests.harness.systemd import SandboxedSystemd
from tests.test_clock_e2e import (  # noqa: F401 - the fixture is used by name
    fake_clock_env,
    libfaketime_fixture,
    set_fake_time,
)

SMD = "assistant-smd.service"
SFB = "assistant-core-sfb.service"
REPORTS = "assistant-reports.service"
LICENCE = make_licence(users=3, over_licence_limit=5)
BOUND = 10.0  # seconds: generous; every convergence here takes well under it
NOT_ACTIVE = frozenset({"deactivating", "inactive", "failed"})
STAND_IN = """\
[Unit]
Description=Assistant component (test stand-in)
StartLimitIntervalSec=0

[Service]
Type=exec
ExecStart=/bin/sleep infinity
"""
_roles = count(1)


def components(installation: Installation) -> dict[str, dict[str, Any]]:
    return {c["unit"]: c for c in installation.status()["components"]}


def error_sources(installation: Installation) -> set[str]:
    return {e["source"] for e in installation.status()["errors"]}


def running_clean(installation: Installation, *units: str) -> bool:
    """Whether the status shows ``units`` running and no checker error."""
    shown = components(installation)
    return not installation.status()["errors"] and all(
        shown[u]["actual"] == "running" and shown[u]["error"] is None for u in units
    )


# The database.


def database_table(conninfo: str, **more: object) -> str:
    lines = ["[database]", f"conninfo = {json.dumps(conninfo)}", "count_interval = 1"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in more.items()]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class DatabaseFault:
    """A way for the user database to fail, and what the error then says."""

    name: str
    configure: Callable[[Database, Path], str]
    says: str


def _down(db: Database, tmp_path: Path) -> str:
    return database_table(f"host={tmp_path / 'no-server'} dbname=assistant")


def _slow(db: Database, tmp_path: Path) -> str:
    query = "SELECT count(*) FROM persons, pg_sleep(3) WHERE assistant_enabled"
    return database_table(db.conninfo, query=query, statement_timeout=0.2)


def _new_role(db: Database, *options: str) -> str:
    role = f"licensed_e2e_{os.getpid()}_{next(_roles)}"
    db.psql(f"CREATE ROLE {role} LOGIN {' '.join(options)}")
    return role


def _wrong_password(db: Database, tmp_path: Path) -> str:
    role = _new_role(db, "PASSWORD 'right-one'", f"IN ROLE {SCRAM_GROUP}")
    conninfo = db.cluster.conninfo(db.name, user=role) + " password=wrong-one"
    return database_table(conninfo)


def _no_rights(db: Database, tmp_path: Path) -> str:
    role = _new_role(db)
    return database_table(db.cluster.conninfo(db.name, user=role))


DATABASE_FAULTS = [
    DatabaseFault("down", _down, "cannot connect to the user database"),
    DatabaseFault("slow", _slow, "cancelled"),
    DatabaseFault("wrong-password", _wrong_password, "password authentication failed"),
    DatabaseFault("role-without-rights", _no_rights, "permission denied"),
]


@pytest.mark.postgres
@pytest.mark.parametrize("fault", DATABASE_FAULTS, ids=lambda f: f.name)
def test_a_failing_database_shows_no_message_and_changes_no_component(
    tmp_path: Path,
    postgres_db: Database,
    systemd_sandbox: SandboxedSystemd,
    start_daemon: Callable[..., Daemon],
    fault: DatabaseFault,
) -> None:
    """If the user database is down, slow or refuses the daemon, the count is
    unknown and stale with the reason, no message appears and nothing stops,
    although the persons table holds more users than the escalation limit."""
    postgres_db.psql(DEFAULT_SCHEMA)
    postgres_db.psql(
        "INSERT INTO persons SELECT n, true, false FROM generate_series(1, 9) n"
    )
    installation = Installation(tmp_path, extra=fault.configure(postgres_db, tmp_path))
    installation.install(LICENCE)

    daemon = start_daemon(installation)

    wait_until(lambda: installation.status()["users"]["stale"] is True, BOUND)
    ask(installation.control_socket, "check", timeout=BOUND)
    document = installation.status()
    assert document["users"]["actual"] is None
    assert fault.says in document["users"]["error"]
    assert "right-one" not in json.dumps(document)
    assert "wrong-one" not in json.dumps(document)
    assert document["state"] == "licensed"
    assert document["messages"] == []
    assert systemd_sandbox.is_active(SMD) == "active"
    assert not daemon.logged("component_stopped")
    assert daemon.process.poll() is None


# systemd.


def test_a_missing_component_unit_is_retried_until_it_is_installed(
    tmp_path: Path,
    systemd_sandbox: SandboxedSystemd,
    start_daemon: Callable[..., Daemon],
) -> None:
    """If a configured component's unit does not exist, the error is in the status
    and the start is retried; once the unit is installed, it runs."""
    extra = f'[components]\nSMD = "{SMD}"\nReports = "{REPORTS}"\n'
    installation = Installation(tmp_path, extra=extra)
    installation.install(LICENCE)

    daemon = start_daemon(installation)

    wait_until(lambda: "systemd" in error_sources(installation), BOUND)
    assert "no such unit" in components(installation)[REPORTS]["error"]
    assert components(installation)[SMD]["actual"] == "running"
    wait_until(lambda: len(daemon_events(daemon, "component_action_failed")) >= 2, 5)
    assert systemd_sandbox.workdir is not None
    (systemd_sandbox.workdir / "units" / REPORTS).write_text(STAND_IN)
    systemd_sandbox.systemctl("daemon-reload")

    wait_until(lambda: running_clean(installation, SMD, REPORTS), BOUND)
    assert systemd_sandbox.is_active(REPORTS) == "active"
    assert daemon.logged("error_cleared", source="systemd")
    assert daemon.process.poll() is None


def test_a_start_job_refused_by_systemd_is_retried_until_allowed(
    tmp_path: Path,
    make_systemd_sandbox: Callable[..., SandboxedSystemd],
    start_daemon: Callable[..., Daemon],
) -> None:
    """If systemd refuses to start a component, the error is in the status and
    the start is retried; once systemd allows it, the component runs."""
    refusing = STAND_IN.replace("[Service]", "RefuseManualStart=yes\n\n[Service]")
    sandbox = make_systemd_sandbox(extra_units={SMD: refusing})
    installation = Installation(tmp_path)
    installation.install(LICENCE)
    sandbox.systemctl("stop", SMD)
    env = {"DBUS_SYSTEM_BUS_ADDRESS": sandbox.bus_address}

    daemon = start_daemon(installation, env=env)

    wait_until(lambda: "systemd" in error_sources(installation), BOUND)
    assert "refused" in components(installation)[SMD]["error"]
    assert sandbox.is_active(SMD) == "inactive"
    assert sandbox.workdir is not None
    (sandbox.workdir / "units" / SMD).write_text(STAND_IN)
    sandbox.systemctl("daemon-reload")

    wait_until(lambda: running_clean(installation, SMD, SFB), BOUND)
    assert sandbox.is_active(SMD) == "active"
    assert daemon.process.poll() is None


def test_a_persistent_mask_by_an_administrator_is_reported_until_removed(
    tmp_path: Path,
    systemd_sandbox: SandboxedSystemd,
    start_daemon: Callable[..., Daemon],
) -> None:
    """If an administrator masks SMD persistently while the licence is valid, the
    status says so and the start is retried; after unmask, SMD runs again."""
    installation = Installation(tmp_path)
    installation.install(LICENCE)
    daemon = start_daemon(installation)
    wait_until(lambda: running_clean(installation, SMD, SFB), BOUND)
    systemd_sandbox.systemctl("mask", "--now", SMD)

    document = ask(installation.control_socket, "check", timeout=BOUND)

    error = {c["unit"]: c for c in document["components"]}[SMD]["error"]
    assert "masked persistently" in error
    assert "systemd" in {e["source"] for e in document["errors"]}
    assert document["state"] == "licensed"
    systemd_sandbox.systemctl("unmask", SMD)
    wait_until(lambda: running_clean(installation, SMD, SFB), BOUND)
    assert systemd_sandbox.is_active(SMD) == "active"
    assert daemon.process.poll() is None


def daemon_events(daemon: Daemon, event: str) -> list[dict[str, Any]]:
    return [e for e in daemon.events() if e.get("event") == event]


def test_a_stopping_daemon_leaves_the_components_alone(
    tmp_path: Path,
    systemd_sandbox: SandboxedSystemd,
    start_daemon: Callable[..., Daemon],
) -> None:
    """If SMD is stopped and then the daemon is told to stop (as at shutdown, when
    systemd stops both), the daemon does not start SMD again on its way out."""
    installation = Installation(tmp_path)
    installation.install(LICENCE)
    daemon = start_daemon(installation)
    wait_until(lambda: running_clean(installation, SMD, SFB), BOUND)
    systemd_sandbox.systemctl("stop", SMD)

    assert daemon.stop() == 0

    assert systemd_sandbox.is_active(SMD) == "inactive"
    assert not daemon.logged("component_started", unit=SMD)


# The status folder.


@dataclass
class PrivateStatusInstallation(Installation):
    """An installation whose status folder is a tiny tmpfs in the daemon's own
    mount namespace: the test can make it read-only or full without touching the
    host. The status file is read through ``/proc/PID/root``."""

    daemon_pid: int | None = None

    @property
    def status_file(self) -> Path:
        return self.root / "status" / "status.json"

    def seen(self) -> Path:
        """The status file as the daemon sees it."""
        assert self.daemon_pid is not None
        return Path(f"/proc/{self.daemon_pid}/root") / self.status_file.relative_to("/")

    def status_file_bytes(self) -> bytes:
        return self.seen().read_bytes()

    def in_namespace(self, *command: str) -> subprocess.CompletedProcess[str]:
        assert self.daemon_pid is not None
        return subprocess.run(
            ["nsenter", "-t", str(self.daemon_pid), "-m", *command],
            capture_output=True,
            text=True,
            check=False,
            timeout=BOUND,
        )


def private_status_prefix(folder: Path) -> tuple[str, ...]:
    """Run the daemon in a new mount namespace with a 64 KB tmpfs on ``folder``."""
    mount = 'mount -t tmpfs -o size=64k,mode=0755 licensed-status "$0" && exec "$@"'
    return (
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        mount,
        str(folder),
    )


@pytest.fixture
def private_status(
    tmp_path: Path,
    systemd_sandbox: SandboxedSystemd,
    daemons: list[Daemon],
) -> tuple[PrivateStatusInstallation, Daemon]:
    require(shutil.which("unshare") is not None, "util-linux unshare is missing")
    require(os.geteuid() == 0, "mounting a tmpfs needs root")
    installation = PrivateStatusInstallation(tmp_path, check_interval=2)
    installation.status_file.parent.mkdir()
    installation.install(LICENCE)
    prefix = private_status_prefix(installation.status_file.parent)
    env = {"DBUS_SYSTEM_BUS_ADDRESS": systemd_sandbox.bus_address}
    daemon = Daemon(installation, env=env, command_prefix=prefix)
    daemons.append(daemon)
    installation.daemon_pid = daemon.process.pid
    daemon.wait_started()
    wait_until(lambda: running_clean(installation, SMD, SFB), BOUND)
    return installation, daemon


def make_read_only(installation: PrivateStatusInstallation) -> Callable[[], None]:
    folder = str(installation.status_file.parent)
    installation.in_namespace("mount", "-o", "remount,ro", folder).check_returncode()
    return lambda: installation.in_namespace(
        "mount", "-o", "remount,rw", folder
    ).check_returncode()


def make_full(installation: PrivateStatusInstallation) -> Callable[[], None]:
    filler = installation.status_file.parent / "filler"
    # dd stops at ENOSPC, which is the point.
    installation.in_namespace("dd", "if=/dev/zero", f"of={filler}", "bs=4k")
    return lambda: installation.in_namespace("rm", str(filler)).check_returncode()


@pytest.mark.parametrize(
    "break_folder", [make_read_only, make_full], ids=["ro", "full"]
)
def test_an_unwritable_status_folder_keeps_the_old_status_whole(
    private_status: tuple[PrivateStatusInstallation, Daemon],
    systemd_sandbox: SandboxedSystemd,
    break_folder: Callable[[PrivateStatusInstallation], Callable[[], None]],
) -> None:
    """If the status folder is read-only or full, the old status file stays byte
    for byte, the failure is logged and retried, enforcement goes on; when the
    folder is writable again, the new status is published."""
    installation, daemon = private_status
    before = installation.seen().read_bytes()
    repair = break_folder(installation)

    installation.install(make_trial(date(2020, 1, 31), serial="AST-EXPIRED"))

    wait_until(lambda: systemd_sandbox.is_active(SMD) == "inactive", BOUND)
    wait_until(lambda: len(daemon_events(daemon, "status_publish_failed")) >= 2, BOUND)
    assert installation.seen().read_bytes() == before
    answer = ask(installation.control_socket, "status", timeout=BOUND)
    assert answer["state"] == "expired"
    assert "status" in {e["source"] for e in answer["errors"]}
    assert installation.seen().read_bytes() == before
    assert daemon.process.poll() is None

    repair()

    wait_until(lambda: installation.status()["state"] == "expired", BOUND)
    published = installation.status()
    assert published["licence"]["serial"] == "AST-EXPIRED"
    assert "status" not in {e["source"] for e in published["errors"]}
    # The clearing is logged just after the file it concerns is in place.
    wait_until(lambda: daemon.logged("error_cleared", source="status"), BOUND)


# The licence file, written in place.


@pytest.fixture
def smd_watch(systemd_sandbox: SandboxedSystemd) -> Iterator[UnitWatch]:
    watch = UnitWatch(systemd_sandbox.bus_address, [SMD, SFB])
    yield watch
    watch.close()


def write_slowly(path: Path, data: bytes, chunks: int, pause: float) -> Iterator[None]:
    """Write ``data`` over ``path`` in place, yielding after each flushed chunk."""
    size = -(-len(data) // chunks)
    with path.open("r+b") as handle:
        handle.truncate(0)
        for start in range(0, len(data), size):
            handle.write(data[start : start + size])
            handle.flush()
            os.fsync(handle.fileno())
            # Pacing the writer is the scenario: a slow copy, not a wait for the
            # daemon.
            time.sleep(pause)
            yield


def never_left_active(watch: UnitWatch, since: float) -> bool:
    try:
        for unit in (SMD, SFB):
            watch.wait_for(unit, NOT_ACTIVE, since=since, timeout=0)
    except TimeoutError:
        return True
    return False


def test_a_licence_written_in_place_slowly_is_acted_on_only_when_whole(
    tmp_path: Path,
    start_daemon: Callable[..., Daemon],
    smd_watch: UnitWatch,
) -> None:
    """If a new licence is written over the installed one in chunks, the checks
    that see the partial file keep the previous licence, SMD never stops, and the
    complete file is acted on."""
    installation = Installation(tmp_path)
    installation.install(LICENCE)
    daemon = start_daemon(installation)
    since = time.perf_counter()
    new = installation.vendor.sign(make_licence(serial="AST-INPLACE"))

    for _ in write_slowly(installation.licence_file, new, chunks=10, pause=0.1):
        answer = ask(installation.control_socket, "check", timeout=BOUND)
        assert answer["state"] == "licensed"

    wait_until(lambda: installation.status()["licence"]["serial"] == "AST-INPLACE")
    assert daemon.logged("licence_settling")
    assert never_left_active(smd_watch, since)
    assert not daemon.logged("component_stopped")


def test_a_half_copied_licence_is_not_acted_on_before_it_is_complete(
    tmp_path: Path,
    start_daemon: Callable[..., Daemon],
    smd_watch: UnitWatch,
) -> None:
    """If a licence upload stops halfway for a second and then completes, SMD never
    stops and the complete licence is acted on."""
    installation = Installation(tmp_path)
    installation.install(LICENCE)
    daemon = start_daemon(installation)
    since = time.perf_counter()
    new = installation.vendor.sign(make_licence(serial="AST-UPLOADED"))
    half = len(new) // 2

    installation.licence_file.write_bytes(new[:half])
    wait_until(lambda: daemon.logged("licence_settling"))
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        answer = ask(installation.control_socket, "check", timeout=BOUND)
        assert answer["state"] == "licensed"
        assert answer["licence"]["serial"] == LICENCE.serial
    with installation.licence_file.open("ab") as handle:
        handle.write(new[half:])

    wait_until(lambda: installation.status()["licence"]["serial"] == "AST-UPLOADED")
    assert never_left_active(smd_watch, since)
    assert not daemon.logged("component_stopped")


# SIGKILL.


def test_sigkill_after_licence_changes_never_tears_the_status_and_converges(
    tmp_path: Path,
    systemd_sandbox: SandboxedSystemd,
    record_property: Callable[[str, object], None],
) -> None:
    """If the daemon is killed 0-20 ms after licence changes, every concurrent read
    of the status file is one whole document, and after each restart the status and
    the components converge on the new licence."""
    seed = random.randrange(2**32)  # noqa: S311 - not cryptography: a repeatable storm
    rng = random.Random(seed)  # noqa: S311 - chooses delays, not secrets
    storm = Storm(Installation(tmp_path), systemd_sandbox, rng)

    try:
        result = storm.run(kills=5)
    finally:
        storm.close()

    record_property("seed", seed)
    record_property("convergence_s", [round(r.convergence_s, 3) for r in result.rounds])
    assert len(result.rounds) == 5
    assert result.reads > 100
    assert result.torn == []
    assert result.slowest < BOUND


# The clock, stepped forward under libfaketime.


@pytest.mark.faketime
def test_a_clock_stepped_past_the_expiry_is_enforced_within_the_safety_interval(
    tmp_path: Path,
    systemd_sandbox: SandboxedSystemd,
    start_daemon: Callable[..., Daemon],
    libfaketime: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """If the clock steps forward past a trial's expiry instant, SMD stops within
    the safety interval, although the clock watch cannot see a libfaketime step."""
    valid_until = datetime.now(UTC).date() + timedelta(days=20)
    instant = expiry_instant(valid_until, ZoneInfo("UTC"))
    offset_file = tmp_path / "fake-clock"
    set_fake_time(offset_file, instant - timedelta(hours=1))
    installation = Installation(tmp_path, timezone="UTC", check_interval=2)
    installation.install(make_trial(valid_until))
    daemon = start_daemon(installation, env=fake_clock_env(libfaketime, offset_file))
    assert installation.status()["state"] == "licensed"
    # Step only once the expiry job is planned and the scheduler waits for it.
    wait_until(lambda: daemon.logged("checks_planned"), BOUND)

    set_fake_time(offset_file, instant + timedelta(minutes=1))
    stepped = time.monotonic()

    wait_until(lambda: systemd_sandbox.is_active(SMD) == "inactive", timeout=2 + 3)
    took = time.monotonic() - stepped
    assert took < 2 + 3
    assert installation.status()["state"] == "expired"
    changed = daemon_events(daemon, "licence_state_changed")[-1]
    assert changed["state"] == "expired"
    # timerfd watches the kernel's clock, which libfaketime does not move: the
    # safety interval (or the planned expiry job, woken by it) enforced this.
    assert not daemon.logged("clock_set")
    assert "clock_set" not in changed["trigger"]
    record_property("enforced_after_s", round(took, 3))
    record_property("trigger", changed["trigger"])


@pytest.mark.faketime
def test_a_clock_stepped_forward_by_decades_does_not_stall_the_daemon(
    tmp_path: Path,
    start_daemon: Callable[..., Daemon],
    libfaketime: Path,
) -> None:
    """If the clock steps forward by 30 years (a dead RTC corrected by NTP), the
    daemon goes on answering at once instead of stalling past its watchdog."""
    offset_file = tmp_path / "fake-clock"
    set_fake_time(offset_file, datetime.now(UTC))
    installation = Installation(tmp_path, timezone="UTC")
    installation.install(LICENCE)
    daemon = start_daemon(installation, env=fake_clock_env(libfaketime, offset_file))
    wait_until(lambda: daemon.logged("checks_planned"), BOUND)

    set_fake_time(offset_file, datetime.now(UTC) + timedelta(days=30 * 365))

    took = []
    for _ in range(3):
        started = time.monotonic()
        answer = ask(installation.control_socket, "check", timeout=BOUND)
        took.append(time.monotonic() - started)
        assert answer["checked_at"] > "2056"
    assert max(took) < 2.0
