"""Replace the licence again and again and time what follows each replacement.

A run renames one of two prepared licence files over the installed one (an
atomic replace, as ``licensectl install`` does) and measures, from just before the
rename:

* until the status file shows the new licence (P1), if a status is watched;
* until systemd reports SMD inactive (P1b), on runs to a licence that stops the
  components;
* until systemd reports SMD active again, on runs back to one that runs them.

Then it waits until whoever enforces (the daemon or the peer's script) has
finished, so that runs never overlap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.probes import StatusWatch, UnitWatch

SMD = "assistant-smd.service"
SFB = "assistant-core-sfb.service"
STOPPED = frozenset({"inactive", "failed"})
ACTIVE = frozenset({"active"})


@dataclass(frozen=True)
class Target:
    """One licence the runs switch to, and how a status document shows it."""

    name: str
    data: bytes
    serial: str
    state: str
    components_run: bool

    def shown_in(self, document: Mapping[str, Any]) -> bool:
        licence = document.get("licence") or {}
        return bool(
            document.get("state") == self.state and licence.get("serial") == self.serial
        )


@dataclass
class Switching:
    """The samples of one series of runs, in seconds."""

    published: list[float] = field(default_factory=list)
    stopped: list[float] = field(default_factory=list)
    started: list[float] = field(default_factory=list)


Settle = Callable[[Target, float, Mapping[str, Any] | None], None]


@dataclass
class Switcher:
    """Replaces ``licence_file`` through ``staged`` and observes the effects."""

    licence_file: Path
    staged: Path
    status: StatusWatch | None
    units: UnitWatch
    settle: Settle

    def run(self, targets: tuple[Target, Target], runs: int) -> Switching:
        """Alternate between ``targets``; the first of them must be installed."""
        result = Switching()
        previous = targets[0]
        for number in range(1, runs + 1):
            target = targets[number % 2]
            self._one(previous, target, result)
            previous = target
        return result

    def _one(self, previous: Target, target: Target, result: Switching) -> None:
        self.staged.write_bytes(target.data)
        if self.status is not None:
            self.status.drain()

        start = time.perf_counter()
        self.staged.replace(self.licence_file)

        document = None
        if self.status is not None:
            at, document = self.status.wait_for(target.shown_in)
            result.published.append(at - start)
        if previous.components_run and not target.components_run:
            change = self.units.wait_for(SMD, STOPPED, start)
            result.stopped.append(change.at - start)
        elif target.components_run and not previous.components_run:
            change = self.units.wait_for(SMD, ACTIVE, start)
            result.started.append(change.at - start)
        self.settle(target, start, document)
