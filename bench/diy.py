"""The do-it-yourself peer: what an administrator builds instead of licensed.

Three units and a script (``bench/peer/licence-check``), run by the same sandboxed
systemd as licensed in the same benchmark run:

* ``licence-check.path`` with ``PathChanged=`` on the licence file. systemd watches
  the file's folder and fires on a close after writing and on a rename into place,
  so an atomic ``licensectl install`` (a rename) triggers it.
* ``licence-check.timer`` with ``OnCalendar=*-*-* 00:00:01`` and the default
  ``AccuracySec=1min``, for the expiry.
* ``licence-check.service``, a oneshot that runs the script: ``licensectl show
  --json``, publish that view as a status file, then ``systemctl stop`` + ``mask
  --runtime`` or ``unmask --runtime`` + ``start`` for SMD and SfB.

The service's start limit is switched off (``StartLimitIntervalSec=0``): a real
administrator would not need that, but systemd's default (5 starts in 10 s) would
otherwise refuse most of the benchmark's hundreds of replacements.

The peer's expiry lateness (P2) cannot be measured under libfaketime the way
licensed's is: the timer lives in PID 1, which runs on the real clock. It is made
of two measured parts instead:

* where systemd's calendar puts the timer's next elapse after each case's expiry
  instant (``systemd-analyze calendar --base-time``, the same calendar code
  PID 1 uses): on an ordinary night that is the instant itself, but on a day
  without 00:00:01 (DST at midnight) it is the next day;
* how late the timer's script stops SMD after an elapse at HH:MM:01: measured on
  the real clock by moving the timer's calendar (a runtime drop-in) to the next
  such second, with the same default accuracy. systemd delays an elapse within
  the accuracy window to a point fixed per boot (sd-event's wake-up coalescing,
  offset by a value derived from the boot ID), so every HH:MM:01 elapse is equally
  late; ``predicted_elapse`` computes that point and the run checks it. With
  ``--quick`` the real-clock run is skipped and the prediction plus the measured
  script time (the peer's P1b) stands in, labelled as a model.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.ours import P2_LEAD, ExpiryCase, Licences, ensure_components_running
from bench.probes import StatusWatch, UnitWatch
from bench.switching import SMD, STOPPED, Switcher, Switching, Target
from tests.harness.daemon import LICENSECTL, Installation, wait_until
from tests.harness.systemd import SandboxedSystemd

SERVICE = "licence-check.service"
PATH_UNIT = "licence-check.path"
TIMER = "licence-check.timer"
SCRIPT = Path(__file__).resolve().with_name("peer") / "licence-check"
ACCURACY_S = 60.0
_STARTED = frozenset({"activating"})
_DONE = frozenset({"inactive", "failed"})
_USEC = 1_000_000


def unit_files(installation: Installation) -> dict[str, str]:
    """The peer's units, for ``SandboxedSystemd(extra_units=...)``."""
    return {
        PATH_UNIT: (
            "[Unit]\nDescription=Check the licence whenever its file changes\n\n"
            f"[Path]\nPathChanged={installation.licence_file}\nUnit={SERVICE}\n"
        ),
        TIMER: (
            "[Unit]\nDescription=Check the licence just after midnight\n\n"
            f"[Timer]\nOnCalendar=*-*-* 00:00:01\nUnit={SERVICE}\n"
        ),
        SERVICE: (
            "[Unit]\nDescription=Apply the licence to SMD and SfB\n"
            "# Benchmark only: hundreds of licence replacements in a few minutes.\n"
            "StartLimitIntervalSec=0\n\n"
            "[Service]\nType=oneshot\n"
            f"Environment=LICENSED_CONFIG={installation.config}\n"
            f"Environment=LICENSECTL={LICENSECTL}\n"
            f"Environment=STATUS_FILE={installation.status_file}\n"
            f"ExecStart={SCRIPT}\n"
        ),
    }


def prerequisites() -> tuple[bool, str]:
    """Whether the peer's script can run here, and if not, why."""
    if shutil.which("jq") is None:
        return False, "the peer's script needs jq (apt-get install jq)"
    return True, ""


@contextlib.contextmanager
def armed(
    installation: Installation, sandbox: SandboxedSystemd, licences: Licences
) -> Iterator[None]:
    """A full licence in place, the components running, the path and timer on."""
    installation.licence_file.write_bytes(licences.full_a.data)
    ensure_components_running(sandbox)
    sandbox.systemctl("start", PATH_UNIT, TIMER)
    try:
        yield
    finally:
        sandbox.systemctl("stop", PATH_UNIT, TIMER)


