"""The throw-away PostgreSQL cluster keeps to its folder and leaves nothing behind."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from tests.harness.fixtures_postgres import (  # noqa: F401 - fixtures used by name
    Database,
    postgres_cluster_fixture,
    postgres_db_fixture,
    private_postgres_fixture,
)
from tests.harness.postgres import ThrowawayPostgres, prerequisites
from tests.harness.prereq import require

pytestmark = pytest.mark.postgres


def postmaster_pid(cluster: ThrowawayPostgres) -> int:
    """The server's process id, from the first line of its postmaster.pid."""
    return int((cluster.data_dir / "postmaster.pid").read_text().split()[0])


def test_close_leaves_no_process_and_no_folder() -> None:
    """If the cluster is closed, its server process is gone and its folder too."""
    ok, reason = prerequisites()
    require(ok, reason)
    cluster = ThrowawayPostgres()
    cluster.start()
    pid = postmaster_pid(cluster)

    cluster.close()

    assert not cluster.root.exists()
    assert not Path(f"/proc/{pid}").exists()


def test_server_listens_on_its_private_socket_only(
    postgres_cluster: ThrowawayPostgres,
) -> None:
    """If the server runs, it has no TCP listener and its socket is in its folder."""
    listen = postgres_cluster.psql("SHOW listen_addresses").strip()
    sockets = postgres_cluster.psql("SHOW unix_socket_directories").strip()

    assert listen == ""
    assert sockets == str(postgres_cluster.socket_dir)
    assert postgres_cluster.socket_dir.is_relative_to(postgres_cluster.root)


def test_server_runs_as_the_postgres_user_when_started_by_root(
    postgres_cluster: ThrowawayPostgres,
) -> None:
    """If the suite runs as root, the server runs as the postgres system user."""
    require(os.geteuid() == 0, "only root hands the server to another user")

    status = Path(f"/proc/{postmaster_pid(postgres_cluster)}/status").read_text()

    uids = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert set(uids.split()[1:]) == {str(pwd.getpwnam("postgres").pw_uid)}


def test_data_survives_a_stop_and_start(private_postgres: ThrowawayPostgres) -> None:
    """If the server is stopped and started again, the data is still there."""
    private_postgres.psql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")

    private_postgres.stop()
    stopped = private_postgres.running
    private_postgres.start()

    assert not stopped
    assert private_postgres.psql("SELECT n FROM kept").strip() == "7"


def test_fresh_database_is_empty_and_its_own(postgres_db: Database) -> None:
    """If a test asks for a database, it gets an empty one of its own name."""
    tables = postgres_db.psql(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    )
    name = postgres_db.psql("SELECT current_database()")

    assert tables.strip() == "0"
    assert name.strip() == postgres_db.name
