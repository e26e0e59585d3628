"""The clock high-water mark end to end: the real daemon under libfaketime.

The daemon runs under libfaketime with its offset read from a file
(``FAKETIME_TIMESTAMP_FILE``), so a test can start it at any time and step its clock
while it runs. A trial expiring at the instant E is judged across restarts at
times before and after E: a clock set back by more than the tolerance is judged at
the mark, within the tolerance by the clock; a licence issued after the mark is the
way out for a machine whose mark lies in the future, and only once.

All arithmetic is in UTC (the daemon runs with ``TZ=UTC`` and judges in UTC).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from licensed.control import ask
from licensed.expiry import expiry_instant
from tests.harness.daemon import Daemon, Installation, wait_until
from tests.harness.licences import make_trial
from tests.harness.prereq import require
from tests.harness.systemd import SandboxedSystemd

pytestmark = [pytest.mark.faketime, pytest.mark.systemd]

SMD = "assistant-smd.service"
TOLERANCE = timedelta(hours=2)
# A trial that is valid now and expires within a day: steps of the clock inside one
# daemon stay short, because APScheduler walks every missed run of an interval job
# one by one after a forward step (about a second per year at a 60 s interval).
VALID_UNTIL = datetime.now(UTC).date()
EXPIRY = expiry_instant(VALID_UNTIL, ZoneInfo("UTC"))
TRIAL = make_trial(VALID_UNTIL, issued=EXPIRY - timedelta(days=30))
BOUND = 10.0


@pytest.fixture(name="libfaketime")
def libfaketime_fixture() -> Path:
    """The multi-threaded libfaketime library (the daemon runs several threads)."""
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))
    require(bool(found), "libfaketime is not installed (apt-get install faketime)")
    return found[0]


def fake_clock_env(library: Path, offset_file: Path) -> dict[str, str]:
    """Run under libfaketime at the offset (``+N`` seconds) kept in ``offset_file``."""
    return {
        "LD_PRELOAD": str(library),
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        # Re-read the file on every clock call, so a step takes effect at once.
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_DONT_RESET": "1",
        "TZ": "UTC",
    }


def set_fake_time(offset_file: Path, when: datetime) -> None:
    """Make the fake clock read ``when`` now (it then runs on)."""
    offset = (when - datetime.now(UTC)).total_seconds()
    offset_file.write_text(f"{offset:+.0f}\n")


@pytest.fixture
def installation(tmp_path: Path) -> Installation:
    extra = f"clock_rollback_tolerance = {TOLERANCE.total_seconds():.0f}\n"
    return Installation(tmp_path / "server", timezone="UTC", extra=extra)


@pytest.fixture
def run_at(
    tmp_path: Path,
    installation: Installation,
    systemd_sandbox: SandboxedSystemd,
    libfaketime: Path,
) -> Iterator[Callable[[datetime], Daemon]]:
    """Start the daemon with its clock at a given time; one daemon at a time."""
    offset_file = tmp_path / "fake-clock"
    started: list[Daemon] = []

    def start(when: datetime) -> Daemon:
        for earlier in started:
            if earlier.process.poll() is None:
                earlier.stop()
        set_fake_time(offset_file, when)
        env = {
            "DBUS_SYSTEM_BUS_ADDRESS": systemd_sandbox.bus_address,
            **fake_clock_env(libfaketime, offset_file),
        }
        daemon = Daemon(installation, env=env)
        started.append(daemon)
        daemon.wait_started()
        # The status file of the daemon before may still be there: wait for this
        # daemon's own first document.
        wait_until(lambda: published_by(installation, daemon), BOUND)
        return daemon

    yield start

    for daemon in started:
        if daemon.process.poll() is None:
            daemon.stop()


def published_by(installation: Installation, daemon: Daemon) -> bool:
    return bool(installation.status()["daemon"]["pid"] == daemon.process.pid)


def clock(installation: Installation) -> dict[str, Any]:
    shown: dict[str, Any] = installation.status()["clock"]
    return shown


def mark(installation: Installation) -> datetime:
    saved = json.loads((installation.state_dir / "clock.json").read_text())
    return datetime.fromisoformat(saved["high_water"])


def check(installation: Installation) -> dict[str, Any]:
    return ask(installation.control_socket, "check", timeout=BOUND)


def test_a_clock_set_back_beyond_the_tolerance_is_judged_at_the_mark(
    installation: Installation,
    systemd_sandbox: SandboxedSystemd,
    run_at: Callable[[datetime], Daemon],
) -> None:
    """If the daemon saw a time after the expiry and the clock is then set back a
    day, to before the expiry, the trial is still judged expired."""
    installation.install(TRIAL)
    run_at(EXPIRY + timedelta(hours=1))
    assert installation.state() == "expired"
    seen = mark(installation)
    # libfaketime's start time is only good to about a second; what matters is
    # that the mark lies past the expiry.
    assert seen > EXPIRY

    daemon = run_at(EXPIRY - timedelta(days=1))

    assert installation.state() == "expired"
    assert clock(installation) == {"high_water": seen.isoformat(), "set_back": True}
    assert daemon.logged("clock_set_back", mark=seen.isoformat())
    assert installation.status()["reason"].startswith("trial licence AST-T001 expired")
    wait_until(lambda: systemd_sandbox.is_active(SMD) == "inactive", BOUND)


def test_a_clock_set_back_within_the_tolerance_is_judged_by_the_clock(
    installation: Installation,
    run_at: Callable[[datetime], Daemon],
) -> None:
    """If the clock is set back by less than the tolerance, expiry is judged by the
    clock as it reads: an NTP correction is not a rollback."""
    installation.install(TRIAL)
    run_at(EXPIRY + timedelta(minutes=30))
    assert installation.state() == "expired"

    daemon = run_at(EXPIRY - timedelta(minutes=30))

    assert installation.state() == "licensed"
    assert clock(installation)["set_back"] is False
    assert not daemon.logged("clock_set_back")


def test_a_licence_issued_after_a_future_mark_resets_it_once(
    tmp_path: Path,
    installation: Installation,
    run_at: Callable[[datetime], Daemon],
) -> None:
    """If the machine once ran far in the future, a valid trial is judged expired
    until a licence issued after that time is installed: it resets the mark once,
    and a later rollback is caught again."""
    future = EXPIRY + timedelta(days=400)
    installation.install(TRIAL)
    run_at(future)
    now = datetime.now(UTC)
    daemon = run_at(now)
    assert installation.state() == "expired"
    assert clock(installation)["set_back"] is True

    fresh = make_trial(
        VALID_UNTIL, serial="AST-T002", issued=future + timedelta(seconds=1)
    )
    installation.install(fresh)

    wait_until(lambda: installation.state() == "licensed", BOUND)
    assert daemon.logged("clock_mark_reset", licence_issued=fresh.issued.isoformat())
    assert clock(installation)["set_back"] is False
    assert mark(installation) < future
    set_fake_time(tmp_path / "fake-clock", EXPIRY + timedelta(hours=1))
    assert check(installation)["state"] == "expired"
    set_fake_time(tmp_path / "fake-clock", EXPIRY - timedelta(days=1))
    document = check(installation)
    assert document["state"] == "expired"
    assert document["clock"]["set_back"] is True
    resets = [e for e in daemon.events() if e.get("event") == "clock_mark_reset"]
    assert len(resets) == 1
