"""UnitManager against a real systemd in a sandbox, and the sandbox itself.

Masking is tested both ways: through the shipped ``units/licensed-mask@.service``
(which every sandbox installs unchanged) and directly over the bus.
"""

from __future__ import annotations

import json
import subprocess
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from licensed.errors import UnitControlError
from licensed.units import UnitManager, UnitStatus
from tests.harness.prereq import require
from tests.harness.systemd import (
    SandboxedSystemd,
    SandboxFactory,
    prerequisites,
    wait_until,
)
from tests.test_polkit_rule import RULE, inside, prepared_sandbox

pytestmark = pytest.mark.systemd

SMD = "assistant-smd.service"
CORE = "assistant-core.service"
SFB = "assistant-core-sfb.service"
MISSING = "assistant-nonexistent.service"
HELPER = "licensed-mask@.service"
SMD_HELPER = "licensed-mask@assistant-smd.service"
REPO = Path(__file__).resolve().parent.parent

# Run as the user `licensed` inside a sandbox with polkitd and the shipped rule:
# what the daemon does, under the rights it has in production. argv[1] is the
# mask helper ("" masks directly).
AS_DAEMON = f"""
import json, sys
from licensed.errors import UnitControlError
from licensed.units import UnitManager
steps = []
with UnitManager(job_timeout=10.0, mask_helper=sys.argv[1]) as units:
    for action in (units.stop_and_mask, units.unmask_and_start):
        try:
            action("{SMD}")
        except UnitControlError as exc:
            steps.append(exc.reason)
            break
        status = units.status("{SMD}")
        steps.append([status.load_state, status.active_state])
print(json.dumps(steps))
"""


@pytest.fixture(params=[HELPER, ""], ids=["helper", "direct"])
def units(
    systemd_sandbox: SandboxedSystemd, request: pytest.FixtureRequest
) -> Iterator[UnitManager]:
    manager = UnitManager(
        systemd_sandbox.bus_address, job_timeout=10.0, mask_helper=request.param
    )
    yield manager
    manager.close()


@pytest.fixture
def helper_units(systemd_sandbox: SandboxedSystemd) -> Iterator[UnitManager]:
    with UnitManager(
        systemd_sandbox.bus_address, job_timeout=10.0, mask_helper=HELPER
    ) as manager:
        yield manager


def sandbox_with_helper(
    make_systemd_sandbox: SandboxFactory, name: str, service: str
) -> UnitManager:
    """A sandbox with the template ``name``, and a manager that masks through it."""
    unit = f"[Unit]\nDefaultDependencies=no\n\n[Service]\nType=oneshot\n{service}"
    sandbox = make_systemd_sandbox(extra_units={name: unit})
    return UnitManager(sandbox.bus_address, job_timeout=10.0, mask_helper=name)


def fail_inside_a_sandbox(leftovers: list[Path]) -> None:
    with SandboxedSystemd() as sandbox:
        leftovers += [Path(f"/proc/{sandbox.pid}"), sandbox.cgroup]
        raise RuntimeError("test body failed")


def main_pid(sandbox: SandboxedSystemd, unit: str) -> str:
    return sandbox.systemctl("show", "--value", "-p", "MainPID", unit).stdout.strip()


# -- status -------------------------------------------------------------------------


def test_status_of_a_running_unit_is_loaded_and_active(units: UnitManager) -> None:
    """If a unit runs, status() reports it loaded, active and running."""
    status = units.status(SMD)

    assert status == UnitStatus(SMD, load_state="loaded", active_state="active")
    assert status.running
    assert not status.masked


def test_status_of_a_stopped_unit_is_inactive(
    systemd_sandbox: SandboxedSystemd, units: UnitManager
) -> None:
    """If a unit was stopped, status() reports it inactive and not running."""
    systemd_sandbox.systemctl("stop", SMD)

    status = units.status(SMD)

    assert status.active_state == "inactive"
    assert not status.running


def test_status_of_a_missing_unit_is_not_found(units: UnitManager) -> None:
    """If no unit file exists, status() reports not-found instead of raising."""
    status = units.status(MISSING)

    assert status == UnitStatus(
        MISSING, load_state="not-found", active_state="inactive"
    )


