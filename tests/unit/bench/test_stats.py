"""Statistics code: known inputs → known outputs (numpy's default percentile definition)."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.stats import (
    bootstrap_median_ci,
    bootstrap_ratio_ci,
    median,
    percentile,
    ratio,
    summarize,
)


def test_known_values() -> None:
    data = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert median(data) == 3.0
    assert percentile(data, 0) == 1.0 and percentile(data, 100) == 10.0
    assert percentile(data, 25) == 2.0
    assert percentile(data, 90) == pytest.approx(7.6)  # numpy.percentile(data, 90)
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    s = summarize(data)
    assert (s.n, s.median, s.minimum, s.maximum, s.mean) == (5, 3.0, 1.0, 10.0, 4.0)
    assert s.mad == 1.0  # |x - 3| = 2,1,0,1,7 → median 1
    assert s.p5 == pytest.approx(1.2) and s.p95 == pytest.approx(8.8)


def test_ratio_and_errors() -> None:
    assert ratio(10, 4) == 2.5
    assert math.isnan(ratio(1, 0))
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        percentile([1.0], 101)


@given(st.lists(st.floats(-1e9, 1e9), min_size=1, max_size=200))
def test_median_matches_statistics_module(data: list[float]) -> None:
    assert median(data) == pytest.approx(statistics.median(data), rel=1e-9, abs=1e-6)
    s = summarize(data)
    assert s.minimum <= s.p5 <= s.median <= s.p95 <= s.maximum


def test_p99_known_value() -> None:
    data = [float(i) for i in range(1, 101)]  # 1..100
    assert summarize(data).p99 == pytest.approx(99.01)  # numpy.percentile(data, 99)


def test_bootstrap_median_ci_is_reproducible_and_brackets_the_median() -> None:
    data = [10.0, 11.0, 12.0, 13.0, 14.0, 100.0, 9.0, 12.5, 11.5]
    a = bootstrap_median_ci(data, random.Random(7).randrange)
    b = bootstrap_median_ci(data, random.Random(7).randrange)
    assert a == b
    assert a[0] <= median(data) <= a[1]
    assert min(data) <= a[0] and a[1] <= max(data)
    constant = bootstrap_median_ci([5.0] * 10, random.Random(1).randrange)
    assert constant == (5.0, 5.0)


def test_bootstrap_ratio_ci() -> None:
    old = [100.0 + i for i in range(20)]
    new = [50.0 + i / 2 for i in range(20)]
    lo, hi = bootstrap_ratio_ci(new, old, random.Random(3).randrange)
    assert lo <= 0.5 <= hi + 1e-9 and hi < 1
    same = bootstrap_ratio_ci(old, old, random.Random(3).randrange)
    assert same[0] <= 1.0 <= same[1]
