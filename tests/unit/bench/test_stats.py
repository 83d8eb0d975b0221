"""Statistics code: known inputs → known outputs (numpy's default percentile definition)."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.report import render_markdown
from bench.stats import median, percentile, ratio, summarize


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


def test_markdown_report_renders_every_section() -> None:
    bench = {
        "kernel": "native",
        "raw_aes_ns_median": 500.0,
        "aka_ns_median": 2500.0,
        "aka_vs_raw_aes": 5.0,
        "usim_ns_median": 9000.0,
        "usim_vs_raw_aes": 18.0,
        "av_per_s": 300000.0,
        "av_per_s_batch1": 100000.0,
        "batch": 5,
        "subscribers": 10000,
    }
    data = {
        "generated": "2026-01-01T00:00:00+00:00",
        "ok": False,
        "verdict": "1/2 conformance runs passed",
        "environment": {
            "trelab": "0",
            "cpu": "cpu",
            "cores": 2,
            "python": "3.11",
            "openssl": "OpenSSL 3",
        },
        "lab": {
            "swtpm": {"state": "running", "pid": 7},
            "tcti": "swtpm:port=1",
            "ek_chain_verified": True,
            "ca_bundle": "/x/ca.pem",
            "pcscd": {"state": "running"},
            "readers": ["Virtual PCD 00 00"],
        },
        "conformance": {
            "total": 2,
            "passed": 1,
            "outputs_checked": 14,
            "results": [
                {
                    "algorithm": "milenage",
                    "implementation": "python",
                    "set": "1",
                    "checked": 7,
                    "passed": True,
                    "mismatches": [],
                },
                {
                    "algorithm": "tuak",
                    "implementation": "python",
                    "set": "2",
                    "checked": 7,
                    "passed": False,
                    "mismatches": ["f1"],
                },
            ],
        },
        "aka_bench": [bench],
        "tuak_bench": None,
    }
    md = render_markdown(data)
    assert "**Verdict: FAIL**" in md and "FAIL: f1" in md
    assert "| native | 500 ns | 2.50 µs | 5.0 |" in md
    assert "300,000 (5)" in md and "Virtual PCD 00 00" in md
