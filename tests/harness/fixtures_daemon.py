"""pytest fixtures that run the real daemon against the sandboxed systemd.

``start_daemon(installation, **options)`` starts ``licensed`` on an installation,
talking to the test's sandboxed systemd, waits for its first published status and
returns the running ``Daemon``; ``options`` go to ``Daemon`` (``env`` is merged).
Every daemon a test started is stopped after it, whether it passed or not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.harness.daemon import Daemon, Installation
from tests.harness.systemd import SandboxedSystemd


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """The daemons a test starts; each still running is stopped afterwards."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.stop()


@pytest.fixture
def start_daemon(
    systemd_sandbox: SandboxedSystemd, daemons: list[Daemon]
) -> Callable[..., Daemon]:
    """Start the daemon on an installation against the sandbox's systemd."""

    def start(installation: Installation, **options: Any) -> Daemon:
        env = {"DBUS_SYSTEM_BUS_ADDRESS": systemd_sandbox.bus_address}
        env.update(options.pop("env", {}))
        daemon = Daemon(installation, env=env, **options)
        daemons.append(daemon)
        daemon.wait_started()
        return daemon

    return start
