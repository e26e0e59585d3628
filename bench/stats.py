"""Summaries of timing samples, and how durations are shown in the table."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """The median and 99th percentile of a list of samples, in seconds."""

    median: float
    p99: float
    runs: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        if not samples:
            raise ValueError("no samples to summarise; was the figure measured?")
        ordered = sorted(samples)
        return cls(statistics.median(ordered), p99(ordered), len(ordered))


def p99(ordered: Sequence[float]) -> float:
    """The nearest-rank 99th percentile; with fewer than 100 samples, the largest."""
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


def duration(seconds: float | None) -> str:
    """A duration in the unit that keeps three significant figures readable."""
    if seconds is None:
        return "-"
    if abs(seconds) < 0.001:
        return f"{seconds * 1e3:.3f} ms"
    if abs(seconds) < 1:
        return f"{seconds * 1e3:.2f} ms"
    if abs(seconds) < 120:
        return f"{seconds:.2f} s"
    if abs(seconds) < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
