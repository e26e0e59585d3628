"""licensectl status and check, through the real console script.

The daemon's end of the control socket is a real ``ControlServer`` answering with a
status document built by ``licensed.status`` from a real decision; the status file
is a real file. ``test_warnings_e2e`` drives the same commands against the real
daemon.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from licensed import status
from licensed.control import ControlServer
from licensed.decision import LicenceReading, Missing, Rejected, evaluate
from licensed.licence import Licence
from tests.harness.cli import Server, script
from tests.harness.licences import make_licence, make_trial
from tests.harness.prereq import require

ZONE = ZoneInfo("Europe/Zurich")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
NOBODY = "65534"
SMD = status.ComponentView("SMD", "assistant-smd.service", "running", "running")
SFB = status.ComponentView(
    "Core SfB", "assistant-core-sfb.service", "running", "running"
)


def build(
    reading: LicenceReading,
    *,
    now: datetime | None = None,
    users: status.UsersView | None = None,
    components: tuple[status.ComponentView, ...] = (SMD, SFB),
    errors: tuple[status.ErrorView, ...] = (),
    clock: status.ClockView | None = None,
) -> dict[str, Any]:
    """A status document as the daemon publishes it for ``reading`` at ``now``."""
    now = now or datetime.now(UTC)
    users = users or status.UsersView(counting=True, actual=42, counted_at=now)
    decision = evaluate(reading, now, ZONE, users=users.actual)
    snapshot = status.Snapshot(
        decision=decision,
        licence=reading if isinstance(reading, Licence) else None,
        key_id="vendor-test" if isinstance(reading, Licence) else None,
        checked_at=now,
        next_check=now + timedelta(minutes=1),
        timezone="Europe/Zurich",
        users=users,
        components=components,
        errors=errors,
        clock=clock or status.ClockView(high_water=now),
        daemon={"pid": 4242, "version": "0.1.0", "started_at": now.isoformat()},
    )
    return status.build(snapshot)


class FakeDaemon:
    """The daemon's end of the control socket, answering with ``document``."""

    def __init__(self, path: Path, document: dict[str, Any]) -> None:
        self.document = document
        self.requests: list[str] = []
        self._socket = ControlServer(path, "licensed-admin")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()

    def _answer(self, command: str) -> dict[str, Any]:
        self.requests.append(command)
        return self.document

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._socket], [], [], 0.05)
            if ready:
                self._socket.serve(self._answer)


@pytest.fixture
def server(tmp_path: Path) -> Server:
    return Server(tmp_path)


@pytest.fixture
def serve(server: Server) -> Iterator[Callable[[dict[str, Any]], FakeDaemon]]:
    started: list[FakeDaemon] = []

    def start(document: dict[str, Any]) -> FakeDaemon:
        daemon = FakeDaemon(server.control_socket, document)
        started.append(daemon)
        return daemon

    yield start

    for daemon in started:
        daemon.close()


def status_file(server: Server) -> Path:
    return server.root / "run" / "status.json"


def publish(server: Server, document: dict[str, Any]) -> None:
    status_file(server).parent.mkdir(parents=True, exist_ok=True)
    status.publish(status_file(server), document)


def field(page: str, label: str) -> str:
    """The value of the aligned field ``label`` on a status page, one line."""
    for line in page.splitlines():
        if line.startswith(f"{label:>12}: "):
            return line[14:]
    raise AssertionError(f"no field {label!r} in:\n{page}")


def in_terminal(server: Server, *args: str, env: dict[str, str]) -> str:
    """Run licensectl with its stdout on a pseudo-terminal; return what it wrote."""
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [str(script("licensectl")), *args],
        env=env,
        stdout=follower,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    ) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(30)
    os.close(leader)
    return b"".join(chunks).decode()


# --- the page -------------------------------------------------------------------


def test_a_licensed_system_reads_like_systemctl_status(
    server: Server, serve: Callable[[dict[str, Any]], FakeDaemon]
) -> None:
    """If the daemon says licensed, status prints the dot, state and aligned fields."""
    daemon = serve(build(make_licence()))

    result = server.licensectl("status")

    assert result.code == 0, result.stderr
    assert daemon.requests == ["status"]
    page = result.stdout
    assert page.splitlines()[0] == "\u25cf licensed - full licence AST-0001"
    assert field(page, "Licence") == "full AST-0001, ACME Corp (ACME Assistant PROD)"
    assert field(page, "Expires") == "does not expire"
    assert field(page, "Users") == (
        "42 actual / 100 licensed / 120 Over License Limit (counted 0 s ago)"
    )
    assert field(page, "Components") == (
        "SMD       running, required running (assistant-smd.service)"
    )
    assert (
        "              Core SfB  running, required running (assistant-core-sfb.service)"
        in page.splitlines()
    )
    assert field(page, "Checked").startswith("0 s ago; next check in ")
    assert field(page, "Daemon").startswith("pid 4242, version 0.1.0, started ")
    assert "Messages" not in page
    assert "\x1b[" not in page


