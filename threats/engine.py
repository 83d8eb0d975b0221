"""Edge: clock, processes. Run the threat checks against a :class:`ThreatLab`, time each, and
collect the findings into one :class:`ThreatRun` (what the report renders).

A check that raises outside an attack (a bug) becomes one ``error`` finding for its threat;
a threat whose check produced no finding for one of TR 33.812's counter-measures gets a
``not-run`` finding saying so — nothing TR 33.812 lists disappears from the matrix.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from threats.catalogue import THREATS, Threat, threat
from threats.checks import CHECKS, load
from threats.context import ThreatLab
from threats.result import Finding
from trelab.errors import BadInput

__all__ = ["ThreatRun", "complete", "run_checks", "select_threats"]

Progress = Callable[[str], None]


@dataclass
class ThreatRun:
    """Every finding of one run, by threat, with timings and where it ran."""

    findings: list[Finding] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    threats: list[str] = field(default_factory=list)
    started: str = ""
    total_seconds: float = 0.0
    lab: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[Finding]:
        return [f for f in self.findings if f.failed]

    @property
    def ok(self) -> bool:
        return not self.failed

    def for_threat(self, threat_id: str) -> list[Finding]:
        return [f for f in self.findings if f.threat == threat_id]


def select_threats(only: Sequence[str] | None) -> list[str]:
    """Threat ids to run, in catalogue order; ``only`` names some (``5``, ``3a-2``, ``3a``).

    Raises:
        BadInput: a name that is no threat of TR 33.812.
    """
    ids = [t.id for t in THREATS]
    if not only:
        return ids
    wanted: list[str] = []
    for name in only:
        matches = [i for i in ids if i == name or (name == "3a" and i.startswith("3a-"))]
        if not matches:
            raise BadInput(f"no threat {name!r} (known: {', '.join(ids)}, 3a)", field="only")
        wanted += [m for m in matches if m not in wanted]
    return [i for i in ids if i in wanted]


def complete(entry: Threat, findings: Iterable[Finding]) -> list[Finding]:
    """``findings`` plus a ``not-run`` finding for each counter-measure of ``entry`` that no
    finding exercised (and a ``void`` one where TR 33.812 keeps a void number)."""
    out = list(findings)
    covered = {m for f in out for m in f.measures}
    for measure in entry.measures:
        if measure.number in covered:
            continue
        if measure.kind == "void":
            out.append(
                Finding(
                    entry.id,
                    (measure.number,),
                    "void",
                    "organisational",
                    "nothing: TR 33.812 marks this number void",
                    "void in TR 33.812",
                    should_block=False,
                )
            )
            continue
        out.append(
            Finding(
                entry.id,
                (measure.number,),
                "not-exercised",
                "not-run",
                "nothing",
                "no check exercises this counter-measure",
                missing="part",
            )
        )
    return out


def run_checks(
    ctx: ThreatLab,
    threat_ids: Sequence[str],
    *,
    progress: Progress | None = None,
) -> ThreatRun:
    """Run the checks of ``threat_ids`` in order."""
    run = ThreatRun(
        threats=list(threat_ids),
        started=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    begin = time.perf_counter()
    for threat_id in threat_ids:
        entry = threat(threat_id)
        if threat_id not in CHECKS:
            raise BadInput(f"no check for threat {threat_id}")
        if progress is not None:
            progress(f"threat {threat_id}: {entry.title}")
        start = time.perf_counter()
        try:
            findings = load(threat_id)(ctx)
        except Exception as exc:  # a bug in the check outside its attacks: report it
            findings = [
                Finding(
                    threat_id,
                    (),
                    "check",
                    "error",
                    "running the check",
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                )
            ]
        run.seconds[threat_id] = time.perf_counter() - start
        run.findings += complete(entry, findings)
    run.total_seconds = time.perf_counter() - begin
    return run
