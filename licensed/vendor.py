"""``licensed-vendor``: the vendor's tool to make keys and issue licence files.

Commands:

* ``keygen --key-id ID [--out DIR]`` makes an Ed25519 key pair: ``ID.key`` (the
  private key, PEM PKCS8, unencrypted, mode 0600, never overwritten) and ``ID.pub``
  (the public key, PEM SubjectPublicKeyInfo) to copy into every server's keys
  folder.
* ``issue --key ID.key --out FILE.lic ...`` signs a licence, from options or from a
  request file, then reads the written file back through the servers' own
  validation before reporting success.
* ``verify FILE`` checks a licence file against a public key or a keys folder.

A request file (``--request``) is TOML with the same names as the licence body
(see ``licensed.licence.render_body`` and ``REQUEST_EXAMPLE``). Every field the
options can default may be left out of it too: ``format``, ``serial``, ``issued``,
``product``, ``[components]``, ``[support]`` of a trial, and
``over_licence_limit``. Anything else missing or unknown is refused with the
field's name.

The vendor issues licences for all its products (``KNOWN_PRODUCTS``); servers of
this product accept only their own, so ``verify`` reports a valid licence of
another product as OK with that remark.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
import tomllib
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from licensed import config as config_module
from licensed.ctl import OneLineErrorParser
from licensed.errors import ConfigError, InvalidLicence, KeyringError
from licensed.fsio import read_bounded, write_atomic
from licensed.keyring import (
    PRIVATE_SUFFIX,
    PUBLIC_SUFFIX,
    Keyring,
    check_key_id,
    load_private_key,
    load_public_key,
)
from licensed.licence import (
    FORMAT_VERSION,
    KNOWN_PRODUCTS,
    PRODUCT,
    Licence,
    LicenceType,
    parse_body,
    render_body,
)
from licensed.licence_file import (
    MAX_BYTES,
    SUFFIX,
    SignedLicence,
    read_licence_file,
    sign,
    split,
)

if TYPE_CHECKING:
    _Commands = argparse._SubParsersAction[OneLineErrorParser]

EXIT_OK = 0
EXIT_INVALID_LICENCE = 1
EXIT_USAGE = 2
EXIT_KEY = 3
EXIT_REFUSED = 5

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK}  done
  {EXIT_INVALID_LICENCE}  the licence file is invalid ("Invalid Licence File: <reason>")
  {EXIT_USAGE}  bad usage, missing or bad licence fields, unusable configuration
  {EXIT_KEY}  a key file or key id is unusable
  {EXIT_REFUSED}  refused: the output exists (use --force for licences), or it
     cannot be written"""

DEFAULT_COMPONENTS = {"SMD": 1, "Core": 1, "Core SfB": 1}
TRIAL_CONTRACT = "Trial"
SERIAL_PREFIXES = {"Assistant": "AST", "TM": "TM", "LUCS": "LUCS"}

REQUEST_EXAMPLE = """\
# Fields left out take the defaults of the command-line options.
type = "trial"                 # or "full" (then no valid_until)
valid_until = 2027-01-31       # trial only: the last valid day
# serial = "AST-20261203-0a1b2c3d"; issued = 2026-12-03T10:00:00Z
# product = "Assistant"        # or "TM", "LUCS"

[general]
system_name = "ACME Assistant PROD"
company = "ACME Corp"
primary_sip_domain = "acme.example"
sfb_server_version = "Skype for Business Server 2019"
contact_person = "Jane Doe"
location = "Zurich"

[components]                   # default: SMD = 1, Core = 1, "Core SfB" = 1
SMD = 1
Core = 1
"Core SfB" = 1

[support]                      # a trial defaults to contract "Trial" until its end
contract = "Premium 24/7"
valid_until = 2027-12-31

[users]
licensed = 100
over_licence_limit = 120       # default: licensed
"""

_GENERAL_OPTIONS = (
    ("system_name", "system"),
    ("company", "company"),
    ("primary_sip_domain", "sip_domain"),
    ("sfb_server_version", "sfb_version"),
    ("contact_person", "contact"),
    ("location", "location"),
)


