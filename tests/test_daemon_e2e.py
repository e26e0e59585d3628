"""End to end: the real daemon against a real systemd with stand-in components."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest

from licensed.control import ask
from tests.harness.daemon import Daemon, Installation, wait_until
from tests.harness.licences import make_licence, make_trial
from tests.harness.systemd import SandboxedSystemd

SMD = "assistant-smd.service"
SFB = "assistant-core-sfb.service"
CORE = "assistant-core.service"
EXPIRED = make_trial(date(2020, 1, 31), serial="AST-EXPIRED")
BOUND = 10.0  # seconds: generous, the daemon takes milliseconds


@pytest.fixture
def installation(tmp_path: Path) -> Installation:
    return Installation(tmp_path)


@pytest.fixture
def start_daemon(
    installation: Installation, start_daemon: Callable[..., Daemon]
) -> Callable[[], Daemon]:
    """Start the daemon on this test's installation."""
    return partial(start_daemon, installation)


def components(installation: Installation) -> dict[str, tuple[str, str]]:
    return {
        c["unit"]: (c["required"], c["actual"])
        for c in installation.status()["components"]
    }


def enforced(installation: Installation, sandbox: SandboxedSystemd) -> bool:
    return (
        sandbox.is_active(SMD) == "inactive"
        and sandbox.is_active(SFB) == "inactive"
        and components(installation)
        == {SMD: ("stopped", "masked"), SFB: ("stopped", "masked")}
    )


def restored(installation: Installation, sandbox: SandboxedSystemd) -> bool:
    return (
        sandbox.is_active(SMD) == "active"
        and sandbox.is_active(SFB) == "active"
        and components(installation)
        == {SMD: ("running", "running"), SFB: ("running", "running")}
    )


def test_a_licensed_system_runs_everything(
    installation: Installation,
    systemd_sandbox: SandboxedSystemd,
    start_daemon: Callable[[], Daemon],
) -> None:
    """If a full licence is installed, every component runs and the status says so."""
    installation.install(make_licence())

    start_daemon()

    wait_until(lambda: restored(installation, systemd_sandbox), BOUND)
    document = installation.status()
    assert document["state"] == "licensed"
    assert document["messages"] == []
    assert systemd_sandbox.is_active(CORE) == "active"


def test_an_expired_trial_stops_smd_and_sfb_but_not_core(
    installation: Installation,
    systemd_sandbox: SandboxedSystemd,
    start_daemon: Callable[[], Daemon],
) -> None:
    """If an expired trial is installed, SMD and SfB stop and are masked; Core runs."""
    installation.install(make_licence())
    start_daemon()

    installation.install(EXPIRED)

    wait_until(lambda: enforced(installation, systemd_sandbox), BOUND)
    assert systemd_sandbox.is_active(CORE) == "active"
    document = installation.status()
    assert document["state"] == "expired"
    assert document["messages"] == [
        {
            "id": "licence_expired",
            "audience": "everyone",
            "text": "Your License has expired",
        }
    ]
    started = systemd_sandbox.systemctl("start", SMD, check=False)
    assert started.returncode != 0
    assert "masked" in (started.stderr + started.stdout)


def test_a_full_licence_restores_the_components(
    installation: Installation,
    systemd_sandbox: SandboxedSystemd,
    start_daemon: Callable[[], Daemon],
) -> None:
    """If a full licence replaces an expired trial, SMD and SfB are unmasked and run."""
    installation.install(EXPIRED)
    start_daemon()
    wait_until(lambda: enforced(installation, systemd_sandbox), BOUND)

    installation.install(make_licence(serial="AST-RENEWED"))

    wait_until(lambda: restored(installation, systemd_sandbox), BOUND)
    assert installation.status()["licence"]["serial"] == "AST-RENEWED"


