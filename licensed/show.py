"""What ``licensectl`` prints: the *License Information* view and the status view.

``licensectl show`` reads the installed licence file directly and evaluates it with
the same pure ``evaluate`` the daemon uses, so it works while the daemon is stopped.
It cannot know the user count (only the daemon counts users), so no user-limit
message appears there.

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

``render_status`` turns the daemon's status document (``licensectl status`` and
``check``) into a ``systemctl status``-like page: a coloured dot and the state,
then one aligned line per subject, times given both as instants and relative to
now. It reads the document defensively (``.get``), as it may come from an older or
newer daemon.

This module is imported by every ``licensectl`` command, ``status`` included,
which must start fast: it imports nothing that loads keys or the cryptography
library (``licensed.install`` and ``licensed.licence_file`` are for types only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from licensed.decision import Decision, Missing, Rejected, State, Warnings, evaluate
from licensed.status import licence_view, message_view

if TYPE_CHECKING:
    from licensed.config import Config
    from licensed.install import InstalledReading

UNLICENSED_STATES = (State.MISSING, State.INVALID)
"""States with no usable licence file (exit code 3)."""

STALE_FACTOR = 3
"""A status older than this many check intervals is stale: the daemon has stopped
checking (it publishes at least once per ``check_interval``)."""

_GENERAL_LABELS = (
    ("system", "System"),
    ("company", "Company"),
    ("primary_sip_domain", "Primary SIP Domain"),
    ("sfb_server_version", "SfB Server Version"),
    ("contact_person", "Contact Person"),
    ("location", "Location"),
)
_WIDTH = 22
_LABEL = 12
"""Width of the right-aligned labels of the status view ("Components")."""

_GREEN, _RED, _YELLOW, _RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[0m"
_DOT = "\u25cf"


# The License Information view (``licensectl show``).


def document(
    config: Config, reading: InstalledReading, now: datetime
) -> dict[str, Any]:
    """The view of ``reading`` at ``now`` as a JSON-ready dictionary."""
    decision = _decide(config, reading, now)
    signed = None if isinstance(reading, Missing | Rejected) else reading
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
            licence_view(signed.licence, signed.key_id) if signed is not None else None
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
    licence = reading if isinstance(reading, Missing | Rejected) else reading.licence
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
    indent = "\n" + " " * (_WIDTH + 2)
    lines += [
        _row(
            "Message", f"to {m['audience']}:{indent}" + m["text"].replace("\n", indent)
        )
        for m in view["messages"]
    ]
    return lines


def _expiry_text(view: dict[str, Any], expires_at: datetime | None) -> str:
    if view["licence"] is None:
        return "-"
    return format_instant(expires_at, view["timezone"])


def _row(label: str, value: object) -> str:
    return f"  {label:<{_WIDTH}}{value}"


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


# The status view (``licensectl status`` and ``check``).


@dataclass(frozen=True)
class Freshness:
    """How the status document was obtained, and whether it can be trusted."""

    answered: bool = True
    """Whether the running daemon answered; False: read from the status file."""
    stale: bool = False
    """Whether ``checked_at`` is older than ``STALE_FACTOR`` check intervals."""


def is_stale(status: dict[str, Any], now: datetime, check_interval: float) -> bool:
    """Whether the daemon last checked more than ``STALE_FACTOR`` intervals ago."""
    checked_at = _instant(status.get("checked_at"))
    if checked_at is None:
        return True
    limit = timedelta(seconds=STALE_FACTOR * check_interval)
    return now - checked_at > limit


def render_status(
    status: dict[str, Any],
    now: datetime,
    freshness: Freshness = Freshness(),
    colour: bool = False,
) -> str:
    """The daemon's status document as a ``systemctl status``-like page."""
    lines = [_headline(status, now, freshness, colour)]
    lines += _field("Licence", _licence_text(status.get("licence")))
    lines += _field("Expires", _expires_text(status, now))
    lines += _field("Support", _support_text(status.get("licence"), now))
    lines += _field("Users", _users_text(status.get("users") or {}, now))
    lines += _field("Components", *_component_texts(status.get("components") or []))
    lines += _field("Messages", *_message_texts(status.get("messages") or []))
    lines += _field("Errors", *_error_texts(status.get("errors") or [], now))
    lines += _field("Clock", _clock_text(status.get("clock") or {}))
    lines += _field("Checked", _checked_text(status, now))
    lines += _field("Daemon", _daemon_text(status.get("daemon") or {}, now))
    return "\n".join(lines) + "\n"


def _headline(
    status: dict[str, Any], now: datetime, freshness: Freshness, colour: bool
) -> str:
    state = str(status.get("state"))
    text = f"{state} - {status.get('reason')}"
    if not freshness.answered:
        age = _ago(_instant(status.get("checked_at")), now)
        text += f" (the daemon does not answer; last status from {age})"
    elif freshness.stale:
        age = _ago(_instant(status.get("checked_at")), now)
        text += f" (stale: last checked {age}; is the daemon checking?)"
    if not colour:
        return f"{_DOT} {text}"
    hue = _hue(status, freshness)
    return f"{hue}{_DOT}{_RESET} {hue}{state}{_RESET}{text[len(state) :]}"


def _hue(status: dict[str, Any], freshness: Freshness) -> str:
    # An unlicensed state is the worst news and stays red; anything that makes a
    # licensed status doubtful (a stale document, the daemon's own failures, a
    # clock set back) turns it yellow.
    if freshness.stale or not freshness.answered:
        return _YELLOW
    if status.get("state") != State.LICENSED.value:
        return _RED
    if status.get("errors") or (status.get("clock") or {}).get("set_back"):
        return _YELLOW
    return _GREEN


