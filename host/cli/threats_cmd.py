"""Edge: ``trelab threats`` — every threat of TR 33.812 §7.1.2 (12 against the non-UICC
alternative, 4 against Alternative 3a) staged against the lab as an executable check, with extra
attacks beyond it; a matrix threat × counter-measure × result.

Exit 0 when every finding is blocked or honestly classified (not run, organisational, FFS, a
risk TR 33.812 accepts), 1 when something the lab should block did not hold or a check broke,
3 when the lab cannot come up. ``--json`` prints the report document (schema
``trelab.threats`` v1, see :mod:`threats.report`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from host.cli import defaults
from host.cli.output import Outcome, add_json_flag

__all__ = ["register"]


def _run(args: argparse.Namespace) -> Outcome:
    from threats.main import run_threat_checks

    report = run_threat_checks(
        lab_dir=defaults.lab_dir(args.lab_dir),
        only=args.only,
        keep_lab=args.keep_lab,
        html_out=Path(args.html) if args.html else None,
        json_out=Path(args.json_out) if args.json_out else None,
    )
    return Outcome(data=report.document, text=report.text, exit_code=report.exit_code)


def register(nouns: Any) -> None:
    p = nouns.add_parser(
        "threats",
        help="stage every threat of TR 33.812 §7.1.2 against the lab: blocked or not",
        description="Run the threat checks against the lab (brought up if needed) and print"
        " the matrix threat × counter-measure × result.",
    )
    p.add_argument("--only", nargs="+", metavar="N", help="threats to run: 1…12, 3a-1…3a-4, 3a")
    p.add_argument("--html", metavar="OUT", help="also write a self-contained HTML report")
    p.add_argument("--json-out", metavar="OUT", help="also write the JSON report to a file")
    p.add_argument("--lab-dir", help="lab directory (default: the user's state dir)")
    p.add_argument("--keep-lab", action="store_true", help="leave the lab running afterwards")
    add_json_flag(p)
    p.set_defaults(func=_run)
