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
    for message in view["messages"]:
        text = message["text"].replace("\n", "\n" + " " * (_WIDTH + 2))
        lines.append(_row(f"Message ({message['audience']})", text))
    return lines


def _expiry_text(view: dict[str, Any], expires_at: datetime | None) -> str:
    if view["licence"] is None:
        return "-"
    return format_instant(expires_at, view["timezone"])


def _row(label: str, value: object) -> str:
    return f"  {label:<{_WIDTH}}{value}"


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()
