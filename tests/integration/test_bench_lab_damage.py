"""A lab card whose K is no longer its profile's (what ``transfer ki --rotate-k`` leaves) makes
``trelab bench run`` FAIL — never PASS with a lab row that could not run — and says how to get
the card back; ``trelab lab reset card`` gives it back, and the bench passes again. Real
processes: the session lab's card process, restarted over a state with a rotated K, and the
bench and lab commands from the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lab.lab import Lab, LabStatus
from trelab import proc

pytestmark = pytest.mark.lab

USIM_ROW = "usim over PC/SC (emulated)"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def _bench(lab_dir: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return _cli(
        "bench", "run", "--lab-dir", str(lab_dir), "--tre", USIM_ROW, "--quick",
        "--rounds", "1", "--out", str(out), "--json",
    )  # fmt: skip


def test_a_card_with_a_rotated_k_fails_the_bench_until_lab_reset(
    lab: LabStatus, usim_reader: str, tmp_path: Path
) -> None:
    card = Lab(lab.lab_dir).status().card
    assert card is not None and card.pid is not None
    os.kill(card.pid, signal.SIGTERM)  # the card keeps its state file; edit it as OTA would
    assert proc.wait_until(lambda: not proc.is_alive(card.pid or 0), 10.0)
    state = json.loads(card.state_file.read_text())
    state["ota"] = {"counters": {}, "credentials": {"k": os.urandom(16).hex(),
                                                   "opc": os.urandom(16).hex()}}  # fmt: skip
    card.state_file.write_text(json.dumps(state))
    Lab(lab.lab_dir).up()  # restarts the crashed card over that state

    damaged = _bench(lab.lab_dir, tmp_path / "damaged")
    assert damaged.returncode == 1, damaged.stderr[-1500:]
    report = json.loads((tmp_path / "damaged" / "report.json").read_text())
    assert report["ok"] is False and "LAB DAMAGED" in report["verdict"]
    assert f"trelab lab reset card --lab-dir {lab.lab_dir}" in report["verdict"]
    assert "Verdict: FAIL" in (tmp_path / "damaged" / "report.md").read_text()

    reset = _cli("lab", "reset", "card", "--lab-dir", str(lab.lab_dir), "--json")
    assert reset.returncode == 0, reset.stderr
    assert "ota" not in json.loads(card.state_file.read_text())

    again = _bench(lab.lab_dir, tmp_path / "again")
    assert again.returncode == 0, again.stderr[-1500:]
    report = json.loads((tmp_path / "again" / "report.json").read_text())
    measured = [r for r in report["records"] if r["tre"] == USIM_ROW and r["summary"]]
    assert report["ok"] is True and measured
