"""Edge: ``trelab bench run`` — the main job: lab up, conformance, AKA benchmark, report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from host.cli.output import Outcome, add_json_flag

__all__ = ["register"]


def _run(args: argparse.Namespace) -> Outcome:
    from bench.main_job import run_main_job

    report = run_main_job(
        out_dir=Path(args.out),
        lab_dir=Path(args.lab_dir) if args.lab_dir else None,
        subscribers=args.subscribers,
        keep_lab=args.keep_lab,
    )
    return Outcome(data=report.data, text=report.summary, exit_code=report.exit_code)


def register(nouns: Any) -> None:
    parser = nouns.add_parser("bench", help="benchmarks and reports")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    p = verbs.add_parser("run", help="bring the lab up, run conformance + benchmarks, write report")
    p.add_argument("--out", default="reports", help="report directory (default: ./reports)")
    p.add_argument("--lab-dir", help="lab directory (default: the user's state dir)")
    p.add_argument("--subscribers", type=int, default=10_000)
    p.add_argument("--keep-lab", action="store_true", help="leave the lab running afterwards")
    add_json_flag(p)
    p.set_defaults(func=_run)