def test_manager_takes_the_bus_address_from_the_environment(
    systemd_sandbox: SandboxedSystemd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If no address is given, DBUS_SYSTEM_BUS_ADDRESS is used."""
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", systemd_sandbox.bus_address)

    with UnitManager() as manager:
        status = manager.status(CORE)

    assert status.running


# -- stop_and_mask / unmask_and_start -----------------------------------------------


def test_stop_and_mask_stops_the_unit_and_blocks_a_later_start(
    systemd_sandbox: SandboxedSystemd, units: UnitManager
) -> None:
    """If SMD is stopped and masked, it is inactive and systemctl cannot start it."""
    units.stop_and_mask(SMD)

    started = systemd_sandbox.systemctl("start", SMD, check=False)
    assert systemd_sandbox.is_active(SMD) == "inactive"
    assert started.returncode != 0
    assert "masked" in started.stderr
    assert units.status(SMD).masked


def test_stop_and_mask_leaves_core_running(
    systemd_sandbox: SandboxedSystemd, units: UnitManager
) -> None:
    """If SMD and SfB are stopped and masked, Core keeps running in the same process."""
    core_pid = main_pid(systemd_sandbox, CORE)

    units.stop_and_mask(SMD)
    units.stop_and_mask(SFB)

    assert systemd_sandbox.is_active(CORE) == "active"
    assert main_pid(systemd_sandbox, CORE) == core_pid
    assert systemd_sandbox.is_active(SFB) == "inactive"


def test_the_mask_is_a_runtime_mask(
    systemd_sandbox: SandboxedSystemd, units: UnitManager
) -> None:
    """If a unit is masked, the mask lives under /run and ends with the boot."""
    units.stop_and_mask(SMD)

    state = systemd_sandbox.systemctl("is-enabled", SMD, check=False).stdout.strip()
    assert state == "masked-runtime"


def test_unmask_and_start_brings_a_masked_unit_back(
    systemd_sandbox: SandboxedSystemd, units: UnitManager
) -> None:
    """If a unit stopped and masked by licensed is unmasked and started, it runs."""
    units.stop_and_mask(SMD)

    units.unmask_and_start(SMD)

    assert systemd_sandbox.is_active(SMD) == "active"
    assert units.status(SMD) == UnitStatus(SMD, "loaded", "active")


def test_unmask_and_start_starts_sfb_with_core_untouched(
    systemd_sandbox: SandboxedSystemd, units: UnitManager
) -> None:
    """If SfB comes back, Core's process is the one that ran all along."""
    core_pid = main_pid(systemd_sandbox, CORE)
    units.stop_and_mask(SFB)

    units.unmask_and_start(SFB)

    assert systemd_sandbox.is_active(SFB) == "active"
    assert main_pid(systemd_sandbox, CORE) == core_pid


def test_stop_and_mask_twice_is_harmless_and_reloads_once(units: UnitManager) -> None:
    """If a unit is already stopped and masked, a second call changes nothing."""
    units.stop_and_mask(SMD)

    with capture_logs() as logs:
        units.stop_and_mask(SMD)

    events = [entry["event"] for entry in logs]
    assert "unit_stopped" not in events
    assert "unit_masked" not in events
    assert units.status(SMD) == UnitStatus(SMD, "masked", "inactive")


def test_unmask_and_start_on_a_running_unit_keeps_its_process(
    systemd_sandbox: SandboxedSystemd, units: UnitManager
) -> None:
    """If the unit already runs, unmask_and_start neither restarts nor reloads."""
    before = main_pid(systemd_sandbox, SMD)

    with capture_logs() as logs:
        units.unmask_and_start(SMD)

    assert main_pid(systemd_sandbox, SMD) == before
    assert "unit_unmasked" not in [entry["event"] for entry in logs]


def test_stop_and_mask_masks_again_what_was_unmasked_by_hand(
    systemd_sandbox: SandboxedSystemd, units: UnitManager
) -> None:
    """If someone unmasks and starts a masked unit, stop_and_mask masks it again."""
    units.stop_and_mask(SMD)
    systemd_sandbox.systemctl("unmask", "--runtime", SMD)
    systemd_sandbox.systemctl("start", SMD)

    units.stop_and_mask(SMD)

    assert units.status(SMD) == UnitStatus(SMD, "masked", "inactive")
    assert systemd_sandbox.systemctl("start", SMD, check=False).returncode != 0


def test_actions_are_logged_with_their_duration(units: UnitManager) -> None:
    """If a unit is stopped, masked, unmasked and started, each step is logged."""
    with capture_logs() as logs:
        units.stop_and_mask(SMD)
        units.unmask_and_start(SMD)

    steps = [entry for entry in logs if entry["log_level"] == "info"]
    assert [entry["event"] for entry in steps] == [
        "unit_stopped",
        "unit_masked",
        "unit_unmasked",
        "unit_started",
    ]
    assert all(entry["unit"] == SMD and entry["elapsed_ms"] > 0 for entry in steps)


# -- the mask helper ----------------------------------------------------------------


def test_the_helper_instance_holds_the_mask_while_active(
    systemd_sandbox: SandboxedSystemd, helper_units: UnitManager
) -> None:
    """If SMD is masked through the helper, its instance stays active until unmask."""
    helper_units.stop_and_mask(SMD)
    active_while_masked = systemd_sandbox.is_active(SMD_HELPER)

    helper_units.unmask_and_start(SMD)

    assert active_while_masked == "active"
    assert systemd_sandbox.is_active(SMD_HELPER) == "inactive"
    assert systemd_sandbox.is_active(SMD) == "active"


def test_the_helper_is_started_only_after_the_unit_stopped(
    helper_units: UnitManager,
) -> None:
    """If SMD is masked through the helper, the stop is logged first, then the mask."""
    with capture_logs() as logs:
        helper_units.stop_and_mask(SMD)

    steps = [entry for entry in logs if entry["log_level"] == "info"]
    assert [entry["event"] for entry in steps] == ["unit_stopped", "unit_masked"]
    assert steps[1]["helper"] == SMD_HELPER


def test_a_missing_helper_template_raises_with_the_fix(
    systemd_sandbox: SandboxedSystemd,
) -> None:
    """If the helper template is not installed, the error says to install it."""
    manager = UnitManager(systemd_sandbox.bus_address, mask_helper="absent@.service")

    with manager, pytest.raises(UnitControlError) as raised:
        manager.stop_and_mask(SMD)

    assert raised.value.action == "mask"
    assert "absent@assistant-smd.service is not installed" in raised.value.reason
    assert "units/licensed-mask@.service" in raised.value.reason
    assert 'mask_helper = ""' in raised.value.reason
    assert systemd_sandbox.is_active(SMD) == "inactive"


def test_a_failing_helper_raises_naming_its_journal(
    make_systemd_sandbox: SandboxFactory,
) -> None:
    """If the helper instance fails, the error gives its result and its journal."""
    manager = sandbox_with_helper(
        make_systemd_sandbox, "broken-mask@.service", "ExecStart=/bin/false\n"
    )

    with manager, pytest.raises(UnitControlError) as raised:
        manager.stop_and_mask(SMD)

    assert raised.value.action == "mask"
    assert "'failed'" in raised.value.reason
    assert "journalctl -u broken-mask@assistant-smd.service" in raised.value.reason


def test_a_helper_that_leaves_the_unit_unmasked_is_reported(
    make_systemd_sandbox: SandboxFactory,
) -> None:
    """If the helper runs but the unit is not masked afterwards, that is an error."""
    inert = "RemainAfterExit=yes\nExecStart=/bin/true\n"
    manager = sandbox_with_helper(make_systemd_sandbox, "inert-mask@.service", inert)

    with manager, pytest.raises(UnitControlError) as raised:
        manager.stop_and_mask(SMD)

    assert f"{SMD} is not masked" in raised.value.reason
    assert "/usr/lib/systemd/system" in raised.value.reason


def test_a_mask_left_behind_by_the_helper_is_reported(
    make_systemd_sandbox: SandboxFactory,
) -> None:
    """If stopping the helper does not unmask the unit, the error names the helper."""
    sticky = "RemainAfterExit=yes\nExecStart=/bin/systemctl mask --runtime %i.service\n"
    manager = sandbox_with_helper(make_systemd_sandbox, "sticky-mask@.service", sticky)
    manager.stop_and_mask(SMD)

    with manager, pytest.raises(UnitControlError) as raised:
        manager.unmask_and_start(SMD)

    assert raised.value.action == "unmask"
    assert "journalctl -u sticky-mask@assistant-smd.service" in raised.value.reason


def test_the_helper_masks_only_service_units(helper_units: UnitManager) -> None:
    """If a unit other than a service is to be unmasked through the helper, no."""
    with pytest.raises(UnitControlError) as raised:
        helper_units.unmask_and_start("assistant.target")

    assert raised.value.unit == "assistant.target"
    assert 'mask_helper = ""' in raised.value.reason


def run_as_daemon(sandbox: SandboxedSystemd, mask_helper: str) -> list[object]:
    """Run ``AS_DAEMON`` as the user ``licensed`` with the system's Python 3.11."""
    # The virtualenv's interpreter links into /root, which the user cannot enter.
    path = f"PYTHONPATH={REPO}:{sysconfig.get_paths()['purelib']}"
    setpriv = ["setpriv", "--reuid=licensed", "--regid=licensed", "--init-groups"]
    python = ["env", path, "PYTHONDONTWRITEBYTECODE=1", "/usr/bin/python3", "-c"]
    done = inside(sandbox, [*setpriv, *python, AS_DAEMON, mask_helper], check=True)
    # structlog's default logger writes to stdout too; the result is the last line.
    steps: list[object] = json.loads(done.stdout.splitlines()[-1])
    return steps


def test_the_daemons_user_masks_through_the_helper_under_the_shipped_rule(
    make_systemd_sandbox: SandboxFactory,
) -> None:
    """If licensed runs as its user under 50-licensed.rules, the helper path works."""
    sandbox = prepared_sandbox(make_systemd_sandbox, RULE.read_text())

    steps = run_as_daemon(sandbox, HELPER)

    assert steps == [["masked", "inactive"], ["loaded", "active"]]


def test_the_daemons_user_cannot_mask_directly_and_is_told_why(
    make_systemd_sandbox: SandboxFactory,
) -> None:
    """If licensed runs as its user with mask_helper = "", the refusal names a fix."""
    sandbox = prepared_sandbox(make_systemd_sandbox, RULE.read_text())

    steps = run_as_daemon(sandbox, "")

    assert len(steps) == 1
    assert isinstance(steps[0], str)
    assert "denied access" in steps[0]
    assert "licensed-mask@.service" in steps[0]
    assert sandbox.is_active(SMD) == "inactive"


def test_a_helper_name_that_is_no_template_is_refused() -> None:
    """If mask_helper is not a template unit name, the constructor says so."""
    with pytest.raises(ValueError, match=r"licensed-mask@\.service"):
        UnitManager(mask_helper="licensed-mask.service")


# -- failures -----------------------------------------------------------------------


@pytest.mark.parametrize("action", ["stop_and_mask", "unmask_and_start"])
def test_a_missing_unit_raises_naming_the_unit(units: UnitManager, action: str) -> None:
    """If the unit does not exist, UnitControlError names it."""
    with pytest.raises(UnitControlError) as raised:
        getattr(units, action)(MISSING)

    assert raised.value.unit == MISSING
    assert MISSING in str(raised.value)


def test_an_administrators_mask_is_reported_with_the_fix(
    systemd_sandbox: SandboxedSystemd, units: UnitManager
) -> None:
    """If an administrator masked the unit persistently, the error says to unmask."""
    units.stop_and_mask(SMD)
    systemd_sandbox.systemctl("mask", SMD)

    with pytest.raises(UnitControlError) as raised:
        units.unmask_and_start(SMD)

    assert raised.value.action == "start"
    assert f"systemctl unmask {SMD}" in raised.value.reason
    assert systemd_sandbox.is_active(SMD) == "inactive"


def test_a_unit_that_fails_to_start_raises(
    make_systemd_sandbox: SandboxFactory,
) -> None:
    """If the start job fails, UnitControlError gives the job's result."""
    broken = "[Service]\nType=oneshot\nExecStart=/bin/false\n"
    sandbox = make_systemd_sandbox(extra_units={"assistant-broken.service": broken})

    with (
        UnitManager(sandbox.bus_address) as manager,
        pytest.raises(UnitControlError) as raised,
    ):
        manager.unmask_and_start("assistant-broken.service")

    assert "'failed'" in raised.value.reason


def test_a_job_slower_than_the_timeout_raises_and_the_manager_recovers(
    make_systemd_sandbox: SandboxFactory,
) -> None:
    """If a start job outlasts job_timeout, UnitControlError says so; calls go on."""
    slow = "[Service]\nType=oneshot\nExecStart=/bin/sleep 30\n"
    sandbox = make_systemd_sandbox(extra_units={"assistant-slow.service": slow})
    manager = UnitManager(sandbox.bus_address, job_timeout=0.3)

    with pytest.raises(UnitControlError) as raised:
        manager.unmask_and_start("assistant-slow.service")

    assert "did not finish within 0.3 s" in raised.value.reason
    assert manager.status(SMD).running
    manager.close()


def test_a_vanished_bus_raises_and_a_new_sandbox_works(
    make_systemd_sandbox: SandboxFactory,
) -> None:
    """If the bus disappears, UnitControlError is raised; a fresh bus works again."""
    first = make_systemd_sandbox()
    manager = UnitManager(first.bus_address)
    manager.status(SMD)
    first.close()

    with pytest.raises(UnitControlError) as raised:
        manager.stop_and_mask(SMD)

    assert "unreachable" in raised.value.reason
    second = make_systemd_sandbox()
    with UnitManager(second.bus_address) as fresh:
        fresh.stop_and_mask(SMD)
    assert second.is_active(SMD) == "inactive"
    manager.close()


@pytest.mark.parametrize(
    "address", ["tcp:host=localhost,port=1", "not an address", "unix:path=/nonexistent"]
)
def test_an_unusable_bus_address_raises(address: str) -> None:
    """If the bus address is unusable, UnitControlError names the address."""
    with pytest.raises(UnitControlError) as raised:
        UnitManager(address).status(SMD)

    assert address in raised.value.reason
    assert raised.value.action == "query"


def test_the_manager_survives_a_restart_of_the_bus(
    systemd_sandbox: SandboxedSystemd, units: UnitManager
) -> None:
    """If dbus restarts between two calls, the second call reconnects and works."""
    units.status(SMD)
    systemd_sandbox.systemctl("restart", "dbus.service")
    systemd_sandbox.wait_ready()

    units.stop_and_mask(SMD)

    assert systemd_sandbox.is_active(SMD) == "inactive"


# -- the sandbox harness ------------------------------------------------------------


def test_the_sandbox_leaves_no_cgroup_process_or_folder_behind(
    make_systemd_sandbox: SandboxFactory,
) -> None:
    """If a sandbox is closed, its PID 1, cgroup group and work folder are gone."""
    sandbox = make_systemd_sandbox()
    pid, cgroup, workdir = sandbox.pid, sandbox.cgroup, sandbox.workdir
    assert workdir is not None

    sandbox.close()

    assert not Path(f"/proc/{pid}").exists()
    assert not cgroup.exists()
    assert not workdir.exists()


def test_starting_a_running_sandbox_changes_nothing(
    systemd_sandbox: SandboxedSystemd,
) -> None:
    """If start() is called on a running sandbox, the same systemd keeps running."""
    pid = systemd_sandbox.pid

    systemd_sandbox.start()

    assert systemd_sandbox.pid == pid
    assert systemd_sandbox.is_active(SMD) == "active"


def test_the_sandbox_can_run_journald(make_systemd_sandbox: SandboxFactory) -> None:
    """If journald is asked for, systemd's own messages land in the journal."""
    sandbox = make_systemd_sandbox(journald=True)

    sandbox.systemctl("stop", SMD)

    # journald stores messages asynchronously: wait for the entry, bounded.
    wait_until(lambda: f"Stopped {SMD}" in sandbox.journal("-u", SMD), 5.0, "entry")


def test_the_sandbox_is_torn_down_when_the_body_raises() -> None:
    """If the code inside ``with SandboxedSystemd()`` raises, teardown still runs."""
    require(*prerequisites())
    leftovers: list[Path] = []

    with pytest.raises(RuntimeError, match="test body failed"):
        fail_inside_a_sandbox(leftovers)

    assert len(leftovers) == 2
    assert not any(path.exists() for path in leftovers)


def test_extra_units_run_and_writable_paths_stay_writable(
    make_systemd_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    """If a test adds a unit and a writable folder, the unit can write there."""
    out = tmp_path / "out.txt"
    unit = f"[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo hello > {out}'\n"
    sandbox = make_systemd_sandbox(
        extra_units={"assistant-writer.service": unit}, writable_paths=[tmp_path]
    )

    sandbox.systemctl("start", "assistant-writer.service")

    assert out.read_text() == "hello\n"


def test_the_rest_of_the_host_is_read_only_inside(
    systemd_sandbox: SandboxedSystemd,
) -> None:
    """If a process in the sandbox writes outside its writable folders, it fails."""
    target = Path(__file__).with_name("sandbox-must-not-write-here")

    done = subprocess.run(
        ["nsenter", "-t", str(systemd_sandbox.pid), "-a", "touch", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode != 0
    assert "Read-only file system" in done.stderr
    assert not target.exists()
