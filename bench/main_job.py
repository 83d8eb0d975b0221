"""Edge: processes, filesystem, clock. The main job: lab up → conformance → AKA bench → report.

What ``make bench`` runs. It brings the lab up itself (and down again if it started it),
so a fresh machine needs nothing else.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import ssl
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aka.conformance import SetResult, run_milenage_sets, run_tuak_sets
from trelab import __version__
from trelab.atomic import atomic_write_text

from .aka_bench import run_aka_bench
from .report import REPORT_VERSION, render_json, render_markdown

__all__ = ["MainJobReport", "load_vector_sets", "run_main_job"]


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


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _tuak_bench() -> dict[str, float] | None:
    try:
        from .tuak_bench import run_tuak_bench
    except ImportError:
        return None
    return run_tuak_bench()


def run_main_job(
    *,
    out_dir: Path,
    lab_dir: Path | None = None,
    subscribers: int = 10_000,
    keep_lab: bool = False,
    progress: Any = None,
) -> MainJobReport:
    from host.lab import Lab

    def say(message: str) -> None:
        print(f"trelab: {message}", file=sys.stderr, flush=True)

    lab = Lab(lab_dir)
    was_running = lab.status().running
    say(f"lab: bringing up {lab.path}")
    status = lab.up()
    try:
        say("conformance: running the 3GPP Milenage and TUAK test sets")
        vectors = load_vector_sets()
        results: list[SetResult] = run_milenage_sets(vectors["milenage"])
        results += run_tuak_sets(vectors["tuak"])
        say(f"benchmark: software AKA over {subscribers:,} subscribers")
        benches = [run_aka_bench(subscribers=subscribers).to_json()]
        if benches[0]["kernel"] == "native":
            benches.append(
                run_aka_bench(subscribers=min(subscribers, 2_000), kernel="python").to_json()
            )
        tuak = _tuak_bench()
        lab_info = status.to_dict()
    finally:
        if not keep_lab and not was_running:
            say("lab: stopping what this run started")
            lab.down()

    passed = sum(r.passed for r in results)
    ek_ok = bool(status.ca.verified)
    ok = passed == len(results) and ek_ok and len(results) > 0
    verdict = (
        f"{passed}/{len(results)} conformance runs passed; EK chain "
        f"{'verified' if ek_ok else 'NOT verified'}"
    )
    data: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "ok": ok,
        "verdict": verdict,
        "environment": {
            "trelab": __version__,
            "python": platform.python_version(),
            "openssl": ssl.OPENSSL_VERSION,
            "cpu": _cpu(),
            "cores": os.cpu_count(),
            "platform": platform.platform(),
        },
        "lab": {
            "dir": str(status.lab_dir),
            "tcti": status.tcti,
            "swtpm": lab_info["components"]["swtpm"],
            "pcscd": lab_info["components"]["pcscd"],
            "readers": list(status.readers),
            "ek_chain_verified": ek_ok,
            "ca_bundle": str(status.ca.bundle),
        },
        "conformance": {
            "total": len(results),
            "passed": passed,
            "outputs_checked": sum(r.checked for r in results),
            "results": [r.to_json() for r in results],
        },
        "aka_bench": benches,
        "tuak_bench": tuak,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "report.json", render_json(data), mode=0o644)
    atomic_write_text(out_dir / "report.md", render_markdown(data), mode=0o644)
    best = benches[0]
    summary = (
        f"{verdict}\n"
        f"device AKA ({best['kernel']}): {best['aka_ns_median'] / 1000:.2f} µs median "
        f"({best['aka_vs_raw_aes']:.1f}× a raw AES call); "
        f"{best['av_per_s']:,.0f} vectors/s over {best['subscribers']:,} subscribers\n"
        f"report: {out_dir / 'report.md'} and {out_dir / 'report.json'}"
    )
    return MainJobReport(data=data, summary=summary, exit_code=0 if ok else 1)
