"""Counting the product's users in its PostgreSQL database.

The licence grants a number of users; this module counts how many there actually are.
A user is a person who has Assistant or MA (the mobile app) enabled; a person with
both counts once. It owns the database connection, the count query and its checks,
and the memory of the last good count. It decides nothing about the licence: a
failing database is neither an over-limit nor an expiry, only a stale count.

Default schema (``DEFAULT_SCHEMA``), and the index that keeps the count fast
(``RECOMMENDED_INDEX``)::

    CREATE TABLE persons (
        id                bigint  PRIMARY KEY,
        assistant_enabled boolean NOT NULL DEFAULT false,
        ma_enabled        boolean NOT NULL DEFAULT false
    );
    CREATE INDEX persons_users_idx ON persons ((true))
        WHERE assistant_enabled OR ma_enabled;

The index holds one entry per user and nothing else. Its key is a constant on
purpose: all keys being equal, B-tree deduplication (PostgreSQL 13 and later) packs
the entries into posting lists, so for 600 000 users it takes 4 MB where the same
partial index on ``id`` takes 13 MB. That is small enough for the planner to answer
``DEFAULT_QUERY`` with an index-only scan; the index on ``id`` lost to a scan of the
whole table (``bench/bench_users.py`` measures both). Index-only scans skip the table
only where the visibility map says so: autovacuum keeps it current; after a bulk
load, run ``VACUUM ANALYZE persons``.

Installations whose schema differs configure their own query. It must return exactly
one row with one column holding a non-negative integer (``bigint``, ``integer`` or an
integral ``numeric``), e.g. ``SELECT count(*) FROM people WHERE app_user``; anything
else raises ``UserCountError`` naming what came back.

Connection: a libpq connection string; an empty one means libpq's defaults and the
standard ``PG*`` environment variables. Keep passwords out of it: use a libpq
password file (``passfile``, ``PGPASSFILE``, ``~/.pgpass``) or ``PGPASSWORD``. A
password that is in the string anyway never reaches a log line or an error message:
only host, port, database and user are shown. The role needs nothing but ``SELECT``
on the tables the query reads (e.g. ``GRANT SELECT ON persons TO licensed``).

Each count runs in a read-only transaction under a per-session
``statement_timeout``, on one connection that is kept between counts and
re-established after a failure. The query is sent with the extended protocol, so it
cannot smuggle in a second statement.

    UserCounter          runs the query: count() -> int or UserCountError
    UserCountTracker     refresh() -> UserCount: last good count, stale flag, backoff

Limitations: the count reads one index entry per user, so its time grows with the
number of users (about 35 ms for 600 000 users on a two-core machine); when nearly
every person is a user, the planner prefers a parallel scan of the table, which
costs about the same. An installation far beyond a million users can keep a counter
up to date with triggers and configure ``SELECT n FROM that_counter`` as the query.
libpq (and psycopg) round ``connect_timeout`` up to whole seconds and treat anything
below 2 s as 2 s. ``statement_timeout`` is enforced by the server, so a network that
silently drops packets after the connection is made is noticed only by the
operating system's TCP timeouts (add ``keepalives_idle`` and ``tcp_user_timeout`` to
the connection string for a remote server).
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import structlog
from psycopg import sql

from licensed.errors import ConfigError, UserCountError

__all__ = [
    "DEFAULT_QUERY",
    "DEFAULT_SCHEMA",
    "RECOMMENDED_INDEX",
    "UserCount",
    "UserCountTracker",
    "UserCounter",
]

log = structlog.get_logger(__name__)

DEFAULT_QUERY = "SELECT count(*) FROM persons WHERE assistant_enabled OR ma_enabled"
DEFAULT_SCHEMA = """\
CREATE TABLE persons (
    id                bigint  PRIMARY KEY,
    assistant_enabled boolean NOT NULL DEFAULT false,
    ma_enabled        boolean NOT NULL DEFAULT false
);
"""
RECOMMENDED_INDEX = """\
CREATE INDEX persons_users_idx ON persons ((true))
    WHERE assistant_enabled OR ma_enabled;
