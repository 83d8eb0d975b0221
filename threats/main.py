"""Edge: processes, filesystem. ``trelab threats``: bring the lab up if needed (like the
benchmark's main job), run the threat checks, write the report, stop what this run started.

Besides the lab (its TPM is the victim M2ME's TRE, its virtual USIM the subscriber's card) a
*scratch* lab is brought up in a temporary directory the first time a check needs a second TPM
(the attacker's equipment, the replacement TRE, the TPM that DA lockout, PCR extension and
TPM2_Clear may break); it is always stopped and removed at the end.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threats.context import ThreatLab
from threats.engine import run_checks, select_threats
from threats.report import build_document, render_html, render_json, render_text
from trelab.atomic import atomic_write_text
from trelab.errors import Unavailable

__all__ = ["ThreatReport", "run_threat_checks"]


@dataclass(frozen=True)
class ThreatReport:
    document: dict[str, Any]
    text: str
    exit_code: int


def _say(message: str) -> None:
    print(f"trelab: {message}", file=sys.stderr, flush=True)


def run_threat_checks(
    *,
    lab_dir: Path,
    only: Sequence[str] | None = None,
    keep_lab: bool = False,
    html_out: Path | None = None,
    json_out: Path | None = None,
    progress: Callable[[str], None] = _say,
    reader_wait: float = 60.0,
) -> ThreatReport:
    """Run the checks of ``only`` (all 16 threats by default) against the lab at
    ``lab_dir``; exit code 1 if a finding the lab should have
    blocked did not hold or a check broke.

    Raises:
        BadInput: an unknown threat in ``only``.
        Unavailable: the lab cannot come up, or another lab's card keeps the reader for
            more than ``reader_wait`` seconds.
    """
    from lab.lab import Lab

    threat_ids = select_threats(only)
    lab = Lab(lab_dir)
    was_running = lab.status().running
    progress(f"lab: bringing up {lab.path}")
    status = lab.up(progress=progress)
    try:  # the USIM findings need this lab's card in the reader, not another lab's
        lab.wait_for_reader(reader_wait, progress)
    except Unavailable:
        if not keep_lab and not was_running:
            lab.down()
        raise
    scratch_dir = Path(tempfile.mkdtemp(prefix="trelab-threats-scratch-"))
    work = Path(tempfile.mkdtemp(prefix="trelab-threats-"))
    scratch = Lab(scratch_dir)
    scratch_used = False

    def bring_up_scratch() -> Any:
        nonlocal scratch_used
        scratch_used = True
        progress(f"scratch lab: bringing up a second TPM in {scratch_dir}")
        return scratch.up()

    ctx = ThreatLab(status, work, scratch=bring_up_scratch)
    try:
        run = run_checks(ctx, threat_ids, progress=lambda line: progress(line))
    finally:
        ctx.close()
        if scratch_used:
            progress("scratch lab: stopping it")
            scratch.down()
        shutil.rmtree(scratch_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        if not keep_lab and not was_running:
            progress("lab: stopping what this run started")
            lab.down()
    document = build_document(
        run.findings,
        threat_ids=run.threats,
        seconds=run.seconds,
        generated=run.started,
        total_seconds=run.total_seconds,
        lab={"dir": str(status.lab_dir), "tcti": status.tcti, "readers": list(status.readers)},
    )
    text = render_text(document)
    if html_out is not None:
        html_out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(html_out, render_html(document), mode=0o644)
        text += f"\nreport: {html_out}"
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json_out, render_json(document), mode=0o644)
    return ThreatReport(document, text, 0 if document["ok"] else 1)
