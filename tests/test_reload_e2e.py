"""SIGHUP: the daemon re-reads its configuration, then checks again."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from tests.harness.daemon import Daemon, Installation, wait_until
from tests.harness.licences import make_licence, make_trial
from tests.harness.systemd import SandboxedSystemd

BOUND = 10.0
SMD = "assistant-smd.service"


@pytest.fixture
def running(
    tmp_path: Path, systemd_sandbox: SandboxedSystemd
) -> Iterator[tuple[Installation, Daemon]]:
    installation = Installation(tmp_path)
    installation.install(make_licence())
    env = {"DBUS_SYSTEM_BUS_ADDRESS": systemd_sandbox.bus_address}
    daemon = Daemon(installation, env=env)
    daemon.wait_started()
    yield installation, daemon
    if daemon.process.poll() is None:
        daemon.stop()


def test_a_reload_watches_a_newly_configured_licence_folder(
    running: tuple[Installation, Daemon], systemd_sandbox: SandboxedSystemd
) -> None:
    """If the licence file moves to another folder and the daemon gets SIGHUP, a
    licence installed in the new folder is acted on at once."""
    installation, daemon = running
    moved = installation.root / "elsewhere" / "licence.lic"
    moved.parent.mkdir()
    installation.vendor.write(make_licence(serial="AST-MOVED"), moved)
    text = installation.config.read_text()
    installation.config.write_text(
        text.replace(str(installation.licence_file), str(moved))
    )

    daemon.process.send_signal(signal.SIGHUP)

    wait_until(lambda: daemon.logged("config_reloaded"), BOUND)
    wait_until(lambda: installation.status()["licence"]["serial"] == "AST-MOVED")
    staged = installation.root / "elsewhere" / "staged.lic"
    installation.vendor.write(make_trial(date(2020, 1, 1)), staged)
    staged.replace(moved)
    wait_until(lambda: systemd_sandbox.is_active(SMD) == "inactive", BOUND)
    assert installation.state() == "expired"


def test_a_bad_configuration_on_reload_keeps_the_old_settings(
    running: tuple[Installation, Daemon],
) -> None:
    """If the configuration is broken when SIGHUP arrives, the daemon keeps its old
    settings, says so in the status, and keeps running."""
    installation, daemon = running
    installation.config.write_text(
        installation.config.read_text() + "timezone = 'Mars/Base'\n"
    )

    daemon.process.send_signal(signal.SIGHUP)

    wait_until(lambda: daemon.logged("config_reload_failed"), BOUND)
    wait_until(
        lambda: "config" in {e["source"] for e in installation.status()["errors"]},
        BOUND,
    )
    assert installation.state() == "licensed"
    assert daemon.process.poll() is None