def test_removing_the_licence_stops_the_components(
    installation: Installation,
    systemd_sandbox: SandboxedSystemd,
    start_daemon: Callable[[], Daemon],
) -> None:
    """If the licence file is removed, the system is unlicensed: state missing."""
    installation.install(make_licence())
    start_daemon()
    wait_until(lambda: restored(installation, systemd_sandbox), BOUND)

    installation.licence_file.unlink()

    wait_until(lambda: enforced(installation, systemd_sandbox), BOUND)
    assert installation.status()["state"] == "missing"
    assert systemd_sandbox.is_active(CORE) == "active"


def test_a_removed_vendor_key_invalidates_the_installed_licence(
    installation: Installation,
    systemd_sandbox: SandboxedSystemd,
    start_daemon: Callable[[], Daemon],
) -> None:
    """If the licence's key leaves the trusted folder, the next check refuses it.

    The licence file itself does not change, so this is the keyring being read
    again, and a licence validated before being validated again, not a cache.
    """
    installation.install(make_licence())
    start_daemon()
    wait_until(lambda: restored(installation, systemd_sandbox), BOUND)
    key = installation.vendor.keys_dir / f"{installation.vendor.key_id}.pub"
    pem = key.read_bytes()

    key.unlink()
    ask(installation.control_socket, "check", timeout=BOUND)

    # A licence written less than two seconds ago is given that long to be
    # complete before it counts as invalid: wait for the state, not the answer.
    wait_until(lambda: installation.status()["state"] == "invalid", BOUND)
    assert "not trusted here" in installation.status()["reason"]
    wait_until(lambda: enforced(installation, systemd_sandbox), BOUND)

    key.write_bytes(pem)
    answer = ask(installation.control_socket, "check", timeout=BOUND)

    assert answer["state"] == "licensed"
    wait_until(lambda: restored(installation, systemd_sandbox), BOUND)


def test_smd_started_by_hand_while_expired_is_stopped_again(
    installation: Installation,
    systemd_sandbox: SandboxedSystemd,
    start_daemon: Callable[[], Daemon],
) -> None:
    """If someone unmasks and starts SMD while expired, the next check undoes it."""
    installation.install(EXPIRED)
    daemon = start_daemon()
    wait_until(lambda: enforced(installation, systemd_sandbox), BOUND)
    systemd_sandbox.systemctl("unmask", "--runtime", SMD)
    systemd_sandbox.systemctl("start", SMD)
    assert systemd_sandbox.is_active(SMD) == "active"

    document = ask(installation.control_socket, "check", timeout=BOUND)

    assert systemd_sandbox.is_active(SMD) == "inactive"
    assert document["state"] == "expired"
    wait_until(lambda: enforced(installation, systemd_sandbox), BOUND)
    assert daemon.logged("component_drift_corrected", unit=SMD)


def test_a_killed_daemon_converges_after_restart(
    installation: Installation,
    systemd_sandbox: SandboxedSystemd,
    start_daemon: Callable[[], Daemon],
) -> None:
    """If the daemon is killed and SMD started meanwhile, a restart stops it again."""
    installation.install(EXPIRED)
    first = start_daemon()
    wait_until(lambda: enforced(installation, systemd_sandbox), BOUND)
    first.kill()
    systemd_sandbox.systemctl("unmask", "--runtime", SMD)
    systemd_sandbox.systemctl("start", SMD)

    start_daemon()

    wait_until(lambda: enforced(installation, systemd_sandbox), BOUND)


def test_a_trial_valid_today_keeps_everything_running(
    installation: Installation,
    systemd_sandbox: SandboxedSystemd,
    start_daemon: Callable[[], Daemon],
) -> None:
    """If a trial is valid through a later day, the system is licensed until then."""
    valid_until = datetime.now(UTC).date() + timedelta(days=30)
    installation.install(make_trial(valid_until))

    start_daemon()

    wait_until(lambda: restored(installation, systemd_sandbox), BOUND)
    document = installation.status()
    assert document["state"] == "licensed"
    assert document["expires_at"].startswith(
        (valid_until + timedelta(days=1)).isoformat() + "T00:00:01"
    )
