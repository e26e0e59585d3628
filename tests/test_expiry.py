"""The expiry rule: trials expire on the day after *Valid until* at 00:00:01 local.

The fixed examples pin real transitions from the system tz database (gaps and folds
at midnight); the properties sample every zone it holds over 1970-2037, with half
the draws steered onto days where the zone changes its offset, because those are
the only days on which the rule can go wrong.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from licensed.expiry import (
    EXPIRY_TIME,
    expiry_instant,
    first_instant_at,
    next_daily_check,
)

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

SECOND = timedelta(seconds=1)
ZONES = sorted(zoneinfo.available_timezones())
FIRST_DAY = date(1970, 1, 2)
LAST_DAY = date(2037, 12, 30)


def wall(instant: datetime, zone: ZoneInfo | timezone) -> datetime:
    """The naive local wall time of ``instant`` in ``zone``."""
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def utc(instant: datetime) -> datetime:
    """``instant`` in UTC.

    Python compares and subtracts two datetimes that share a tzinfo by their wall
    times, which is wrong across a fold or a gap; in UTC the arithmetic is exact.
    """
    return instant.astimezone(UTC)


def rule_wall(day: date) -> datetime:
    """The wall time the rule aims at on ``day``."""
    return datetime.combine(day, EXPIRY_TIME)


def transitions(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """The instants in [start, end) at which ``zone`` changes its UTC offset.

    Samples the offset every 30 minutes and bisects each change to the second;
    tz database transitions fall on whole seconds and are further apart than that.
    """
    found = []
    step = timedelta(minutes=30)
    low = start
    while low < end:
        high = low + step
        if low.astimezone(zone).utcoffset() != high.astimezone(zone).utcoffset():
            found.append(_bisect_transition(zone, low, high))
        low = high
    return found


def _bisect_transition(zone: ZoneInfo, low: datetime, high: datetime) -> datetime:
    before = low.astimezone(zone).utcoffset()
    while high - low > SECOND:
        middle = (low + (high - low) / 2).replace(microsecond=0)
        if middle.astimezone(zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high


def nothing_earlier_reaches(
    instant: datetime, target: datetime, zone: ZoneInfo
) -> bool:
    """Whether no instant in the 50 hours before ``instant`` shows ``target`` or later.

    Between transitions the wall time grows with the instant, so the latest wall
    time of each stretch is the one just before its end.
    """
    start = utc(instant) - timedelta(hours=50)
    ends = [*transitions(zone, start, utc(instant)), instant]
    return all(
        wall(utc(end) - timedelta(microseconds=1), zone) < target for end in ends
    )


def transition_days(zone: ZoneInfo, year: int) -> list[date]:
    """The local days around each offset change of ``zone`` in ``year``."""
    start = datetime(year, 1, 1, tzinfo=UTC)
    days: set[date] = set()
    step = timedelta(hours=12)
    instant = start
    while instant.year == year:
        if instant.astimezone(zone).utcoffset() != (
            (instant + step).astimezone(zone).utcoffset()
        ):
            local = instant.astimezone(zone).date()
            days.update(local + timedelta(days=n) for n in (-1, 0, 1, 2))
        instant += step
    return sorted(day for day in days if FIRST_DAY <= day <= LAST_DAY)


@st.composite
def zone_and_day(draw: st.DrawFn) -> tuple[ZoneInfo, date]:
    """A zone and a day, steered onto the zone's offset changes half the time."""
    zone = ZoneInfo(draw(st.sampled_from(ZONES)))
    day = draw(st.dates(FIRST_DAY, LAST_DAY))
    if draw(st.booleans()):
        candidates = transition_days(zone, day.year)
        if candidates:
            day = draw(st.sampled_from(candidates))
    return zone, day


@st.composite
def zone_and_instant(draw: st.DrawFn) -> tuple[ZoneInfo, datetime]:
    """A zone and an aware instant, often within a day of an offset change.

    The instant is in UTC or in the zone itself: callers pass either.
    """
    zone, day = draw(zone_and_day())
    seconds = draw(st.integers(0, 2 * 86400 - 1))
    micros = draw(st.sampled_from([0, 1, 500_000, 999_999]))
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    instant = start + timedelta(seconds=seconds, microseconds=micros)
    return zone, instant.astimezone(draw(st.sampled_from([UTC, zone])))


