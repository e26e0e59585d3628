"""User counting end to end: the real daemon, a real PostgreSQL and a real systemd.

The daemon counts the persons of a throw-away database with the default schema and
publishes the count, and the exceeded-limits message when there is one, in the
status file. These tests change the persons and the server under it and read the
status file back; checks are waited for on the status file, never slept for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from licensed.users import DEFAULT_SCHEMA
from tests.harness.daemon import Daemon, Installation, wait_until
from tests.harness.fixtures_postgres import Database
from tests.harness.licences import make_licence
from tests.harness.postgres import ThrowawayPostgres
from tests.harness.systemd import SandboxedSystemd

pytestmark = [pytest.mark.postgres, pytest.mark.systemd]

SMD = "assistant-smd.service"
SFB = "assistant-core-sfb.service"
LICENSED_USERS = 3
OVER_LIMIT = 5  # the escalation limit: beyond it, everyone sees the message
LICENCE = make_licence(users=LICENSED_USERS, over_licence_limit=OVER_LIMIT)
BOUND = 10.0  # seconds: generous; a count takes milliseconds, the interval 1 s


def database_table(conninfo: str, count_interval: float = 1, **more: object) -> str:
    """The ``[database]`` table of the configuration, as TOML text."""
    lines = [
        "[database]",
        f"conninfo = {json.dumps(conninfo)}",
        f"count_interval = {count_interval}",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in more.items()]
    return "\n".join(lines) + "\n"


def set_persons(
    conn_source: Database | ThrowawayPostgres,
    users: int,
    both: int = 0,
    others: int = 2,
) -> None:
    """Replace the persons: ``users`` of them users, ``both`` of those with both
    apps enabled, alternating Assistant and MA for the rest; plus ``others``
    persons with neither."""
    single = users - both
    rows = [(True, True)] * both
    rows += [(n % 2 == 0, n % 2 == 1) for n in range(single)]
    rows += [(False, False)] * others
    numbered = [(number, *flags) for number, flags in enumerate(rows, start=1)]
    with conn_source.connect() as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE persons")
        cur.executemany("INSERT INTO persons VALUES (%s, %s, %s)", numbered)


def users_of(installation: Installation) -> dict[str, Any]:
    users: dict[str, Any] = installation.status()["users"]
    return users


def counted(installation: Installation, actual: int) -> bool:
    """Whether the status file shows a fresh count of ``actual`` users."""
    try:
        users = users_of(installation)
    except (FileNotFoundError, ValueError):
        return False
    return users["actual"] == actual and users["stale"] is False


def over_limit_message(installation: Installation) -> dict[str, str] | None:
    found = [
        m for m in installation.status()["messages"] if m["id"] == "users_over_licence"
    ]
    assert len(found) <= 1
    return found[0] if found else None


def limits_text(licensed: int, actual: int) -> str:
    return (
        "You're exceeding the limits of the license for Assistant.\n"
        f"#User: licensed {licensed}/actual {actual}\n"
        "Please contact your vendor and obtain additional licenses or adjust the "
        "configuration to comply with the limitations."
    )


def components(installation: Installation) -> dict[str, tuple[str, str]]:
    return {
        c["unit"]: (c["required"], c["actual"])
        for c in installation.status()["components"]
    }


RUNNING = {SMD: ("running", "running"), SFB: ("running", "running")}


@pytest.fixture
def persons_db(postgres_db: Database) -> Database:
    """A fresh database with the default schema and no persons."""
    postgres_db.psql(DEFAULT_SCHEMA)
    return postgres_db


def test_the_count_is_compared_with_the_licensed_and_the_escalation_limit(
    tmp_path: Path,
    persons_db: Database,
    start_daemon: Callable[[Installation], Daemon],
) -> None:
    """If the users grow past the licensed limit, administrators get the exceeded-
    limits message; past the escalation limit, everyone does."""
    installation = Installation(tmp_path, extra=database_table(persons_db.conninfo))
    installation.install(LICENCE)
    set_persons(persons_db, 0)
    start_daemon(installation)
    expected = [
        (0, None),
        (LICENSED_USERS, None),
        (LICENSED_USERS + 1, "administrators"),
        (OVER_LIMIT, "administrators"),
        (OVER_LIMIT + 1, "everyone"),
        (LICENSED_USERS, None),
    ]

    for users, audience in expected:
        set_persons(persons_db, users)
        wait_until(partial(counted, installation, users), BOUND)

        message = over_limit_message(installation)
        if audience is None:
            assert message is None, f"{users} users"
        else:
            assert message == {
                "id": "users_over_licence",
                "audience": audience,
                "text": limits_text(LICENSED_USERS, users),
            }
        document = installation.status()
        assert document["state"] == "licensed"
        assert document["users"]["licensed"] == LICENSED_USERS
        assert document["users"]["over_licence_limit"] == OVER_LIMIT
        assert document["users"]["counting"] == "on"
        assert components(installation) == RUNNING


def test_a_person_with_both_apps_counts_once(
    tmp_path: Path,
    persons_db: Database,
    start_daemon: Callable[[Installation], Daemon],
) -> None:
    """If persons have both Assistant and MA enabled, each counts as one user."""
    installation = Installation(tmp_path, extra=database_table(persons_db.conninfo))
    installation.install(LICENCE)
    set_persons(persons_db, LICENSED_USERS, both=LICENSED_USERS, others=3)

    start_daemon(installation)

    wait_until(lambda: counted(installation, LICENSED_USERS), BOUND)
    assert over_limit_message(installation) is None


def test_a_licence_change_recounts_at_once(
    tmp_path: Path,
    persons_db: Database,
    start_daemon: Callable[[Installation], Daemon],
) -> None:
    """If a new licence is installed, the users are counted again at once, not at
    the next count interval."""
    extra = database_table(persons_db.conninfo, count_interval=3600)
    installation = Installation(tmp_path, extra=extra)
    installation.install(LICENCE)
    set_persons(persons_db, 1)
    daemon = start_daemon(installation)
    wait_until(lambda: counted(installation, 1), BOUND)
    set_persons(persons_db, OVER_LIMIT + 1)

    installation.install(make_licence(serial="AST-0002", users=4, over_licence_limit=8))

    wait_until(lambda: counted(installation, OVER_LIMIT + 1), BOUND)
    assert installation.status()["licence"]["serial"] == "AST-0002"
    assert over_limit_message(installation) == {
        "id": "users_over_licence",
        "audience": "administrators",
        "text": limits_text(4, OVER_LIMIT + 1),
    }
    assert daemon.logged("user_count_refreshed", actual=OVER_LIMIT + 1, previous=1)


@pytest.fixture
def restartable(private_postgres: ThrowawayPostgres) -> ThrowawayPostgres:
    """A private cluster with the default schema in its `postgres` database."""
    private_postgres.psql(DEFAULT_SCHEMA)
    return private_postgres


def test_a_stopped_database_leaves_the_last_count_stale_and_changes_nothing(
    tmp_path: Path,
    restartable: ThrowawayPostgres,
    systemd_sandbox: SandboxedSystemd,
    start_daemon: Callable[[Installation], Daemon],
) -> None:
    """If the server stops, the last good count stays, marked stale with the error,
    and neither the messages, the components nor the state change; once the server
    is back, the count is fresh again."""
    extra = database_table(restartable.conninfo(), connect_timeout=2)
    installation = Installation(tmp_path, extra=extra)
    installation.install(LICENCE)
    set_persons(restartable, LICENSED_USERS + 1)
    daemon = start_daemon(installation)
    wait_until(lambda: counted(installation, LICENSED_USERS + 1), BOUND)
    wait_until(lambda: components(installation) == RUNNING, BOUND)
    before = installation.status()

    restartable.stop()

    wait_until(lambda: users_of(installation)["stale"] is True, BOUND)
    stale = installation.status()
    assert stale["users"]["actual"] == LICENSED_USERS + 1
    assert stale["users"]["counted_at"] == before["users"]["counted_at"]
    assert "cannot connect to the user database" in stale["users"]["error"]
    assert stale["messages"] == before["messages"]
    assert stale["state"] == "licensed"
    assert components(installation) == RUNNING
    assert systemd_sandbox.is_active(SMD) == "active"
    assert daemon.logged("user_count_failed", last_good=LICENSED_USERS + 1)
    assert not daemon.logged("component_stopped")

    restartable.start()

    wait_until(lambda: counted(installation, LICENSED_USERS + 1), BOUND)
    fresh = installation.status()
    assert fresh["users"]["error"] is None
    assert fresh["users"]["counted_at"] > before["users"]["counted_at"]
    assert fresh["messages"] == before["messages"]
    assert daemon.process.poll() is None


def test_a_count_never_made_is_unknown(
    tmp_path: Path,
    start_daemon: Callable[[Installation], Daemon],
) -> None:
    """If the database has never answered, the actual count is null (unknown), the
    count is stale with the error, and no message is shown."""
    nowhere = f"host={tmp_path / 'no-server'} dbname=assistant user=licensed"
    installation = Installation(tmp_path, extra=database_table(nowhere))
    installation.install(LICENCE)

    daemon = start_daemon(installation)

    wait_until(lambda: users_of(installation)["stale"] is True, BOUND)
    users = users_of(installation)
    assert users["actual"] is None
    assert users["counted_at"] is None
    assert users["counting"] == "on"
    assert "cannot connect" in users["error"]
    assert installation.status()["messages"] == []
    assert installation.status()["state"] == "licensed"
    assert daemon.process.poll() is None


def test_without_a_database_counting_is_off(
    tmp_path: Path,
    start_daemon: Callable[[Installation], Daemon],
) -> None:
    """If the configuration has no [database] table, counting is off."""
    installation = Installation(tmp_path)
    installation.install(LICENCE)

    daemon = start_daemon(installation)

    users = users_of(installation)
    assert users["counting"] == "off"
    assert users["actual"] is None
    assert users["stale"] is False
    assert daemon.logged("user_counting_off")
