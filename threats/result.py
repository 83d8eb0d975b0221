"""Pure. What one staged attack found: a :class:`Finding` per (threat, counter-measures,
attack), and :class:`Attempt`, the recorder a check writes findings with.

Outcomes:

``blocked``         the attack was made and a named counter-measure stopped it (``result`` says
                    what: a TPM response code, a verifier check, a role's refusal code)
``not-blocked``     the attack worked; ``should_block`` says whether TR 33.812 asks the lab to
                    stop it (a gap, fails ``trelab threats``) or accepts the residual risk
                    (TR 33.812's counter-measure is organisational or "not possible")
``not-run``         a part is missing (``missing``: a module not landed yet, hardware, the
                    lab environment) — never a silent pass
``organisational``  TR 33.812's counter-measure is a contract, audit, procedure or law;
                    ``result`` says what of it was tested
``ffs``             TR 33.812 marks the counter-measure (or how to achieve it) FFS
``error``           the check itself broke (fails ``trelab threats``)

A finding never carries secrets: attempts name the check and the TPM code, never key bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = [
    "EXTRA_ATTACKS",
    "OUTCOMES",
    "Attempt",
    "Finding",
    "Missing",
    "Outcome",
    "Recorder",
]

Outcome = Literal["blocked", "not-blocked", "not-run", "organisational", "ffs", "error"]
OUTCOMES: tuple[Outcome, ...] = (
    "blocked",
    "not-blocked",
    "not-run",
    "organisational",
    "ffs",
    "error",
)
#: Why a check did not run: a trelab module not there yet, hardware, or the lab environment.
Missing = Literal["part", "hardware", "environment", ""]

#: Attacks beyond TR 33.812's threats (tag → what it is).
EXTRA_ATTACKS: Mapping[str, str] = {
    "pcr-selection-relabel": "a quote whose signed PCR selection differs from the claimed one",
    "foreign-ak-genuine-ek": "an AK from a different TPM presented with a genuine EK certificate",
    "signed-duplicate-policy": "an operator-signed policy that tries to duplicate K out of the TPM",
    "replayed-package": "a replayed MID package",
    "retargeted-package": "a MID package re-targeted to another TPM",
    "replayed-autn": "a replayed AUTN",
    "pin-brute-force": "PIN brute force (USIM PIN, TPM PIN / dictionary-attack lockout)",
    "replayed-ota": "a replayed OTA packet",
}


@dataclass(frozen=True)
class Finding:
    """One staged attack (or classified counter-measure) and what happened."""

    threat: str
    measures: tuple[str, ...]
    attack: str
    outcome: Outcome
    attempted: str
    result: str
    tre: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)
    should_block: bool = True
    missing: Missing = ""
    extra: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        """Does this finding make ``trelab threats`` fail: an error, or a gap TR 33.812 asks
        the lab to close?"""
        return self.outcome == "error" or (self.outcome == "not-blocked" and self.should_block)

    def to_json(self) -> dict[str, Any]:
        return {
            "threat": self.threat,
            "measures": list(self.measures),
            "attack": self.attack,
            "outcome": self.outcome,
            "should_block": self.should_block,
            "attempted": self.attempted,
            "result": self.result,
            "tre": self.tre,
            "evidence": dict(self.evidence),
            "missing": self.missing,
            "extra": self.extra,
            "seconds": round(self.seconds, 4),
        }


class Attempt:
    """Records one attack while it runs: exactly one of :meth:`blocked`, :meth:`not_blocked`,
    :meth:`not_run`, :meth:`organisational` or :meth:`ffs` concludes it (a second call is a
    bug in the check and raises)."""

    def __init__(
        self,
        threat: str,
        measures: Iterable[str],
        attack: str,
        attempted: str,
        *,
        tre: str = "",
        extra: str = "",
    ) -> None:
        self.threat = threat
        self.measures = tuple(measures)
        self.attack = attack
        self.attempted = attempted
        self.tre = tre
        self.extra = extra
        self.evidence: dict[str, Any] = {}
        self.finding: Finding | None = None

    def note(self, **evidence: Any) -> None:
        """Add evidence (codes, counts, names — no secrets) before concluding."""
        self.evidence.update(evidence)

    def _conclude(
        self,
        outcome: Outcome,
        result: str,
        *,
        should_block: bool = True,
        missing: Missing = "",
        evidence: Mapping[str, Any],
    ) -> Finding:
        if self.finding is not None:
            raise RuntimeError(f"attack {self.attack} concluded twice")
        self.evidence.update(evidence)
        self.finding = Finding(
            threat=self.threat,
            measures=self.measures,
            attack=self.attack,
            outcome=outcome,
            attempted=self.attempted,
            result=result,
            tre=self.tre,
            evidence=dict(self.evidence),
            should_block=should_block,
            missing=missing,
            extra=self.extra,
        )
        return self.finding

    def blocked(self, by: str, **evidence: Any) -> Finding:
        """The attack was stopped; ``by`` names the counter-measure's mechanism and what it
        answered (``TPM_RC_POLICY_FAIL``, ``PVA check pcr-selection``, ``DRF refused
        unknown-ca``)."""
        return self._conclude("blocked", by, evidence=evidence)

    def not_blocked(self, why: str, *, should_block: bool = True, **evidence: Any) -> Finding:
        """The attack worked: ``why`` says honestly why nothing stopped it."""
        return self._conclude("not-blocked", why, should_block=should_block, evidence=evidence)

    def not_run(self, why: str, *, missing: Missing = "part", **evidence: Any) -> Finding:
        return self._conclude("not-run", why, missing=missing, evidence=evidence)

    def organisational(self, tested: str, **evidence: Any) -> Finding:
        return self._conclude("organisational", tested, evidence=evidence)

    def ffs(self, tested: str, **evidence: Any) -> Finding:
        return self._conclude("ffs", tested, evidence=evidence)

    def error(self, what: str, **evidence: Any) -> Finding:
        return self._conclude("error", what, evidence=evidence)


class Recorder:
    """The findings of one check, in order."""

    def __init__(self, threat: str, *, tre: str = "") -> None:
        self.threat = threat
        self.tre = tre
        self.findings: list[Finding] = []

    def attempt(
        self,
        measures: Iterable[str],
        attack: str,
        attempted: str,
        *,
        tre: str | None = None,
        extra: str = "",
    ) -> Attempt:
        if extra and extra not in EXTRA_ATTACKS:
            raise KeyError(f"unknown extra attack {extra!r}")
        return Attempt(
            self.threat,
            measures,
            attack,
            attempted,
            tre=self.tre if tre is None else tre,
            extra=extra,
        )

    def add(self, attempt: Attempt, seconds: float) -> Finding:
        if attempt.finding is None:
            raise RuntimeError(f"attack {attempt.attack} did not conclude")
        finding = replace(attempt.finding, seconds=seconds)
        self.findings.append(finding)
        return finding