def test_a_trial_says_when_it_expires_in_the_servers_zone(
    server: Server, serve: Callable[[dict[str, Any]], FakeDaemon]
) -> None:
    """If a trial runs, Expires gives the instant, its zone and the days left."""
    now = datetime.now(UTC)
    valid_until = now.astimezone(ZONE).date() + timedelta(days=40)
    serve(build(make_trial(valid_until), now=now))

    result = server.licensectl("status")

    assert result.code == 0, result.stderr
    expires = field(result.stdout, "Expires")
    instant = f"{(valid_until + timedelta(days=1)).isoformat()}T00:00:01+0"
    assert expires.startswith(instant)
    assert "(Europe/Zurich), in 40 days" in expires or "in 41 days" in expires


def test_an_expired_trial_exits_1_and_says_how_long_ago(
    server: Server, serve: Callable[[dict[str, Any]], FakeDaemon]
) -> None:
    """If the trial expired, the state is expired, Expires says how long ago, exit 1."""
    serve(build(make_trial(date(2020, 1, 31))))

    result = server.licensectl("status")

    assert result.code == 1, result.stderr
    assert result.stdout.startswith("\u25cf expired - trial licence AST-T001 expired")
    expires = field(result.stdout, "Expires")
    assert expires.startswith("2020-02-01T00:00:01+01:00 (Europe/Zurich), expired ")
    assert expires.endswith(" days ago")
    assert field(result.stdout, "Messages") == "everyone: Your License has expired"


@pytest.mark.parametrize(
    ("reading", "state"),
    [(Missing(), "missing"), (Rejected("the signature does not match"), "invalid")],
)
def test_no_usable_licence_exits_3(
    server: Server,
    serve: Callable[[dict[str, Any]], FakeDaemon],
    reading: LicenceReading,
    state: str,
) -> None:
    """If the licence is missing or invalid, status says which and exits 3."""
    serve(build(reading))

    result = server.licensectl("status")

    assert result.code == 3, result.stderr
    assert result.stdout.startswith(f"\u25cf {state} - ")
    assert field(result.stdout, "Licence") == "none installed"
    assert "Expires" not in result.stdout


def test_a_multi_line_message_is_indented_under_its_first_line(
    server: Server, serve: Callable[[dict[str, Any]], FakeDaemon]
) -> None:
    """If users exceed the limit, the product's three-line text stays aligned."""
    now = datetime.now(UTC)
    users = status.UsersView(counting=True, actual=130, counted_at=now)
    serve(build(make_licence(), now=now, users=users))

    result = server.licensectl("status")

    lines = result.stdout.splitlines()
    start = lines.index(
        "    Messages: everyone: You're exceeding the limits of the license for "
        "Assistant."
    )
    assert lines[start + 1] == "                #User: licensed 100/actual 130"
    assert lines[start + 2].startswith("                Please contact your vendor")


@pytest.mark.parametrize(
    ("users", "expected"),
    [
        (
            status.UsersView(counting=False),
            "counting off (no [database] configured) / 100 licensed / 120 Over "
            "License Limit",
        ),
        (
            status.UsersView(counting=True),
            "unknown / 100 licensed / 120 Over License Limit (not counted yet)",
        ),
        (
            status.UsersView(counting=True, stale=True, error="connection refused"),
            "unknown / 100 licensed / 120 Over License Limit (stale, never "
            "counted: connection refused)",
        ),
    ],
)
def test_the_users_line_says_when_the_count_is_off_unknown_or_stale(
    server: Server,
    serve: Callable[[dict[str, Any]], FakeDaemon],
    users: status.UsersView,
    expected: str,
) -> None:
    """If the users are not counted or the count failed, Users says so."""
    serve(build(make_licence(), users=users))

    result = server.licensectl("status")

    assert field(result.stdout, "Users") == expected


def test_a_stale_count_keeps_the_last_figure_and_says_when_it_was_taken(
    server: Server, serve: Callable[[dict[str, Any]], FakeDaemon]
) -> None:
    """If the database stopped answering, the last count shows, marked stale."""
    now = datetime.now(UTC)
    users = status.UsersView(
        counting=True,
        actual=99,
        counted_at=now - timedelta(minutes=7),
        stale=True,
        error="server closed the connection",
    )
    serve(build(make_licence(), now=now, users=users))

    result = server.licensectl("status")

    assert field(result.stdout, "Users") == (
        "99 actual / 100 licensed / 120 Over License Limit (stale, counted 7 min "
        "ago: server closed the connection)"
    )


