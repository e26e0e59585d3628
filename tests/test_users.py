"""Counting users against a real, throw-away PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from licensed.errors import ConfigError, UserCountError
from licensed.users import (
    DEFAULT_QUERY,
    DEFAULT_SCHEMA,
    RECOMMENDED_INDEX,
    UserCount,
    UserCounter,
    UserCountTracker,
)
from tests.harness.fixtures_postgres import (  # noqa: F401 - fixtures used by name
    Database,
    postgres_cluster_fixture,
    postgres_db_fixture,
    private_postgres_fixture,
)
from tests.harness.postgres import SCRAM_GROUP, ThrowawayPostgres

pytestmark = pytest.mark.postgres

SCHEMA = DEFAULT_SCHEMA + RECOMMENDED_INDEX
SHAPE = "exactly one row with one non-negative integer column"
PASSWORD = "Zq7-not-in-logs-3xK"  # noqa: S105 - the secret the tests look for


def add_persons(db: Database, *flags: tuple[bool, bool]) -> None:
    """Insert one person per (assistant_enabled, ma_enabled) pair."""
    rows = [(number, *pair) for number, pair in enumerate(flags, start=1)]
    with db.connect() as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO persons VALUES (%s, %s, %s)", rows)


@pytest.fixture(name="persons_db")
def persons_db_fixture(postgres_db: Database) -> Database:
    """A fresh database with the default schema and no persons."""
    postgres_db.psql(SCHEMA)
    return postgres_db


@pytest.fixture(name="counter")
def counter_fixture(persons_db: Database) -> Iterator[UserCounter]:
    """A counter with the default query on the fresh default-schema database."""
    counter = UserCounter(persons_db.conninfo)
    yield counter
    counter.close()


@pytest.fixture(name="restartable")
def restartable_fixture(private_postgres: ThrowawayPostgres) -> ThrowawayPostgres:
    """A private cluster with the default schema and three users in `postgres`."""
    private_postgres.psql(SCHEMA)
    private_postgres.psql(
        "INSERT INTO persons VALUES (1, true, false), (2, false, true), (3, true, true)"
    )
    return private_postgres


def count_with(db: Database, query: str, **options: float) -> int:
    """Count once with a counter of its own, closed afterwards."""
    counter = UserCounter(db.conninfo, query, **options)
    try:
        return counter.count()
    finally:
        counter.close()


def test_default_schema_with_no_persons_counts_zero(counter: UserCounter) -> None:
    """If the persons table is empty, the count is 0."""
    actual = counter.count()

    assert actual == 0


def test_default_schema_counts_every_person_with_a_flag(
    persons_db: Database, counter: UserCounter
) -> None:
    """If N persons have Assistant or MA enabled, the count is N."""
    add_persons(persons_db, (True, False), (False, True), (True, False), (True, False))

    actual = counter.count()

    assert actual == 4


def test_person_with_both_flags_counts_once(
    persons_db: Database, counter: UserCounter
) -> None:
    """If a person has both Assistant and MA, they count as one user."""
    add_persons(persons_db, (True, True), (True, False))

    actual = counter.count()

    assert actual == 2


def test_person_with_neither_flag_does_not_count(
    persons_db: Database, counter: UserCounter
) -> None:
    """If a person has neither Assistant nor MA, they are not a user."""
    add_persons(persons_db, (False, False), (True, False), (False, False))

    actual = counter.count()

    assert actual == 1


def test_count_follows_changes_between_counts(
    persons_db: Database, counter: UserCounter
) -> None:
    """If persons change between counts, the next count sees the change."""
    add_persons(persons_db, (True, False))
    first = counter.count()

    persons_db.psql("UPDATE persons SET ma_enabled = true, assistant_enabled = false")
    persons_db.psql("INSERT INTO persons VALUES (10, false, true)")
    second = counter.count()

    assert (first, second) == (1, 2)


def test_recommended_index_answers_the_default_query_alone(
    persons_db: Database,
) -> None:
    """If the recommended index exists and the table is vacuumed, the default query
    is an index-only scan that never visits the table."""
    persons_db.psql(
        "INSERT INTO persons SELECT i, i % 10 < 5, i % 10 BETWEEN 4 AND 5"
        " FROM generate_series(1, 20000) AS i; VACUUM ANALYZE persons"
    )

    plan = persons_db.psql(f"EXPLAIN (ANALYZE, COSTS OFF) {DEFAULT_QUERY}")

    assert "Index Only Scan using persons_users_idx" in plan
    assert "Heap Fetches: 0" in plan


def test_custom_query_counts_with_its_own_schema(postgres_db: Database) -> None:
    """If the installation has its own schema, a configured query counts it."""
    postgres_db.psql(
        "CREATE TABLE people (name text PRIMARY KEY, app_user boolean NOT NULL);"
        "INSERT INTO people VALUES ('ann', true), ('bob', false), ('cy', true);"
    )

    actual = count_with(postgres_db, "SELECT count(*) FROM people WHERE app_user")

    assert actual == 2


@pytest.mark.parametrize(
    ("query", "named"),
    [
        pytest.param("SELECT 1 AS a, 2 AS b", "2 columns (a, b)", id="two-columns"),
        pytest.param("SELECT 1 UNION ALL SELECT 2", "2 rows", id="two-rows"),
        pytest.param("SELECT 'seven'", "'seven' (str)", id="text"),
        pytest.param("SELECT -3", "-3 (int)", id="negative"),
        pytest.param("SELECT NULL::bigint", "NULL", id="null"),
        pytest.param("SELECT 1 WHERE false", "no rows", id="no-rows"),
        pytest.param("SELECT 2.5", "Decimal('2.5')", id="fraction"),
        pytest.param("SELECT true", "True (bool)", id="boolean"),
    ],
)
def test_query_of_the_wrong_shape_is_refused_naming_what_came_back(
    postgres_db: Database, query: str, named: str
) -> None:
    """If the query returns anything but one non-negative integer, the error says
    what came back and what the query must return."""
    with pytest.raises(UserCountError) as caught:
        count_with(postgres_db, query)

    assert named in str(caught.value)
    assert SHAPE in str(caught.value)


def test_integral_numeric_result_is_accepted(postgres_db: Database) -> None:
    """If the query returns an integral numeric (as sum(bigint) does), it counts."""
    query = "SELECT sum(n) FROM (VALUES (2::bigint), (3::bigint)) AS v(n)"

    actual = count_with(postgres_db, query)

    assert actual == 5


def test_trailing_semicolon_is_accepted(
    counter: UserCounter, persons_db: Database
) -> None:
    """If the configured query ends with a semicolon, it still runs."""
    add_persons(persons_db, (True, True))

    actual = count_with(persons_db, DEFAULT_QUERY + ";\n")

    assert actual == 1


def test_query_cannot_write(persons_db: Database) -> None:
    """If the query tries to change data, the read-only transaction refuses it."""
    add_persons(persons_db, (True, False))

    with pytest.raises(UserCountError, match="read-only transaction"):
        count_with(persons_db, "DELETE FROM persons RETURNING 1")

    assert persons_db.psql("SELECT count(*) FROM persons").strip() == "1"


def test_query_cannot_smuggle_a_second_statement(persons_db: Database) -> None:
    """If the query holds two statements, it is refused and neither runs."""
    add_persons(persons_db, (True, False))
    query = "COMMIT; SET default_transaction_read_only = off; DELETE FROM persons"

    with pytest.raises(UserCountError, match="multiple commands"):
        count_with(persons_db, query)

    assert persons_db.psql("SELECT count(*) FROM persons").strip() == "1"


def test_slow_query_hits_the_statement_timeout(postgres_db: Database) -> None:
    """If the query runs longer than statement_timeout, it is cancelled and the
    error names the timeout."""
    with pytest.raises(UserCountError) as caught:
        count_with(postgres_db, "SELECT pg_sleep(2)::text", statement_timeout=0.2)

    assert "statement_timeout = 0.2 s" in str(caught.value)
    assert "statement timeout" in str(caught.value)


def test_connection_survives_a_timeout(postgres_db: Database) -> None:
    """If a count times out, the next count reuses the same connection."""
    postgres_db.psql("CREATE TABLE delay (seconds float); INSERT INTO delay VALUES (1)")
    query = "SELECT pg_backend_pid() + 0 * length(pg_sleep(seconds)::text) FROM delay"
    counter = UserCounter(postgres_db.conninfo, query, statement_timeout=0.2)
    with pytest.raises(UserCountError):
        counter.count()

    postgres_db.psql("UPDATE delay SET seconds = 0")
    pids = {counter.count(), counter.count()}

    counter.close()
    assert len(pids) == 1


def test_connection_is_reused_between_counts(postgres_db: Database) -> None:
    """If counts follow each other, they run on the same backend."""
    counter = UserCounter(postgres_db.conninfo, "SELECT pg_backend_pid()")

    pids = [counter.count() for _ in range(3)]

    counter.close()
    assert len(set(pids)) == 1


def test_connection_is_reestablished_after_it_was_killed(
    postgres_db: Database,
) -> None:
    """If the kept connection is terminated, the next count opens a new one and
    succeeds."""
    counter = UserCounter(postgres_db.conninfo, "SELECT pg_backend_pid()")
    first = counter.count()
    postgres_db.psql(f"SELECT pg_terminate_backend({first})")

    second = counter.count()

    counter.close()
    assert second != first


def test_count_runs_read_only_with_the_configured_timeout(
    postgres_db: Database,
) -> None:
    """If a count runs, its session is read-only with statement_timeout set."""
    query = (
        "SELECT CASE WHEN current_setting('transaction_read_only') = 'on'"
        " THEN extract(epoch FROM current_setting('statement_timeout')::interval"
        ") * 1000 END::bigint"
    )

    actual = count_with(postgres_db, query, statement_timeout=1.5)

    assert actual == 1500


def test_tracker_before_any_refresh_knows_nothing(counter: UserCounter) -> None:
    """If nothing was counted yet, the count is unknown (None), not zero."""
    tracker = UserCountTracker(counter)

    state = tracker.current

    assert state == UserCount(None, None, stale=False, error=None, attempt=0)
    assert tracker.retry_delay() == 0.0


def test_tracker_records_the_count_and_the_clock(
    persons_db: Database, counter: UserCounter
) -> None:
    """If a refresh succeeds, it records the count at the clock's time."""
    add_persons(persons_db, (True, False), (True, True))
    instant = datetime(2026, 7, 7, 12, 0, tzinfo=UTC)
    tracker = UserCountTracker(counter, clock=lambda: instant)

    state = tracker.refresh()

    assert state == UserCount(2, instant, stale=False, error=None, attempt=0)
    assert tracker.current == state


