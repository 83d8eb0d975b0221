"""Edge: ``trelab bench run | compare | throughput`` — the benchmark harness, its reports, and
the provisioning-throughput curve of one operator server."""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

from host.cli import defaults
from host.cli.output import Outcome, add_json_flag
from trelab.errors import BadInput
from trelab.jsontext import load_json

__all__ = ["register"]


def _run(args: argparse.Namespace) -> Outcome:
    from bench.main_job import run_main_job

    if args.subscribers < 1:
        raise BadInput("--subscribers: must be ≥ 1")
    report = run_main_job(
        out_dir=Path(args.out),
        lab_dir=defaults.lab_dir(args.lab_dir),
        mid_registry=defaults.registry_path(),
        subscribers=args.subscribers,
        keep_lab=args.keep_lab,
        quick=args.quick,
        rounds=args.rounds,
        tres=args.tre or None,
        use_lab=not args.no_lab,
        throughput=not args.no_throughput,
    )
    data = {"ok": report.data["ok"], "verdict": report.data["verdict"], "out": args.out}
    return Outcome(data=data, text=report.summary, exit_code=report.exit_code)


def _load(path: str) -> dict[str, Any]:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except OSError as exc:
        raise BadInput(f"{path}: not a JSON report ({type(exc).__name__})") from None
    data = load_json(raw, f"{path}: not a JSON report")
    if not isinstance(data, dict):
        raise BadInput(f"{path}: not a JSON report")
    return data


def _compare(args: argparse.Namespace) -> Outcome:
    from bench.compare import comparability_warnings, compare_reports, summary_line
    from bench.report import format_ns

    old, new = _load(args.old), _load(args.new)
    changes, only = compare_reports(
        old,
        new,
        random.Random(args.seed).randrange,  # noqa: S311 - bootstrap
    )
    warnings = comparability_warnings(old, new)
    lines = [
        f"{c.tre} / {c.operation}: {format_ns(c.old_median_ns)} → {format_ns(c.new_median_ns)} "
        f"({c.ratio:.2f}×, 95% CI {c.ci95[0]:.2f}–{c.ci95[1]:.2f}): {c.verdict}"
        for c in changes
    ]
    summary = summary_line(changes) if changes else "nothing in common to compare"
    data = {
        "summary": summary,
        "warnings": warnings,
        "changes": [c.to_json() for c in changes],
        "unmatched": only,
    }
    return Outcome(data=data, text="\n".join([summary, *warnings, *lines, *only]))


def _throughput(args: argparse.Namespace) -> Outcome:
    from bench.provision_throughput import run_throughput, run_throughput_matrix
    from bench.report import (
        matrix_rows,
        render_json,
        render_throughput_html,
        render_throughput_markdown,
        throughput_rows,
    )
    from bench.schema import validate_throughput
    from bench.throughput import parse_levels
    from trelab.atomic import atomic_write_text

    levels = parse_levels(args.levels)
    if args.per_device < 1:
        raise BadInput("--per-device: must be ≥ 1")
    stores = _stores(args.store)
    worker_counts: tuple[int | None, ...] = (
        _worker_counts(args.workers, "workers") if args.workers else (None,)
    )
    out = Path(args.out)
    common: dict[str, Any] = {
        "work_dir": out / "throughput-work" if args.keep_files else None,
        "progress": None if args.json else _say,
        "warmup": not args.no_warmup,
        "server_alone": _worker_counts(args.server_alone, "server-alone")
        if args.server_alone
        else (),
    }
    if len(stores) * len(worker_counts) > 1:
        if None in worker_counts:
            raise BadInput("--store with several engines: give --workers too (e.g. 1,2)")
        section = run_throughput_matrix(
            levels, args.per_device, stores=stores,
            worker_counts=[w for w in worker_counts if w is not None], **common,
        )  # fmt: skip
    else:
        section = run_throughput(
            levels, args.per_device, workers=worker_counts[0], store=stores[0], **common
        )
    validate_throughput(section)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "throughput.json", render_json(section), mode=0o644)
    atomic_write_text(out / "throughput.md", render_throughput_markdown(section), mode=0o644)
    atomic_write_text(out / "throughput.html", render_throughput_html(section), mode=0o644)
    lines = [section["verdict"], "c  ok     wall     /s   median   p95   cores busy"]
    lines += [
        f"{row[0]:>2} {row[1]:>6} {row[2]:>8} {row[3]:>5} {row[4]:>7} {row[5]:>7} {row[8]:>6}"
        for row in throughput_rows(section)
    ]
    headers, rows = matrix_rows(section)
    if headers:
        lines.append("side by side (provisionings/s, median latency, cores busy):")
        for i, title in enumerate(headers[1:], start=1):
            lines.append(f"  {title}:")
            lines += [f"    c={row[0]:>2}: {row[i]}" for row in rows]
    lines.append(f"report: {out / 'throughput.html'} (also throughput.md, throughput.json)")
    data = {"ok": section["ok"], "out": str(out), "provisioning_throughput": section}
    return Outcome(data=data, text="\n".join(lines), exit_code=0 if section["ok"] else 1)


