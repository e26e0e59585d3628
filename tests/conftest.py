"""Suite-wide fixtures: the sandboxed systemd, the throw-away PostgreSQL and the
real daemon running against them."""

from __future__ import annotations

pytest_plugins = [
    "tests.harness.fixtures_systemd",
    "tests.harness.fixtures_postgres",
    "tests.harness.fixtures_daemon",
]
