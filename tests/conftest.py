"""Suite-wide fixtures: the sandboxed systemd and the throw-away PostgreSQL."""

from __future__ import annotations

pytest_plugins = [
    "tests.harness.fixtures_systemd",
    "tests.harness.fixtures_postgres",
]
