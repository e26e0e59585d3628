"""Run the real ``licensed`` daemon as a process, against real files.

``Installation`` lays out what a server has (configuration, trusted key, licence
folder, status and state folders) inside a test's temporary folder. ``Daemon``
starts ``licensed`` on it as a child process, waits for the first published status,
and stops it; its output (JSON log lines) is kept for assertions.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from licensed.licence import Licence
from tests.harness.licences import Vendor

VENV_BIN = Path(sys.executable).parent
LICENSED = VENV_BIN / "licensed"
LICENSECTL = VENV_BIN / "licensectl"


def wait_until(
    predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.005
) -> None:
    """Poll ``predicate`` until true; fail with ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


@dataclass
class Installation:
    """A licensed installation laid out under ``root``."""

    root: Path
    timezone: str = "Europe/Zurich"
    check_interval: float = 60
    # As in production: mask through the shipped template, which every systemd
    # sandbox installs. "" masks directly over the bus (the daemon runs as root).
    mask_helper: str = "licensed-mask@.service"
    extra: str = ""
    vendor: Vendor = field(init=False)

    def __post_init__(self) -> None:
        for folder in ("etc", "run", "state", "incoming"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.vendor = Vendor(self.root / "etc" / "keys")
        self.write_config()

    @property
    def config(self) -> Path:
        return self.root / "licensed.toml"

    @property
    def licence_file(self) -> Path:
        return self.root / "etc" / "licence.lic"

    @property
    def status_file(self) -> Path:
        return self.root / "run" / "status.json"

    @property
    def control_socket(self) -> Path:
        return self.root / "run" / "control.sock"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def write_config(self) -> None:
        self.config.write_text(
            f'licence_file = "{self.licence_file}"\n'
            f'keys_dir = "{self.root / "etc" / "keys"}"\n'
            f'status_file = "{self.status_file}"\n'
            f'control_socket = "{self.control_socket}"\n'
            f'state_dir = "{self.state_dir}"\n'
            f'timezone = "{self.timezone}"\n'
            f"check_interval = {self.check_interval}\n"
            f'mask_helper = "{self.mask_helper}"\n'
            f'log_format = "json"\n'
            f'log_level = "debug"\n' + self.extra
        )

    def install(self, licence: Licence) -> None:
        """Put a signed licence in place atomically, as ``licensectl install`` does."""
        staged = self.root / "incoming" / "new.lic"
        self.vendor.write(licence, staged)
        staged.replace(self.licence_file)

    def status_file_bytes(self) -> bytes:
        """The status file's bytes, as the daemon under test sees them."""
        return self.status_file.read_bytes()

    def status(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.status_file_bytes())
        return loaded

    def state(self) -> str | None:
        try:
            return str(self.status()["state"])
        except (FileNotFoundError, ValueError):
            return None

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("NOTIFY_SOCKET", "JOURNAL_STREAM", "WATCHDOG"))
        }
        env["LICENSED_CONFIG"] = str(self.config)
        env.update(extra or {})
        return env


class Daemon:
    """A running ``licensed`` process."""

    def __init__(
        self,
        installation: Installation,
        env: Mapping[str, str] | None = None,
        command_prefix: tuple[str, ...] = (),
    ) -> None:
        self.installation = installation
        self._earlier_pid = _publisher(installation.status_file.read_bytes)
        self.log_path = installation.root / f"licensed-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*command_prefix, str(LICENSED), "--config", str(installation.config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=installation.env(env),
            # Its own process group: a prefix such as faketime runs the daemon as a
            # child and does not pass signals on, so stop and kill go to the group.
            start_new_session=True,
        )

    def wait_started(self, timeout: float = 10.0) -> None:
        """Wait until the daemon has published its first decision."""
        wait_until(lambda: self.logged("daemon_started") and self._published(), timeout)

    def events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    def logged(self, event: str, **fields: object) -> bool:
        return any(
            e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
            for e in self.events()
        )

    def stop(self, timeout: float = 10.0) -> int:
        self._signal_group(signal.SIGTERM)
        code = self.process.wait(timeout)
        try:
            wait_until(self._group_gone, timeout)
        except TimeoutError:
            self._signal_group(signal.SIGKILL)
        self._log.close()
        return code

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)
        self.process.wait(10)
        wait_until(self._group_gone, 10)
        self._log.close()

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def _group_gone(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return True
        return False

    def _published(self) -> bool:
        # A status file left by an earlier daemon does not count. The pid in the
        # document is not always ours (faketime runs the daemon as its child),
        # so compare with the pid the earlier document named.
        pid = _publisher(self.installation.status_file_bytes)
        return pid is not None and pid != self._earlier_pid


def _publisher(read: Callable[[], bytes]) -> int | None:
    """The pid of the daemon that wrote the status file, if there is one."""
    try:
        pid = json.loads(read())["daemon"]["pid"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    return pid if isinstance(pid, int) else None
