"""Edge: processes, filesystem, clock. The main job: lab up → conformance → bench →
provisioning throughput → report.

What ``make bench`` runs. It brings the lab up itself (and down again if it started it), so a
fresh machine needs nothing else, and writes ``report.json`` (schema: :mod:`bench.schema`),
``report.md`` and a self-contained ``report.html``. The throughput curves
(:mod:`bench.provision_throughput`, their own servers and swtpms, not the lab's) run when every
TRE is benchmarked with the lab (no ``--tre``, no ``--no-lab``), unless ``throughput=False``:
SQLite and PostgreSQL × 1 and 2 gunicorn workers side by side at :data:`MATRIX_LEVELS`, then
the server alone at 1 and 2 workers (quick: one curve, the built-in server on SQLite, levels
1, 2 with one provisioning per device).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import ssl
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aka.conformance import SetResult, run_milenage_sets, run_tuak_sets
from trelab import __version__
from trelab.atomic import atomic_write_text
from trelab.errors import BadInput, TrelabError, Unavailable

from .harness import run_cases
from .machine import cpu_model
from .report import render_html, render_json, render_markdown
from .schema import SCHEMA_NAME, SCHEMA_VERSION, THROUGHPUT, validate_report
from .tres.registry import LAB_TRES, TRE_FACTORIES, LabContext, build_providers

#: The throughput curves of a full run: each engine × worker count (SQLite, PostgreSQL × 1, 2
#: gunicorn workers) at one device and at twice as many devices as this machine's 2 cores, one
#: provisioning per device (a fresh swtpm and agent per device is most of a curve's cost), then
#: the server alone at 1 and 2 workers. On a shared, loaded 2-core machine the four curves and
#: the server alone took 134 s at levels 1, 2, 4 against 57 s for the single curve at 1, 2, 4 ×
#: 3 that they replace; dropping level 2 saves a quarter of the devices.
MATRIX_LEVELS = (1, 4)
MATRIX_PER_DEVICE = 1
SERVER_ALONE_WORKERS = (1, 2)
SERVER_ALONE_REQUESTS = 200  # per worker count: a few seconds each
SERVER_PROFILE_PROVISIONINGS = 3

__all__ = ["INTERRUPTED_EXIT", "MainJobReport", "load_vector_sets", "run_main_job"]


INTERRUPTED_EXIT = 130  # as a shell reports a command ended by Ctrl-C (128 + SIGINT)


@dataclass(frozen=True)
class MainJobReport:
    data: dict[str, Any]
    summary: str
    exit_code: int


def load_vector_sets() -> dict[str, list[dict[str, Any]]]:
    """The conformance sets shipped in ``aka/data`` (by algorithm), de-duplicated."""
    out: dict[str, dict[str, dict[str, Any]]] = {"milenage": {}, "tuak": {}}
    for entry in sorted(resources.files("aka").joinpath("data").iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".json"):
            continue
        data = json.loads(entry.read_text())
        for algorithm in out:
            for item in data.get(algorithm, []):
                out[algorithm].setdefault(item["K"] + item["RAND"] + item.get("name", ""), item)
    return {name: list(sets.values()) for name, sets in out.items()}


def _say(message: str) -> None:
    print(f"trelab: {message}", file=sys.stderr, flush=True)


def run_main_job(
    *,
    out_dir: Path,
    lab_dir: Path,
    mid_registry: Path | None = None,
    subscribers: int = 10_000,
    keep_lab: bool = False,
    quick: bool = False,
    rounds: int | None = None,
    tres: list[str] | None = None,
    use_lab: bool = True,
    throughput: bool = True,
    throughput_levels: Sequence[int] | None = None,
    throughput_per_device: int | None = None,
    progress: Callable[[str], None] = _say,
) -> MainJobReport:
    """Run everything and write the report; exit code 1 when a conformance set, the EK
    chain or a throughput provisioning failed."""
    if tres:
        unknown = [t for t in tres if not any(n.startswith(t) for n in TRE_FACTORIES)]
        if unknown:
            raise BadInput(
                f"--tre: unknown {', '.join(unknown)} (known: {', '.join(TRE_FACTORIES)})"
            )
    rounds = rounds if rounds is not None else (5 if quick else 31)
    if rounds < 1:
        raise BadInput("must be ≥ 1", field="rounds")
    lab = status = None
    was_running = True
    if use_lab:
        from lab.lab import Lab

        lab = Lab(lab_dir)
        was_running = lab.status().running
        progress(f"lab: bringing up {lab.path}")
        status = lab.up(progress=progress)
    try:
        progress("conformance: running the 3GPP Milenage and TUAK test sets")
        vectors = load_vector_sets()
        results: list[SetResult] = run_milenage_sets(vectors["milenage"])
        results += run_tuak_sets(vectors["tuak"])
        ctx = LabContext(
            lab=status, subscribers=subscribers, quick=quick, mid_registry=mid_registry
        )
        providers, skipped = build_providers(ctx, tres)
        progress(f"bench: {len(providers)} TREs, {rounds} interleaved rounds")
        try:
            run = run_cases(providers, rounds=rounds, quick=quick, progress=progress)
        finally:
            for provider in providers:
                provider.close()
        lab_info = status.to_dict() if status is not None else None
    finally:
        if lab is not None and not keep_lab and not was_running:
            progress("lab: stopping what this run started")
            lab.down()

    curve = None
    throughput_skip: list[dict[str, str]] = []
    throughput_failed = False
    interrupted = run.interrupted
    if throughput and use_lab and not tres and interrupted:
        progress("throughput: not started (the run was interrupted)")
        throughput_skip.append({"tre": "provisioning throughput", "reason": "run interrupted"})
    elif throughput and use_lab and not tres:
        from .provision_throughput import run_throughput, run_throughput_matrix

        levels = throughput_levels or ((1, 2) if quick else MATRIX_LEVELS)
        per_device = throughput_per_device or (1 if quick else MATRIX_PER_DEVICE)
        progress(f"throughput: levels {', '.join(map(str, levels))}, {per_device} per device")
        try:
            if quick:  # one curve: the built-in server on SQLite
                curve = run_throughput(levels, per_device, progress=progress)
            else:  # SQLite and PostgreSQL × 1 and 2 workers, side by side, and the server alone
                curve = run_throughput_matrix(
                    levels, per_device, progress=progress, server_alone=SERVER_ALONE_WORKERS,
                    profile_provisionings=SERVER_PROFILE_PROVISIONINGS,
                    alone_requests=SERVER_ALONE_REQUESTS,
                )  # fmt: skip
            interrupted = bool(curve["interrupted"])
        except KeyboardInterrupt:  # Ctrl-C before the first level finished
            progress("throughput: interrupted")
            throughput_skip.append({"tre": "provisioning throughput", "reason": "interrupted"})
            interrupted = True
        except Unavailable as exc:  # the environment (no swtpm tools): say why, go on
            throughput_skip.append({"tre": "provisioning throughput", "reason": str(exc)})
        except TrelabError as exc:  # a real failure (e.g. an EK chain): say why, fail
            throughput_skip.append({"tre": "provisioning throughput", "reason": str(exc)})
            throughput_failed = True

    passed = sum(r.passed for r in results)
    ek_ok = bool(status.ca.verified) if status is not None else None
    failed_cases = [c for c in run.cases if not c.samples_ns]
    # a lab row that could not run while the lab ran: the lab is damaged, never a PASS
    damaged = (
        [s for s in [*skipped, *run.skipped] if s.tre in LAB_TRES] if status is not None else []
    )
    ok = passed == len(results) > 0 and ek_ok is not False and not failed_cases
    ok = ok and (curve is None or curve["ok"]) and not throughput_failed
    ok = ok and not interrupted  # a partial run proves nothing either way
    ok = ok and not damaged
    verdict = f"{passed}/{len(results)} conformance runs passed"
    if ek_ok is not None:
        verdict += f"; EK chain {'verified' if ek_ok else 'NOT verified'}"
    verdict += f"; {len(run.cases) - len(failed_cases)}/{len(run.cases)} benchmark cases measured"
    if damaged:
        verdict += "; LAB DAMAGED: " + "; ".join(f"{s.tre} not run ({s.reason})" for s in damaged)
    if interrupted:
        verdict += " (interrupted: partial)"
    if curve is not None:
        verdict += f"; {curve['verdict']}"
    data: dict[str, Any] = {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "ok": ok,
        "verdict": verdict,
        "environment": {
            "trelab": __version__,
            "python": platform.python_version(),
            "openssl": ssl.OPENSSL_VERSION,
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "platform": platform.platform(),
        },
        "method": {
            "rounds": run.rounds,
            "quick": quick,
            "seed": run.seed,
            "interleaved": True,
            "statistic": "median; 95% percentile-bootstrap CI (1000 resamples)",
            "interrupted": interrupted,
        },
        "lab": None,
        "conformance": {
            "total": len(results),
            "passed": passed,
            "outputs_checked": sum(r.checked for r in results),
            "results": [r.to_json() for r in results],
        },
        "tres": run.environments,
        "skipped": [{"tre": s.tre, "reason": s.reason} for s in [*skipped, *run.skipped]]
        + throughput_skip,
        "records": run.records(),
    }
    if curve is not None:
        data[THROUGHPUT] = curve
    if status is not None and lab_info is not None:
        data["lab"] = {
            "dir": str(status.lab_dir),
            "tcti": status.tcti,
            "swtpm": lab_info["components"]["swtpm"],
            "pcscd": lab_info["components"]["pcscd"],
            "readers": list(status.readers),
            "ek_chain_verified": ek_ok,
            "ca_bundle": str(status.ca.bundle),
        }
    validate_report(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    # A run cut short never replaces a complete report: it goes beside it, named partial.
    stem = "report.partial" if interrupted else "report"
    atomic_write_text(out_dir / f"{stem}.json", render_json(data), mode=0o644)
    atomic_write_text(out_dir / f"{stem}.md", render_markdown(data), mode=0o644)
    atomic_write_text(out_dir / f"{stem}.html", render_html(data), mode=0o644)
    summary = f"{verdict}\nreport: {out_dir / stem}.html (also {stem}.md, {stem}.json)"
    if interrupted:
        kept = out_dir / "report.html"
        summary += (
            f"\ninterrupted: {kept} was left as it was" if kept.is_file() else "\ninterrupted"
        )
        return MainJobReport(data=data, summary=summary, exit_code=INTERRUPTED_EXIT)
    with contextlib.suppress(FileNotFoundError):  # a complete run supersedes a partial one
        for suffix in ("json", "md", "html"):
            (out_dir / f"report.partial.{suffix}").unlink()
    return MainJobReport(data=data, summary=summary, exit_code=0 if ok else 1)
