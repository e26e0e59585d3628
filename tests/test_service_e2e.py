"""The daemon as a systemd service: Type=notify readiness, status line, watchdog,
journal fields, and no crash without a working notify socket."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.harness.daemon import Daemon, Installation, wait_until
from tests.harness.licences import make_licence
from tests.harness.systemd import SandboxedSystemd, SandboxFactory

BOUND = 15.0
SERVICE = "licensed-under-test.service"


def service_unit(installation: Installation) -> str:
    # The shipped unit needs the licensed user, polkit and the installed paths; this
    # one keeps what is under test here: Type=notify, the watchdog, the journal.
    licensed = Path(sys.executable).parent / "licensed"
    return f"""\
[Unit]
Description=licensed under test
After=dbus.socket

[Service]
Type=notify
NotifyAccess=main
ExecStart={licensed} --config {installation.config}
WatchdogSec=2s
"""


@pytest.fixture
def service(
    tmp_path: Path, make_systemd_sandbox: SandboxFactory
) -> tuple[Installation, SandboxedSystemd]:
    """A licensed installation and a sandbox with journald that holds its unit.

    The daemon logs in its automatic form, so under systemd it picks the journal.
    """
    installation = Installation(tmp_path)
    installation.config.write_text(
        installation.config.read_text().replace('log_format = "json"', "")
    )
    installation.install(make_licence())
    sandbox = make_systemd_sandbox(
        extra_units={SERVICE: service_unit(installation)},
        writable_paths=[tmp_path],
        journald=True,
    )
    return installation, sandbox


def test_the_service_is_ready_only_after_its_first_decision(
    service: tuple[Installation, SandboxedSystemd],
) -> None:
    """If systemd starts the service, start returns once the status file holds the
    first decision, and systemctl shows the daemon's one-line status."""
    installation, sandbox = service

    sandbox.systemctl("start", SERVICE)

    assert installation.state() == "licensed"
    shown = sandbox.systemctl("show", "-p", "StatusText", "--value", SERVICE)
    assert shown.stdout.startswith("licensed: full licence AST-0001")


def test_the_service_pings_the_watchdog_and_logs_to_the_journal(
    service: tuple[Installation, SandboxedSystemd],
) -> None:
    """If the unit sets WatchdogSec, the daemon pings it; under systemd its events
    reach the journal with a priority and fields such as STATE and SERIAL."""
    _installation, sandbox = service
    sandbox.systemctl("start", SERVICE)

    def watchdog_stamp() -> str:
        return sandbox.systemctl(
            "show", "-p", "WatchdogTimestampMonotonic", "--value", SERVICE
        ).stdout.strip()

    first = watchdog_stamp()
    wait_until(lambda: watchdog_stamp() not in {"", "0", first}, BOUND)

    entries = [
        json.loads(line)
        for line in sandbox.journal("-u", SERVICE, "-o", "json").splitlines()
        if line.startswith("{")
    ]
    decided = [e for e in entries if e.get("EVENT") == "licence_state_changed"]
    assert decided, "no licence_state_changed entry in the journal"
    assert decided[0]["STATE"] == "licensed"
    assert decided[0]["SERIAL"] == "AST-0001"
    assert decided[0]["PRIORITY"] == "6"
    assert sandbox.is_active(SERVICE) == "active"


def test_a_broken_notify_socket_does_not_stop_the_daemon(tmp_path: Path) -> None:
    """If NOTIFY_SOCKET names a socket that does not exist, the daemon still decides
    and publishes, and says once that notifying failed."""
    installation = Installation(tmp_path)
    installation.install(make_licence())

    daemon = Daemon(installation, env={"NOTIFY_SOCKET": str(tmp_path / "absent")})
    try:
        daemon.wait_started()

        # READY=1 goes out just after the first status is published.
        wait_until(lambda: daemon.logged("notify_failed"), BOUND)
        assert installation.state() == "licensed"
        assert daemon.process.poll() is None
    finally:
        daemon.stop()
