"""The evaluation: every state, the expiry instant, user counts and warnings.

``evaluate`` is pure, so these tests hand it plain licences, instants and counts.
The product's own texts are asserted verbatim.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from licensed.decision import (
    Decision,
    Missing,
    Rejected,
    State,
    Warnings,
    days_left,
    evaluate,
)
from licensed.expiry import expiry_instant
from licensed.licence import Licence
from licensed.messages import EXPIRED_TEXT, Audience, Message
from tests.harness.licences import make_licence, make_trial

PROPERTY = settings(max_examples=200, deadline=None)

ZURICH = ZoneInfo("Europe/Zurich")
NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)
TRIAL_END = date(2027, 1, 31)
EXPIRES = datetime(2027, 1, 31, 23, 0, 1, tzinfo=UTC)  # 2027-02-01 00:00:01+01:00
MICROSECOND = timedelta(microseconds=1)


def ids(decision: Decision) -> list[str]:
    return [message.id for message in decision.messages]


def only(decision: Decision, message_id: str) -> Message:
    found = [message for message in decision.messages if message.id == message_id]
    assert len(found) == 1, ids(decision)
    return found[0]


def noon_with_days_left(valid_until: date, left: int) -> datetime:
    """Noon in Zurich on the day that leaves ``left`` days through ``valid_until``."""
    day = valid_until - timedelta(days=left - 1)
    return datetime(day.year, day.month, day.day, 12, tzinfo=ZURICH)


# -- states -----------------------------------------------------------------------


def test_no_licence_is_missing_and_stops_components() -> None:
    """If no licence is installed, the state is missing and components stop."""
    decision = evaluate(Missing(), NOW, ZURICH)

    assert decision.state is State.MISSING
    assert decision.components_run is False
    assert decision.expires_at is None
    assert decision.reason == "no licence is installed"
    assert decision.messages == (
        Message("licence_missing", Audience.EVERYONE, "Your License has expired"),
    )


def test_a_rejected_licence_is_invalid_with_its_reason() -> None:
    """If the installed licence fails validation, the state is invalid, with why."""
    decision = evaluate(Rejected("the signature does not match"), NOW, ZURICH)

    assert decision.state is State.INVALID
    assert decision.components_run is False
    assert "the signature does not match" in decision.reason
    assert decision.messages == (
        Message("licence_invalid", Audience.EVERYONE, EXPIRED_TEXT),
    )


def test_a_full_licence_is_licensed_forever() -> None:
    """If the licence is full, the state is licensed with no expiry, decades on."""
    licence = make_licence()

    decision = evaluate(licence, datetime(2090, 1, 1, tzinfo=UTC), ZURICH)

    assert decision.state is State.LICENSED
    assert decision.components_run is True
    assert decision.expires_at is None
    assert decision.reason == "full licence AST-0001"


def test_a_running_trial_is_licensed_until_its_expiry() -> None:
    """If a trial has not expired, the state is licensed and names the instant."""
    decision = evaluate(make_trial(TRIAL_END), NOW, ZURICH)

    assert decision.state is State.LICENSED
    assert decision.components_run is True
    assert decision.expires_at == EXPIRES
    assert "2027-02-01T00:00:01+01:00" in decision.reason


def test_a_trial_is_expired_at_exactly_its_expiry_instant() -> None:
    """If now equals the expiry instant, the trial has expired."""
    decision = evaluate(make_trial(TRIAL_END), EXPIRES, ZURICH)

    assert decision.state is State.EXPIRED
    assert decision.components_run is False
    assert decision.expires_at == EXPIRES
    assert decision.messages == (
        Message("licence_expired", Audience.EVERYONE, "Your License has expired"),
    )
    assert "AST-T001" in decision.reason


def test_a_trial_is_licensed_one_microsecond_before_expiry() -> None:
    """If now is one microsecond before the expiry instant, it is still licensed."""
    decision = evaluate(make_trial(TRIAL_END), EXPIRES - MICROSECOND, ZURICH)

    assert decision.state is State.LICENSED
    assert decision.components_run is True


def test_expiry_is_judged_in_the_configured_zone() -> None:
    """If the zone is 14 hours ahead, the same instant is already expired there."""
    kiritimati = ZoneInfo("Pacific/Kiritimati")
    now = datetime(2027, 1, 31, 10, 0, 1, tzinfo=UTC)  # 00:00:01 on 1 Feb there

    there = evaluate(make_trial(TRIAL_END), now, kiritimati)
    here = evaluate(make_trial(TRIAL_END), now, ZURICH)

    assert there.state is State.EXPIRED
    assert here.state is State.LICENSED


def test_the_clock_going_back_in_a_fold_does_not_revive_a_trial() -> None:
    """If now is Havana's second 00:00:00.5, after the first 00:00:01, it is expired."""
    havana = ZoneInfo("America/Havana")
    trial = make_trial(date(2026, 10, 31))
    now = datetime(2026, 11, 1, 0, 0, 0, 500_000, fold=1, tzinfo=havana)
    assert now.astimezone(UTC) > expiry_instant(date(2026, 10, 31), havana)

    decision = evaluate(trial, now, havana)

    assert decision.state is State.EXPIRED


