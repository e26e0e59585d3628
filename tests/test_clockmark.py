"""The clock high-water mark on its own: judging, advancing, resetting, persisting."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from licensed.clockmark import FILE_NAME, ClockMark

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
TOLERANCE = 7200.0
HOUR = timedelta(hours=1)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path


def test_a_fresh_mark_judges_by_the_clock(state_dir: Path) -> None:
    """If no time has been seen yet, expiry is judged at the clock's time."""
    mark = ClockMark(state_dir, TOLERANCE)

    judged = mark.judge(NOW - 1000 * HOUR)

    assert (judged.at, judged.set_back) == (NOW - 1000 * HOUR, False)
    assert mark.high_water is None


def test_advancing_keeps_the_latest_time_and_persists_it(state_dir: Path) -> None:
    """If the clock moves on and back, the mark keeps the latest time, on disk too."""
    mark = ClockMark(state_dir, TOLERANCE)

    mark.advance(NOW)
    mark.advance(NOW - HOUR)

    assert mark.high_water == NOW
    assert ClockMark(state_dir, TOLERANCE).high_water == NOW


@pytest.mark.parametrize(
    ("back", "set_back"),
    [
        pytest.param(timedelta(hours=2), False, id="at-the-tolerance"),
        pytest.param(timedelta(hours=2, seconds=1), True, id="beyond-the-tolerance"),
        pytest.param(timedelta(days=1), True, id="a-day"),
    ],
)
def test_a_clock_set_back_beyond_the_tolerance_is_judged_at_the_mark(
    state_dir: Path, back: timedelta, set_back: bool
) -> None:
    """If the clock reads more than the tolerance before the mark, expiry is judged
    at the mark; up to the tolerance, at the clock."""
    mark = ClockMark(state_dir, TOLERANCE)
    mark.advance(NOW)

    judged = mark.judge(NOW - back)

    assert judged.set_back is set_back
    assert judged.at == (NOW if set_back else NOW - back)


def test_a_licence_issued_after_the_mark_resets_it_while_set_back(
    state_dir: Path,
) -> None:
    """If the clock is judged set back and a licence was issued after the mark, the
    mark resets to the clock's time, logged and persisted."""
    mark = ClockMark(state_dir, TOLERANCE)
    mark.advance(NOW + 1000 * HOUR)

    with capture_logs() as logs:
        reset = mark.reset(NOW, issued=NOW + 1001 * HOUR)

    assert reset is True
    assert mark.high_water == NOW
    assert not mark.judge(NOW).set_back
    assert [entry["event"] for entry in logs] == ["clock_mark_reset"]
    assert ClockMark(state_dir, TOLERANCE).high_water == NOW


@pytest.mark.parametrize(
    ("issued", "clock"),
    [
        pytest.param(NOW + 999 * HOUR, NOW, id="issued-before-the-mark"),
        pytest.param(NOW + 1001 * HOUR, NOW + 1000 * HOUR, id="clock-not-set-back"),
    ],
)
def test_the_mark_is_not_reset_without_cause(
    state_dir: Path, issued: datetime, clock: datetime
) -> None:
    """If the licence was issued before the mark, or the clock is not judged set
    back, the mark stays."""
    mark = ClockMark(state_dir, TOLERANCE)
    mark.advance(NOW + 1000 * HOUR)

    reset = mark.reset(clock, issued=issued)

    assert reset is False
    assert mark.high_water == NOW + 1000 * HOUR


def test_a_licence_resets_the_mark_only_once_even_across_restarts(
    state_dir: Path,
) -> None:
    """If the licence that reset the mark stays installed, a later rollback is
    judged at the mark again, also after the daemon restarted."""
    issued = NOW + 1001 * HOUR
    mark = ClockMark(state_dir, TOLERANCE)
    mark.advance(NOW + 1000 * HOUR)
    mark.reset(NOW, issued=issued)
    mark.advance(NOW + 24 * HOUR)
    restarted = ClockMark(state_dir, TOLERANCE)

    reset = restarted.reset(NOW, issued=issued)

    assert reset is False
    assert restarted.judge(NOW).set_back is True
    assert restarted.high_water == NOW + 24 * HOUR


def test_a_later_licence_can_reset_the_mark_again(state_dir: Path) -> None:
    """If a licence issued later still than the one that reset the mark comes, it
    may reset the mark once more."""
    mark = ClockMark(state_dir, TOLERANCE)
    mark.advance(NOW + 1000 * HOUR)
    mark.reset(NOW, issued=NOW + 1001 * HOUR)
    mark.advance(NOW + 2000 * HOUR)

    reset = mark.reset(NOW, issued=NOW + 2001 * HOUR)

    assert reset is True
    assert mark.high_water == NOW


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("not json", id="garbage"),
        pytest.param("{}", id="no-high-water"),
        pytest.param('{"high_water": "yesterday"}', id="not-a-time"),
    ],
)
def test_a_damaged_mark_file_starts_afresh_with_a_warning(
    state_dir: Path, content: str
) -> None:
    """If clock.json cannot be understood, the mark starts empty and says why."""
    (state_dir / FILE_NAME).write_text(content)

    with capture_logs() as logs:
        mark = ClockMark(state_dir, TOLERANCE)

    assert mark.high_water is None
    assert [entry["event"] for entry in logs] == ["clock_mark_unreadable"]


def test_a_mark_without_a_time_zone_is_not_trusted(state_dir: Path) -> None:
    """If clock.json holds a time without an offset, the mark starts empty."""
    (state_dir / FILE_NAME).write_text('{"high_water": "2026-12-03T12:00:00"}')

    mark = ClockMark(state_dir, TOLERANCE)

    assert mark.high_water is None


def test_a_mark_file_of_an_older_version_is_read(state_dir: Path) -> None:
    """If clock.json has no reset_by (written before it existed), the mark loads."""
    (state_dir / FILE_NAME).write_text(json.dumps({"high_water": NOW.isoformat()}))

    mark = ClockMark(state_dir, TOLERANCE)

    assert mark.high_water == NOW
    assert mark.reset_by is None
