"""Pure. ``trelab bench compare OLD NEW``: what got faster or slower, and is it significant.

Significance: the 95 % bootstrap interval of median(new) / median(old), from the raw samples
of both runs, excludes 1. Randomness is a parameter (seeded by the caller).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .schema import validate_report
from .stats import bootstrap_ratio_ci, median, ratio

__all__ = ["Change", "comparability_warnings", "compare_reports", "summary_line"]


@dataclass(frozen=True)
class Change:
    tre: str
    operation: str
    old_median_ns: float
    new_median_ns: float
    ratio: float
    ci95: tuple[float, float]

    @property
    def verdict(self) -> str:
        lo, hi = self.ci95
        if hi < 1:
            return "faster"
        if lo > 1:
            return "slower"
        return "no significant change"

    def to_json(self) -> dict[str, Any]:
        return {
            "tre": self.tre,
            "operation": self.operation,
            "old_median_ns": self.old_median_ns,
            "new_median_ns": self.new_median_ns,
            "ratio": self.ratio,
            "ci95": list(self.ci95),
            "verdict": self.verdict,
        }


def compare_reports(
    old: dict[str, Any], new: dict[str, Any], draw: Callable[[int], int]
) -> tuple[list[Change], list[str]]:
    """Changes for every TRE × operation present in both; plus the rows only one side has.

    Raises:
        BadInput: either report does not follow the schema.
    """
    validate_report(old)
    validate_report(new)
    before = {(r["tre"], r["operation"]): r for r in old["records"] if r["samples"]}
    after = {(r["tre"], r["operation"]): r for r in new["records"] if r["samples"]}
    changes = []
    for key in sorted(before.keys() & after.keys()):
        a, b = before[key]["samples"], after[key]["samples"]
        changes.append(
            Change(
                key[0],
                key[1],
                median(a),
                median(b),
                ratio(median(b), median(a)),
                bootstrap_ratio_ci(b, a, draw),
            )
        )
    only = [f"only in old: {t} / {o}" for t, o in sorted(before.keys() - after.keys())]
    only += [f"only in new: {t} / {o}" for t, o in sorted(after.keys() - before.keys())]
    return changes, only


def summary_line(changes: list[Change]) -> str:
    """``3 faster, 1 slower, 40 without significant change (of 44 compared)``."""
    counts = {"faster": 0, "slower": 0, "no significant change": 0}
    for change in changes:
        counts[change.verdict] += 1
    return (
        f"{counts['faster']} faster, {counts['slower']} slower, "
        f"{counts['no significant change']} without significant change "
        f"(of {len(changes)} compared)"
    )


def comparability_warnings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What makes two runs less comparable than they look: different round counts (fewer
    rounds, wider intervals: a change may hide), a quick run, an interrupted one."""
    warnings = []
    a, b = old["method"], new["method"]
    if a.get("rounds") != b.get("rounds"):
        warnings.append(
            f"warning: {a.get('rounds')} rounds (old) vs {b.get('rounds')} rounds (new): the "
            "shorter run's intervals are wider, so a real change may not show as significant"
        )
    if a.get("quick") != b.get("quick"):
        warnings.append("warning: one run is --quick (smaller batches): compare like with like")
    for name, method in (("old", a), ("new", b)):
        if method.get("interrupted"):
            warnings.append(f"warning: the {name} run was interrupted (partial report)")
    return warnings
