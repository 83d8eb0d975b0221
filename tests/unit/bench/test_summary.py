"""The report opens with the AKA comparison and a time split computed from same-run medians."""

from __future__ import annotations

from typing import Any

from bench.report import summary_markdown
from bench.summary import summary_rows, time_splits


def _record(tre: str, operation: str, median: float | None, vs_raw: float | None = None) -> Any:
    summary = None if median is None else {"median": median}
    return {"tre": tre, "operation": operation, "summary": summary, "overhead_vs_raw": vs_raw}


DATA = {
    "records": [
        _record("software (native kernel)", "aka-milenage", 3_000.0, 2.5),
        _record("software (native kernel)", "aka-resync", 9_000.0),
        _record("tpm (ecb, load-gated)", "aka-milenage", 5_000_000.0, 12.0),
        _record("tpm (ecb, load-gated)", "aka-milenage (no registry)", 2_000_000.0),
        _record(
            "tpm (ecb, load-gated)", "aka-milenage (no registry, no bus protection)", 1_500_000.0
        ),
        _record("tpm (ecb, load-gated)", "quote+verify", 8_000_000.0),
    ],
    "skipped": [{"tre": "tpm (physical)", "reason": "no /dev/tpmrm0"}],
}


def test_rows_side_by_side_and_not_run_listed() -> None:
    rows = {r.tre: r for r in summary_rows(DATA)}
    assert rows["software (native kernel)"].medians["aka-milenage"] == 3_000.0
    assert rows["software (native kernel)"].medians["aka-tuak"] is None
    assert rows["tpm (ecb, load-gated)"].medians["quote+verify"] == 8_000_000.0
    assert rows["tpm (ecb, load-gated)"].aka_vs_raw == 12.0
    assert rows["tpm (physical)"].not_run == "no /dev/tpmrm0"


def test_split_parts_are_same_run_differences_that_sum_to_the_whole() -> None:
    (split,) = time_splits(DATA)
    parts = dict(split.parts)
    assert parts["AKA with K resident (TPM commands + our code)"] == 1_500_000.0
    assert parts["bus-protection session"] == 500_000.0
    assert parts["loading K + registry and NV writes"] == 3_000_000.0
    assert sum(parts.values()) == split.total == 5_000_000.0


def test_markdown_opens_with_the_summary() -> None:
    text = "\n".join(summary_markdown(DATA))
    assert text.startswith("## Summary: AKA per TRE")
    assert "| tpm (ecb, load-gated) | 5.00 ms | – | – | 8.00 ms | 12.00× |" in text
    assert "bus-protection session 500.00 µs (10 %)" in text
    assert "not run: no /dev/tpmrm0" in text