"""

_SHAPE = (
    "the user-count query must return exactly one row with one non-negative "
    "integer column, e.g. SELECT count(*) FROM persons WHERE ..."
)
_SHOWN_KEYS = ("host", "port", "dbname", "user")
_APPLICATION_NAME = "licensed"
_BACKOFF_FIRST_S = 1.0
_BACKOFF_CAP_S = 60.0


@dataclass(frozen=True)
class UserCount:
    """What is known about the number of users."""

    actual: int | None  # None: never counted successfully ("unknown")
    counted_at: datetime | None  # aware UTC time of the last successful count
    stale: bool  # the last attempt failed; ``actual`` is the last good one
    error: str | None  # why the last attempt failed (no secrets)
    attempt: int  # consecutive failed attempts (0 after a success)


class UserCounter:
    """Counts users with one kept, read-only connection; thread-safe."""

    def __init__(
        self,
        conninfo: str,
        query: str | None = None,
        connect_timeout: float = 5.0,
        statement_timeout: float = 5.0,
    ) -> None:
        self._params = _parse_conninfo(conninfo)
        self._secrets = _secrets(self._params)
        self._conninfo = conninfo
        self._query = _clean_query(DEFAULT_QUERY if query is None else query)
        self._connect_timeout = _positive("connect_timeout", connect_timeout)
        self._statement_timeout = _positive("statement_timeout", statement_timeout)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        """The configured target without secrets: host, port, dbname and user."""
        return _describe(self._params)

    def count(self) -> int:
        """Run the query and return the number of users, or raise UserCountError."""
        with self._lock:
            reused = self._conn is not None
            conn = self._connection()
            try:
                return self._count_on(conn)
            except _ConnectionLostError:
                if not reused:
                    raise
            # The kept connection died since the last count (e.g. the server
            # restarted): one fresh connection deserves one more try.
            return self._count_on(self._connection())

    def close(self) -> None:
        """Close the kept connection, if any; count() would open a new one."""
        with self._lock:
            self._drop_connection()

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is not None and not self._conn.closed:
            return self._conn

        self._conn = self._connect()
        return self._conn

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        try:
            conn = psycopg.connect(
                self._conninfo,
                connect_timeout=str(math.ceil(self._connect_timeout)),
                fallback_application_name=_APPLICATION_NAME,
            )
        except psycopg.Error as exc:
            reason = self._scrub(exc)
            message = (
                f"cannot connect to the user database ({self.where}): {reason}; "
                "check the connection string, that the server runs, and the "
                "password file"
            )
            raise UserCountError(message) from None

        self._configure(conn)
        log.info("user_db_connected", backend_pid=conn.info.backend_pid, **_info(conn))
        return conn

    def _configure(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        # Session settings, so they hold for every later transaction. Read-only
        # twice over: the session default, and BEGIN READ ONLY via read_only.
        timeout_ms = max(1, round(self._statement_timeout * 1000))
        statement = (
            "SELECT set_config('statement_timeout', %s, false), "
            "set_config('default_transaction_read_only', 'on', false)"
        )
        try:
            conn.execute(statement, [f"{timeout_ms}ms"])
            conn.commit()
        except psycopg.Error as exc:
            conn.close()
            reason = self._scrub(exc)
            message = (
                f"cannot set up the user database session ({self.where}): {reason}"
            )
            raise UserCountError(message) from None
        conn.read_only = True

    def _count_on(self, conn: psycopg.Connection[tuple[object, ...]]) -> int:
        try:
            with conn.cursor(binary=True) as cur:
                cur.execute(sql.SQL(self._query))
                return _single_count(cur)
        except psycopg.errors.QueryCanceled as exc:
            raise UserCountError(self._timeout_message(exc)) from exc
        except psycopg.Error as exc:
            raise self._query_failure(conn, exc) from exc
        finally:
            self._end_transaction(conn)

    def _query_failure(
        self, conn: psycopg.Connection[tuple[object, ...]], exc: psycopg.Error
    ) -> UserCountError:
        reason = self._scrub(exc)
        if conn.broken or conn.closed:
            self._drop_connection()
            message = f"lost the connection to the user database ({self.where}): "
            return _ConnectionLostError(message + reason)
        return UserCountError(
            f"user-count query failed: {reason}; check the query, the schema and "
            "that the role may SELECT from the tables it reads"
        )

    def _timeout_message(self, exc: psycopg.Error) -> str:
        return (
            f"user-count query cancelled ({self._scrub(exc)}) after "
            f"statement_timeout = {self._statement_timeout:g} s; make the query "
            "cheaper (see the recommended index) or raise statement_timeout"
        )

    def _end_transaction(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        # Nothing is ever written; rolling back ends the transaction without
        # holding a snapshot open until the next count.
        if conn.broken or conn.closed:
            return
        try:
            conn.rollback()
        except psycopg.Error:
            self._drop_connection()

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _scrub(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split())
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


class _ConnectionLostError(UserCountError):
    """The kept connection broke; a fresh one may succeed."""


class UserCountTracker:
    """Keeps the last good count, marks it stale on failure, and backs off."""

    def __init__(
        self,
        counter: UserCounter,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._counter = counter
        self._clock = clock
        self._current = UserCount(None, None, stale=False, error=None, attempt=0)
        self._lock = threading.Lock()

    @property
    def current(self) -> UserCount:
        """The latest state, without counting again."""
        return self._current

    def refresh(self) -> UserCount:
        """Count again and return the new state; never raises."""
        with self._lock:
            try:
                actual = self._counter.count()
            except UserCountError as exc:
                self._current = self._failed(str(exc))
            except Exception as exc:
                # A bug in counting must not take enforcement down with it: the
                # traceback goes to the log, the count goes stale as for any failure.
                log.exception("user_count_crashed")
                self._current = self._failed(f"unexpected {type(exc).__name__}")
            else:
                self._current = self._counted(actual)
            return self._current

    def retry_delay(self) -> float:
        """Seconds to wait before the next attempt: 0 after a success, else
        1, 2, 4 ... capped at 60."""
        attempt = self._current.attempt
        if attempt == 0:
            return 0.0
        # The exponent is capped too, so a long outage cannot overflow the float.
        doublings = min(attempt - 1, 30)
        return min(_BACKOFF_CAP_S, _BACKOFF_FIRST_S * 2.0**doublings)

    def _counted(self, actual: int) -> UserCount:
        before = self._current
        now = self._clock()
        changed = before.actual != actual or before.stale
        level = log.info if changed else log.debug
        level("user_count_refreshed", actual=actual, previous=before.actual)
        return UserCount(actual, now, stale=False, error=None, attempt=0)

    def _failed(self, error: str) -> UserCount:
        before = self._current
        failed = UserCount(
            before.actual,
            before.counted_at,
            stale=True,
            error=error,
            attempt=before.attempt + 1,
        )
        log.warning(
            "user_count_failed",
            attempt=failed.attempt,
            error=error,
            last_good=before.actual,
            counted_at=before.counted_at.isoformat() if before.counted_at else None,
        )
        return failed


def _single_count(cur: psycopg.Cursor[tuple[object, ...]]) -> int:
    """The one non-negative integer the query returned, or UserCountError."""
    columns = [column.name for column in cur.description or ()]
    if len(columns) != 1:
        shown = ", ".join(columns) if columns else "no result set"
        raise UserCountError(
            f"user-count query returned {len(columns)} columns ({shown}); {_SHAPE}"
        )

    rows = cur.fetchmany(2)
    if len(rows) != 1:
        what = "no rows" if not rows else f"{cur.rowcount} rows"
        raise UserCountError(f"user-count query returned {what}; {_SHAPE}")

    return _as_count(rows[0][0])


def _as_count(value: object) -> int:
    if isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value

    shown = repr(value)[:80]
    kind = "NULL" if value is None else f"{shown} ({type(value).__name__})"
    raise UserCountError(f"user-count query returned {kind}; {_SHAPE}")


def _parse_conninfo(conninfo: str) -> dict[str, object]:
    try:
        return dict(psycopg.conninfo.conninfo_to_dict(conninfo))
    except psycopg.ProgrammingError as exc:
        # libpq quotes the fragment it choked on, which may be part of an
        # unquoted password with a space in it: give the reason without it.
        reason = re.sub(r'"[^"]*"', '"..."', " ".join(str(exc).split()))
        message = (
            f"user database connection string is malformed ({reason}); write it as "
            "libpq key=value pairs (host=... dbname=... user=...) or a "
            "postgresql:// URI"
        )
        raise ConfigError(message) from None


def _secrets(params: dict[str, object]) -> Sequence[str]:
    candidates = (params.get("password"), os.environ.get("PGPASSWORD"))
    return [str(secret) for secret in candidates if secret]


def _describe(params: dict[str, object]) -> str:
    shown = [f"{key}={params[key]}" for key in _SHOWN_KEYS if params.get(key)]
    return " ".join(shown) if shown else "libpq defaults"


def _info(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, object]:
    info = conn.info
    return {
        "host": info.host,
        "port": info.port,
        "dbname": info.dbname,
        "user": info.user,
    }


def _clean_query(query: str) -> str:
    # A trailing semicolon is harmless to psql but makes an empty second
    # statement for the extended protocol.
    cleaned = query.strip().rstrip(";").strip()
    if not cleaned:
        raise ConfigError(f"user-count query {query!r} is empty; {_SHAPE}")
    return cleaned


def _positive(name: str, value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        message = f"{name} = {value!r}: must be a positive number of seconds, e.g. 5"
        raise ConfigError(message)
    return value
