"""Prometheus metrics: the status document as text for node_exporter's collector.

When ``metrics_file`` is set, the daemon writes this file after every publication
of the status file, atomically and world-readable (mode 0644), so node_exporter's
textfile collector never reads half a file. ``render`` turns a status document and
the daemon's cumulative ``Counters`` into the Prometheus text exposition format
(version 0.0.4); ``write`` puts it in place. Every metric has ``# HELP`` and
``# TYPE`` lines; label values are escaped as the format demands.

A figure that is not known is left out rather than given as 0: there is no
``licensed_licence_expiry_timestamp_seconds`` for a full licence (it never
expires), no licence figures when no licence is installed, and no
``licensed_users_actual`` before the first successful count.

Limitations: the counters live in the daemon's memory, so they restart at 0 with
the daemon, as Prometheus counters may (``rate()`` and ``increase()`` handle the
reset). A failed user count is counted from the tracker's attempt number at the
next check, so a failure followed by a success between two checks is not seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from licensed.decision import State
from licensed.fsio import write_atomic


@dataclass
class Counters:
    """The daemon's cumulative failure counts since it started."""

    enforcement_errors: int = 0
    """Component actions (status, stop and mask, unmask and start) that failed."""
    database_errors: int = 0
    """User counts that failed."""


@dataclass(frozen=True)
class _Metric:
    name: str
    kind: str
    help: str
    samples: tuple[tuple[Mapping[str, str], float], ...]


def write(path: Path, document: Mapping[str, Any], counters: Counters) -> None:
    """Replace ``path`` with the metrics of ``document``; raises ``OSError``."""
    write_atomic(path, render(document, counters).encode(), mode=0o644)


def render(document: Mapping[str, Any], counters: Counters) -> str:
    """The metrics of a status document, in the Prometheus text format."""
    lines: list[str] = []
    for metric in _metrics(document, counters):
        if not metric.samples:
            continue
        lines.append(f"# HELP {metric.name} {_escape_help(metric.help)}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        lines += [
            f"{metric.name}{_labels(labels)} {_number(value)}"
            for labels, value in metric.samples
        ]
    return "\n".join(lines) + "\n"


def _metrics(document: Mapping[str, Any], counters: Counters) -> Iterable[_Metric]:
    licence = document.get("licence") or {}
    users = document.get("users") or {}
    components = document.get("components") or []
    yield _gauge(
        "licensed_state",
        "The licence state: 1 for the current one, 0 for the others.",
        [({"state": s.value}, float(document.get("state") == s.value)) for s in State],
    )
    yield _single(
        "licensed_licence_expiry_timestamp_seconds",
        "When the trial licence expires (Unix time); absent for a full licence.",
        _timestamp(document.get("expires_at")),
    )
    yield _single(
        "licensed_support_end_timestamp_seconds",
        "When the support contract ends: midnight after its Valid until date.",
        _support_end(licence, document.get("timezone")),
    )
    yield _single(
        "licensed_users_licensed",
        "The number of users the licence allows.",
        _number_or_none(users.get("licensed")),
    )
    yield _single(
        "licensed_users_over_licence_limit",
        "The Over License Limit: above it everybody sees the warning.",
        _number_or_none(users.get("over_licence_limit")),
    )
    yield _single(
        "licensed_users_actual",
        "The users counted last; absent until a count succeeded.",
        _number_or_none(users.get("actual")),
    )
    yield _single(
        "licensed_users_stale",
        "1 while the user count failed and the last good one is shown.",
        float(bool(users.get("stale"))),
    )
    yield _single(
        "licensed_last_check_timestamp_seconds",
        "When the daemon last checked the licence (Unix time).",
        _timestamp(document.get("checked_at")),
    )
    yield _gauge(
        "licensed_component_running",
        "1 if systemd reports the component's unit running.",
        [(_unit(c), float(c.get("actual") == "running")) for c in components],
    )
    yield _gauge(
        "licensed_component_required_running",
        "1 if the licence requires the component to run, 0 if it must be stopped.",
        [(_unit(c), float(c.get("required") == "running")) for c in components],
    )
    yield _gauge(
        "licensed_errors",
        "The daemon's current failures by source; they never change the state.",
        _errors_by_source(document.get("errors") or []),
    )
    yield _counter(
        "licensed_enforcement_errors_total",
        "Component actions on systemd that failed since the daemon started.",
        counters.enforcement_errors,
    )
    yield _counter(
        "licensed_database_errors_total",
        "User counts that failed since the daemon started.",
        counters.database_errors,
    )
    yield _single(
        "licensed_clock_set_back",
        "1 while the clock is behind the latest time seen beyond the tolerance.",
        float(bool((document.get("clock") or {}).get("set_back"))),
    )


def _gauge(
    name: str, text: str, samples: Iterable[tuple[Mapping[str, str], float]]
) -> _Metric:
    return _Metric(name, "gauge", text, tuple(samples))


def _single(name: str, text: str, value: float | None) -> _Metric:
    return _gauge(name, text, [] if value is None else [({}, value)])


def _counter(name: str, text: str, value: int) -> _Metric:
    return _Metric(name, "counter", text, (({}, float(value)),))


def _unit(component: Mapping[str, Any]) -> dict[str, str]:
    return {
        "component": str(component.get("name")),
        "unit": str(component.get("unit")),
    }


def _errors_by_source(
    errors: Iterable[Mapping[str, Any]],
) -> list[tuple[Mapping[str, str], float]]:
    sources = sorted({str(e.get("source")) for e in errors})
    return [({"source": source}, 1.0) for source in sources]


def _timestamp(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _support_end(licence: Mapping[str, Any], zone_name: object) -> float | None:
    valid_until = (licence.get("support") or {}).get("valid_until")
    if not isinstance(valid_until, str):
        return None
    try:
        day = date.fromisoformat(valid_until) + timedelta(days=1)
        zone = ZoneInfo(str(zone_name))
    except (ValueError, ZoneInfoNotFoundError):
        return None
    return datetime.combine(day, time(0), tzinfo=zone).timestamp()


def _number_or_none(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)
