"""The evaluation: from a licence, the time and the user count to a decision.

``evaluate`` is a pure function. It reads no file and no clock, so every branch is
testable with plain values, and the daemon, ``licensectl show`` and the tests all
reach the same decision from the same inputs.

The decision says which state the system is in, why, whether the licensed
components (SMD and Core's SfB function) may run, and which messages the front end
shows. Only the state decides the components: the user count and the warnings only
ever add messages.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo

from licensed import messages
from licensed.expiry import expiry_instant
from licensed.licence import Licence
from licensed.messages import Audience, Message


class State(enum.StrEnum):
    """The licence state of the system."""

    LICENSED = "licensed"
    EXPIRED = "expired"
    MISSING = "missing"
    INVALID = "invalid"


@dataclass(frozen=True)
class Missing:
    """No licence is installed."""


@dataclass(frozen=True)
class Rejected:
    """A licence is installed but fails validation."""

    reason: str


LicenceReading = Licence | Missing | Rejected
"""What reading the installed licence gave."""


@dataclass(frozen=True)
class Warnings:
    """How many days ahead administrators are warned."""

    trial_days: Sequence[int] = (14, 3)
    support_days: Sequence[int] = (30,)


@dataclass(frozen=True)
class Decision:
    """What the system must look like now, and what to tell people."""

    state: State
    reason: str
    components_run: bool
    expires_at: datetime | None
    messages: tuple[Message, ...] = field(default=())


def evaluate(
    reading: LicenceReading,
    now: datetime,
    zone: tzinfo,
    users: int | None = None,
    warnings: Warnings | None = None,
) -> Decision:
    """Decide the licence state at ``now`` (aware) in ``zone``."""
    if isinstance(reading, Missing):
        return _unlicensed(State.MISSING, "no licence is installed")
    if isinstance(reading, Rejected):
        return _unlicensed(State.INVALID, f"installed licence: {reading.reason}")

    expires_at = (
        expiry_instant(reading.valid_until, zone)
        if reading.valid_until is not None
        else None
    )
    # Compare in UTC: two datetimes sharing a tzinfo compare by wall time, so with
    # ``now`` given in ``zone`` the repeated hour of a fold (Havana, 2026-11-01)
    # read as before 00:00:01 again and licensed an expired trial for an hour.
    if expires_at is not None and now.astimezone(UTC) >= expires_at.astimezone(UTC):
        decision = _unlicensed(
            State.EXPIRED,
            f"trial licence {reading.serial} expired at {expires_at.isoformat()}",
        )
        return Decision(
            decision.state, decision.reason, False, expires_at, decision.messages
        )

    today = now.astimezone(zone).date()
    notes = (
        *_user_messages(reading, users),
        *_warning_messages(reading, today, warnings or Warnings()),
    )
    return Decision(
        state=State.LICENSED,
        reason=_licensed_reason(reading, expires_at),
        components_run=True,
        expires_at=expires_at,
        messages=notes,
    )


def days_left(valid_until: date, today: date) -> int:
    """Days of validity left, counting today: 1 on the last valid day."""
    return (valid_until - today).days + 1


def _unlicensed(state: State, reason: str) -> Decision:
    message = messages.licence_ended(f"licence_{state.value}")
    return Decision(state, reason, False, None, (message,))


def _licensed_reason(licence: Licence, expires_at: datetime | None) -> str:
    if expires_at is None:
        return f"full licence {licence.serial}"
    return f"trial licence {licence.serial} expires at {expires_at.isoformat()}"


def _user_messages(licence: Licence, users: int | None) -> tuple[Message, ...]:
    if users is None or users <= licence.users:
        return ()
    audience = (
        Audience.EVERYONE
        if users > licence.over_licence_limit
        else Audience.ADMINISTRATORS
    )
    return (messages.users_over_limit(licence.users, users, audience),)


def _warning_messages(
    licence: Licence, today: date, warnings: Warnings
) -> tuple[Message, ...]:
    found: list[Message] = []
    if licence.valid_until is not None:
        # Between midnight and 00:00:01 after the last valid day the trial still
        # runs, and "0 days left" read as already over: it is the last day yet.
        left = max(days_left(licence.valid_until, today), 1)
        if _within(left, warnings.trial_days):
            found.append(messages.trial_ending(licence.valid_until, left))

    support_end = licence.support.valid_until
    left = days_left(support_end, today)
    if left <= 0:
        found.append(messages.support_ended(support_end))
    elif _within(left, warnings.support_days):
        found.append(messages.support_ending(support_end, left))
    return tuple(found)


def _within(left: int, thresholds: Sequence[int]) -> bool:
    return any(left <= days for days in thresholds)
