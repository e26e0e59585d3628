"""pytest fixtures around ``SandboxedSystemd``: one fresh systemd per test.

A sandbox is ready in 0.15-0.3 s and gone in 0.1 s, so every test gets its own
(function scope) and no test can see units left stopped or masked by another.
``make_systemd_sandbox`` builds one with extra units or writable folders; everything
it built is torn down after the test, whether it passed or not.

``tests/conftest.py`` registers this module with ``pytest_plugins``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness.prereq import require
from tests.harness.systemd import SandboxedSystemd, SandboxFactory, prerequisites


@pytest.fixture
def make_systemd_sandbox() -> Iterator[SandboxFactory]:
    """Build and start sandboxes with ``SandboxedSystemd``'s keyword arguments."""
    ok, reason = prerequisites()
    require(ok, reason)
    started: list[SandboxedSystemd] = []

    def make(**kwargs: Any) -> SandboxedSystemd:
        sandbox = SandboxedSystemd(**kwargs)
        started.append(sandbox)
        return sandbox.start()

    yield make

    for sandbox in started:
        sandbox.close()


@pytest.fixture
def systemd_sandbox(make_systemd_sandbox: SandboxFactory) -> SandboxedSystemd:
    """A running sandbox with the stand-in component units, all active."""
    return make_systemd_sandbox()
