"""The threat analysis of TR 33.812 §7.1.2 as executable checks (``trelab threats``).

:mod:`~host.threats.catalogue` (the seed's 16 threats as data), :mod:`~host.threats.checks`
(one module per threat: the staged attacks), :mod:`~host.threats.engine` (runs them against a
:class:`~host.threats.context.ThreatLab`), :mod:`~host.threats.report` (terminal matrix, JSON,
HTML), :mod:`~host.threats.main` (brings the lab up and down for the CLI).
"""

from __future__ import annotations

__all__: list[str] = []
