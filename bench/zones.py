"""Made-up time zones whose midnight is a few seconds from now, on the real clock.

To time the expiry instant without faking the clock, the benchmark compiles
(``zic``) a zone whose UTC offset, to the second, puts 00:00:01 local time at a
chosen real instant; a trial that was valid through the day before then expires at
that instant. A daemon given ``PYTHONTZPATH`` pointing at the compiled folder and
that zone in its configuration meets its expiry on the real clock.

The ``gap`` variant reproduces America/Havana on 2027-03-14: the clocks go from
00:00 straight to 01:00, 00:00:01 never happens, and the expiry instant is the
transition itself.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from licensed.expiry import expiry_instant

_DAY = 86_400
_HALF_DAY = _DAY // 2


@dataclass(frozen=True)
class MadeUpZone:
    """A compiled zone, and the trial whose expiry instant is ``instant``."""

    folder: Path
    name: str
    valid_until: date
    instant: datetime


def midnight_zone(folder: Path, name: str, instant: int, gap: bool) -> MadeUpZone:
    """Compile zone ``name`` into ``folder`` so that a trial expires at ``instant``.

    ``instant`` is in whole seconds since the epoch.
    """
    at = datetime.fromtimestamp(instant, UTC)
    local_time = 0 if gap else 1  # local 00:00:00 before the jump, or 00:00:01
    offset = _wrap((local_time - instant) % _DAY)
    source = folder / f"{name.replace('/', '-')}.zic"
    source.write_text(_source(name, offset, at, gap))
    subprocess.run(["zic", "-d", str(folder), str(source)], check=True)

    local_day = (at + timedelta(seconds=offset)).date()
    zone = made_up(folder, name)
    expected = expiry_instant(local_day - timedelta(days=1), zone)
    if expected != at:
        raise RuntimeError(
            f"zone {name} puts the expiry instant at {expected}, not {at}; "
            f"check zic's version and the offset {offset} s"
        )
    return MadeUpZone(folder, name, local_day - timedelta(days=1), at)


def made_up(folder: Path, name: str) -> ZoneInfo:
    with (folder / name).open("rb") as compiled:
        return ZoneInfo.from_file(compiled, key=name)


def _wrap(offset: int) -> int:
    return offset - _DAY if offset > _HALF_DAY else offset


def _source(name: str, offset: int, at: datetime, gap: bool) -> str:
    if not gap:
        return f"Zone {name} {_hms(offset)} - BENS\n"
    until = f"{at:%Y %b %d %H:%M:%S}u"
    return (
        f"Zone {name} {_hms(offset)} - BENS {until}\n    {_hms(offset + 3600)} - BEND\n"
    )


def _hms(seconds: int) -> str:
    sign = "-" if seconds < 0 else ""
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours}:{minutes:02d}:{secs:02d}"
