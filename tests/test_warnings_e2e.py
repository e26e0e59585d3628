"""End to end: warnings before a trial or a support contract ends, from the daemon.

The real daemon runs against a real systemd in a sandbox. Checks are triggered over
the real control socket, as ``licensectl check`` does, and the daemon's JSON log is
read back to see that each warning is logged once per threshold, not at each check.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from licensed.control import ask
from licensed.licence import Licence, Support
from tests.harness.daemon import LICENSECTL, Daemon, Installation, wait_until
from tests.harness.licences import make_licence, make_trial

ZONE = ZoneInfo("Europe/Zurich")
BOUND = 10.0  # seconds: generous, a check takes milliseconds


def today() -> date:
    return datetime.now(ZONE).date()


def trial_until(days: int, serial: str = "AST-T001") -> Licence:
    return make_trial(today() + timedelta(days=days), serial=serial)


@pytest.fixture
def installation(tmp_path: Path) -> Installation:
    return Installation(tmp_path, timezone="Europe/Zurich")


@pytest.fixture
def start_daemon(
    installation: Installation, start_daemon: Callable[..., Daemon]
) -> Callable[[], Daemon]:
    """Start the daemon on this test's installation."""
    return partial(start_daemon, installation)


def warnings_logged(daemon: Daemon) -> list[dict[str, Any]]:
    return [e for e in daemon.events() if e.get("event") == "licence_warning"]


def check_times(installation: Installation, count: int) -> None:
    """Make the daemon check ``count`` times over its control socket."""
    for _ in range(count):
        document = ask(installation.control_socket, "check", timeout=BOUND)
        assert document["state"] == "licensed"


def message_ids(installation: Installation) -> list[str]:
    return [m["id"] for m in installation.status()["messages"]]


def test_a_trial_ending_in_3_days_is_warned_of_and_logged_once(
    installation: Installation, start_daemon: Callable[[], Daemon]
) -> None:
    """If a trial is valid until today+2, the 3-day warning shows, logged once."""
    valid_until = today() + timedelta(days=2)
    installation.install(trial_until(2))
    daemon = start_daemon()

    check_times(installation, 4)

    assert "trial_ending" in message_ids(installation)
    message = next(
        m for m in installation.status()["messages"] if m["id"] == "trial_ending"
    )
    assert message["audience"] == "administrators"
    assert "3 days left" in message["text"]
    logged = warnings_logged(daemon)
    assert len(logged) == 1
    assert logged[0]["id"] == "trial_ending"
    assert (logged[0]["days_left"], logged[0]["threshold"]) == (3, 3)
    assert logged[0]["date"] == valid_until.isoformat()
    assert logged[0]["serial"] == "AST-T001"
    assert logged[0]["level"] == "warning"


def test_each_threshold_crossed_is_logged_once(
    installation: Installation, start_daemon: Callable[[], Daemon]
) -> None:
    """If a trial goes from 10 days left to 2, the 14- then the 3-day warning log."""
    installation.install(trial_until(9, serial="AST-T010"))
    daemon = start_daemon()
    check_times(installation, 2)

    installation.install(trial_until(2, serial="AST-T002"))
    wait_until(lambda: installation.status()["licence"]["serial"] == "AST-T002", BOUND)
    check_times(installation, 2)

    logged = [(e["threshold"], e["days_left"]) for e in warnings_logged(daemon)]
    assert logged == [(14, 10), (3, 3)]


def test_a_support_contract_ending_within_30_days_is_logged_once(
    installation: Installation, start_daemon: Callable[[], Daemon]
) -> None:
    """If support ends in 20 days, support_ending shows and is logged once."""
    end = today() + timedelta(days=20)
    licence = dataclasses.replace(
        make_licence(), support=Support(contract="Basic", valid_until=end)
    )
    installation.install(licence)
    daemon = start_daemon()

    check_times(installation, 3)

    assert message_ids(installation) == ["support_ending"]
    logged = warnings_logged(daemon)
    assert [(e["id"], e["threshold"], e["date"]) for e in logged] == [
        ("support_ending", 30, end.isoformat())
    ]


def test_a_licence_far_from_its_end_logs_no_warning(
    installation: Installation, start_daemon: Callable[[], Daemon]
) -> None:
    """If a full licence has support for more than 30 days, nothing is warned of."""
    installation.install(make_licence())
    daemon = start_daemon()

    check_times(installation, 2)

    assert message_ids(installation) == []
    assert warnings_logged(daemon) == []


def test_licensectl_status_shows_the_warning_and_the_time_left(
    installation: Installation, start_daemon: Callable[[], Daemon]
) -> None:
    """If the real daemon warns, licensectl status shows the warning, exit 0."""
    installation.install(trial_until(2))
    start_daemon()

    result = subprocess.run(
        [str(LICENSECTL), "status"],
        env=installation.env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("\u25cf licensed - trial licence AST-T001 expires at")
    expires = next(line for line in lines if line.startswith("     Expires: "))
    assert ", in 2 days " in expires or expires.endswith(", in 3 days")
    assert any(
        line.startswith("    Messages: administrators: The trial licence is valid")
        for line in lines
    )
