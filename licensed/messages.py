"""The messages the front end shows, with their exact texts and audiences.

The texts of the expiry and user-limit messages are the product's own and stay
verbatim, including their spelling of "License". Each message has a stable ``id``
that front ends and scripts can key on; the text is for people.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date


class Audience(enum.StrEnum):
    """Who sees a message in the front end."""

    ADMINISTRATORS = "administrators"
    EVERYONE = "everyone"


@dataclass(frozen=True)
class Message:
    """One message for the front end."""

    id: str
    audience: Audience
    text: str


EXPIRED_TEXT = "Your License has expired"


def licence_ended(message_id: str) -> Message:
    """Shown to everyone while the system is not licensed."""
    return Message(message_id, Audience.EVERYONE, EXPIRED_TEXT)


def users_over_limit(licensed: int, actual: int, audience: Audience) -> Message:
    """The product's exceeded-limits message, verbatim."""
    text = (
        "You're exceeding the limits of the license for Assistant.\n"
        f"#User: licensed {licensed}/actual {actual}\n"
        "Please contact your vendor and obtain additional licenses or adjust the "
        "configuration to comply with the limitations."
    )
    return Message("users_over_licence", audience, text)


def trial_ending(valid_until: date, days_left: int) -> Message:
    """Warns administrators ahead of a trial's expiry."""
    text = (
        f"The trial licence is valid until {valid_until.isoformat()}: "
        f"{_days(days_left)} left. Please contact your vendor for a new licence."
    )
    return Message("trial_ending", Audience.ADMINISTRATORS, text)


def support_ending(valid_until: date, days_left: int) -> Message:
    """Warns administrators ahead of the end of the support contract."""
    text = (
        f"The support contract is valid until {valid_until.isoformat()}: "
        f"{_days(days_left)} left. Please contact your vendor to renew it."
    )
    return Message("support_ending", Audience.ADMINISTRATORS, text)


def support_ended(valid_until: date) -> Message:
    """Tells administrators the support contract has ended."""
    text = (
        f"The support contract ended on {valid_until.isoformat()}. "
        "Please contact your vendor to renew it."
    )
    return Message("support_ended", Audience.ADMINISTRATORS, text)


def _days(count: int) -> str:
    return "1 day" if count == 1 else f"{count} days"
