"""The threat analysis of TR 33.812 §7.1.2 as executable checks (``trelab threats``).

:mod:`~threats.catalogue` (TR 33.812's 16 threats as data), :mod:`~threats.checks`
(one module per threat: the staged attacks), :mod:`~threats.engine` (runs them against a
:class:`~threats.context.ThreatLab`), :mod:`~threats.report` (terminal matrix, JSON,
HTML), :mod:`~threats.main` (brings the lab up and down for the CLI).
"""

from __future__ import annotations

__all__: list[str] = []
