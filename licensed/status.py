"""The status file: what the daemon decided, for the front end and the components.

The daemon publishes one JSON document (``"schema": 1``) and replaces it atomically
on every check, so a reader always sees a whole document. Its layout is described
for machines by ``status.schema.json`` beside this module and for people by
``docs/status-file.md``.

This module builds the document from the daemon's findings and reads it back:
``read_status`` is the small reader other Python components use. Readers should key
on ``state`` and on message ``id`` values, and show message ``text`` verbatim.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from licensed.decision import Decision, State
from licensed.fsio import read_bounded, write_atomic
from licensed.licence import Licence
from licensed.messages import Audience, Message

SCHEMA_VERSION = 1
MAX_STATUS_BYTES = 1024 * 1024


@dataclass(frozen=True)
class UsersView:
    """The user figures as the daemon knows them."""

    counting: bool
    actual: int | None = None
    counted_at: datetime | None = None
    stale: bool = False
    error: str | None = None


@dataclass(frozen=True)
class ComponentView:
    """One component: what the licence requires of it and what systemd reports."""

    name: str
    unit: str
    required: str
    actual: str
    active_state: str | None = None
    load_state: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class ErrorView:
    """A current failure of the checker, which never changes the decision."""

    source: str
    message: str
    since: datetime


@dataclass(frozen=True)
class ClockView:
    """The clock high-water mark and whether the clock was set back past it."""

    high_water: datetime | None = None
    set_back: bool = False


@dataclass(frozen=True)
class Snapshot:
    """Everything one status document is made from."""

    decision: Decision
    licence: Licence | None
    key_id: str | None
    checked_at: datetime
    next_check: datetime | None
    timezone: str
    users: UsersView
    components: Sequence[ComponentView]
    errors: Sequence[ErrorView] = ()
    clock: ClockView = field(default_factory=ClockView)
    daemon: Mapping[str, Any] = field(default_factory=dict)


def build(snapshot: Snapshot) -> dict[str, Any]:
    """The status document for ``snapshot``, as JSON-ready data."""
    decision = snapshot.decision
    licence = snapshot.licence
    return {
        "schema": SCHEMA_VERSION,
        "state": decision.state.value,
        "reason": decision.reason,
        "checked_at": _time(snapshot.checked_at),
        "next_check": _time(snapshot.next_check),
        "timezone": snapshot.timezone,
        "expires_at": _time(decision.expires_at),
        "licence": licence_view(licence, snapshot.key_id) if licence else None,
        "users": _users(licence, snapshot.users),
        "components": [_component(c) for c in snapshot.components],
        "messages": [message_view(m) for m in decision.messages],
        "errors": [_error(e) for e in snapshot.errors],
        "clock": {
            "high_water": _time(snapshot.clock.high_water),
            "set_back": snapshot.clock.set_back,
        },
        "daemon": dict(snapshot.daemon),
    }


def encode(document: Mapping[str, Any]) -> bytes:
    """The file bytes of a status document."""
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


def publish(path: Path, document: Mapping[str, Any]) -> None:
    """Replace the status file atomically; it is world-readable."""
    write_atomic(path, encode(document), mode=0o644)


def licence_view(licence: Licence, key_id: str | None = None) -> dict[str, Any]:
    """The *License Information* sections of ``licence``, as JSON-ready data."""
    general = licence.general
    return {
        "serial": licence.serial,
        "type": licence.type.value,
        "issued": _time(licence.issued),
        "product": licence.product,
        "valid_until": _date(licence.valid_until),
        "key_id": key_id,
        "general": {
            "system": general.system_name,
            "company": general.company,
            "primary_sip_domain": general.primary_sip_domain,
            "sfb_server_version": general.sfb_server_version,
            "contact_person": general.contact_person,
            "location": general.location,
            "license_type": licence.type.value,
            "valid_until": _date(licence.valid_until),
        },
        "components": [
            {"name": name, "quantity": quantity}
            for name, quantity in licence.components
        ],
        "support": {
            "contract": licence.support.contract,
            "valid_until": _date(licence.support.valid_until),
        },
        "user": {
            "licensed": licence.users,
            "over_licence_limit": licence.over_licence_limit,
        },
    }


def message_view(message: Message) -> dict[str, str]:
    return {
        "id": message.id,
        "audience": message.audience.value,
        "text": message.text,
    }


def schema() -> dict[str, Any]:
    """The JSON Schema of the status document."""
    text = resources.files("licensed").joinpath("status.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


# The reader, for components written in Python.


@dataclass(frozen=True)
class Status:
    """A status document as a component sees it."""

    state: State
    reason: str
    checked_at: datetime
    expires_at: datetime | None
    messages: tuple[Message, ...]
    document: Mapping[str, Any]

    @property
    def licensed(self) -> bool:
        return self.state is State.LICENSED

    def messages_for(self, audience: Audience) -> tuple[Message, ...]:
        """The messages a person in ``audience`` sees; administrators see all."""
        if audience is Audience.ADMINISTRATORS:
            return self.messages
        return tuple(m for m in self.messages if m.audience is Audience.EVERYONE)


class StatusUnavailable(Exception):  # noqa: N818 - reads as a condition
    """The status file is missing, unreadable or not a schema 1 document."""


def read_status(path: Path = Path("/run/licensed/status.json")) -> Status:
    """Read the status file; raise ``StatusUnavailable`` saying why it cannot be."""
    try:
        document = json.loads(read_bounded(path, MAX_STATUS_BYTES))
    except FileNotFoundError:
        raise StatusUnavailable(
            f"{path} does not exist; is licensed running? (systemctl status licensed)"
        ) from None
    except (OSError, ValueError) as exc:
        raise StatusUnavailable(f"{path} cannot be read: {exc}") from exc
    return _status(document, path)


def _status(document: Any, path: Path) -> Status:
    if not isinstance(document, dict) or document.get("schema") != SCHEMA_VERSION:
        raise StatusUnavailable(
            f"{path} is not a schema {SCHEMA_VERSION} status document; "
            f"upgrade the reader or licensed so they match"
        )
    try:
        return Status(
            state=State(document["state"]),
            reason=document["reason"],
            checked_at=datetime.fromisoformat(document["checked_at"]),
            expires_at=_parse_time(document.get("expires_at")),
            messages=tuple(
                Message(m["id"], Audience(m["audience"]), m["text"])
                for m in document["messages"]
            ),
            document=document,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StatusUnavailable(f"{path} is malformed: {exc!r}") from exc


def _users(licence: Licence | None, users: UsersView) -> dict[str, Any]:
    return {
        "licensed": licence.users if licence else None,
        "over_licence_limit": licence.over_licence_limit if licence else None,
        "actual": users.actual,
        "counted_at": _time(users.counted_at),
        "stale": users.stale,
        "counting": "on" if users.counting else "off",
        "error": users.error,
    }


def _component(view: ComponentView) -> dict[str, Any]:
    return {
        "name": view.name,
        "unit": view.unit,
        "required": view.required,
        "actual": view.actual,
        "active_state": view.active_state,
        "load_state": view.load_state,
        "error": view.error,
    }


def _error(view: ErrorView) -> dict[str, str]:
    return {"source": view.source, "message": view.message, "since": _time(view.since)}


def _time(value: datetime | None) -> Any:
    return None if value is None else value.isoformat()


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _date(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())
