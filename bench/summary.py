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

__all__ = [
    "COLUMNS",
    "RATIO_NOTES",
    "GoalRatio",
    "SummaryRow",
    "TimeSplit",
    "goal_ratios",
    "summary_rows",
    "time_splits",
]

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


@dataclass(frozen=True)
class GoalRatio:
    """One same-run ratio a TPM row is held to: ``value`` against ``goal`` (at most)."""

    tre: str
    what: str
    value: float
    goal: float

    @property
    def met(self) -> bool:
        return self.value <= self.goal


_HOST_PART = "host: our code + crypto"
#: the raw case the E_K goals divide by (a use-gated row's raw case holds its policy steps too,
#: a sealed row's is an Unseal: no E_K goal there)
_RAW_E_K = "raw: EncryptDecrypt2"
_TPM_PART = "TPM commands (transport)"
_FSYNC_PART = "fsync + rename"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def goal_ratios(data: dict[str, Any]) -> list[GoalRatio]:
    """The TPM rows' client-stack ratios, each from cases of the same row in the same run:
    one bus-protected E_K ÷ the raw command; the K-loaded AKA ÷ three raw commands; on the
    real path, the host's own time ÷ (TPM commands + fsync), the median of the per-round
    ratio; quote + verify ÷ (bare TPM2_Quote + bare signature verification)."""
    medians = _medians(data)
    raw: dict[str, float] = {}  # rows whose raw case is one bare EncryptDecrypt2
    for r in data["records"]:
        if r.get("raw") and r["summary"] is not None and r["operation"].startswith(_RAW_E_K):
            raw.setdefault(r["tre"], float(r["summary"]["median"]))
    out: list[GoalRatio] = []
    tres: list[str] = []
    for r in data["records"]:
        if r["tre"] not in tres:
            tres.append(r["tre"])
    for tre in tres:
        unit = raw.get(tre)
        e_k = medians.get((tre, "e_k (bus-protected)"))
        if unit and e_k is not None:
            out.append(GoalRatio(tre, "one bus-protected E_K ÷ the raw command", e_k / unit, 1.3))
        resident = medians.get((tre, "aka-milenage (no registry)"))
        if unit and resident is not None and e_k is not None:
            out.append(
                GoalRatio(tre, "K-loaded AKA ÷ three raw commands", resident / (3 * unit), 1.3)
            )
        host = _host_ratio(data, tre)
        if host is not None:
            out.append(GoalRatio(tre, "real-path AKA: host ÷ (TPM commands + fsync)", host, 0.3))
        both = medians.get((tre, "quote+verify"))
        bare_verify = medians.get((tre, "verify (bare signature)"))
        for operation, how in (
            ("quote (bare TPM2_Quote, bytes)", "bare TPM2_Quote as bytes"),
            ("quote (bare TPM2_Quote)", "bare TPM2_Quote through ESAPI"),
        ):
            bare_quote = medians.get((tre, operation))
            if both is not None and bare_quote and bare_verify:
                out.append(
                    GoalRatio(
                        tre,
                        f"quote + verify ÷ ({how} + bare signature verification)",
                        both / (bare_quote + bare_verify),
                        1.2,
                    )
                )
    return out


def _host_ratio(data: dict[str, Any], tre: str) -> float | None:
    for r in data["records"]:
        if r["tre"] != tre or r["operation"] != _AKA:
            continue
        samples = (r.get("breakdown") or {}).get("samples")
        if not isinstance(samples, dict) or _HOST_PART not in samples:
            return None
        host = samples[_HOST_PART]
        tpm = samples.get(_TPM_PART, [0.0] * len(host))
        fsync = samples.get(_FSYNC_PART, [0.0] * len(host))
        ratios = [h / (t + f) for h, t, f in zip(host, tpm, fsync, strict=True) if t + f > 0]
        return _median(ratios) if ratios else None
    return None
