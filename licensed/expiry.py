"""The expiry rule: when a trial licence stops being valid.

A trial is valid through its *Valid until* date and expires on the next day at
00:00:01 local server time. "Local" is the configured zone, so the instant depends
on the licence and the zone only, never on the clock of the moment: it is a pure
function, and the daemon schedules against its result.

Wall-clock times do not always exist exactly once:

* In a gap (daylight-saving time starting at midnight, as in America/Sao_Paulo on
  2018-11-04, or a day skipped entirely, as in Pacific/Apia on 2011-12-30) 00:00:01
  never happens. The rule takes the first instant whose local time is at or after
  00:00:01, which is the instant the clock jumps.
* In a fold (the clocks going back across midnight) 00:00:01 happens twice. The
  rule takes the first.

The daemon's daily check at 00:00:01 uses the same rule, which is why it never skips
a day or runs twice on one.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo

EXPIRY_TIME = time(0, 0, 1)
"""Local wall time at which a trial expires, on the day after *Valid until*."""


def expiry_instant(valid_until: date, zone: tzinfo) -> datetime:
    """The instant a trial valid through ``valid_until`` expires, in ``zone``."""
    return first_instant_at(valid_until + timedelta(days=1), EXPIRY_TIME, zone)


def next_daily_check(now: datetime, zone: tzinfo) -> datetime:
    """The first 00:00:01 local (by the expiry rule) strictly after ``now``."""
    # Compare in UTC: two datetimes sharing a tzinfo compare by wall time, which
    # is wrong inside a fold when ``now`` is given in ``zone``. And do not stop at
    # tomorrow: after the clock falls back across midnight (America/Goose_Bay,
    # 1988-10-30, 00:01 -> 22:01) today is the previous day again while
    # tomorrow's 00:00:01 is already over. Rule instants grow day by day, so the
    # loop ends within three days.
    instant = now.astimezone(UTC)
    day = now.astimezone(zone).date()
    while True:
        candidate = first_instant_at(day, EXPIRY_TIME, zone)
        if candidate.astimezone(UTC) > instant:
            return candidate
        day += timedelta(days=1)


def first_instant_at(day: date, wall: time, zone: tzinfo) -> datetime:
    """The first instant whose local time in ``zone`` is at or after ``day`` ``wall``.

    The result is an aware datetime in ``zone``.
    """
    target = datetime.combine(day, wall)
    candidates = sorted(
        target.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)
    )
    exact = [c for c in candidates if _local_wall(c, zone) == target]
    if exact:
        return exact[0].astimezone(zone)
    return _first_reaching(target, candidates[0], candidates[-1], zone)


def _first_reaching(
    target: datetime, low: datetime, high: datetime, zone: tzinfo
) -> datetime:
    """Binary search, to the second, for the first instant at or after ``target``.

    ``target`` falls in a gap; the two readings of it bracket the transition, and
    local time only moves forward across a gap, so the search is well founded.
    """
    if _local_wall(low, zone) >= target:
        return low.astimezone(zone)
    # Invariant: local(low) < target <= local(high).
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if _local_wall(middle, zone) >= target:
            high = middle
        else:
            low = middle
    return high.astimezone(zone)


def _local_wall(instant: datetime, zone: tzinfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)
