"""Suite-wide fixtures: the sandboxed systemd, the throw-away PostgreSQL, the real
daemon running against them, and a trusted vendor for in-memory licences."""

from __future__ import annotations

pytest_plugins = [
    "tests.harness.fixtures_systemd",
    "tests.harness.fixtures_postgres",
    "tests.harness.fixtures_daemon",
    "tests.harness.fixtures_licences",
]
