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

__all__ = ["Change", "compare_reports"]


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