def switch(
    installation: Installation,
    sandbox: SandboxedSystemd,
    units: UnitWatch,
    targets: tuple[Target, Target],
    runs: int,
) -> Switching:
    """P1 and P1b for the peer: alternate licences, time status and SMD."""

    def settle(
        target: Target, start: float, document: Mapping[str, Any] | None
    ) -> None:
        began = units.wait_for(SERVICE, _STARTED, start, timeout=30)
        change = units.wait_for(SERVICE, _DONE, began.at, timeout=30)
        if change.state == "failed":
            journal = sandbox.systemctl("status", SERVICE, check=False).stdout
            raise RuntimeError(f"the peer's script failed:\n{journal}")
        # A licence replaced while the script runs goes unnoticed (the path unit
        # does not fire again), so the next run waits until it is watching.
        wait_until(lambda: _sub_state(sandbox, PATH_UNIT) == "waiting", timeout=10)

    status = StatusWatch(installation.status_file)
    try:
        switcher = Switcher(
            installation.licence_file,
            installation.root / "incoming" / "bench.lic",
            status,
            units,
            settle,
        )
        return switcher.run(targets, runs + runs % 2)
    finally:
        status.close()


def _sub_state(sandbox: SandboxedSystemd, unit: str) -> str:
    shown = sandbox.systemctl("show", "--property=SubState", "--value", unit)
    return shown.stdout.strip()


# P2: the timer.


@dataclass(frozen=True)
class TimerRun:
    """One real-clock elapse of the peer's timer, in seconds after its schedule."""

    scheduled: float
    predicted: float
    fired: float
    stopped: float


def measure_timer(
    installation: Installation,
    sandbox: SandboxedSystemd,
    units: UnitWatch,
    licences: Licences,
) -> TimerRun:
    """Let the timer find an expired licence at the next HH:MM:01, real clock."""
    sandbox.systemctl("stop", PATH_UNIT)
    staged = installation.root / "incoming" / "bench.lic"
    staged.write_bytes(licences.expired.data)
    staged.replace(installation.licence_file)
    # The licence has ended and nothing has noticed: the situation at 00:00:01.
    ensure_components_running(sandbox)

    scheduled = _next_second_one(time.time() + 3)
    dropin = _dropin_folder(sandbox)
    since = time.perf_counter()
    _move_timer(sandbox, dropin, scheduled)
    try:
        fired = units.wait_for(SERVICE, _STARTED, since, 150)
        stopped = units.wait_for(SMD, STOPPED, since, 150)
    finally:
        shutil.rmtree(dropin)
        sandbox.systemctl("daemon-reload")
        sandbox.systemctl("restart", TIMER)
    return TimerRun(
        scheduled,
        predicted_elapse(scheduled) - scheduled,
        fired.wall - scheduled,
        stopped.wall - scheduled,
    )


def _next_second_one(after: float) -> float:
    minute = math.floor(after / 60) * 60 + 1
    return minute if minute >= after else minute + 60


def _dropin_folder(sandbox: SandboxedSystemd) -> Path:
    return Path(f"/proc/{sandbox.pid}/root/run/systemd/system/{TIMER}.d")


def _move_timer(sandbox: SandboxedSystemd, dropin: Path, scheduled: float) -> None:
    when = datetime.fromtimestamp(scheduled, UTC)
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "bench.conf").write_text(
        f"[Timer]\nOnCalendar=\nOnCalendar={when:%Y-%m-%d %H:%M:%S} UTC\n"
    )
    sandbox.systemctl("daemon-reload")
    sandbox.systemctl("restart", TIMER)


def predicted_elapse(scheduled: float, accuracy: float = ACCURACY_S) -> float:
    """When systemd 252 wakes up for a realtime timer due at ``scheduled``.

    sd-event picks a point in [scheduled, scheduled + accuracy]: the same offset
    within each minute on the whole machine if one falls in the window, else
    within each 10 s, 1 s or 250 ms; the offset comes from the boot ID.
    """
    earliest = round(scheduled * _USEC)
    latest = earliest + round(accuracy * _USEC)
    perturbation = _boot_perturbation()
    for step in (60 * _USEC, 10 * _USEC, _USEC, _USEC // 4):
        candidate = latest // step * step + perturbation % step
        if candidate >= latest:
            candidate -= step
        if candidate >= earliest:
            return candidate / _USEC
    return latest / _USEC


def _boot_perturbation() -> int:
    boot = uuid.UUID(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    low = int.from_bytes(boot.bytes[:8], "little")
    high = int.from_bytes(boot.bytes[8:], "little")
    return (low ^ high) % (60 * _USEC)


def calendar_delay(case: ExpiryCase) -> float:
    """Seconds from the case's expiry instant to the timer's next elapse after it.

    Asks systemd's own calendar code, with the clock a little before the instant
    and the server's zone set to the case's zone.
    """
    base = (case.instant - P2_LEAD).timestamp()
    done = subprocess.run(
        [
            "systemd-analyze",
            "calendar",
            f"--base-time=@{int(base)}",
            f"*-*-* 00:00:01 {case.zone}",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TZ": "UTC"},
    )
    for line in done.stdout.splitlines():
        label, _, value = line.strip().partition(": ")
        if label == "Next elapse":
            utc = value.removesuffix(" UTC") + " +0000"
            elapse = datetime.strptime(utc, "%a %Y-%m-%d %H:%M:%S %z")
            return elapse.timestamp() - case.instant.timestamp()
    raise RuntimeError(f"systemd-analyze printed no next elapse: {done.stdout!r}")
