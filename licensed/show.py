"""The *License Information* view of ``licensectl show``, as text and as JSON.

The view reads the installed licence file directly and evaluates it with the same
pure ``evaluate`` the daemon uses, so it works while the daemon is stopped. It
cannot know the user count (only the daemon counts users), so no user-limit
message appears here.

``document`` builds one JSON-ready dictionary; the text view is rendered from it,
so both always carry the same content. The JSON keys are snake_case and stable;
dates and instants are ISO 8601, instants with their UTC offset. The ``licence``
and ``messages`` parts have the layout of the daemon's status file (built by the
same ``licensed.status`` functions), so scripts read both alike::

    {"licence_file", "checked_at", "state", "reason", "components_run",
     "expires_at", "timezone", "error",
     "licence": null | {"serial", "type", "issued", "product", "valid_until",
                        "key_id",
                        "general": {"system", "company", "primary_sip_domain",
                                    "sfb_server_version", "contact_person",
                                    "location", "license_type", "valid_until"},
                        "components": [{"name", "quantity"}],
                        "support": {"contract", "valid_until"},
                        "user": {"licensed", "over_licence_limit"}},
     "messages": [{"id", "audience", "text"}]}
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from licensed.config import Config
from licensed.decision import Decision, Rejected, State, Warnings, evaluate
from licensed.install import InstalledReading
from licensed.licence_file import SignedLicence
from licensed.status import licence_view, message_view

UNLICENSED_STATES = (State.MISSING, State.INVALID)
"""States in which ``show`` exits non-zero: there is no usable licence file."""

_GENERAL_LABELS = (
    ("system", "System"),
    ("company", "Company"),
    ("primary_sip_domain", "Primary SIP Domain"),
    ("sfb_server_version", "SfB Server Version"),
    ("contact_person", "Contact Person"),
    ("location", "Location"),
)
_WIDTH = 22


def document(
    config: Config, reading: InstalledReading, now: datetime
) -> dict[str, Any]:
    """The view of ``reading`` at ``now`` as a JSON-ready dictionary."""
    decision = _decide(config, reading, now)
    return {
        "licence_file": str(config.licence_file),
        "checked_at": now.isoformat(),
        "state": decision.state.value,
        "reason": decision.reason,
        "components_run": decision.components_run,
        "expires_at": _iso(decision.expires_at),
        "timezone": str(config.zone),
        "error": reading.reason if isinstance(reading, Rejected) else None,
        "licence": (
            licence_view(reading.licence, reading.key_id)
            if isinstance(reading, SignedLicence)
            else None
        ),
        "messages": [message_view(m) for m in decision.messages],
    }


def render_text(view: dict[str, Any]) -> str:
    """The view as the text an operator reads."""
    lines = ["License Information", ""]
    licence = view["licence"]
    if licence is not None:
        lines += _licence_lines(licence, view["licence_file"])
    elif view["error"] is not None:
        lines += [f"Invalid Licence File: {view['error']}", ""]
    else:
        lines += [f"No licence installed ({view['licence_file']})", ""]

    lines += _state_lines(view)
    return "\n".join(lines) + "\n"


def render_daemon_status(status: dict[str, Any]) -> str:
    """The daemon's status document (``licensectl status``) as text."""
    licence = status.get("licence")
    lines = [
        f"licensed daemon: checked {status.get('checked_at')}, next check "
        f"{status.get('next_check') or '-'}",
        "",
        _row("State", f"{status.get('state')} ({status.get('reason')})"),
        _row("Expires", _daemon_expiry(status)),
        _row("Licence", _licence_summary(licence)),
        _row("Users", _users_summary(status.get("users") or {})),
    ]
    lines += [_component_row(c) for c in status.get("components") or []]
    lines += _message_rows(status.get("messages") or [])
    lines += [
        _row(
            f"Error ({e.get('source')})", f"{e.get('message')} (since {e.get('since')})"
        )
        for e in status.get("errors") or []
    ]
    if (status.get("clock") or {}).get("set_back"):
        lines.append(_row("Clock", "set back behind the last time seen"))
    return "\n".join(lines) + "\n"


