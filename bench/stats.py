"""Pure. Robust summary statistics for benchmark samples (medians, percentiles, ratios).

Machines here are shared and noisy, so reports lead with the median and the spread
(p5–p95, MAD) rather than the mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Summary", "median", "percentile", "ratio", "summarize"]


def percentile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (the "R-7" / numpy default), ``q`` in [0, 100]."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0…100")
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 50)


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is not positive."""
    return numerator / denominator if denominator > 0 else math.nan


@dataclass(frozen=True, slots=True)
class Summary:
    """Median, spread and count of a set of samples (all in the samples' unit)."""

    n: int
    median: float
    p5: float
    p95: float
    mad: float
    minimum: float
    maximum: float
    mean: float

    def to_json(self) -> dict[str, float | int]:
        return {
            "n": self.n,
            "median": self.median,
            "p5": self.p5,
            "p95": self.p95,
            "mad": self.mad,
            "min": self.minimum,
            "max": self.maximum,
            "mean": self.mean,
        }


def summarize(samples: Sequence[float]) -> Summary:
    """Summary of ``samples``; raises ValueError when empty."""
    if not samples:
        raise ValueError("summary of no samples")
    mid = median(samples)
    return Summary(
        n=len(samples),
        median=mid,
        p5=percentile(samples, 5),
        p95=percentile(samples, 95),
        mad=median([abs(s - mid) for s in samples]),
        minimum=min(samples),
        maximum=max(samples),
        mean=sum(samples) / len(samples),
    )
