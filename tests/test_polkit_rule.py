"""units/50-licensed.rules against a real systemd 252 and polkitd on a real bus.

Each test gets a sandboxed systemd (``tests/harness/systemd.py``) with the host's
``polkit.service``. Inside its mount namespace, a private copy of ``/etc`` gets the
users from ``licensed.sysusers``, the folders from ``licensed.tmpfiles`` and the
rule; the caller is ``busctl`` run as the user ``licensed`` through ``setpriv``,
which is what systemd sees when the daemon calls it. polkitd is started by bus
activation on the first check, so it reads the rule as written by the test.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness.fixtures_systemd import make_systemd_sandbox
from tests.harness.prereq import require
from tests.harness.systemd import SandboxedSystemd, SandboxFactory, wait_until

__all__ = ["make_systemd_sandbox"]

pytestmark = pytest.mark.systemd

UNITS = Path(__file__).resolve().parent.parent / "units"
RULE = UNITS / "50-licensed.rules"
HOST_POLKIT_UNIT = Path("/usr/lib/systemd/system/polkit.service")
MANAGER = (
    "org.freedesktop.systemd1",
    "/org/freedesktop/systemd1",
    "org.freedesktop.systemd1.Manager",
)

# Runs inside the sandbox's namespaces; $1 is the sandbox's work folder. /etc and
# /var/lib are read-only there, so writable copies are mounted over them.
PREPARE = r"""
set -eu
mkdir /run/etc
cp -a /etc/. /run/etc/
rm -rf /run/etc/systemd/system/*
mount --bind /run/etc /etc
mount -t tmpfs -o mode=755 sandbox-units /etc/systemd/system
mkdir /run/var-lib /run/var-lib/systemd
cp -a /var/lib/dbus /var/lib/polkit-1 /run/var-lib/
mount --bind /run/var-lib /var/lib
mount -t tmpfs -o mode=755 sandbox-state /var/lib/systemd
systemd-sysusers "$1/licensed.sysusers"
mkdir -p /etc/licensed/keys
systemd-tmpfiles --create "$1/licensed.tmpfiles"
cp "$1/50-licensed.rules" /etc/polkit-1/rules.d/50-licensed.rules
"""


def prepared_sandbox(
    make: SandboxFactory, rule_text: str, extra_units: dict[str, str] | None = None
) -> SandboxedSystemd:
    """Start a sandbox with polkitd, the users, folders and ``rule_text`` in place."""
    require_polkitd()
    sandbox = make(
        extra_units={
            "polkit.service": HOST_POLKIT_UNIT.read_text(),
            "licensed-mask@.service": (UNITS / "licensed-mask@.service").read_text(),
            **(extra_units or {}),
        }
    )
    assert sandbox.workdir is not None
    for name in ["licensed.sysusers", "licensed.tmpfiles"]:
        shutil.copy(UNITS / name, sandbox.workdir / name)
    (sandbox.workdir / "50-licensed.rules").write_text(rule_text)
    inside(sandbox, ["sh", "-c", PREPARE, "sh", str(sandbox.workdir)], check=True)
    return sandbox


def require_polkitd() -> None:
    """Skip (fail in CI) unless polkitd and its unit are installed."""
    require(
        HOST_POLKIT_UNIT.is_file() and shutil.which("setpriv") is not None,
        "polkitd (Debian package polkitd) and setpriv (util-linux) are needed",
    )


def inside(
    sandbox: SandboxedSystemd, command: list[str], check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in the sandbox's namespaces."""
    return subprocess.run(
        ["nsenter", "-t", str(sandbox.pid), "-a", *command],
        capture_output=True,
        text=True,
        check=check,
        timeout=30,
    )


def as_daemon(sandbox: SandboxedSystemd, method: str, *args: str) -> str:
    """Call a systemd Manager method as the user ``licensed``; return the outcome."""
    setpriv = ["setpriv", "--reuid=licensed", "--regid=licensed", "--init-groups"]
    result = inside(sandbox, [*setpriv, "busctl", "call", *MANAGER, method, *args])
    return "ok" if result.returncode == 0 else result.stderr.strip()


def wait_for_state(sandbox: SandboxedSystemd, unit: str, state: str) -> None:
    """Wait until ``unit`` is ``state``: StartUnit returns when the job is queued."""
    wait_until(lambda: sandbox.is_active(unit) == state, 10.0, f"{unit} {state}")


@pytest.fixture
def sandbox(make_systemd_sandbox: SandboxFactory) -> SandboxedSystemd:
    """A sandbox with the rule as shipped."""
    return prepared_sandbox(make_systemd_sandbox, RULE.read_text())


def test_daemon_may_stop_and_start_a_component_unit(
    sandbox: SandboxedSystemd,
) -> None:
    """If the daemon stops and starts a component unit, polkit allows both."""
    stopped = as_daemon(sandbox, "StopUnit", "ss", "assistant-smd.service", "replace")
    state_after_stop = sandbox.is_active("assistant-smd.service")

    started = as_daemon(sandbox, "StartUnit", "ss", "assistant-smd.service", "replace")

    assert (stopped, started) == ("ok", "ok")
    assert state_after_stop == "inactive"


def test_daemon_masks_a_component_through_the_helper_unit(
    sandbox: SandboxedSystemd,
) -> None:
    """If the daemon starts the component's mask helper, the component is masked."""
    helper = "licensed-mask@assistant-smd.service"
    as_daemon(sandbox, "StopUnit", "ss", "assistant-smd.service", "replace")

    masked = as_daemon(sandbox, "StartUnit", "ss", helper, "replace")
    wait_for_state(sandbox, helper, "active")
    start_while_masked = as_daemon(
        sandbox, "StartUnit", "ss", "assistant-smd.service", "replace"
    )
    unmasked = as_daemon(sandbox, "StopUnit", "ss", helper, "replace")
    wait_for_state(sandbox, helper, "inactive")
    start_after = as_daemon(
        sandbox, "StartUnit", "ss", "assistant-smd.service", "replace"
    )

    assert masked == "ok"
    assert "is masked" in start_while_masked
    assert (unmasked, start_after) == ("ok", "ok")


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("StopUnit", ("ss", "assistant-core.service", "replace")),
        ("StartUnit", ("ss", "licensed-mask@assistant-core.service", "replace")),
        ("RestartUnit", ("ss", "assistant-smd.service", "replace")),
        ("MaskUnitFiles", ("asbb", "1", "assistant-smd.service", "true", "true")),
        ("Reload", ()),
    ],
    ids=["other-unit", "other-helper", "restart-verb", "mask", "reload"],
)
def test_daemon_may_do_nothing_else(
    sandbox: SandboxedSystemd, method: str, args: tuple[str, ...]
) -> None:
    """If the daemon asks for anything beyond its units and verbs, it is refused."""
    outcome = as_daemon(sandbox, method, *args)

    assert "Access denied" in outcome


def test_unit_file_rights_would_open_every_unit(
    make_systemd_sandbox: SandboxFactory,
) -> None:
    """If the rule granted manage-unit-files, any unit could be stopped (imply)."""
    rule = RULE.read_text().replace(
        "var UNIT_FILE_RIGHTS = false;", "var UNIT_FILE_RIGHTS = true;"
    )
    sandbox = prepared_sandbox(make_systemd_sandbox, rule)

    outcome = as_daemon(sandbox, "StopUnit", "ss", "assistant-core.service", "replace")

    assert "var UNIT_FILE_RIGHTS = false;" in RULE.read_text()
    assert outcome == "ok"