def test_the_first_0001_in_a_fold_expires_whatever_zone_now_is_in() -> None:
    """If now is given in the zone itself, the instant still decides, not the wall."""
    havana = ZoneInfo("America/Havana")
    trial = make_trial(date(2026, 10, 31))
    before = datetime(2026, 11, 1, 0, 0, 0, tzinfo=havana)

    decision = evaluate(trial, before, havana)

    assert decision.state is State.LICENSED


# -- users ------------------------------------------------------------------------


def exceeded_text(licensed: int, actual: int) -> str:
    return (
        "You're exceeding the limits of the license for Assistant.\n"
        f"#User: licensed {licensed}/actual {actual}\n"
        "Please contact your vendor and obtain additional licenses or adjust the "
        "configuration to comply with the limitations."
    )


@pytest.mark.parametrize("users", [None, 0, 1, 99, 100])
def test_users_within_the_licence_add_no_message(users: int | None) -> None:
    """If the user count is unknown or at most the licensed 100, nothing is said."""
    decision = evaluate(make_licence(), NOW, ZURICH, users=users)

    assert decision.messages == ()


@pytest.mark.parametrize(
    ("users", "audience"),
    [
        (101, Audience.ADMINISTRATORS),
        (120, Audience.ADMINISTRATORS),
        (121, Audience.EVERYONE),
        (10_000, Audience.EVERYONE),
    ],
)
def test_users_over_the_licence_are_told_verbatim(
    users: int, audience: Audience
) -> None:
    """If users exceed 100, admins are told; beyond 120 escalation, everyone is."""
    decision = evaluate(make_licence(), NOW, ZURICH, users=users)

    assert decision.messages == (
        Message("users_over_licence", audience, exceeded_text(100, users)),
    )
    assert decision.state is State.LICENSED
    assert decision.components_run is True


def test_the_exceeded_message_has_three_lines() -> None:
    """If users exceed the licence, the text is the product's three lines."""
    decision = evaluate(make_licence(), NOW, ZURICH, users=101)

    lines = only(decision, "users_over_licence").text.split("\n")

    assert lines == [
        "You're exceeding the limits of the license for Assistant.",
        "#User: licensed 100/actual 101",
        "Please contact your vendor and obtain additional licenses or adjust the "
        "configuration to comply with the limitations.",
    ]


def test_escalation_equal_to_the_licence_tells_everyone_at_once() -> None:
    """If over_licence_limit equals licensed, one user too many tells everyone."""
    licence = make_licence(users=10, over_licence_limit=10)

    decision = evaluate(licence, NOW, ZURICH, users=11)

    assert only(decision, "users_over_licence").audience is Audience.EVERYONE


def test_users_are_not_reported_when_not_licensed() -> None:
    """If the trial expired, the user count adds nothing to 'expired'."""
    decision = evaluate(make_trial(TRIAL_END), EXPIRES, ZURICH, users=500)

    assert ids(decision) == ["licence_expired"]


@st.composite
def readings(draw: st.DrawFn) -> Licence | Missing | Rejected:
    users = draw(st.integers(0, 1000))
    valid_until = draw(st.dates(date(2026, 12, 1), date(2027, 3, 1)))
    choices: list[Licence | Missing | Rejected] = [
        Missing(),
        Rejected("damaged"),
        make_licence(users=users, over_licence_limit=users * 2),
        make_trial(valid_until, users=users, over_licence_limit=users + 5),
    ]
    return draw(st.sampled_from(choices))