def test_tracker_with_no_server_stays_unknown_and_stale(tmp_path: Path) -> None:
    """If the database was never reachable, the count stays None, marked stale."""
    tracker = UserCountTracker(UserCounter(f"host={tmp_path} dbname=nothing"))

    state = tracker.refresh()

    assert state.actual is None
    assert state.counted_at is None
    assert state.stale
    assert state.attempt == 1
    assert state.error is not None
    assert "cannot connect to the user database" in state.error


def test_tracker_backs_off_exponentially_up_to_a_minute(tmp_path: Path) -> None:
    """If attempts keep failing, the retry delay doubles from 1 s and stops at 60 s."""
    tracker = UserCountTracker(UserCounter(f"host={tmp_path} dbname=nothing"))

    delays = []
    for _ in range(9):
        tracker.refresh()
        delays.append(tracker.retry_delay())

    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_stopped_server_marks_the_count_stale_and_keeps_the_last_good_one(
    restartable: ThrowawayPostgres,
) -> None:
    """If the server stops, refresh keeps the last good count, marks it stale with
    the reason, counts the attempts, logs a warning and raises nothing."""
    counter = UserCounter(restartable.conninfo())
    tracker = UserCountTracker(counter)
    good = tracker.refresh()
    restartable.stop()

    with capture_logs() as logs:
        first = tracker.refresh()
        second = tracker.refresh()

    counter.close()
    assert (first.actual, first.counted_at) == (3, good.counted_at)
    assert (first.stale, first.attempt, second.attempt) == (True, 1, 2)
    assert second.actual == 3
    assert first.error is not None
    assert "user database" in first.error
    failures = [entry for entry in logs if entry["event"] == "user_count_failed"]
    assert [entry["attempt"] for entry in failures] == [1, 2]
    assert {entry["log_level"] for entry in failures} == {"warning"}


