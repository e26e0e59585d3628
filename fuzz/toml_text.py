"""A small TOML writer for generated documents (the standard library only reads).

It writes what Hypothesis generates for the licence body and the configuration:
strings, booleans, integers, floats (``nan`` and ``inf`` included), dates, times,
date-times with or without an offset, lists and tables. Top-level tables become
``[name]`` sections after the plain keys; nested tables are written inline. Keys
are always quoted, so any text is a key.

Limitations: arrays of tables are written inline, not as ``[[name]]``; times with a
time zone have no TOML form and are written as text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any


def dumps(document: Mapping[str, Any]) -> str:
    """TOML text for ``document``."""
    plain = {k: v for k, v in document.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in document.items() if isinstance(v, Mapping)}
    lines = [f"{key(name)} = {value(item)}" for name, item in plain.items()]
    for name, table in tables.items():
        lines += ["", f"[{key(name)}]"]
        lines += [f"{key(k)} = {value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def key(name: str) -> str:
    """A quoted TOML key."""
    return string(name)


def string(text: str) -> str:
    """A TOML basic string: JSON escapes, plus the raw DEL that TOML forbids."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def value(item: object) -> str:
    """The TOML spelling of one value."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, list | tuple):
        return "[" + ", ".join(value(v) for v in item) + "]"
    if isinstance(item, Mapping):
        pairs = ", ".join(f"{key(k)} = {value(v)}" for k, v in item.items())
        return "{" + pairs + "}"
    return _scalar(item)


def _scalar(item: object) -> str:
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        return _float(item)
    if isinstance(item, str):
        return string(item)
    if isinstance(item, datetime | date) or (
        isinstance(item, time) and item.tzinfo is None
    ):
        return item.isoformat()
    if isinstance(item, time):
        return string(item.isoformat())
    raise TypeError(f"no TOML form for {item!r}")


def _float(number: float) -> str:
    if math.isnan(number):
        return "nan"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return repr(number)