_FIELD_OPTIONS = (
    *("trial_until", "full", "serial", "issued", "product", "component"),
    *(name for _, name in _GENERAL_OPTIONS),
    *("support_contract", "support_until", "users", "over_limit"),
)


class UsageError(Exception):
    """A problem with the options or the request; exits with ``EXIT_USAGE``."""


class Refused(Exception):  # noqa: N818 - reads as the outcome at the call site
    """The output cannot or may not be written; exits with ``EXIT_REFUSED``."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``licensed-vendor`` with ``argv`` (default: the process arguments)."""
    _configure_logging()
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except (UsageError, ConfigError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except KeyringError as exc:
        return _fail(str(exc), EXIT_KEY)
    except Refused as exc:
        return _fail(str(exc), EXIT_REFUSED)
    except InvalidLicence as exc:
        return _fail(f"Invalid Licence File: {exc}", EXIT_INVALID_LICENCE)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    return code


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-parser per command."""
    common = OneLineErrorParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="configuration file; verify takes the trusted keys from it when "
        "neither --public-key nor --keys-dir is given",
    )
    parser = OneLineErrorParser(
        prog="licensed-vendor",
        description="Make vendor keys, issue and verify licence files.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    commands = parser.add_subparsers(title="commands", required=True)
    _add_keygen(commands, common)
    _add_issue(commands, common)
    _add_verify(commands, common)
    return parser


# --- keygen ---------------------------------------------------------------------


def _add_keygen(commands: _Commands, common: OneLineErrorParser) -> None:
    sub = commands.add_parser(
        "keygen",
        parents=[common],
        help="make an Ed25519 key pair",
        description="Make an Ed25519 key pair: ID.key (private, mode 0600; keep "
        "it secret) and ID.pub (public; copy it into each server's keys folder). "
        "Existing files are never overwritten.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("--key-id", required=True, help="e.g. vendor-2026")
    sub.add_argument(
        "--out", type=Path, default=Path(), help="folder (default: current)"
    )
    sub.set_defaults(handler=_keygen)


def _keygen(args: argparse.Namespace) -> int:
    key_id = check_key_id(args.key_id)
    folder: Path = args.out
    if not folder.is_dir():
        raise UsageError(f"--out {folder} is not a folder; create it first")

    key = Ed25519PrivateKey.generate()
    private_path = folder / f"{key_id}{PRIVATE_SUFFIX}"
    public_path = folder / f"{key_id}{PUBLIC_SUFFIX}"
    _create_exclusive(private_path, _private_pem(key), 0o600)
    try:
        _create_exclusive(public_path, _public_pem(key), 0o644)
    except BaseException:
        private_path.unlink()
        raise

    _say(f"Private key: {private_path} (keep it secret; it signs licences)")
    _say(f"Public key:  {public_path}")
    _say(
        f"Copy {public_path.name} into the keys folder of each server "
        f"(keys_dir, default /etc/licensed/keys) so they trust licences signed "
        f"with key {key_id!r}."
    )
    return EXIT_OK


def _create_exclusive(path: Path, data: bytes, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise Refused(
            f"{path} already exists; refusing to overwrite a key. Choose another "
            f"--key-id or --out folder"
        ) from None
    except OSError as exc:
        raise Refused(f"cannot create {path}: {exc.strerror or exc}") from exc
    try:
        # The umask may only narrow the mode; set it exactly.
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )


# --- issue ----------------------------------------------------------------------


def _add_issue(commands: _Commands, common: OneLineErrorParser) -> None:
    sub = commands.add_parser(
        "issue",
        parents=[common],
        help="sign a licence file",
        description="Sign a licence file, from options or from a --request file. "
        "A trial in one line: issue --key vendor-2026.key --out acme.lic "
        "--trial-until 2027-01-31 --company 'ACME Corp' --system 'ACME PROD' "
        "--sip-domain acme.example --sfb-version 'SfB Server 2019' --contact "
        "'Jane Doe' --location Zurich --users 50",
        epilog=f"request file format (--request):\n{REQUEST_EXAMPLE}\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("--key", type=Path, required=True, help="the private ID.key")
    sub.add_argument("--key-id", help="key id (default: the key file's stem)")
    sub.add_argument("--out", type=Path, required=True, help="the .lic to write")
    sub.add_argument("--force", action="store_true", help="overwrite --out")
    sub.add_argument("--request", type=Path, help="a TOML request with every field")
    kind = sub.add_mutually_exclusive_group()
    kind.add_argument("--trial-until", type=_date, metavar="DATE", help="trial")
    kind.add_argument("--full", action="store_true", help="a full licence")
    _add_field_options(sub)
    sub.set_defaults(handler=_issue)


def _add_field_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--company")
    sub.add_argument("--system", help="system name")
    sub.add_argument("--sip-domain", help="primary SIP domain")
    sub.add_argument("--sfb-version", help="SfB server version")
    sub.add_argument("--contact", help="contact person")
    sub.add_argument("--location")
    sub.add_argument(
        "--component",
        type=_component,
        action="append",
        metavar="NAME=QTY",
        help="repeatable (default: SMD=1, Core=1, 'Core SfB'=1)",
    )
    sub.add_argument(
        "--support-contract", help=f"default for a trial: {TRIAL_CONTRACT!r}"
    )
    sub.add_argument(
        "--support-until", type=_date, metavar="DATE", help="default: trial end"
    )
    sub.add_argument("--users", type=_count, metavar="N", help="licensed users")
    sub.add_argument("--over-limit", type=_count, metavar="N", help="default: users")
    sub.add_argument("--serial", help="default: generated, e.g. AST-20261203-0a1b2c3d")
    sub.add_argument(
        "--issued", type=_instant, help="ISO date-time with offset (default: now)"
    )
    sub.add_argument("--product", choices=KNOWN_PRODUCTS, help=f"default: {PRODUCT}")


def _issue(args: argparse.Namespace) -> int:
    key_id = check_key_id(args.key_id or args.key.name.removesuffix(PRIVATE_SUFFIX))
    out: Path = args.out
    _check_output(out, force=args.force)
    key = load_private_key(args.key)
    licence = build_licence(args, datetime.now(UTC))

    try:
        write_atomic(out, sign(licence, key, key_id), mode=0o644)
    except OSError as exc:
        raise Refused(f"cannot write {out}: {exc.strerror or exc}") from exc
    keyring = Keyring(folder=args.key.parent, keys={key_id: key.public_key()})
    signed = _read_back(out, keyring, licence)

    _say(f"Issued: {out} (signed with key {key_id!r})")
    _say(_summary(signed))
    return EXIT_OK


def build_licence(args: argparse.Namespace, now: datetime) -> Licence:
    """The licence the options or the request describe, with defaults filled in."""
    if args.request is not None:
        _refuse_field_options(args)
        fields = _read_request(args.request)
        where = f"request {args.request}"
    else:
        fields = _fields_from_options(args)
        where = "cannot issue"

    _complete(fields, now)
    try:
        licence = parse_body(to_toml(fields).encode("utf-8"))
    except InvalidLicence as exc:
        raise UsageError(f"{where}: {exc}") from None
    # The canonical form, as it reads back from the file (whole seconds, UTC).
    return parse_body(render_body(licence).encode("utf-8"))


def _check_output(out: Path, *, force: bool) -> None:
    if out.suffix != SUFFIX:
        raise UsageError(f"--out {out} must end in {SUFFIX!r}, e.g. acme.lic")
    if os.path.lexists(out) and not force:
        raise Refused(f"{out} already exists; refusing to overwrite it without --force")
    if not out.parent.is_dir():
        raise Refused(f"the folder of --out {out} does not exist; create it first")


def _refuse_field_options(args: argparse.Namespace) -> None:
    given = [
        name for name in _FIELD_OPTIONS if getattr(args, name) not in (None, False)
    ]
    if given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageError(
            f"give the licence fields either in --request or as options, not both "
            f"(found {options}); put them in the request file"
        )


def _read_request(path: Path) -> dict[str, Any]:
    try:
        text = read_bounded(path, MAX_BYTES).decode("utf-8")
        return tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"request {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"request {path} is not valid TOML: {exc}") from None


def _fields_from_options(args: argparse.Namespace) -> dict[str, Any]:
    missing = _missing_options(args)
    if missing:
        raise UsageError(
            f"cannot issue: missing {', '.join(missing)}; these have no default "
            f"(see licensed-vendor issue --help)"
        )

    fields: dict[str, Any] = {"type": "full" if args.full else "trial"}
    if args.trial_until is not None:
        fields["valid_until"] = args.trial_until
    for key, value in (
        ("serial", args.serial),
        ("issued", args.issued),
        ("product", args.product),
    ):
        if value is not None:
            fields[key] = value
    fields["general"] = {key: getattr(args, name) for key, name in _GENERAL_OPTIONS}
    if args.component:
        fields["components"] = dict(args.component)
    fields["support"] = _support_options(args)
    fields["users"] = {"licensed": args.users}
    if args.over_limit is not None:
        fields["users"]["over_licence_limit"] = args.over_limit
    return fields


def _missing_options(args: argparse.Namespace) -> list[str]:
    missing = []
    if args.trial_until is None and not args.full:
        missing.append("--trial-until DATE or --full")
    missing += [
        "--" + name.replace("_", "-")
        for _, name in _GENERAL_OPTIONS
        if getattr(args, name) is None
    ]
    if args.users is None:
        missing.append("--users")
    if args.full and args.support_contract is None:
        missing.append("--support-contract")
    if args.full and args.support_until is None:
        missing.append("--support-until")
    return missing


def _support_options(args: argparse.Namespace) -> dict[str, Any]:
    support: dict[str, Any] = {}
    if args.support_contract is not None:
        support["contract"] = args.support_contract
    if args.support_until is not None:
        support["valid_until"] = args.support_until
    return support


def _complete(fields: dict[str, Any], now: datetime) -> None:
    """Fill in the defaults the request format allows to leave out."""
    fields.setdefault("format", FORMAT_VERSION)
    fields.setdefault("product", PRODUCT)
    fields.setdefault("issued", now.replace(microsecond=0))
    fields.setdefault("serial", new_serial(fields["product"], fields["issued"]))
    fields.setdefault("components", dict(DEFAULT_COMPONENTS))

    if fields.get("type") == LicenceType.TRIAL.value:
        support = fields.setdefault("support", {})
        if isinstance(support, dict):
            support.setdefault("contract", TRIAL_CONTRACT)
            if fields.get("valid_until") is not None:
                support.setdefault("valid_until", fields["valid_until"])

    users = fields.get("users")
    if isinstance(users, dict) and "licensed" in users:
        users.setdefault("over_licence_limit", users["licensed"])


def new_serial(product: object, issued: object) -> str:
    """A fresh serial such as ``AST-20261203-0a1b2c3d`` (32 random bits)."""
    prefix = SERIAL_PREFIXES.get(str(product), "LIC")
    day = issued if isinstance(issued, date) else datetime.now(UTC)
    return f"{prefix}-{day:%Y%m%d}-{secrets.token_hex(4)}"


def to_toml(fields: Mapping[str, Any]) -> str:
    """TOML text for a two-level document of the values a request holds."""
    scalars = [
        f"{_key(k)} = {_value(v)}" for k, v in fields.items() if not _is_table(v)
    ]
    lines = scalars
    for name, table in fields.items():
        if _is_table(table):
            lines += ["", f"[{_key(name)}]"]
            lines += [f"{_key(k)} = {_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _is_table(value: object) -> bool:
    return isinstance(value, dict)


def _key(name: str) -> str:
    return _string(name)


def _value(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{_key(k)} = {_value(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, str):
        return _string(value)
    # Numbers and true/false are written alike in JSON and TOML.
    return json.dumps(value)


def _string(text: str) -> str:
    # A JSON string is a TOML basic string, once DEL is escaped too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _read_back(path: Path, keyring: Keyring, expected: Licence) -> SignedLicence:
    """Validate the written file as a server would, or remove it and fail."""
    try:
        signed = read_any_product(path, keyring)
        if signed.licence != expected:
            raise InvalidLicence("the file read back differs from what was signed")
    except InvalidLicence:
        path.unlink(missing_ok=True)
        raise
    return signed


# --- verify ---------------------------------------------------------------------


def _add_verify(commands: _Commands, common: OneLineErrorParser) -> None:
    sub = commands.add_parser(
        "verify",
        parents=[common],
        help="check a licence file",
        description="Check a licence file as a server does: signature, trusted "
        "key, fields. The key id is the key file's name without .pub.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("file", type=Path, metavar="FILE")
    keys = sub.add_mutually_exclusive_group()
    keys.add_argument("--public-key", type=Path, metavar="PATH.pub")
    keys.add_argument("--keys-dir", type=Path, metavar="DIR")
    sub.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    keyring = _verification_keys(args)
    signed = read_any_product(args.file, keyring)

    _say(f"OK: {_summary(signed)}")
    if signed.licence.product != PRODUCT:
        _say(f"(a {signed.licence.product} licence: {PRODUCT} servers refuse it)")
    return EXIT_OK


def _verification_keys(args: argparse.Namespace) -> Keyring:
    if args.public_key is not None:
        path: Path = args.public_key
        key_id = check_key_id(path.name.removesuffix(PUBLIC_SUFFIX))
        return Keyring(folder=path.parent, keys={key_id: load_public_key(path)})
    if args.keys_dir is not None:
        return Keyring.load(args.keys_dir)
    return Keyring.load(config_module.load(_config_option(args)).keys_dir)


def read_any_product(path: Path, keyring: Keyring) -> SignedLicence:
    """``read_licence_file``, except that the vendor's other products pass too."""
    try:
        return read_licence_file(path, keyring)
    except InvalidLicence:
        other = _other_product(path, keyring)
        if other is None:
            raise
        return other


def _other_product(path: Path, keyring: Keyring) -> SignedLicence | None:
    """The licence if it is a valid one of another product; else None."""
    try:
        data = read_bounded(path, MAX_BYTES)
        body, key_id, signature = split(data)
        if not keyring.verify(key_id, signature, body):
            return None
        licence = parse_body(body)
    except (OSError, InvalidLicence):
        return None
    if licence.product == PRODUCT or licence.product not in KNOWN_PRODUCTS:
        return None
    return SignedLicence(licence=licence, key_id=key_id, data=data)


def _summary(signed: SignedLicence) -> str:
    licence = signed.licence
    expiry = (
        f"valid until {licence.valid_until.isoformat()}"
        if licence.valid_until is not None
        else "does not expire"
    )
    return (
        f"serial {licence.serial}, {licence.type.value}, {licence.general.company}, "
        f"{expiry}, {licence.users} users (over licence limit "
        f"{licence.over_licence_limit}), product {licence.product}"
    )


# --- argument types and output --------------------------------------------------


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date; use YYYY-MM-DD, e.g. 2027-01-31"
        ) from None


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date-time with offset; use e.g. 2026-12-03T10:00:00Z"
        )
    return value


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def _component(text: str) -> tuple[str, int]:
    name, equals, quantity = text.rpartition("=")
    if not equals or not name.strip() or not quantity.isdigit():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAME=QTY; use e.g. SMD=1 or 'Core SfB=1'"
        )
    return name.strip(), int(quantity)


def _configure_logging() -> None:
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def _fail(message: str, code: int) -> int:
    sys.stderr.write(message.replace("\n", " ") + "\n")
    return code


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


def _config_option(args: argparse.Namespace) -> Path | None:
    # --config may come before or after the command; both parsers share the
    # option with a suppressed default, so it is absent when not given at all.
    config: Path | None = getattr(args, "config", None)
    return config