def test_restarted_server_gives_a_fresh_count(restartable: ThrowawayPostgres) -> None:
    """If the server comes back, the next refresh counts afresh and is not stale."""
    counter = UserCounter(restartable.conninfo())
    tracker = UserCountTracker(counter)
    tracker.refresh()
    restartable.stop()
    tracker.refresh()
    restartable.start()
    restartable.psql("INSERT INTO persons VALUES (4, true, false)")

    state = tracker.refresh()

    counter.close()
    assert (state.actual, state.stale, state.error, state.attempt) == (
        4,
        False,
        None,
        0,
    )
    assert tracker.retry_delay() == 0.0


def test_server_restart_between_counts_costs_no_failed_attempt(
    restartable: ThrowawayPostgres,
) -> None:
    """If the server restarted between two counts, the broken kept connection is
    replaced at once and the count succeeds."""
    counter = UserCounter(restartable.conninfo())
    tracker = UserCountTracker(counter)
    tracker.refresh()
    restartable.stop()
    restartable.start()

    state = tracker.refresh()

    counter.close()
    assert (state.actual, state.stale, state.attempt) == (3, False, 0)


@pytest.fixture(name="password_db")
def password_db_fixture(persons_db: Database) -> Database:
    """The default-schema database, readable by role `counter` with a password."""
    persons_db.psql(
        f"DROP ROLE IF EXISTS counter; "
        f"CREATE ROLE counter LOGIN PASSWORD '{PASSWORD}' IN ROLE {SCRAM_GROUP}; "
        "GRANT SELECT ON persons TO counter;"
    )
    add_persons(persons_db, (True, False))
    return persons_db


