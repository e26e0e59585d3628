"""Talking to the service manager: readiness, a status line, watchdog pings.

Wraps ``systemd.daemon.notify``. Outside systemd (no ``NOTIFY_SOCKET``) every call
is a no-op; a socket that is set but broken is logged once and then ignored, since a
lost notification must never stop enforcement.
"""

from __future__ import annotations

import os

import structlog
from systemd import daemon

log = structlog.get_logger(__name__)


class Notifier:
    """Sends sd_notify messages, never raising."""

    def __init__(self) -> None:
        self._enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._warned = False
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.watchdog_interval: float | None = (
            int(usec) / 1_000_000 / 2 if usec.isdigit() and int(usec) > 0 else None
        )

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def reloading(self) -> None:
        self._send("RELOADING=1")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def _send(self, message: str) -> None:
        if not self._enabled:
            return
        try:
            daemon.notify(message)
        except OSError as exc:
            if not self._warned:
                log.warning("notify_failed", reason=str(exc))
                self._warned = True