def _field(label: str, *values: str | None) -> list[str]:
    """One aligned field; each value a line, a multi-line value indented under it."""
    shown = [v for v in values if v is not None]
    indent = " " * (_LABEL + 2)
    lines = []
    for index, value in enumerate(shown):
        head = f"{label:>{_LABEL}}: " if index == 0 else indent
        lines.append(head + value.replace("\n", "\n" + indent + "  "))
    return lines


def _licence_text(licence: dict[str, Any] | None) -> str:
    if licence is None:
        return "none installed"
    general = licence.get("general") or {}
    return (
        f"{licence.get('type')} {licence.get('serial')}, {general.get('company')} "
        f"({general.get('system')})"
    )


def _expires_text(status: dict[str, Any], now: datetime) -> str | None:
    if status.get("licence") is None:
        return None
    instant = _instant(status.get("expires_at"))
    text = format_instant(instant, str(status.get("timezone")))
    if instant is None:
        return text
    if instant > now:
        return f"{text}, in {_span(instant - now)}"
    return f"{text}, expired {_span(now - instant)} ago"


def _support_text(licence: dict[str, Any] | None, now: datetime) -> str | None:
    support = (licence or {}).get("support")
    if not support:
        return None
    text = f"{support.get('contract')} until {support.get('valid_until')}"
    try:
        end = date.fromisoformat(str(support.get("valid_until")))
    except ValueError:
        return text
    left = (end - now.date()).days + 1
    if left > 0:
        return f"{text} ({left} day{'s' if left != 1 else ''} left)"
    return f"{text} (ended)"


def _users_text(users: dict[str, Any], now: datetime) -> str:
    limits = ""
    if users.get("licensed") is not None:
        limits = (
            f" / {users.get('licensed')} licensed / "
            f"{users.get('over_licence_limit')} Over License Limit"
        )
    if users.get("counting") == "off":
        return f"counting off (no [database] configured){limits}"
    actual = users.get("actual")
    counted_at = _instant(users.get("counted_at"))
    figure = "unknown" if actual is None else f"{actual} actual"
    if users.get("stale"):
        when = (
            "never counted"
            if counted_at is None
            else f"counted {_ago(counted_at, now)}"
        )
        note = f"stale, {when}: {users.get('error')}"
    elif actual is None:
        note = "not counted yet"
    else:
        note = f"counted {_ago(counted_at, now)}"
    return f"{figure}{limits} ({note})"


def _component_texts(components: list[dict[str, Any]]) -> list[str]:
    width = max((len(str(c.get("name"))) for c in components), default=0)
    texts = []
    for component in components:
        text = (
            f"{component.get('name')!s:<{width}}  {component.get('actual')}, "
            f"required {component.get('required')} ({component.get('unit')})"
        )
        if component.get("error"):
            text += f": {component['error']}"
        texts.append(text)
    return texts


def _message_texts(messages: list[dict[str, Any]]) -> list[str]:
    return [f"{m.get('audience')}: {m.get('text')}" for m in messages]


def _error_texts(errors: list[dict[str, Any]], now: datetime) -> list[str]:
    return [
        f"{e.get('source')}: {e.get('message')} "
        f"(since {_ago(_instant(e.get('since')), now)})"
        for e in errors
    ]


def _clock_text(clock: dict[str, Any]) -> str | None:
    if not clock.get("set_back"):
        return None
    return (
        f"set back behind the latest time seen ({clock.get('high_water')}); expiry "
        f"is judged against that time until a freshly issued licence is installed"
    )


def _checked_text(status: dict[str, Any], now: datetime) -> str:
    text = _ago(_instant(status.get("checked_at")), now)
    next_check = _instant(status.get("next_check"))
    if next_check is None:
        return text
    if next_check >= now:
        return f"{text}; next check in {_span(next_check - now)}"
    return f"{text}; next check was due {_span(now - next_check)} ago"


def _daemon_text(daemon: dict[str, Any], now: datetime) -> str | None:
    if not daemon:
        return None
    started = _instant(daemon.get("started_at"))
    return (
        f"pid {daemon.get('pid')}, version {daemon.get('version')}, "
        f"started {_ago(started, now)}"
    )


def _ago(instant: datetime | None, now: datetime) -> str:
    if instant is None:
        return "never"
    if instant > now:
        return f"in {_span(instant - now)} (the clock is behind it)"
    return f"{_span(now - instant)} ago"


_UNITS = (("day", 86400), ("h", 3600), ("min", 60), ("s", 1))


def _span(delta: timedelta) -> str:
    """A duration for people: '12 days', '2 days 5 h', '3 min 4 s', '0 s'."""
    seconds = int(abs(delta.total_seconds()))
    for index, (name, size) in enumerate(_UNITS):
        if seconds < size and size > 1:
            continue
        count, rest = divmod(seconds, size)
        text = _count(count, name)
        # A second unit only while the first is small: "12 days", "2 days 5 h".
        if count < 10 and index + 1 < len(_UNITS):
            smaller, smaller_size = _UNITS[index + 1]
            if rest // smaller_size:
                text += " " + _count(rest // smaller_size, smaller)
        return text
    return "0 s"


def _count(count: int, unit: str) -> str:
    plural = "s" if unit == "day" and count != 1 else ""
    return f"{count} {unit}{plural}"


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
