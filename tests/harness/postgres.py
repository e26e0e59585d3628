"""A throw-away PostgreSQL cluster for tests, benchmarks and demos.

``ThrowawayPostgres`` owns one cluster in a fresh temporary folder: it runs
``initdb``, starts the server listening on a Unix socket inside that folder only
(``listen_addresses = ''``, so no TCP port is ever opened), stops and restarts it on
request, and on ``close()`` stops it and removes the folder. Durability is switched
off (``fsync``, ``full_page_writes``) because the data is thrown away anyway.
``synchronous_commit`` stays on: with fsync off a commit costs no disk flush
anyway, and asynchronous commit would keep VACUUM from marking freshly written
pages all-visible (their hint bits wait for the WAL flush), which silently turns
index-only scans into heap fetches.

PostgreSQL refuses to run as root, so when the caller is root the folder is given to
the ``postgres`` system user and the server runs as that user; otherwise it runs as
the caller. Local connections are trusted, except for roles that are members of
``SCRAM_GROUP``: those must log in with a password (SCRAM), so that code handling
passwords can be tested against a real server.

This module imports no pytest: the fixtures live in ``fixtures_postgres.py``.

The server runs as a direct child process (not daemonised through ``pg_ctl``), so
that stopping it reaps it: no zombie is left behind even where PID 1 does not reap
orphans.

Limitations: if the Python process is killed with SIGKILL, the server and its folder
outlive it (every other exit path, including an unhandled exception and normal
interpreter exit, stops the server and removes the folder).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

BIN_DIR = Path("/usr/lib/postgresql/15/bin")
SERVER_USER = "postgres"
SCRAM_GROUP = "scram_login"
SUPERUSER = "postgres"

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 30.0
_POLL_S = 0.01
_LOG_TAIL_CHARS = 2000
_SETTINGS: Mapping[str, str] = {
    "listen_addresses": "''",
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "50",
    "log_min_messages": "warning",
}
_HBA = f"local all +{SCRAM_GROUP} scram-sha-256\nlocal all all trust\n"


class PostgresHarnessError(RuntimeError):
    """The throw-away cluster could not be created, started or stopped."""


def prerequisites(bin_dir: Path = BIN_DIR) -> tuple[bool, str]:
    """Say whether a throw-away cluster can run here, and if not, why."""
    names = ("initdb", "postgres", "psql")
    missing = [name for name in names if not (bin_dir / name).is_file()]
    if missing:
        return False, f"PostgreSQL binaries {missing} not found in {bin_dir}"

    if os.geteuid() == 0 and not _user_exists(SERVER_USER):
        return False, f"running as root but there is no {SERVER_USER!r} user to run"
    return True, ""


class _Server:
    """The running postmaster, kept apart from the cluster so a finalizer can see it."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def stop(self, sig: signal.Signals = signal.SIGINT) -> None:
        """Shut down (SIGINT is PostgreSQL's fast shutdown) and reap the process."""
        process, self.process = self.process, None
        if process is None:
            return

        process.send_signal(sig)
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ThrowawayPostgres:
    """One temporary PostgreSQL cluster on a private Unix socket."""

    def __init__(
        self,
        bin_dir: Path = BIN_DIR,
        port: int = 5432,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        ok, reason = prerequisites(bin_dir)
        if not ok:
            raise PostgresHarnessError(reason)

        self.bin_dir = bin_dir
        # With no TCP listener the port only names the socket file, so every
        # cluster can use the same one without clashing.
        self.port = port
        self._settings = {**_SETTINGS, **(settings or {})}
        self.root = Path(tempfile.mkdtemp(prefix="licensed-pg-"))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "run"
        self.log_file = self.root / "server.log"
        self._initialised = False
        self._server = _Server()
        self._finalizer = weakref.finalize(self, _teardown, self._server, self.root)

    def __enter__(self) -> ThrowawayPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def conninfo(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        """Return a libpq connection string for ``dbname`` as ``user``."""
        return psycopg.conninfo.make_conninfo(
            host=str(self.socket_dir), port=self.port, dbname=dbname, user=user
        )

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        process = self._server.process
        return process is not None and process.poll() is None

    def start(self) -> None:
        """Create the cluster on first use, then start the server and wait for it."""
        if not self._initialised:
            self._initdb()
        if self.running:
            return

        self._launch()
        self._wait_until_ready()
        self._ensure_scram_group()

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are disconnected)."""
        self._server.stop()

    def close(self) -> None:
        """Stop the server and remove the whole folder; safe to call twice."""
        self._finalizer()

    def psql(self, script: str, dbname: str = "postgres") -> str:
        """Run SQL through ``psql`` as the superuser; return its unaligned output."""
        command = [
            str(self.bin_dir / "psql"),
            "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-d", self.conninfo(dbname),
        ]  # fmt: skip
        done = subprocess.run(
            command, input=script, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            message = f"psql failed ({done.returncode}): {done.stderr.strip()}"
            raise PostgresHarnessError(message)
        return done.stdout

    def connect(
        self, dbname: str = "postgres"
    ) -> psycopg.Connection[tuple[object, ...]]:
        """Open an autocommit superuser connection to ``dbname``."""
        return psycopg.connect(self.conninfo(dbname), autocommit=True)

    def create_database(self, name: str) -> None:
        """Create an empty database called ``name``."""
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting whoever still uses it."""
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        with self.connect() as conn:
            conn.execute(statement.format(sql.Identifier(name)))

    def _initdb(self) -> None:
        self.socket_dir.mkdir()
        _give_to_server_user(self.root)
        self._run_as_server(
            str(self.bin_dir / "initdb"),
            "-D", str(self.data_dir),
            "-U", SUPERUSER,
            "--auth-local=trust",
            "--no-sync",
            "-E", "UTF8",
            "--locale=C",
        )  # fmt: skip
        self._write_config()
        self._initialised = True

    def _write_config(self) -> None:
        settings = {**self._settings, "port": str(self.port)}
        settings["unix_socket_directories"] = f"'{self.socket_dir}'"
        lines = [f"{key} = {value}\n" for key, value in settings.items()]
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.writelines(lines)
        (self.data_dir / "pg_hba.conf").write_text(_HBA)

    def _launch(self) -> None:
        with self.log_file.open("ab") as log:
            self._server.process = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                user=_server_user(),
                cwd=self.root,
            )

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._accepts_connections():
            if not self.running:
                raise self._failure("the server exited while starting")
            if time.monotonic() > deadline:
                self.stop()
                raise self._failure(f"the server was not ready in {_START_TIMEOUT_S} s")
            time.sleep(_POLL_S)

    def _accepts_connections(self) -> bool:
        # postmaster.pid's eighth line is the server's state; "ready" means it
        # accepts connections.
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready"

    def _ensure_scram_group(self) -> None:
        query = "SELECT 1 FROM pg_roles WHERE rolname = %s"
        create = sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(SCRAM_GROUP))
        with self.connect() as conn:
            if conn.execute(query, [SCRAM_GROUP]).fetchone() is None:
                conn.execute(create)

    def _run_as_server(self, *command: str) -> None:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            user=_server_user(),
            cwd=self.root,
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()
            message = f"{Path(command[0]).name} failed ({done.returncode}): {output}"
            raise PostgresHarnessError(message)

    def _failure(self, what: str) -> PostgresHarnessError:
        try:
            log = self.log_file.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
        except FileNotFoundError:
            log = "(no server log)"
        return PostgresHarnessError(f"{what}; server log:\n{log}")


def _teardown(server: _Server, root: Path) -> None:
    """Stop the server at once (SIGQUIT: immediate shutdown), then remove ``root``."""
    server.stop(signal.SIGQUIT)
    shutil.rmtree(root, ignore_errors=True)


def _server_user() -> str | None:
    return SERVER_USER if os.geteuid() == 0 else None


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _give_to_server_user(root: Path) -> None:
    user = _server_user()
    if user is None:
        return

    entry = pwd.getpwnam(user)
    for path in (root, *root.iterdir()):
        os.chown(path, entry.pw_uid, entry.pw_gid)
