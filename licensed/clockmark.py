"""The clock high-water mark: the latest time this server has been seen at.

A trial must not be extended by setting the clock back. The daemon keeps the latest
wall-clock time it has seen, persisted atomically in the state folder. When the
clock reads more than the tolerance (``clock_rollback_tolerance``) earlier than the
mark, expiry is judged against the mark instead of the clock, and the status and the
log say that the clock was set back. Small steps back, such as NTP corrections,
stay within the tolerance and are judged as they are.

The way out for a machine that once ran with its clock far in the future is a
freshly issued licence: a licence whose signed ``issued`` time is later than the
mark proves the mark wrong, and installing it resets the mark to the current time.
Each licence does so once: the mark remembers the ``issued`` time that reset it, so
the licence staying installed does not excuse a later rollback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from licensed.fsio import read_bounded, write_atomic

log = structlog.get_logger(__name__)

FILE_NAME = "clock.json"
SAVE_EVERY = timedelta(minutes=5)
"""How far the mark may run ahead of its file; the tolerance is hours."""


@dataclass(frozen=True)
class Judgement:
    """The time expiry is judged at, and whether the clock was set back."""

    at: datetime
    set_back: bool


class ClockMark:
    """Loads, advances and persists the high-water mark."""

    def __init__(self, state_dir: Path, tolerance: float) -> None:
        self.path = state_dir / FILE_NAME
        self.tolerance = timedelta(seconds=tolerance)
        self.high_water, self.reset_by = self._load()
        self._saved = self.high_water

    def judge(self, now: datetime) -> Judgement:
        """The time to judge expiry at, given the clock reads ``now``."""
        if self.high_water is not None and now < self.high_water - self.tolerance:
            return Judgement(at=self.high_water, set_back=True)
        return Judgement(at=now, set_back=False)

    def advance(self, now: datetime) -> None:
        """Record ``now`` if it is the latest time seen; raises ``OSError``.

        The file is rewritten only when the mark has moved ``SAVE_EVERY`` past what
        it holds: a crash then loses at most that much of the mark, far inside the
        tolerance, and a check (a licence change above all) spares an fsync.
        """
        if self.high_water is not None and now <= self.high_water:
            return
        self.high_water = now
        if self._saved is None or now - self._saved >= SAVE_EVERY:
            self._save()

    def reset(self, now: datetime, issued: datetime) -> bool:
        """Reset the mark to ``now`` if a licence issued after it proves it wrong.

        Only a clock judged as set back has a mark worth resetting; without that
        condition every check of a licence issued ahead of the local clock would
        reset (and log) again.
        """
        if self.high_water is None or issued <= self.high_water:
            return False
        if not self.judge(now).set_back:
            return False
        # Otherwise every later rollback would reset the mark again, for as long
        # as this licence stays installed.
        if self.reset_by is not None and issued <= self.reset_by:
            return False
        log.warning(
            "clock_mark_reset",
            old_mark=self.high_water.isoformat(),
            licence_issued=issued.isoformat(),
            now=now.isoformat(),
        )
        self.high_water = now
        self.reset_by = issued
        self._save()
        return True

    def _load(self) -> tuple[datetime | None, datetime | None]:
        try:
            data = json.loads(read_bounded(self.path, 4096, follow_symlinks=False))
            mark = datetime.fromisoformat(data["high_water"])
            reset_by = _aware(data.get("reset_by"))
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # A damaged mark cannot be trusted either way; starting afresh only
            # loses protection against a rollback that happened before the damage.
            log.warning("clock_mark_unreadable", path=str(self.path), reason=str(exc))
            return None, None
        return (mark if mark.tzinfo is not None else None), reset_by

    def _save(self) -> None:
        document = {
            "high_water": self.high_water.isoformat() if self.high_water else None,
            "reset_by": self.reset_by.isoformat() if self.reset_by else None,
        }
        write_atomic(self.path, json.dumps(document).encode() + b"\n", mode=0o600)
        self._saved = self.high_water


def _aware(text: str | None) -> datetime | None:
    """An aware time from the file, or None (absent in files of older versions)."""
    if text is None:
        return None
    when = datetime.fromisoformat(text)
    return when if when.tzinfo is not None else None