def test_the_daemons_errors_are_listed_with_their_age(
    server: Server, serve: Callable[[dict[str, Any]], FakeDaemon]
) -> None:
    """If the daemon reports errors, status lists each, still exit 0 if licensed."""
    now = datetime.now(UTC)
    failed = dataclasses.replace(SMD, actual="unknown", error="polkit refused StopUnit")
    error = status.ErrorView(
        "systemd", "assistant-smd.service: polkit refused", now - timedelta(hours=3)
    )
    serve(build(make_licence(), now=now, components=(failed,), errors=(error,)))

    result = server.licensectl("status")

    assert result.code == 0
    assert field(result.stdout, "Errors") == (
        "systemd: assistant-smd.service: polkit refused (since 3 h ago)"
    )
    assert field(result.stdout, "Components") == (
        "SMD  unknown, required running (assistant-smd.service): polkit refused "
        "StopUnit"
    )


def test_a_clock_set_back_is_shown_with_the_way_out(
    server: Server, serve: Callable[[dict[str, Any]], FakeDaemon]
) -> None:
    """If the clock was set back, a Clock line says so and how it is cleared."""
    mark = datetime.now(UTC) + timedelta(days=3)
    clock = status.ClockView(high_water=mark, set_back=True)
    serve(build(make_licence(), clock=clock))

    result = server.licensectl("status")

    assert result.code == 0
    assert field(result.stdout, "Clock") == (
        f"set back behind the latest time seen ({mark.isoformat()}); expiry is "
        f"judged against that time until a freshly issued licence is installed"
    )


def test_json_prints_the_status_document(
    server: Server, serve: Callable[[dict[str, Any]], FakeDaemon]
) -> None:
    """If --json is given, the daemon's document is printed as it is, exit by state."""
    document = build(make_trial(date(2020, 1, 31)))
    serve(document)

    result = server.licensectl("status", "--json")

    assert result.code == 1
    assert json.loads(result.stdout) == document


# --- colour ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reading", "errors", "colour"),
    [
        (make_licence(), (), "\x1b[32m"),
        (make_trial(date(2020, 1, 31)), (), "\x1b[31m"),
        (
            make_licence(),
            (status.ErrorView("database", "down", datetime.now(UTC)),),
            "\x1b[33m",
        ),
    ],
    ids=["licensed-green", "expired-red", "errors-yellow"],
)
def test_on_a_terminal_the_dot_is_coloured_by_state(
    server: Server,
    serve: Callable[[dict[str, Any]], FakeDaemon],
    reading: LicenceReading,
    errors: tuple[status.ErrorView, ...],
    colour: str,
) -> None:
    """If stdout is a terminal, the dot and the state are green, red or yellow."""
    serve(build(reading, errors=errors))

    page = in_terminal(server, "status", env=server.env)

    assert page.startswith(f"{colour}\u25cf\x1b[0m {colour}")


def test_no_color_turns_the_colour_off_even_on_a_terminal(
    server: Server, serve: Callable[[dict[str, Any]], FakeDaemon]
) -> None:
    """If NO_COLOR is set, status prints no escape codes on a terminal."""
    serve(build(make_licence()))

    page = in_terminal(server, "status", env={**server.env, "NO_COLOR": "1"})

    assert page.startswith("\u25cf licensed")
    assert not ANSI.search(page)


# --- when the daemon does not answer -----------------------------------------------


def test_a_stale_status_exits_6_and_says_since_when(
    server: Server, serve: Callable[[dict[str, Any]], FakeDaemon]
) -> None:
    """If the last check is older than 3 check intervals, status is stale: exit 6."""
    old = datetime.now(UTC) - timedelta(minutes=10)
    serve(build(make_licence(), now=old))

    result = server.licensectl("status")

    assert result.code == 6
    first = result.stdout.splitlines()[0]
    assert first.startswith("\u25cf licensed - full licence AST-0001 (stale: ")
    assert "last checked 10 min ago" in first
    assert "next check was due 9 min ago" in field(result.stdout, "Checked")


def test_without_a_daemon_status_shows_the_last_status_file_and_exits_6(
    server: Server,
) -> None:
    """If the daemon is down, status shows the status file's last status, exit 6."""
    publish(server, build(make_licence()))

    result = server.licensectl("status")

    assert result.code == 6
    assert "the daemon does not answer; last status from" in result.stdout
    assert result.stderr.count("\n") == 1
    assert f"control socket {server.control_socket} does not exist" in result.stderr
    assert "'systemctl status licensed'" in result.stderr


