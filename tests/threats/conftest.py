"""The threat checks of ``trelab threats`` against the test session's lab.

``threat_lab`` wraps the session lab (its TPM is the victim M2ME's TRE) and a second lab from
``lab_factory`` (the attacker's TPM; the one DA lockout, PCR extension and TPM2_Clear may
break). ``run_threat(threat_lab, id)`` runs the very check function the CLI runs and returns a
:class:`Checked` that test modules assert on: each attack's outcome, and evidence that the
attack was really made (the TPM's response code, the role's refusal code, the card's SW).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lab.lab import Lab, LabStatus
from tests.conftest import lab_failed
from threats.catalogue import threat
from threats.checks import load
from threats.context import ThreatLab
from threats.engine import complete
from threats.result import Finding


@pytest.fixture(scope="session")
def threat_lab(
    lab: LabStatus, lab_factory: Callable[..., Lab], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreatLab]:
    scratch = lab_factory("threats-scratch")
    ctx = ThreatLab(lab, tmp_path_factory.mktemp("threats"), scratch=scratch.up)
    try:
        yield ctx
    finally:
        ctx.close()


class Checked:
    """The findings of one threat's check, with the assertions the test modules share."""

    def __init__(self, threat_id: str, findings: list[Finding]) -> None:
        self.threat_id = threat_id
        self.entry = threat(threat_id)
        self.raw = findings
        self.findings = complete(self.entry, findings)
        self.skipped: list[str] = []

    def get(self, attack: str) -> Finding:
        found = [f for f in self.findings if f.attack == attack]
        assert len(found) == 1, (
            f"{attack}: {len(found)} findings ({[f.attack for f in self.findings]})"
        )
        return found[0]

    def expect(self, attack: str, outcome: str, **evidence: Any) -> Finding | None:
        """The attack ended as ``outcome`` with these evidence values; a lab component that
        was not there (another lab's card in the reader) is collected for :meth:`finish`."""
        f = self.get(attack)
        if f.outcome == "not-run" and f.missing == "environment":
            self.skipped.append(f"{attack}: {f.result}")
            return None
        assert f.outcome == outcome, f"{attack}: {f.outcome}: {f.result} {dict(f.evidence)}"
        for key, value in evidence.items():
            assert f.evidence.get(key) == value, (
                f"{attack}: evidence {key} = {f.evidence.get(key)!r}, expected {value!r}"
            )
        return f

    def complete_and_clean(self) -> None:
        """Every counter-measure TR 33.812 lists has a finding of an actual check, none broke,
        and no finding leaks a secret-looking field."""
        covered = {m for f in self.raw for m in f.measures}
        missing = [
            m.number for m in self.entry.measures if m.number not in covered and m.kind != "void"
        ]
        assert not missing, f"threat {self.threat_id}: no check for counter-measure(s) {missing}"
        errors = [f"{f.attack}: {f.result}" for f in self.findings if f.outcome == "error"]
        assert not errors, errors
        for f in self.raw:
            assert f.threat == self.threat_id and f.attempted and f.result
            assert not {"k", "opc", "pin", "secret"} & {k.lower() for k in f.evidence}

    def finish(self) -> None:
        if self.skipped:
            lab_failed("lab component not available for: " + "; ".join(self.skipped))


def run_threat(threat_lab: ThreatLab, threat_id: str) -> Checked:
    return Checked(threat_id, load(threat_id)(threat_lab))
