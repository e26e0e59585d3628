"""Where log events go, and in which form.

Events are ``snake_case`` names with key-values, emitted through structlog. They are
rendered three ways:

* ``journal``: straight to the systemd journal, with a syslog priority and the
  key-values as journal fields (``STATE``, ``SERIAL``, ``UNIT`` ...), so that
  ``journalctl -u licensed STATE=expired`` works.
* ``console``: readable coloured lines, for a person at a terminal.
* ``json``: one JSON object per line, for anything else (files, pipes, CI).

``auto`` picks the journal when the process's standard error is connected to it
(systemd sets ``JOURNAL_STREAM``), the console on a terminal, JSON otherwise.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog
from systemd import journal

_PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def configure(
    form: str = "auto", level: str = "info", stream: TextIO | None = None
) -> str:
    """Set up structlog; return the form chosen."""
    stream = stream or sys.stderr
    chosen = _choose(form, stream)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if chosen == "journal":
        processors.append(JournalRenderer())
        factory: Any = structlog.ReturnLoggerFactory()
    elif chosen == "console":
        processors.append(structlog.dev.ConsoleRenderer(colors=stream.isatty()))
        factory = structlog.PrintLoggerFactory(stream)
    else:
        processors.append(structlog.processors.JSONRenderer(sort_keys=False))
        factory = structlog.PrintLoggerFactory(stream)

    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            _LEVELS.get(level, logging.ERROR)
        ),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    return chosen


def _choose(form: str, stream: TextIO) -> str:
    if form != "auto":
        return form
    if os.environ.get("JOURNAL_STREAM"):
        return "journal"
    if stream.isatty():
        return "console"
    return "json"


class JournalRenderer:
    """A structlog processor that sends the event to the journal and drops it."""

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> str:
        name = str(event.pop("event", ""))
        level = str(event.pop("level", method))
        event.pop("timestamp", None)
        text = " ".join([name, *(f"{k}={v}" for k, v in event.items())])
        journal.send(
            text,
            PRIORITY=str(_PRIORITIES.get(level, 6)),
            SYSLOG_IDENTIFIER="licensed",
            EVENT=name,
            **_fields(event),
        )
        raise structlog.DropEvent


def _fields(event: Mapping[str, Any]) -> dict[str, str]:
    return {
        key.upper(): str(value)
        for key, value in event.items()
        if key.replace("_", "").isalnum() and value is not None
    }