def test_a_normal_day_in_zurich_expires_at_one_second_past_midnight_cet() -> None:
    """If a trial is valid until 2027-01-31 in Zurich, it expires 00:00:01+01:00."""
    zone = ZoneInfo("Europe/Zurich")

    result = expiry_instant(date(2027, 1, 31), zone)

    assert result.isoformat() == "2027-02-01T00:00:01+01:00"


def test_a_summer_day_in_zurich_expires_at_one_second_past_midnight_cest() -> None:
    """If a trial ends in Zurich's summer, it expires at 00:00:01+02:00."""
    zone = ZoneInfo("Europe/Zurich")

    result = expiry_instant(date(2027, 7, 6), zone)

    assert result.isoformat() == "2027-07-07T00:00:01+02:00"


@pytest.mark.parametrize("zone", [UTC, ZoneInfo("UTC")], ids=["datetime.UTC", "UTC"])
def test_utc_expires_at_one_second_past_midnight(zone: timezone | ZoneInfo) -> None:
    """If the zone is UTC, a trial valid until 2027-01-31 expires 00:00:01Z."""
    result = expiry_instant(date(2027, 1, 31), zone)

    assert result == datetime(2027, 2, 1, 0, 0, 1, tzinfo=UTC)
    assert result.utcoffset() == timedelta(0)


def test_expiry_depends_on_the_zone_only_through_its_offset() -> None:
    """If the zone is 14 hours ahead of UTC, the instant is 14 hours earlier."""
    kiritimati = ZoneInfo("Pacific/Kiritimati")

    result = expiry_instant(date(2027, 1, 31), kiritimati)

    assert result.isoformat() == "2027-02-01T00:00:01+14:00"
    assert result == datetime(2027, 1, 31, 10, 0, 1, tzinfo=UTC)


def test_a_gap_at_midnight_expires_when_the_clock_jumps() -> None:
    """If 00:00:01 is skipped by DST (Sao Paulo 2018-11-04), expiry is at the jump."""
    zone = ZoneInfo("America/Sao_Paulo")

    result = expiry_instant(date(2018, 11, 3), zone)

    assert result.isoformat() == "2018-11-04T01:00:00-02:00"
    assert wall(utc(result) - SECOND, zone).isoformat() == "2018-11-03T23:59:59"


def test_a_skipped_day_expires_at_the_start_of_the_next_day() -> None:
    """If the next day is skipped (Apia 2011-12-30), expiry is the 31st at 00:00."""
    zone = ZoneInfo("Pacific/Apia")

    result = expiry_instant(date(2011, 12, 29), zone)

    assert result.isoformat() == "2011-12-31T00:00:00+14:00"
    assert wall(utc(result) - SECOND, zone).isoformat() == "2011-12-29T23:59:59"


def test_the_skipped_day_itself_expires_normally_the_day_after() -> None:
    """If Valid until is the skipped day (Apia 2011-12-30), expiry is 31 00:00:01."""
    zone = ZoneInfo("Pacific/Apia")

    result = expiry_instant(date(2011, 12, 30), zone)

    assert result.isoformat() == "2011-12-31T00:00:01+14:00"


def test_a_fold_at_midnight_expires_at_the_first_of_two_0001s() -> None:
    """If 00:00:01 happens twice (Havana 2026-11-01), the trial expires at the first."""
    zone = ZoneInfo("America/Havana")

    result = expiry_instant(date(2026, 10, 31), zone)

    assert result.isoformat() == "2026-11-01T00:00:01-04:00"
    second = datetime(2026, 11, 1, 0, 0, 1, fold=1, tzinfo=zone)
    assert utc(result) < utc(second)
    assert wall(second, zone) == wall(result, zone)


def test_a_fold_back_into_the_previous_day_expires_at_the_first_0001() -> None:
    """If the clock falls back from 00:01 to 22:01 (Goose Bay 1988), the first wins."""
    zone = ZoneInfo("America/Goose_Bay")

    result = expiry_instant(date(1988, 10, 29), zone)

    assert result.isoformat() == "1988-10-30T00:00:01-02:00"


def test_first_instant_at_returns_an_aware_time_in_the_zone() -> None:
    """If asked for a wall time, first_instant_at answers in the zone asked for."""
    zone = ZoneInfo("Europe/Zurich")

    result = first_instant_at(date(2027, 3, 28), time(2, 30), zone)

    assert result.tzinfo is zone
    assert result.isoformat() == "2027-03-28T03:00:00+02:00"


