"""pytest fixtures around ``ThrowawayPostgres``.

- ``postgres_cluster`` (session): one cluster shared by the whole run.
- ``postgres_db`` (function): a fresh, empty database in that cluster, dropped after
  the test.
- ``private_postgres`` (function): a cluster of the test's own, for tests that stop
  and restart the server and must not disturb the shared one.

Import the fixture functions into a test module (or list this module in a
``conftest.py``'s ``pytest_plugins``) to use them. Without the PostgreSQL binaries
they skip, or fail when ``CI=true``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from tests.harness.postgres import ThrowawayPostgres, prerequisites
from tests.harness.prereq import require

_database_numbers = itertools.count(1)


@dataclass(frozen=True)
class Database:
    """One database in a throw-away cluster."""

    cluster: ThrowawayPostgres
    name: str

    @property
    def conninfo(self) -> str:
        """A superuser libpq connection string for this database."""
        return self.cluster.conninfo(self.name)

    def psql(self, script: str) -> str:
        """Run SQL in this database through psql; return its unaligned output."""
        return self.cluster.psql(script, dbname=self.name)

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        """Open an autocommit superuser connection to this database."""
        return self.cluster.connect(self.name)


def _new_cluster() -> Iterator[ThrowawayPostgres]:
    ok, reason = prerequisites()
    require(ok, reason)

    with ThrowawayPostgres() as cluster:
        yield cluster


@pytest.fixture(scope="session", name="postgres_cluster")
def postgres_cluster_fixture() -> Iterator[ThrowawayPostgres]:
    """A throw-away cluster shared by the whole test session."""
    yield from _new_cluster()


@pytest.fixture(name="private_postgres")
def private_postgres_fixture() -> Iterator[ThrowawayPostgres]:
    """A throw-away cluster of the test's own, free to stop and restart."""
    yield from _new_cluster()


@pytest.fixture(name="postgres_db")
def postgres_db_fixture(postgres_cluster: ThrowawayPostgres) -> Iterator[Database]:
    """A fresh, empty database in the shared cluster, dropped afterwards."""
    name = f"test_{next(_database_numbers)}"
    postgres_cluster.create_database(name)

    yield Database(postgres_cluster, name)

    postgres_cluster.drop_database(name)
