"""Edge: ``trelab threats`` — every threat of TR 33.812 §7.1.2 (12 against the non-UICC
alternative, 4 against Alternative 3a) staged against the lab as an executable check, with extra
attacks beyond it; a matrix threat × counter-measure × result.

Exit 0 when every finding is blocked or honestly classified (not run, organisational, FFS, a
risk TR 33.812 accepts), 1 when something the lab should block did not hold or a check broke,
3 when the lab cannot come up or another lab's card keeps the card reader (``--reader-wait``).
``--json`` prints the report document (schema
``trelab.threats`` v1, see :mod:`threats.report`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from host.cli import defaults
from host.cli.output import Outcome, add_json_flag

__all__ = ["register"]


def _report_file(args: argparse.Namespace, kind: str) -> Path | None:
    """``--out DIR`` writes ``threats.<kind>`` there; the earlier per-file options still work."""
    earlier = args.html if kind == "html" else args.json_out
    if earlier:
        return Path(earlier)
    return Path(args.out) / f"threats.{kind}" if args.out else None


def _run(args: argparse.Namespace) -> Outcome:
    from threats.main import run_threat_checks

    report = run_threat_checks(
        lab_dir=defaults.lab_dir(args.lab_dir),
        only=args.only,
        keep_lab=args.keep_lab,
        html_out=_report_file(args, "html"),
        json_out=_report_file(args, "json"),
        reader_wait=args.reader_wait,
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
    p.add_argument(
        "--out", metavar="DIR", help="also write threats.html (self-contained) and threats.json"
    )
    p.add_argument("--html", metavar="FILE", help=argparse.SUPPRESS)  # earlier spellings
    p.add_argument("--json-out", metavar="FILE", help=argparse.SUPPRESS)
    p.add_argument("--lab-dir", help="lab directory (default: the user's state dir)")
    p.add_argument("--keep-lab", action="store_true", help="leave the lab running afterwards")
    p.add_argument(
        "--reader-wait",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to wait while another lab's card holds the reader (default 60; then "
        "exit 3 naming that lab)",
    )
    add_json_flag(p)
    p.set_defaults(func=_run)
