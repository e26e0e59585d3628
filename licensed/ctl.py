"""``licensectl``: the administrator's command line on the server.

Commands: ``install FILE`` (validate and install a licence file), ``remove``
(delete the installed licence) and ``show`` (the *License Information* view) work
on the files alone; ``status`` and ``check`` ask the running daemon over its
control socket (``licensed.control``). This module parses options, asks, prints
and picks exit codes; what the commands do to the licence file lives in
``licensed.install`` and ``licensed.show``.

Expected errors print one line on stderr and exit with a code from the table in
``EXIT_CODES``; only a bug produces a traceback. Install and remove never contact
the daemon: it watches the licence folder and reacts to changes by itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import structlog

from licensed import config as config_module
from licensed import control
from licensed import install as installing
from licensed import show as showing
from licensed.config import Config
from licensed.decision import Missing, Rejected
from licensed.errors import ConfigError, InstallError, InvalidLicence, KeyringError
from licensed.licence_file import SignedLicence

EXIT_OK = 0
EXIT_INVALID_LICENCE = 1
EXIT_CONFIG = 2
EXIT_NO_LICENCE = 3
EXIT_NOT_PERMITTED = 4
EXIT_REFUSED = 5
EXIT_NO_DAEMON = 6
EXIT_INTERRUPTED = 130

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK}  done
  {EXIT_INVALID_LICENCE}  the licence file is invalid ("Invalid Licence File: <reason>")
  {EXIT_CONFIG}  bad usage, unusable configuration or trusted-key folder
  {EXIT_NO_LICENCE}  show, status: no licence installed, or the installed one is invalid
  {EXIT_NOT_PERMITTED}  not permitted: run as root or a member of the admin group
  {EXIT_REFUSED}  refused or failed: downgrade without --force, licence folder
     missing, file not writable, removal not confirmed
  {EXIT_NO_DAEMON}  status/check: the licensed daemon does not answer"""

_DAEMON_TIMEOUT_S = 10.0
"""A check may wait on systemd; the daemon answers once it is done."""

Handler = Callable[[Config, argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``licensectl`` with ``argv`` (default: the process arguments)."""
    configure_logging()
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
        description="Install, remove and show the licence of this Assistant server.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    commands = parser.add_subparsers(title="commands", required=True)
    _add_install(commands, common)
    _add_remove(commands, common)
    _add_show(commands, common)
    _add_daemon_command(commands, common, "status", "show the daemon's status")
    _add_daemon_command(commands, common, "check", "make the daemon check now")
    return parser


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: {message} (see {self.prog} --help)\n")


if TYPE_CHECKING:
    _Commands = argparse._SubParsersAction[OneLineErrorParser]


def configure_logging() -> None:
    """Send warnings from the library (e.g. a skipped key) to stderr, one line."""
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
    _warn(message.replace("\n", " "))
    return code


def _say(text: str, end: str = "\n") -> None:
    sys.stdout.write(text + end)


def _warn(text: str, end: str = "\n") -> None:
    sys.stderr.write(text + end)
    sys.stderr.flush()


def _add_install(commands: _Commands, common: OneLineErrorParser) -> None:
    sub = commands.add_parser(
        "install",
        parents=[common],
        help="validate a licence file and install it",
        description="Validate a licence file with the trusted keys and install it "
        "as the licence of this server. Its Valid until date is not checked: an "
        "expired trial installs, and the system then behaves as expired. A licence "
        "issued earlier than the installed one, while that is in force, is refused "
        "unless --force is given.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("file", type=Path, metavar="FILE", help="the .lic file")
    sub.add_argument("--dry-run", action="store_true", help="validate and preview only")
    sub.add_argument(
        "--force", action="store_true", help="install even if it is a downgrade"
    )
    sub.set_defaults(handler=_install)


def _add_remove(commands: _Commands, common: OneLineErrorParser) -> None:
    sub = commands.add_parser(
        "remove",
        parents=[common],
        help="remove the installed licence",
        description="Remove the installed licence. The system is then unlicensed, "
        "with the same effects as an expired licence.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument(
        "--yes",
        action="store_true",
        help="do not ask (required when stdin is not a terminal)",
    )
    sub.set_defaults(handler=_remove)


def _add_show(commands: _Commands, common: OneLineErrorParser) -> None:
    sub = commands.add_parser(
        "show",
        parents=[common],
        help="show the License Information and the licence state",
        description="Show the installed licence (License Information) and the "
        "state it puts the system in. Reads the file directly; the daemon need "
        "not run. The user count is the daemon's: it is not shown here.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("--json", action="store_true", help="print a JSON document")
    sub.set_defaults(handler=_show)


def _add_daemon_command(
    commands: _Commands, common: OneLineErrorParser, name: str, summary: str
) -> None:
    sub = commands.add_parser(
        name,
        parents=[common],
        help=summary,
        description=f"{summary.capitalize()}, over its control socket "
        f"(control_socket), and print its status document: state, user count, "
        f"components, messages and errors. Needs the daemon; 'show' does not.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("--json", action="store_true", help="print the JSON document")
    sub.set_defaults(handler=_ask_daemon, command=name)


def _install(config: Config, args: argparse.Namespace) -> int:
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
    reading = installing.load_installed(config)
    view = showing.document(config, reading, datetime.now(UTC))

    if args.json:
        _say(json.dumps(view, indent=2, ensure_ascii=False))
    else:
        _say(showing.render_text(view), end="")
    unlicensed = view["state"] in showing.UNLICENSED_STATES
    return EXIT_NO_LICENCE if unlicensed else EXIT_OK


def _ask_daemon(config: Config, args: argparse.Namespace) -> int:
    path = config.control_socket
    try:
        document = control.ask(path, args.command, timeout=_DAEMON_TIMEOUT_S)
    except PermissionError:
        return fail(
            f"no access to the daemon's socket {path}: only root and members of "
            f"{config.admin_group!r} may ask; run it with sudo",
            EXIT_NOT_PERMITTED,
        )
    except (OSError, ValueError) as exc:
        return fail(
            f"the licensed daemon does not answer on {path} ({_why(exc)}); is it "
            f"running? See 'systemctl status licensed'. 'licensectl show' reads "
            f"the licence without it",
            EXIT_NO_DAEMON,
        )
    if "error" in document and "state" not in document:
        return fail(f"the daemon refused: {document['error']}", EXIT_NO_DAEMON)

    if args.json:
        _say(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        _say(showing.render_daemon_status(document), end="")
    unlicensed = document.get("state") in showing.UNLICENSED_STATES
    return EXIT_NO_LICENCE if unlicensed else EXIT_OK


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _describe(reading: installing.InstalledReading) -> str:
    if isinstance(reading, SignedLicence):
        licence = reading.licence
        return (
            f"{licence.type.value} licence {licence.serial} (issued "
            f"{licence.issued.date().isoformat()})"
        )
    if isinstance(reading, Rejected):
        return f"an invalid licence file ({reading.reason})"
    return "nothing"


def _serial_or_file(reading: SignedLicence | Rejected, config: Config) -> str:
    if isinstance(reading, SignedLicence):
        return reading.licence.serial
    return f"file {config.licence_file} (it is invalid)"


def _config_option(args: argparse.Namespace) -> Path | None:
    # --config may come before or after the command; both parsers share the
    # option with a suppressed default, so it is absent when not given at all.
    config: Path | None = getattr(args, "config", None)
    return config
