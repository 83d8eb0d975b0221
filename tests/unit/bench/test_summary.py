"""The report opens with the AKA comparison and where the time goes, from parts measured per
round (:mod:`bench.breakdown`)."""

from __future__ import annotations

from typing import Any

from bench.breakdown import FSYNC, HOST, LINK, TPM
from bench.harness import breakdown_record
from bench.report import summary_html, summary_markdown
from bench.summary import summary_rows, time_splits


def _record(tre: str, operation: str, median: float | None, vs_raw: float | None = None) -> Any:
    summary = None if median is None else {"median": median}
    return {"tre": tre, "operation": operation, "summary": summary, "overhead_vs_raw": vs_raw}


def _with_breakdown(record: Any, rounds: list[dict[str, float]]) -> Any:
    record["breakdown"] = breakdown_record(rounds)
    return record


_TPM_ROUNDS = [
    {TPM: 3_000_000.0, FSYNC: 1_500_000.0, HOST: 500_000.0},
    {TPM: 2_800_000.0, FSYNC: 1_600_000.0, HOST: 600_000.0},
    {TPM: 3_200_000.0, FSYNC: 1_400_000.0, HOST: 400_000.0},
]
_CARD_ROUNDS = [{LINK: 900_000.0, HOST: 100_000.0}]

DATA = {
    "tres": {
        "software (native kernel)": {"kind": "software"},
        "tpm (ecb, load-gated)": {"kind": "tpm"},
        "usim (pcsc)": {"kind": "uicc"},
    },
    "records": [
        _record("software (native kernel)", "aka-milenage", 3_000.0, 2.5),
        _record("software (native kernel)", "aka-resync", 9_000.0),
        _with_breakdown(
            _record("tpm (ecb, load-gated)", "aka-milenage", 5_000_000.0, 12.0), _TPM_ROUNDS
        ),
        _with_breakdown(_record("usim (pcsc)", "aka-milenage", 1_000_000.0), _CARD_ROUNDS),
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


def test_split_is_the_median_of_each_measured_part() -> None:
    splits = {s.tre: s for s in time_splits(DATA)}
    tpm = splits["tpm (ecb, load-gated)"]
    assert tpm.total == 5_000_000.0
    assert dict(tpm.parts) == {TPM: 3_000_000.0, FSYNC: 1_500_000.0, HOST: 500_000.0}
    for r in _TPM_ROUNDS:  # the per-round accounting the medians come from
        assert sum(r.values()) == 5_000_000.0
    assert dict(splits["usim (pcsc)"].parts) == {LINK: 900_000.0, HOST: 100_000.0}
    # software: the host's crypto is the whole AKA
    assert dict(splits["software (native kernel)"].parts) == {
        "host crypto (the whole AKA)": 3_000.0
    }


def test_a_record_without_a_measured_breakdown_is_not_guessed() -> None:
    old = {
        "tres": {"tpm": {"kind": "tpm"}},
        "records": [_record("tpm", "aka-milenage", 5.0), _record("tpm", "aka-tuak", 6.0)],
        "skipped": [],
    }
    assert time_splits(old) == []


def test_markdown_opens_with_the_summary() -> None:
    text = "\n".join(summary_markdown(DATA))
    assert text.startswith("## Summary: AKA per TRE")
    assert "| tpm (ecb, load-gated) | 5.00 ms | – | – | – | 8.00 ms | 12.00× |" in text
    assert f"{FSYNC} 1.50 ms (30 %)" in text
    assert f"{LINK} 900.00 µs (90 %)" in text
    assert "not run: no /dev/tpmrm0" in text


def test_html_draws_one_stacked_bar_per_tre() -> None:
    page = "".join(summary_html(DATA))
    assert page.count("<svg") == 1
    for part in (TPM, FSYNC, LINK, HOST):
        assert f"<title>{part}:" in page.replace("&amp;", "&")
    assert "<title>host crypto (the whole AKA): 3.00 µs</title>" in page
    assert page.count("<rect") == 3 + 2 + 1 + 5  # bars' parts + the legend's five swatches


def test_goal_ratios_come_from_the_same_rows_cases() -> None:
    """Each goal ratio divides medians of one TPM row's cases; the host ratio is the median
    over rounds of host ÷ (TPM + fsync), never a ratio of medians."""
    from bench.summary import goal_ratios

    tre = "tpm (ecb, load-gated)"
    raw = _record(tre, "raw: EncryptDecrypt2 (ECB)", 100_000.0)
    raw["raw"] = True
    data = {
        "tres": {tre: {"kind": "tpm"}},
        "records": [
            raw,
            _record(tre, "e_k (bus-protected)", 120_000.0),
            _record(tre, "aka-milenage (no registry)", 390_000.0),
            _with_breakdown(_record(tre, "aka-milenage", 5_000_000.0), _TPM_ROUNDS),
            _record(tre, "quote (bare TPM2_Quote)", 1_000_000.0),
            _record(tre, "quote (bare TPM2_Quote, bytes)", 900_000.0),
            _record(tre, "verify (bare signature)", 100_000.0),
            _record(tre, "quote+verify", 1_430_000.0),
        ],
        "skipped": [],
    }
    got = {g.what: g for g in goal_ratios(data)}
    assert got["one bus-protected E_K ÷ the raw command"].value == 1.2
    assert got["K-loaded AKA ÷ three raw commands"].value == 1.3
    host = got["real-path AKA: host ÷ (TPM commands + fsync)"]
    assert host.value == 500_000.0 / 4_500_000.0 and host.met  # per-round ratios' median
    quote = got["quote + verify ÷ (bare TPM2_Quote through ESAPI + bare signature verification)"]
    assert quote.value == 1.3 and not quote.met
    floor = got["quote + verify ÷ (bare TPM2_Quote as bytes + bare signature verification)"]
    assert floor.value == 1_430_000.0 / 1_000_000.0
    # a row whose raw case is not one bare EncryptDecrypt2 gets no E_K goal
    policy_raw = _record("tpm (use-gated policy)", "raw: policy + EncryptDecrypt2", 900_000.0)
    policy_raw["raw"] = True
    gated = {
        "records": [policy_raw, _record("tpm (use-gated policy)", "e_k (bus-protected)", 1.0)],
        "skipped": [],
    }
    assert goal_ratios(gated) == []
    text = "\n".join(summary_markdown(data))
    assert "| 1.30× | ≤ 1.2× | NOT met |" in text
    assert "<td>NOT met</td>" in "".join(summary_html(data))
