"""Pure. The report's one-screen summary: AKA (and attestation) median per TRE side by side,
and where one AKA's time goes per TRE, from the parts measured in each round.

Each observed round of ``aka-milenage`` is split where the time is spent
(:mod:`bench.breakdown`): TPM commands inside the transport, fsync + rename of state writes,
APDU exchanges at the card link, and the remainder (the host's own code and crypto), so one
round's parts sum to that round. The bar shows each part's median over the rounds. On the
software row the host's crypto is the whole AKA. A record without a measured breakdown (an
older report) is left out, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["COLUMNS", "RATIO_NOTES", "SummaryRow", "TimeSplit", "summary_rows", "time_splits"]

#: (column title, operation) of the side-by-side table
COLUMNS = (
    ("AKA Milenage", "aka-milenage"),
    ("AKA TUAK", "aka-tuak"),
    ("AKA HMAC-SHA-256", "aka-hmac-sha256"),
    ("resync (AUTS)", "aka-resync"),
    ("attestation (quote + verify)", "quote+verify"),
)

#: Ratios a reader trips on, and why they are what they are.
RATIO_NOTES = (
    "× raw divides a median by the median of the same TRE's raw case in the same run (one "
    "AES-128 block for software, one TPM command, one AUTHENTICATE APDU, one AT+CSIM "
    "exchange), so rows of different TREs compare by their medians, not by their ratios.",
    "A ratio below 1 means the operation costs less than the raw unit. On the emulated USIM, "
    "the raw AUTHENTICATE carries a fresh vector, so the card runs Milenage and commits the new "
    "SQN state with an fsync; a replayed AUTN (aka-resync) is refused with AUTS before any "
    "state is written, hence e.g. 0.28× raw.",
    "`trelab aka bench` reports two figures: `aka` (f1…f5 and the MAC-A check alone, ~1 µs) "
    "and `usim` (the whole USIM recipe incl. the TS 33.102 Annex C SQN check and state "
    "update). The software rows here time the latter — compare them with `usim`, not `aka`.",
)


@dataclass(frozen=True)
class SummaryRow:
    tre: str
    medians: dict[str, float | None]  # operation → median ns (None: not measured)
    aka_vs_raw: float | None
    not_run: str | None = None  # the reason, for a TRE that did not run


@dataclass(frozen=True)
class TimeSplit:
    """One TRE's AKA: its median ``total`` and each part's median over the rounds, in ns (each
    round's parts sum to that round; the parts' medians need not sum to the median)."""

    tre: str
    total: float
    parts: tuple[tuple[str, float], ...]


def _medians(data: dict[str, Any]) -> dict[tuple[str, str], float]:
    return {
        (r["tre"], r["operation"]): r["summary"]["median"]
        for r in data["records"]
        if r["summary"] is not None
    }


def summary_rows(data: dict[str, Any]) -> list[SummaryRow]:
    """One row per TRE that has an AKA case, in report order; then the TREs not run."""
    medians = _medians(data)
    ratios = {
        (r["tre"], r["operation"]): r["overhead_vs_raw"]
        for r in data["records"]
        if r["overhead_vs_raw"] is not None
    }
    rows = []
    seen: list[str] = []
    for r in data["records"]:
        if r["tre"] not in seen:
            seen.append(r["tre"])
    for tre in seen:
        wanted = {op: medians.get((tre, op)) for _, op in COLUMNS}
        if any(v is not None for v in wanted.values()):
            rows.append(SummaryRow(tre, wanted, ratios.get((tre, "aka-milenage"))))
    for skipped in data["skipped"]:
        rows.append(SummaryRow(skipped["tre"], {}, None, not_run=skipped["reason"]))
    return rows


_AKA = "aka-milenage"
_HOST_CRYPTO = "host crypto (the whole AKA)"


def time_splits(data: dict[str, Any]) -> list[TimeSplit]:
    """For each TRE whose ``aka-milenage`` was measured with a breakdown (or runs in software):
    the AKA's median and the median of each measured part, in report order."""
    kinds = {tre: env.get("kind") for tre, env in data.get("tres", {}).items()}
    out = []
    for r in data["records"]:
        if r["operation"] != _AKA or r["summary"] is None:
            continue
        total = float(r["summary"]["median"])
        breakdown = r.get("breakdown")
        if isinstance(breakdown, dict) and isinstance(breakdown.get("median"), dict):
            parts = tuple((str(k), float(v)) for k, v in breakdown["median"].items())
        elif kinds.get(r["tre"]) == "software":
            parts = ((_HOST_CRYPTO, total),)
        else:
            continue
        out.append(TimeSplit(r["tre"], total, parts))
    return out