@PROPERTY
@given(
    reading=readings(),
    now=st.integers(0, 120 * 86400).map(
        lambda s: datetime(2026, 12, 1, tzinfo=UTC) + timedelta(seconds=s)
    ),
    users=st.integers(0, 10_000),
)
def test_the_user_count_never_changes_the_state(
    reading: Licence | Missing | Rejected, now: datetime, users: int
) -> None:
    """If only the user count differs, state, components and expiry are the same."""
    uncounted = evaluate(reading, now, ZURICH)

    counted = evaluate(reading, now, ZURICH, users=users)

    assert counted.state is uncounted.state
    assert counted.components_run is uncounted.components_run
    assert counted.expires_at == uncounted.expires_at
    assert counted.components_run is (counted.state is State.LICENSED)
    assert set(uncounted.messages) <= set(counted.messages)


# -- warnings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "text"),
    [
        (15, None),
        (14, "14 days left"),
        (4, "4 days left"),
        (3, "3 days left"),
        (2, "2 days left"),
        (1, "1 day left"),
    ],
)
def test_a_trial_warns_administrators_from_14_days_ahead(
    left: int, text: str | None
) -> None:
    """If a trial has 14 days or fewer left, administrators are warned daily."""
    now = noon_with_days_left(TRIAL_END, left)
    licence = make_trial(TRIAL_END)

    decision = evaluate(licence, now, ZURICH)

    assert decision.state is State.LICENSED
    if text is None:
        assert "trial_ending" not in ids(decision)
    else:
        message = only(decision, "trial_ending")
        assert message.audience is Audience.ADMINISTRATORS
        assert message.text == (
            f"The trial licence is valid until 2027-01-31: {text}. "
            "Please contact your vendor for a new licence."
        )


def test_the_last_second_of_a_trial_still_warns_with_one_day() -> None:
    """If it is 00:00:00 after the last valid day, the trial runs and says 1 day."""
    now = datetime(2027, 2, 1, 0, 0, 0, tzinfo=ZURICH)

    decision = evaluate(make_trial(TRIAL_END), now, ZURICH)

    assert decision.state is State.LICENSED
    assert "1 day left" in only(decision, "trial_ending").text


def test_warning_thresholds_are_configurable() -> None:
    """If trial warnings start at 30 days, 20 days left warns; 31 does not."""
    warnings = Warnings(trial_days=(30,), support_days=())
    licence = make_trial(TRIAL_END)

    at_20 = evaluate(
        licence, noon_with_days_left(TRIAL_END, 20), ZURICH, None, warnings
    )
    at_31 = evaluate(
        licence, noon_with_days_left(TRIAL_END, 31), ZURICH, None, warnings
    )

    assert "trial_ending" in ids(at_20)
    assert "trial_ending" not in ids(at_31)


def test_a_full_licence_never_warns_about_expiry() -> None:
    """If the licence is full, no trial warning appears."""
    decision = evaluate(make_licence(), NOW, ZURICH)

    assert "trial_ending" not in ids(decision)


@pytest.mark.parametrize(
    ("left", "message_id", "text"),
    [
        (31, None, None),
        (
            30,
            "support_ending",
            "The support contract is valid until 2027-12-31: 30 days left. "
            "Please contact your vendor to renew it.",
        ),
        (
            1,
            "support_ending",
            "The support contract is valid until 2027-12-31: 1 day left. "
            "Please contact your vendor to renew it.",
        ),
        (
            0,
            "support_ended",
            "The support contract ended on 2027-12-31. "
            "Please contact your vendor to renew it.",
        ),
        (
            -1,
            "support_ended",
            "The support contract ended on 2027-12-31. "
            "Please contact your vendor to renew it.",
        ),
    ],
)
def test_support_warns_30_days_ahead_and_after_it_ended(
    left: int, message_id: str | None, text: str | None
) -> None:
    """If support ends within 30 days or has ended, administrators are told."""
    licence = make_licence()
    now = noon_with_days_left(date(2027, 12, 31), left)

    decision = evaluate(licence, now, ZURICH)

    support = [m for m in decision.messages if m.id.startswith("support_")]
    if message_id is None:
        assert support == []
    else:
        assert support == [Message(message_id, Audience.ADMINISTRATORS, str(text))]
    assert decision.state is State.LICENSED
    assert decision.components_run is True


def test_days_left_counts_the_last_valid_day_as_one() -> None:
    """If today is the last valid day, one day is left; the day after, zero."""
    assert days_left(date(2027, 1, 31), date(2027, 1, 31)) == 1
    assert days_left(date(2027, 1, 31), date(2027, 2, 1)) == 0
    assert days_left(date(2027, 1, 31), date(2027, 1, 18)) == 14