def test_without_a_daemon_or_a_status_file_status_exits_6(server: Server) -> None:
    """If the daemon never ran, status says so on stderr and exits 6."""
    result = server.licensectl("status")

    assert (result.code, result.stdout) == (6, "")
    assert "the daemon is not running" in result.stderr
    assert f"{status_file(server)} does not exist" in result.stderr


def test_a_socket_nobody_listens_on_is_reported_as_a_daemon_not_running(
    server: Server,
) -> None:
    """If the socket file is left behind by a dead daemon, check says so, exit 6."""
    server.control_socket.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(server.control_socket))

    result = server.licensectl("check")

    assert (result.code, result.stdout) == (6, "")
    assert f"nothing listens on {server.control_socket}" in result.stderr
    assert "'systemctl status licensed'" in result.stderr


def test_a_daemon_that_never_answers_is_given_up_on_after_10_s(
    server: Server,
) -> None:
    """If the daemon accepts but does not answer, check gives up after 10 s, exit 6."""
    server.control_socket.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stuck:
        stuck.bind(str(server.control_socket))
        stuck.listen(1)

        result = server.licensectl("check")

    assert (result.code, result.stdout) == (6, "")
    assert "did not answer" in result.stderr
    assert "within 10 s" in result.stderr


def test_someone_outside_the_admin_group_reads_the_status_file(
    serve: Callable[[dict[str, Any]], FakeDaemon],
) -> None:
    """If the caller may not use the socket, status reads the status file, exit 0."""
    require(
        os.geteuid() == 0 and shutil.which("setpriv") is not None,
        "running a command as another user needs root and setpriv",
    )
    folder = Path(tempfile.mkdtemp(prefix="licensed-status-"))
    try:
        folder.chmod(0o755)
        server = Server(folder)
        document = build(make_licence())
        publish(server, document)
        daemon = FakeDaemon(server.control_socket, document)
        try:
            result = server.licensectl("status", prefix=_as_nobody())
            checked = server.licensectl("check", prefix=_as_nobody())
        finally:
            daemon.close()
    finally:
        shutil.rmtree(folder)

    assert result.code == 0, result.stderr
    assert daemon.requests == []
    assert result.stdout.startswith("\u25cf licensed - full licence AST-0001")
    assert checked.code == 4
    assert "only root and members of 'licensed-admin'" in checked.stderr


def _as_nobody() -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


# --- check ----------------------------------------------------------------------


def test_check_asks_the_daemon_to_check_and_prints_the_new_status(
    server: Server, serve: Callable[[dict[str, Any]], FakeDaemon]
) -> None:
    """If check runs, the daemon is asked to 'check' and the page is printed."""
    daemon = serve(build(make_licence()))

    result = server.licensectl("check")

    assert result.code == 0, result.stderr
    assert daemon.requests == ["check"]
    assert result.stdout.startswith("\u25cf licensed - full licence AST-0001")


def test_check_json_prints_the_new_document(
    server: Server, serve: Callable[[dict[str, Any]], FakeDaemon]
) -> None:
    """If check --json runs, the daemon's new document is printed."""
    document = build(Missing())
    serve(document)

    result = server.licensectl("check", "--json")

    assert result.code == 3
    assert json.loads(result.stdout) == document


def test_check_without_a_daemon_says_what_to_do(server: Server) -> None:
    """If no daemon runs, check exits 6 and points at systemctl, in one line."""
    result = server.licensectl("check")

    assert (result.code, result.stdout) == (6, "")
    assert result.stderr.count("\n") == 1
    assert "'systemctl status licensed'" in result.stderr
    assert "'licensectl show' reads the licence without it" in result.stderr


# --- help and start-up ------------------------------------------------------------


@pytest.mark.parametrize("command", ["status", "check"])
def test_help_says_what_the_command_needs_and_its_exit_codes(
    server: Server, command: str
) -> None:
    """If --help is asked for, it names the admin group and every exit code."""
    result = server.licensectl(command, "--help")

    assert result.code == 0
    text = " ".join(result.stdout.split())
    assert "admin group" in text
    assert "Changes nothing" in text or "start or stop and mask" in text
    for code in ("0 done", "1 the licence file", "3 show, status", "6 status"):
        assert code in text


def test_status_loads_neither_the_keys_nor_the_cryptography_library() -> None:
    """If licensectl starts, it imports nothing only install, remove and show need."""
    probe = (
        "import sys, licensed.ctl; "
        "print(sorted(m for m in ('cryptography', 'licensed.install') "
        "if m in sys.modules))"
    )

    result = subprocess.run(
        [str(script("python")), "-c", probe],
        capture_output=True,
        text=True,
        check=True,
    )

    assert result.stdout.strip() == "[]"
