"""``licensectl``: the administrator's command line on the server.

Commands: ``install FILE`` (validate and install a licence file), ``remove``
(delete the installed licence) and ``show`` (the *License Information* view) work
on the files alone; ``status`` and ``check`` ask the running daemon over its
control socket (``licensed.control``). This module parses options, asks, prints
and picks exit codes; what the commands do to the licence file lives in
``licensed.install``, what they print in ``licensed.show``.

Expected errors print one line on stderr and exit with a code from the one table
in ``EXIT_CODES``, shared by every command; only a bug produces a traceback.
Install and remove never contact the daemon: it watches the licence folder and
reacts to changes by itself.

``status`` asks the daemon; when it cannot (the socket is closed to the caller,
or the daemon does not answer), it reads the world-readable status file instead.
A status older than ``STALE_FACTOR`` check intervals is *stale*: the daemon has
stopped checking, and the state shown is no longer enforced.

``licensectl status`` is meant for scripts and monitoring, so it must start fast:
modules only some commands need (``licensed.install``, which loads the trusted
keys and the cryptography library, and structlog) are imported inside the
commands that need them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from licensed import config as config_module
from licensed import control
from licensed import show as showing
from licensed.config import Config
from licensed.decision import Missing, Rejected, State
from licensed.errors import ConfigError, InstallError, InvalidLicence, KeyringError
from licensed.show import STALE_FACTOR, Freshness
from licensed.status import StatusUnavailable, read_status

if TYPE_CHECKING:
    from licensed import install as installing
    from licensed.licence_file import SignedLicence

EXIT_OK = 0
EXIT_EXPIRED = 1
EXIT_INVALID_LICENCE = 1
EXIT_CONFIG = 2
EXIT_NO_LICENCE = 3
EXIT_NOT_PERMITTED = 4
EXIT_REFUSED = 5
EXIT_NO_DAEMON = 6
EXIT_INTERRUPTED = 130

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK:>3}  done; show, status, check: the system is licensed
  {EXIT_EXPIRED:>3}  the licence file is invalid (install: "Invalid Licence File: ...",
       nothing changed) or has expired (show, status, check)
  {EXIT_CONFIG:>3}  bad usage, unusable configuration or trusted-key folder
  {EXIT_NO_LICENCE:>3}  show, status, check: no licence is installed, or it is invalid
  {EXIT_NOT_PERMITTED:>3}  not permitted: run as root or as a member of the admin group
  {EXIT_REFUSED:>3}  install, remove: refused or failed (a downgrade without --force,
       licence folder missing, file not writable, removal not confirmed)
  {EXIT_NO_DAEMON:>3}  status, check: the daemon does not answer, or its status is
       stale (its last check is older than {STALE_FACTOR} x check_interval)
  {EXIT_INTERRUPTED:>3}  interrupted (Ctrl-C); nothing was changed"""

_DAEMON_TIMEOUT_S = 10.0
"""A check may wait on systemd; the daemon answers once it is done."""

_STATE_EXIT = {
    State.LICENSED.value: EXIT_OK,
    State.EXPIRED.value: EXIT_EXPIRED,
    State.MISSING.value: EXIT_NO_LICENCE,
    State.INVALID.value: EXIT_NO_LICENCE,
}

Handler = Callable[[Config, argparse.Namespace], int]