@PROPERTY
@given(zone_and_day())
def test_expiry_is_the_first_instant_showing_the_day_after_at_0001(
    case: tuple[ZoneInfo, date],
) -> None:
    """If any zone and day are given, expiry is the first instant at D+1 00:00:01+."""
    zone, valid_until = case
    target = rule_wall(valid_until + timedelta(days=1))

    result = expiry_instant(valid_until, zone)

    assert result.tzinfo is zone
    assert wall(result, zone) >= target
    assert wall(utc(result) - SECOND, zone) < target
    assert nothing_earlier_reaches(result, target, zone)


@PROPERTY
@given(zone_and_day())
def test_expiry_shows_exactly_0001_whenever_that_wall_time_exists(
    case: tuple[ZoneInfo, date],
) -> None:
    """If D+1 00:00:01 exists in the zone, the expiry instant shows exactly that."""
    zone, valid_until = case
    target = rule_wall(valid_until + timedelta(days=1))
    readings = [
        target.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)
    ]
    exists = any(wall(reading, zone) == target for reading in readings)

    result = expiry_instant(valid_until, zone)

    if exists:
        assert wall(result, zone) == target
        assert utc(result) == min(r for r in readings if wall(r, zone) == target)


@PROPERTY
@given(zone_and_instant())
def test_the_next_daily_check_is_the_next_rule_instant_after_now(
    case: tuple[ZoneInfo, datetime],
) -> None:
    """If now is any instant, the next check is the first rule instant after it."""
    zone, now = case

    result = next_daily_check(now, zone)

    assert utc(result) > utc(now)
    assert utc(result) - utc(now) <= timedelta(hours=50)
    today = wall(now, zone).date()
    rule_instants = [
        first_instant_at(today + timedelta(days=n), EXPIRY_TIME, zone)
        for n in range(-1, 4)
    ]
    assert result in rule_instants
    assert utc(result) == min(utc(r) for r in rule_instants if utc(r) > utc(now))


def test_the_daily_check_just_before_0001_is_one_second_away() -> None:
    """If now is 00:00:00 local, the next check is at 00:00:01 the same day."""
    zone = ZoneInfo("Europe/Zurich")
    now = datetime(2027, 2, 1, 0, 0, 0, tzinfo=zone)

    result = next_daily_check(now, zone)

    assert utc(result) - utc(now) == SECOND


def test_the_daily_check_at_0001_moves_to_the_next_day() -> None:
    """If now is exactly 00:00:01 local, the next check is a day later."""
    zone = ZoneInfo("Europe/Zurich")
    now = datetime(2027, 2, 1, 0, 0, 1, tzinfo=zone)

    result = next_daily_check(now, zone)

    assert result.isoformat() == "2027-02-02T00:00:01+01:00"


def test_the_daily_check_never_runs_twice_in_a_fold() -> None:
    """If now is between Havana's two 00:00:01s, the next check is the next day's."""
    zone = ZoneInfo("America/Havana")
    now = datetime(2026, 11, 1, 0, 0, 0, fold=1, tzinfo=zone)

    result = next_daily_check(now, zone)

    assert result.isoformat() == "2026-11-02T00:00:01-05:00"


def test_the_daily_check_in_a_repeated_evening_is_still_in_the_future() -> None:
    """If the clock fell back past midnight (Goose Bay 1988), the check is ahead."""
    zone = ZoneInfo("America/Goose_Bay")
    # 23:00 on 29 October, the second time round: 00:00:01 on the 30th is over.
    now = datetime(1988, 10, 30, 3, 0, tzinfo=UTC)

    result = next_daily_check(now, zone)

    assert result.isoformat() == "1988-10-31T00:00:01-04:00"


def test_the_daily_check_over_a_gap_fires_when_the_clock_jumps() -> None:
    """If tomorrow's 00:00:01 is skipped (Sao Paulo 2018-11-04), check at 01:00."""
    zone = ZoneInfo("America/Sao_Paulo")
    now = datetime(2018, 11, 3, 12, 0, tzinfo=zone)

    result = next_daily_check(now, zone)

    assert result.isoformat() == "2018-11-04T01:00:00-02:00"
