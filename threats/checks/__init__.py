"""Edge: the threat checks, one module per threat (``tNN_*.py``) and one for Alternative
3a (``alt3a.py``). Each exposes ``run(ctx: ThreatLab) -> list[Finding]``: it stages the
threat's attacks against the lab and classifies every counter-measure TR 33.812 lists.

:data:`CHECKS` maps a threat id to its module name; :func:`load` imports one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from threats.context import ThreatLab
    from threats.result import Finding

__all__ = ["CHECKS", "load"]

#: threat id → module under threats.checks (run in this order).
CHECKS: dict[str, str] = {
    "1": "t01_emulation",
    "2": "t02_provisioning",
    "3": "t03_malware",
    "4": "t04_tre_attacks",
    "5": "t05_replacement",
    "6": "t06_modification",
    "7": "t07_permissions",
    "8": "t08_isolation",
    "9": "t09_monitoring",
    "10": "t10_user",
    "11": "t11_recovery",
    "12": "t12_registration",
    "3a-1": "alt3a",
    "3a-2": "alt3a",
    "3a-3": "alt3a",
    "3a-4": "alt3a",
}


def load(threat_id: str) -> Callable[[ThreatLab], list[Finding]]:
    """The check function for ``threat_id``.

    Raises:
        KeyError: no check for that threat.
    """
    module = importlib.import_module(f"threats.checks.{CHECKS[threat_id]}")
    if module.__name__.endswith("alt3a"):
        fn: Callable[[ThreatLab], list[Finding]] = getattr(module, f"run_{threat_id[3:]}")
        return fn
    run: Callable[[ThreatLab], list[Finding]] = module.run
    return run