def conninfo_as_counter(db: Database, password: str) -> str:
    """The database's connection string for role `counter` with a password in it."""
    return f"{db.cluster.conninfo(db.name, user='counter')} password={password}"


def test_password_in_the_connection_string_never_reaches_logs_or_errors(
    password_db: Database,
) -> None:
    """If the connection string holds a password, neither log lines nor errors
    (query refused, success, database gone) show it."""
    counter = UserCounter(conninfo_as_counter(password_db, PASSWORD))
    tracker = UserCountTracker(counter)

    with capture_logs() as logs:
        password_db.psql("REVOKE SELECT ON persons FROM counter")
        refused = tracker.refresh()
        password_db.psql("GRANT SELECT ON persons TO counter")
        counted = tracker.refresh()
        password_db.cluster.drop_database(password_db.name)
        lost = tracker.refresh()

    counter.close()
    assert (refused.stale, counted.actual, lost.stale) == (True, 1, True)
    assert any(entry["event"] == "user_db_connected" for entry in logs)
    texts = [repr(entry) for entry in logs] + [repr(refused), repr(lost), counter.where]
    assert not [text for text in texts if PASSWORD in text]


def test_wrong_password_error_does_not_show_it(password_db: Database) -> None:
    """If the password is wrong, the error says authentication failed and does not
    show the password that was tried."""
    wrong = "Wr0ng-pass-9-secret"
    counter = UserCounter(conninfo_as_counter(password_db, wrong))

    with pytest.raises(UserCountError) as caught:
        counter.count()

    assert "password authentication failed" in str(caught.value)
    assert wrong not in str(caught.value)
    assert "user=counter" in str(caught.value)


def test_password_from_the_environment_is_used(
    password_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If PGPASSWORD holds the password, a connection string without one works."""
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    counter = UserCounter(password_db.cluster.conninfo(password_db.name, "counter"))

    actual = counter.count()

    counter.close()
    assert actual == 1


def test_password_from_a_password_file_is_used(
    password_db: Database, tmp_path: Path
) -> None:
    """If a libpq password file holds the password, a connection string naming the
    file works."""
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:counter:{PASSWORD}\n")
    passfile.chmod(0o600)
    conninfo = password_db.cluster.conninfo(password_db.name, "counter")
    counter = UserCounter(f"{conninfo} passfile={passfile}")

    actual = counter.count()

    counter.close()
    assert actual == 1


def test_empty_connection_string_uses_the_pg_environment(
    persons_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the connection string is empty, the standard PG* variables apply."""
    add_persons(persons_db, (False, True))
    cluster = persons_db.cluster
    monkeypatch.setenv("PGHOST", str(cluster.socket_dir))
    monkeypatch.setenv("PGPORT", str(cluster.port))
    monkeypatch.setenv("PGDATABASE", persons_db.name)
    monkeypatch.setenv("PGUSER", "postgres")
    counter = UserCounter("")

    actual = counter.count()

    counter.close()
    assert actual == 1
    assert counter.where == "libpq defaults"


def test_malformed_connection_string_is_a_config_error_without_the_password() -> None:
    """If the connection string cannot be parsed, ConfigError says so without
    echoing any of it."""
    with pytest.raises(ConfigError) as caught:
        UserCounter(f"host=/tmp password=spaced {PASSWORD} user=x")

    assert "malformed" in str(caught.value)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("option", ["connect_timeout", "statement_timeout"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_non_positive_timeout_is_a_config_error(option: str, value: float) -> None:
    """If a timeout is not a positive number of seconds, ConfigError names it."""
    with pytest.raises(ConfigError, match=option):
        UserCounter("", **{option: value})  # type: ignore[arg-type]


def test_empty_query_is_a_config_error() -> None:
    """If the configured query is blank, ConfigError says so."""
    with pytest.raises(ConfigError, match="empty"):
        UserCounter("", " ; ")
