"""Pure. Robust summary statistics for benchmark samples (medians, percentiles, ratios).

Machines here are shared and noisy, so reports lead with the median and the spread
(p5–p95, MAD) rather than the mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "Summary",
    "bootstrap_median_ci",
    "bootstrap_ratio_ci",
    "median",
    "percentile",
    "ratio",
    "summarize",
]


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
    p99: float
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
            "p99": self.p99,
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
        p99=percentile(samples, 99),
        mad=median([abs(s - mid) for s in samples]),
        minimum=min(samples),
        maximum=max(samples),
        mean=sum(samples) / len(samples),
    )


def bootstrap_median_ci(
    samples: Sequence[float],
    draw: Callable[[int], int],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median.

    ``draw(n)`` returns a uniform integer in [0, n): randomness is a parameter so results are
    reproducible (pass ``random.Random(seed).randrange``).
    """
    if not samples:
        raise ValueError("bootstrap of no samples")
    n = len(samples)
    medians = [median([samples[draw(n)] for _ in range(n)]) for _ in range(resamples)]
    tail = (1 - confidence) / 2 * 100
    return percentile(medians, tail), percentile(medians, 100 - tail)


def bootstrap_ratio_ci(
    new: Sequence[float],
    old: Sequence[float],
    draw: Callable[[int], int],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Bootstrap CI of median(new) / median(old), each side resampled independently."""
    if not new or not old:
        raise ValueError("bootstrap of no samples")
    ratios = []
    for _ in range(resamples):
        a = median([new[draw(len(new))] for _ in range(len(new))])
        b = median([old[draw(len(old))] for _ in range(len(old))])
        ratios.append(ratio(a, b))
    tail = (1 - confidence) / 2 * 100
    clean = [r for r in ratios if not math.isnan(r)]
    if not clean:
        return math.nan, math.nan
    return percentile(clean, tail), percentile(clean, 100 - tail)
