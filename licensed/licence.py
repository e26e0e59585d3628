"""The licence: its data, and the text body that carries it.

A licence file is UTF-8 text in two parts: a *body* in TOML that an operator can
read with ``cat``, and a *signature block* after it. This module owns the body: it
parses body bytes into a ``Licence`` (strictly: every field checked, unknown keys
refused) and renders a ``Licence`` back into canonical body text. Signatures and
trusted keys live in ``licensed.signing`` and ``licensed.keyring``; the format is
documented for people in ``docs/licence-file.md``.

Every problem raises ``InvalidLicence`` whose message is the reason alone, phrased
to follow the product's ``Invalid Licence File: `` prefix.
"""

from __future__ import annotations

import enum
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from licensed.errors import InvalidLicence

FORMAT_VERSION = 1
PRODUCT = "Assistant"
"""The product this system is; licences for the vendor's other products are refused."""
KNOWN_PRODUCTS = ("Assistant", "TM", "LUCS")

_SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_TEXT = 256


class LicenceType(enum.StrEnum):
    """A full licence never expires; a trial expires after its *Valid until* date."""

    FULL = "full"
    TRIAL = "trial"


@dataclass(frozen=True)
class General:
    """The *General* section: who and what the licence is for."""

    system_name: str
    company: str
    primary_sip_domain: str
    sfb_server_version: str
    contact_person: str
    location: str


@dataclass(frozen=True)
class Support:
    """The support contract, with its own *Valid until* date."""

    contract: str
    valid_until: date


@dataclass(frozen=True)
class Licence:
    """One licence, as issued by the vendor and carried in a licence file."""

    serial: str
    issued: datetime
    product: str
    type: LicenceType
    valid_until: date | None
    general: General
    components: tuple[tuple[str, int], ...]
    support: Support
    users: int
    over_licence_limit: int
    format: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        _check_consistency(self)

    @property
    def is_trial(self) -> bool:
        return self.type is LicenceType.TRIAL


# The body's layout: each table with its keys, in the order they are rendered.
_TOP_KEYS = ("format", "serial", "issued", "product", "type", "valid_until")
_GENERAL_KEYS = tuple(General.__dataclass_fields__)
_SUPPORT_KEYS = ("contract", "valid_until")
_USERS_KEYS = ("licensed", "over_licence_limit")
_TABLES = ("general", "components", "support", "users")


def parse_body(body: bytes) -> Licence:
    """Parse and check licence body bytes; raise ``InvalidLicence`` with the reason."""
    try:
        document = tomllib.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidLicence(f"the body is not UTF-8 text ({exc.reason})") from exc
    # Not only TOMLDecodeError: int()'s digit limit raises a plain ValueError and
    # deep nesting a RecursionError.
    except (ValueError, RecursionError) as exc:
        raise InvalidLicence(f"the body is not valid licence text: {exc}") from exc

    _check_format(document)
    _refuse_unknown(document, (*_TOP_KEYS, *_TABLES), "the licence")
    return Licence(
        format=FORMAT_VERSION,
        serial=_serial(document),
        issued=_issued(document),
        product=_text(document, "product", "the licence"),
        type=_type(document),
        valid_until=_optional_date(document, "valid_until", "the licence"),
        general=_general(_table(document, "general")),
        components=_components(_table(document, "components")),
        support=_support(_table(document, "support")),
        users=_count(_users(document), "licensed", "[users]"),
        over_licence_limit=_count(_users(document), "over_licence_limit", "[users]"),
    )


def render_body(licence: Licence) -> str:
    """The canonical body text of ``licence``, which ``parse_body`` reads back."""
    lines = [
        "# Assistant licence. The lines above the signature are signed: changing",
        "# anything here invalidates the licence. Install: licensectl install FILE",
        f"format = {licence.format}",
        f"serial = {_quote(licence.serial)}",
        f"issued = {licence.issued.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}",
        f"product = {_quote(licence.product)}",
        f"type = {_quote(licence.type.value)}",
    ]
    if licence.valid_until is not None:
        lines.append(f"valid_until = {licence.valid_until.isoformat()}")
    lines += ["", "[general]"]
    lines += [
        f"{key} = {_quote(getattr(licence.general, key))}" for key in _GENERAL_KEYS
    ]
    lines += ["", "[components]"]
    lines += [f"{_quote(name)} = {quantity}" for name, quantity in licence.components]
    lines += [
        "",
        "[support]",
        f"contract = {_quote(licence.support.contract)}",
        f"valid_until = {licence.support.valid_until.isoformat()}",
        "",
        "[users]",
        f"licensed = {licence.users}",
        f"over_licence_limit = {licence.over_licence_limit}",
    ]
    return "\n".join(lines) + "\n"


def _check_consistency(licence: Licence) -> None:
    if licence.type is LicenceType.TRIAL and licence.valid_until is None:
        raise InvalidLicence(
            "a trial licence needs 'valid_until' (the last valid day); none is given"
        )
    if licence.type is LicenceType.FULL and licence.valid_until is not None:
        raise InvalidLicence(
            f"a full licence never expires but has valid_until = "
            f"{licence.valid_until.isoformat()}; issue it as a trial or without it"
        )
    # The expiry instant is the day after valid_until, which does not exist here.
    if licence.valid_until == date.max:
        raise InvalidLicence(
            f"valid_until = {date.max.isoformat()} has no day after it to expire on; "
            f"issue a full licence instead"
        )
    if licence.over_licence_limit < licence.users:
        raise InvalidLicence(
            f"[users] over_licence_limit = {licence.over_licence_limit} is below "
            f"licensed = {licence.users}; it must be at least the licensed users"
        )
    if not licence.components:
        raise InvalidLicence("[components] is empty; it must name at least one")