def _worker_counts(text: str, flag: str) -> tuple[int, ...]:
    """``"1,2,4"`` → (1, 2, 4), each within 1..MAX_WORKERS.

    Raises:
        BadInput: anything else.
    """
    from network.workers import MAX_WORKERS
    from trelab.digits import is_decimal

    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(is_decimal(p) and 1 <= int(p) <= MAX_WORKERS for p in parts):
        raise BadInput(f"--{flag} {text!r}: expected worker counts like 1,2,4", field=flag)
    return tuple(sorted({int(p) for p in parts}))


def _stores(text: str) -> tuple[str, ...]:
    """``"sqlite,postgres"`` → ("sqlite", "postgres"), each once, in that order.

    Raises:
        BadInput: an engine other than sqlite or postgres.
    """
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p in ("sqlite", "postgres") for p in parts):
        raise BadInput(f"--store {text!r}: expected sqlite, postgres or both", field="store")
    return tuple(dict.fromkeys(parts))


def _say(text: str) -> None:
    print(f"trelab: {text}", file=sys.stderr, flush=True)


def register(nouns: Any) -> None:
    parser = nouns.add_parser("bench", help="benchmarks and reports")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    p = verbs.add_parser(
        "run", help="bring the lab up, run conformance + the benchmark on every TRE, write report"
    )
    p.add_argument("--out", default="reports", help="report directory (default: ./reports)")
    p.add_argument("--lab-dir", help="lab directory (default: the user's state dir)")
    p.add_argument("--no-lab", action="store_true", help="software TREs only; no lab")
    p.add_argument("--tre", action="append", help="TRE name or prefix to run (repeatable)")
    p.add_argument("--quick", action="store_true", help="CI-sized run (seconds)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 31, quick 5)")
    p.add_argument("--subscribers", type=int, default=10_000)
    p.add_argument("--keep-lab", action="store_true", help="leave the lab running afterwards")
    p.add_argument(
        "--no-throughput", action="store_true", help="skip the provisioning-throughput curve"
    )
    add_json_flag(p)
    p.set_defaults(func=_run)

    p = verbs.add_parser(
        "throughput",
        help="provisioning throughput of one `trelab network serve` with N devices at once "
        "(fresh swtpms, one agent process each); writes throughput.{json,md,html}",
    )
    p.add_argument("--levels", default="1,2,4,8", help="devices at once (default 1,2,4,8)")
    p.add_argument("--per-device", type=int, default=3, help="provisionings per device (3)")
    p.add_argument("--out", default="reports", help="report directory (default: ./reports)")
    p.add_argument("--no-warmup", action="store_true", help="no uncounted first provisioning")
    p.add_argument(
        "--workers",
        metavar="N[,N…]",
        help="serve under gunicorn with N worker processes (default: the built-in server); "
        "several (1,2): one curve per count, side by side",
    )
    p.add_argument(
        "--store",
        metavar="ENGINE[,ENGINE]",
        default="sqlite",
        help="the server's store: sqlite (a file) or postgres (a PostgreSQL cluster of the "
        "run's own); sqlite,postgres: one curve per engine (× --workers), side by side",
    )
    p.add_argument(
        "--server-alone",
        metavar="WORKERS",
        help="after the curve: the server's CPU per provisioning against the cryptography "
        "alone, and the server alone (fresh registrations, no swtpm) at these worker counts, "
        "e.g. 1,2,4",
    )
    p.add_argument(
        "--keep-files", action="store_true", help="keep swtpm states, logs, store under --out"
    )
    add_json_flag(p)
    p.set_defaults(func=_throughput)

    p = verbs.add_parser("compare", help="what got faster or slower between two report.json")
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--seed", type=int, default=1, help="bootstrap seed (reproducible)")
    add_json_flag(p)
    p.set_defaults(func=_compare)