def format_instant(instant: datetime | None, zone_name: str) -> str:
    """An expiry instant with its UTC offset and zone, or 'does not expire'."""
    if instant is None:
        return "does not expire"
    return f"{instant.isoformat()} ({zone_name})"


def _decide(config: Config, reading: InstalledReading, now: datetime) -> Decision:
    warnings = Warnings(
        trial_days=config.trial_warning_days,
        support_days=config.support_warning_days,
    )
    licence = reading.licence if isinstance(reading, SignedLicence) else reading
    return evaluate(licence, now, config.zone, users=None, warnings=warnings)


def _licence_lines(licence: dict[str, Any], path: str) -> list[str]:
    general = licence["general"]
    lines = ["General"]
    lines += [_row(label, general[key]) for key, label in _GENERAL_LABELS]
    lines.append(_row("License Type", licence["type"].capitalize()))
    if general["valid_until"] is not None:
        lines.append(_row("Valid until", general["valid_until"]))

    lines += ["", "Components"]
    lines += [_row(c["name"], c["quantity"]) for c in licence["components"]]
    lines += [
        "",
        "Support",
        _row("Contract", licence["support"]["contract"]),
        _row("Valid until", licence["support"]["valid_until"]),
        "",
        "User",
        _row("Licensed quantity", licence["user"]["licensed"]),
        _row("Over License Limit", licence["user"]["over_licence_limit"]),
        "",
        "Licence file",
        _row("Serial", licence["serial"]),
        _row("Issued", licence["issued"]),
        _row("Signed by key", licence["key_id"]),
        _row("File", path),
        "",
    ]
    return lines


def _state_lines(view: dict[str, Any]) -> list[str]:
    expires_at = (
        datetime.fromisoformat(view["expires_at"]) if view["expires_at"] else None
    )
    lines = [
        _row("State", f"{view['state']} ({view['reason']})"),
        _row("Expires", _expiry_text(view, expires_at)),
    ]
    return lines + _message_rows(view["messages"])


def _message_rows(messages: list[dict[str, str]]) -> list[str]:
    indent = "\n" + " " * (_WIDTH + 2)
    return [
        _row(f"Message ({m['audience']})", m["text"].replace("\n", indent))
        for m in messages
    ]


def _daemon_expiry(status: dict[str, Any]) -> str:
    if status.get("licence") is None:
        return "-"
    instant = status.get("expires_at")
    parsed = datetime.fromisoformat(instant) if instant else None
    return format_instant(parsed, str(status.get("timezone")))


def _licence_summary(licence: dict[str, Any] | None) -> str:
    if licence is None:
        return "none"
    company = (licence.get("general") or {}).get("company")
    return f"{licence.get('type')} licence {licence.get('serial')}, {company}"


def _users_summary(users: dict[str, Any]) -> str:
    if users.get("counting") == "off":
        return "not counted (no database configured)"
    actual = users.get("actual")
    figure = "not counted yet" if actual is None else f"{actual} users"
    text = (
        f"{figure}; licensed {users.get('licensed')}, Over License Limit "
        f"{users.get('over_licence_limit')}"
    )
    if users.get("stale"):
        text += " (stale)"
    if users.get("error"):
        text += f"; last count failed: {users['error']}"
    return text


def _component_row(component: dict[str, Any]) -> str:
    text = (
        f"{component.get('unit')}: required {component.get('required')}, "
        f"actual {component.get('actual')}"
    )
    if component.get("error"):
        text += f" ({component['error']})"
    return _row(f"Component {component.get('name')}", text)


def _expiry_text(view: dict[str, Any], expires_at: datetime | None) -> str:
    if view["licence"] is None:
        return "-"
    return format_instant(expires_at, view["timezone"])


def _row(label: str, value: object) -> str:
    return f"  {label:<{_WIDTH}}{value}"


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()