def _check_format(document: Mapping[str, Any]) -> None:
    version = document.get("format")
    if version is None:
        raise InvalidLicence("missing field 'format' (the licence format version)")
    if type(version) is not int or version != FORMAT_VERSION:
        raise InvalidLicence(
            f"unknown format version {version!r}; this licensed reads format "
            f"{FORMAT_VERSION}: upgrade licensed or ask the vendor for a format "
            f"{FORMAT_VERSION} licence"
        )


def _refuse_unknown(
    table: Mapping[str, Any], known: tuple[str, ...], where: str
) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise InvalidLicence(
            f"unknown field {unknown[0]!r} in {where}; known fields: {', '.join(known)}"
        )


def _table(document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = document.get(name)
    if value is None:
        raise InvalidLicence(f"missing section [{name}]")
    if not isinstance(value, dict):
        raise InvalidLicence(f"[{name}] must be a section, not {_kind(value)}")
    return value


def _text(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if value is None:
        raise InvalidLicence(f"missing field {key!r} in {where}")
    if not isinstance(value, str):
        raise InvalidLicence(f"{key!r} in {where} must be text, not {_kind(value)}")
    if not value.strip():
        raise InvalidLicence(f"{key!r} in {where} is empty")
    if len(value) > _MAX_TEXT or any(ch < " " and ch != "\t" for ch in value):
        raise InvalidLicence(
            f"{key!r} in {where} must be one line of at most {_MAX_TEXT} characters"
        )
    return value


def _serial(document: Mapping[str, Any]) -> str:
    serial = _text(document, "serial", "the licence")
    if not _SERIAL.fullmatch(serial):
        raise InvalidLicence(
            f"serial {serial!r} is malformed; it is 1-64 letters, digits, '.', '_' "
            f"or '-', starting with a letter or digit"
        )
    return serial


def _issued(document: Mapping[str, Any]) -> datetime:
    value = document.get("issued")
    if value is None:
        raise InvalidLicence("missing field 'issued' in the licence")
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidLicence(
            f"'issued' must be a date-time with offset such as 2026-12-03T10:00:00Z, "
            f"not {_as_written(value)}"
        )
    # At the ends of the calendar (year 1 or 9999) a time with an offset has no
    # UTC equivalent, and astimezone raised OverflowError out of the parser.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidLicence(
            f"'issued' = {value.isoformat()} is out of range; use a real date-time "
            f"such as 2026-12-03T10:00:00Z"
        ) from None


def _type(document: Mapping[str, Any]) -> LicenceType:
    value = _text(document, "type", "the licence")
    try:
        return LicenceType(value)
    except ValueError:
        raise InvalidLicence(
            f"type is {value!r}; a licence is 'full' or 'trial'"
        ) from None


def _optional_date(table: Mapping[str, Any], key: str, where: str) -> date | None:
    value = table.get(key)
    if value is None:
        return None
    if type(value) is not date:
        raise InvalidLicence(
            f"{key!r} in {where} must be a date such as 2027-01-31, not {value!r}"
        )
    return value


def _required_date(table: Mapping[str, Any], key: str, where: str) -> date:
    value = _optional_date(table, key, where)
    if value is None:
        raise InvalidLicence(f"missing field {key!r} in {where}")
    return value


def _count(table: Mapping[str, Any], key: str, where: str) -> int:
    value = table.get(key)
    if value is None:
        raise InvalidLicence(f"missing field {key!r} in {where}")
    if type(value) is not int or value < 0:
        raise InvalidLicence(
            f"{key!r} in {where} must be a whole number of at least 0, not {value!r}"
        )
    return value


def _general(table: Mapping[str, Any]) -> General:
    _refuse_unknown(table, _GENERAL_KEYS, "[general]")
    return General(**{key: _text(table, key, "[general]") for key in _GENERAL_KEYS})


def _components(table: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    components = []
    for name in table:
        if not name.strip() or len(name) > _MAX_TEXT:
            raise InvalidLicence(f"component name {name!r} in [components] is invalid")
        components.append((name, _count(table, name, "[components]")))
    return tuple(components)


def _support(table: Mapping[str, Any]) -> Support:
    _refuse_unknown(table, _SUPPORT_KEYS, "[support]")
    return Support(
        contract=_text(table, "contract", "[support]"),
        valid_until=_required_date(table, "valid_until", "[support]"),
    )


def _users(document: Mapping[str, Any]) -> Mapping[str, Any]:
    table = _table(document, "users")
    _refuse_unknown(table, _USERS_KEYS, "[users]")
    return table


def _quote(text: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes, except that TOML
    # also forbids a raw DEL character.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _as_written(value: object) -> str:
    # TOML values come back as Python objects; show them as the file spells them.
    if isinstance(value, datetime | date):
        return value.isoformat()
    return repr(value)


def _kind(value: object) -> str:
    return {
        dict: "a section",
        list: "a list",
        str: "text",
        bool: "true/false",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)
