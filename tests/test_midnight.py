"""The expiry instant under a fake clock: nothing before it, enforcement just after.

The daemon runs under libfaketime a few seconds before 00:00:01 local time on the
last valid day of a trial, with a real systemd and the safety interval set to an
hour, so only the planned expiry job can be what enforces. One case is a zone whose
clocks jump from 00:00 to 01:00 that night, where 00:00:01 never happens.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from licensed.expiry import expiry_instant
from tests.harness.daemon import Daemon, Installation, wait_until
from tests.harness.licences import make_trial
from tests.harness.prereq import require
from tests.harness.systemd import SandboxedSystemd

SMD = "assistant-smd.service"
LEAD = timedelta(seconds=5)
ENOUGH = timedelta(seconds=2)  # "just after": the instant, not the next interval


@pytest.fixture
def faketime() -> str:
    path = shutil.which("faketime")
    require(path is not None, "libfaketime is not installed (apt-get install faketime)")
    assert path is not None
    return path


def event_time(daemon: Daemon, event: str, **fields: object) -> datetime:
    for entry in daemon.events():
        if entry.get("event") == event and all(
            entry.get(k) == v for k, v in fields.items()
        ):
            return datetime.fromisoformat(entry["timestamp"])
    raise AssertionError(f"{event} {fields} was not logged")


@pytest.mark.parametrize(
    ("zone", "valid_until"),
    [
        pytest.param("Europe/Zurich", date(2027, 1, 31), id="ordinary-night"),
        pytest.param("America/Havana", date(2027, 3, 13), id="dst-starts-at-midnight"),
    ],
)
def test_a_trial_is_enforced_at_its_expiry_instant_and_not_before(
    tmp_path: Path,
    systemd_sandbox: SandboxedSystemd,
    faketime: str,
    daemons: list[Daemon],
    zone: str,
    valid_until: date,
) -> None:
    """If the clock reaches the expiry instant, SMD stops then, and not earlier."""
    # Arithmetic on an aware datetime in a zone is wall-clock arithmetic, which
    # goes wrong across the very gap this test is about: work in UTC.
    instant = expiry_instant(valid_until, ZoneInfo(zone)).astimezone(UTC)
    start = instant - LEAD
    installation = Installation(tmp_path, timezone=zone, check_interval=3600)
    installation.install(make_trial(valid_until))
    env = {
        "DBUS_SYSTEM_BUS_ADDRESS": systemd_sandbox.bus_address,
        "TZ": "UTC",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_DONT_RESET": "1",
    }
    prefix = (faketime, "-f", f"@{start:%Y-%m-%d %H:%M:%S}")

    daemon = Daemon(installation, env=env, command_prefix=prefix)
    daemons.append(daemon)
    daemon.wait_started()
    assert installation.state() == "licensed"
    assert systemd_sandbox.is_active(SMD) == "active"
    wait_until(lambda: daemon.logged("component_stopped", unit=SMD), timeout=30)

    stopped_at = event_time(daemon, "component_stopped", unit=SMD)
    decided_at = event_time(daemon, "licence_state_changed", state="expired")
    assert instant <= decided_at < instant + ENOUGH
    assert instant <= stopped_at < instant + ENOUGH
    assert systemd_sandbox.is_active(SMD) == "inactive"
    assert event_time(daemon, "licence_state_changed", state="licensed") < instant
