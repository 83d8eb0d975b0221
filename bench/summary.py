"""Pure. The report's one-screen summary: AKA (and attestation) median per TRE side by side,
and where an AKA's time goes on the TPM rows, from pairs of cases measured in the same run.

The split uses cases that differ by one part: ``aka-milenage`` (the whole path: K loaded, SQN
state committed to the registry file and REG_CTR), ``aka-milenage (no registry)`` (the same
with K resident and no registry write), ``aka-milenage (no registry, no bus protection)`` (the same
without the salted session). Each part is the difference of two medians of the same run; a TRE
without the pairs is shown whole, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["COLUMNS", "RATIO_NOTES", "SummaryRow", "TimeSplit", "summary_rows", "time_splits"]

#: (column title, operation) of the side-by-side table
COLUMNS = (
    ("AKA Milenage", "aka-milenage"),
    ("AKA TUAK", "aka-tuak"),
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
    """One TPM row's AKA: parts in ns (same-run differences of medians), summing to ``total``."""

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


_WHOLE = "aka-milenage"
_NO_REGISTRY = "aka-milenage (no registry)"
_BARE = "aka-milenage (no registry, no bus protection)"


def time_splits(data: dict[str, Any]) -> list[TimeSplit]:
    """For each TRE with the paired cases: loading K plus the registry and NV writes (SQN
    state committed with fsync, REG_CTR),
    bus-protection session (salted, encrypted parameters), and the AKA with K resident
    (TPM commands and our own code). Parts below zero (noise) are shown as zero."""
    medians = _medians(data)
    out = []
    for tre in dict.fromkeys(r["tre"] for r in data["records"]):
        whole, resident = medians.get((tre, _WHOLE)), medians.get((tre, _NO_REGISTRY))
        if whole is None or resident is None:
            continue
        bare = medians.get((tre, _BARE))
        parts: list[tuple[str, float]] = []
        if bare is not None:
            parts.append(("AKA with K resident (TPM commands + our code)", bare))
            parts.append(("bus-protection session", max(0.0, resident - bare)))
        else:
            parts.append(("AKA with K resident (TPM commands + our code)", resident))
        parts.append(("loading K + registry and NV writes", max(0.0, whole - resident)))
        out.append(TimeSplit(tre, whole, tuple(parts)))
    return out