_NEEDS_ADMIN = (
    "Needs root or membership of the admin group (admin_group, default licensed-admin)."
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``licensectl`` with ``argv`` (default: the process arguments)."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        config = config_module.load(_config_option(args))
        return handler(config, args)
    except ConfigError as exc:
        return fail(str(exc), EXIT_CONFIG)
    except KeyboardInterrupt:
        return fail("interrupted; nothing was changed", EXIT_INTERRUPTED)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-parser per command."""
    common = OneLineErrorParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"configuration file (default: ${config_module.ENVIRONMENT_VARIABLE}, "
        f"else {config_module.DEFAULT_PATH})",
    )
    parser = OneLineErrorParser(
        prog="licensectl",
        description=_paragraphs(
            "Install, remove and show the licence of this Assistant server, and "
            "ask the licensed daemon for its status or a check. Run 'licensectl "
            "COMMAND --help' for what a command needs and what it changes."
        ),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    commands = parser.add_subparsers(title="commands", required=True)
    _add_install(commands, common)
    _add_remove(commands, common)
    _add_show(commands, common)
    _add_status(commands, common)
    _add_check(commands, common)
    return parser


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: {message} (see {self.prog} --help)\n")


if TYPE_CHECKING:
    _Commands = argparse._SubParsersAction[OneLineErrorParser]


def configure_logging() -> None:
    """Send warnings from the library (e.g. a skipped key) to stderr, one line."""
    # Imported here: structlog costs ~25 ms, and status and check log nothing.
    import logging  # noqa: PLC0415

    import structlog  # noqa: PLC0415

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        processors=[
            structlog.processors.add_log_level,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
    )


def fail(message: str, code: int) -> int:
    """Print ``message`` as one line on stderr and return ``code``."""
    _warn(_printable(message))
    return code


def _printable(text: str) -> str:
    # Messages quote file names and file content, which may hold control
    # characters: show them escaped so they cannot steer the terminal.
    return "".join(
        ch
        if ch.isprintable()
        else " "
        if ch == "\n"
        else ch.encode("unicode_escape").decode()
        for ch in text
    )


def _say(text: str, end: str = "\n") -> None:
    sys.stdout.write(text + end)


def _warn(text: str, end: str = "\n") -> None:
    sys.stderr.write(text + end)
    sys.stderr.flush()


def _add_command(
    commands: _Commands,
    common: OneLineErrorParser,
    name: str,
    summary: str,
    description: str,
) -> OneLineErrorParser:
    return commands.add_parser(
        name,
        parents=[common],
        help=summary,
        description=_paragraphs(description),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _paragraphs(text: str) -> str:
    # The raw formatter keeps the exit-code table as written, so the prose
    # around it is wrapped here.
    return "\n\n".join(
        textwrap.fill(part, 79, break_on_hyphens=False) for part in text.split("\n\n")
    )


def _add_install(commands: _Commands, common: OneLineErrorParser) -> None:
    sub = _add_command(
        commands,
        common,
        "install",
        "validate a licence file and install it",
        "Validate a licence file with the trusted keys (keys_dir) and install it "
        "as the licence of this server (licence_file), replacing the installed "
        "one atomically; the daemon applies it within a second, nothing needs "
        "restarting. The change is recorded in the audit trail.\n\n"
        "Its Valid until date is not checked: an expired trial installs, and the "
        "system then behaves as expired. A licence issued earlier than the "
        "installed one, while that is in force, is refused unless --force is "
        "given. --dry-run validates and previews without changing anything.\n\n"
        + _NEEDS_ADMIN,
    )
    sub.add_argument("file", type=Path, metavar="FILE", help="the .lic file")
    sub.add_argument(
        "--dry-run", action="store_true", help="validate and preview; change nothing"
    )
    sub.add_argument(
        "--force", action="store_true", help="install even if it is a downgrade"
    )
    sub.set_defaults(handler=_install)


def _add_remove(commands: _Commands, common: OneLineErrorParser) -> None:
    sub = _add_command(
        commands,
        common,
        "remove",
        "remove the installed licence",
        "Delete the installed licence (licence_file). The system is then "
        "unlicensed, with the same effects as an expired licence: the daemon "
        "stops and masks SMD and Core's SfB function at once. The change is "
        "recorded in the audit trail. Asks for confirmation on a terminal.\n\n"
        + _NEEDS_ADMIN,
    )
    sub.add_argument(
        "--yes",
        action="store_true",
        help="do not ask (required when stdin is not a terminal)",
    )
    sub.set_defaults(handler=_remove)


def _add_show(commands: _Commands, common: OneLineErrorParser) -> None:
    sub = _add_command(
        commands,
        common,
        "show",
        "show the License Information and the licence state",
        "Show the installed licence (License Information), the state it puts "
        "the system in and why, e.g. why a file is invalid. Reads the file "
        "directly, so it works while the daemon is stopped; the user count is "
        "the daemon's, see 'status'. Changes nothing.\n\n"
        "Needs read access to the licence file: root or the admin group.",
    )
    sub.add_argument("--json", action="store_true", help="print a JSON document")
    sub.set_defaults(handler=_show)


def _add_status(commands: _Commands, common: OneLineErrorParser) -> None:
    sub = _add_command(
        commands,
        common,
        "status",
        "show the daemon's status: state, users, components, errors",
        "Show what the running daemon decided at its last check: the state, "
        "the licence, when it expires, the user count, each component (required "
        "and actual), the messages shown in the front end, the daemon's own "
        "errors and when it checked. Changes nothing.\n\n"
        "Asks the daemon over its control socket (control_socket; root and the "
        "admin group). Anyone else, or anyone while the daemon does not answer, "
        "gets the status file (status_file) instead. The first line's dot is "
        "green when licensed, red when expired, missing or invalid, yellow when "
        "the daemon reports errors or the status is stale (last check older than "
        f"{STALE_FACTOR} x check_interval). Colour only on a terminal and "
        "without NO_COLOR.",
    )
    sub.add_argument(
        "--json", action="store_true", help="print the status document (schema 1)"
    )
    sub.set_defaults(handler=_status)


def _add_check(commands: _Commands, common: OneLineErrorParser) -> None:
    sub = _add_command(
        commands,
        common,
        "check",
        "make the daemon check now, and show the new status",
        "Make the running daemon check now, as it does on its own at every "
        "licence change, at the expiry instant, at 00:00:01 and every "
        "check_interval: read the licence, decide, publish the status file and "
        "bring SMD and Core's SfB function in line (start or stop and mask "
        "them). Then show the new status as 'status' does. Waits at most "
        f"{_DAEMON_TIMEOUT_S:.0f} s for the answer.\n\n" + _NEEDS_ADMIN,
    )
    sub.add_argument(
        "--json", action="store_true", help="print the status document (schema 1)"
    )
    sub.set_defaults(handler=_check)


def _install(config: Config, args: argparse.Namespace) -> int:
    from licensed import install as installing  # noqa: PLC0415 - see the docstring

    configure_logging()
    problem = installing.permission_problem(config)
    if problem is not None:
        return fail(problem, EXIT_NOT_PERMITTED)

    try:
        result = installing.install(
            config,
            args.file,
            now=datetime.now(UTC),
            force=args.force,
            dry_run=args.dry_run,
        )
    except InvalidLicence as exc:
        return fail(f"Invalid Licence File: {exc}", EXIT_INVALID_LICENCE)
    except KeyringError as exc:
        return fail(str(exc), EXIT_CONFIG)
    except InstallError as exc:
        return fail(str(exc), EXIT_REFUSED)

    _print_installed(result, config)
    return EXIT_OK


def _print_installed(result: installing.Installed, config: Config) -> None:
    licence = result.licence
    zone = str(config.zone)
    verb = "Would install" if result.dry_run else "Installed"
    _say(
        f"{verb}: {licence.type.value} licence {licence.serial} for "
        f"{licence.general.company}"
    )
    _say(
        f"  Users: {licence.users} licensed, Over License Limit "
        f"{licence.over_licence_limit}"
    )
    _say(f"  Expires: {showing.format_instant(result.expires_at, zone)}")
    _say(f"  Replaces: {_describe(result.previous)}")
    if result.expired:
        _warn(
            f"Warning: this trial expired at "
            f"{showing.format_instant(result.expires_at, zone)}; once installed the "
            f"system behaves as expired (no SMD, no SfB function)"
        )
    if result.audit_error is not None:
        _warn(f"Warning: {result.audit_error}")

    if result.dry_run:
        _say("Dry run: nothing was installed.")
    else:
        _say(
            f"The licensed daemon watches {config.licence_file.parent} and applies "
            f"the new licence by itself; nothing needs restarting."
        )


def _remove(config: Config, args: argparse.Namespace) -> int:
    from licensed import install as installing  # noqa: PLC0415 - see the docstring

    configure_logging()
    problem = installing.permission_problem(config)
    if problem is not None:
        return fail(problem, EXIT_NOT_PERMITTED)

    previous = installing.load_installed(config)
    if isinstance(previous, Missing):
        _say(f"No licence installed ({config.licence_file}); nothing to remove.")
        return EXIT_OK
    if not args.yes:
        refusal = _confirm_removal(previous, config)
        if refusal is not None:
            return fail(refusal, EXIT_REFUSED)

    try:
        result = installing.remove(config, previous)
    except InstallError as exc:
        return fail(str(exc), EXIT_REFUSED)

    _print_removed(result, config)
    return EXIT_OK


def _confirm_removal(previous: SignedLicence | Rejected, config: Config) -> str | None:
    """Ask on the terminal; return why not to remove, or None to go ahead."""
    if not sys.stdin.isatty():
        return "not removed: stdin is not a terminal, so confirm with --yes"

    name = _serial_or_file(previous, config)
    _warn(f"Remove the installed licence {name}? [y/N] ", end="")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer in ("y", "yes"):
        return None
    return "not removed (not confirmed)"


def _print_removed(result: installing.Removed, config: Config) -> None:
    _say(f"Removed: {_describe(result.previous)} ({config.licence_file})")
    if result.audit_error is not None:
        _warn(f"Warning: {result.audit_error}")
    _say(
        "The system is now unlicensed, with the same effects as an expired licence: "
        "SMD and Core's SfB function stop and everyone sees \"Your License has "
        'expired". The licensed daemon applies this by itself.'
    )


def _show(config: Config, args: argparse.Namespace) -> int:
    from licensed import install as installing  # noqa: PLC0415 - see the docstring

    configure_logging()
    reading = installing.load_installed(config)
    view = showing.document(config, reading, datetime.now(UTC))

    if args.json:
        _say(json.dumps(view, indent=2, ensure_ascii=False))
    else:
        _say(showing.render_text(view), end="")
    return _STATE_EXIT.get(view["state"], EXIT_NO_LICENCE)


def _status(config: Config, args: argparse.Namespace) -> int:
    try:
        document = control.ask(config.control_socket, "status", _DAEMON_TIMEOUT_S)
    except PermissionError:
        # Not an administrator: the status file is world-readable and says the
        # same, as of the last check.
        return _print_status_file(config, args, answered=True)
    except (OSError, ValueError) as exc:
        _warn(_no_answer(config, exc))
        return _print_status_file(config, args, answered=False)
    return _print_answer(config, args, document)


def _check(config: Config, args: argparse.Namespace) -> int:
    path = config.control_socket
    try:
        document = control.ask(path, "check", _DAEMON_TIMEOUT_S)
    except PermissionError:
        return fail(
            f"no access to the daemon's socket {path}: only root and members of "
            f"{config.admin_group!r} may ask for a check; run it with sudo",
            EXIT_NOT_PERMITTED,
        )
    except (OSError, ValueError) as exc:
        return fail(_no_answer(config, exc), EXIT_NO_DAEMON)
    return _print_answer(config, args, document)


def _print_answer(config: Config, args: argparse.Namespace, document: Any) -> int:
    if not isinstance(document, dict) or "state" not in document:
        refusal = document.get("error") if isinstance(document, dict) else document
        return fail(
            f"the daemon's answer is not a status document ({refusal!r}); are "
            f"licensectl and licensed the same version?",
            EXIT_NO_DAEMON,
        )
    return _print_status(config, args, document, answered=True)


def _print_status_file(
    config: Config, args: argparse.Namespace, *, answered: bool
) -> int:
    try:
        document = dict(read_status(config.status_file).document)
    except StatusUnavailable as exc:
        return fail(str(exc), EXIT_NO_DAEMON)
    return _print_status(config, args, document, answered=answered)


def _print_status(
    config: Config, args: argparse.Namespace, document: dict[str, Any], answered: bool
) -> int:
    now = datetime.now(UTC)
    stale = showing.is_stale(document, now, config.check_interval)
    if args.json:
        _say(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        freshness = Freshness(answered=answered, stale=stale)
        page = showing.render_status(document, now, freshness, _colour())
        _say(page, end="")

    if stale or not answered:
        return EXIT_NO_DAEMON
    return _STATE_EXIT.get(str(document.get("state")), EXIT_NO_LICENCE)


def _no_answer(config: Config, exc: Exception) -> str:
    path = config.control_socket
    if isinstance(exc, FileNotFoundError):
        why = f"its control socket {path} does not exist: the daemon is not running"
    elif isinstance(exc, ConnectionRefusedError):
        why = f"nothing listens on {path}: the daemon is not running"
    elif isinstance(exc, TimeoutError):
        why = (
            f"it did not answer on {path} within {_DAEMON_TIMEOUT_S:.0f} s: it is "
            f"stuck or very busy"
        )
    else:
        why = f"it does not answer on {path} ({_why(exc)})"
    return (
        f"the licensed daemon does not enforce the licence now: {why}. See "
        f"'systemctl status licensed' and 'journalctl -u licensed -n 50'; "
        f"'licensectl show' reads the licence without it"
    )


def _colour() -> bool:
    # https://no-color.org: any non-empty NO_COLOR turns colour off.
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return sys.stdout.isatty()


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _describe(reading: installing.InstalledReading) -> str:
    if isinstance(reading, Rejected):
        return f"an invalid licence file ({reading.reason})"
    if isinstance(reading, Missing):
        return "nothing"
    licence = reading.licence
    return (
        f"{licence.type.value} licence {licence.serial} (issued "
        f"{licence.issued.date().isoformat()})"
    )


def _serial_or_file(reading: SignedLicence | Rejected, config: Config) -> str:
    if isinstance(reading, Rejected):
        return f"file {config.licence_file} (it is invalid)"
    return reading.licence.serial


def _config_option(args: argparse.Namespace) -> Path | None:
    # --config may come before or after the command; both parsers share the
    # option with a suppressed default, so it is absent when not given at all.
    config: Path | None = getattr(args, "config", None)
    return config
