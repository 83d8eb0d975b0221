"""Ctrl-C during ``trelab bench run`` stops it now, and the partial report goes beside the last
complete one instead of replacing it. Real process, real SIGINT to its process group (what a
terminal's Ctrl-C sends)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.schema import validate_report


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "host.cli", *argv],
        stdout=subprocess.PIPE, stderr=log.open("wb"), stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, as a shell job would have
    )  # fmt: skip


def _wait_for(log: Path, text: str, child: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        assert child.poll() is None, f"exited {child.returncode} first: {log.read_text()}"
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared: {log.read_text()}")


def test_ctrl_c_during_rounds_stops_and_keeps_the_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    out.mkdir()
    complete = {"name": "report.json", "text": '{"complete": "earlier run"}\n'}
    (out / complete["name"]).write_text(complete["text"])
    (out / "report.html").write_text("<p>earlier complete run</p>\n")
    log = tmp_path / "stderr.log"
    child = _start(["bench", "run", "--no-lab", "--rounds", "100000", "--out", str(out)], log)
    try:
        _wait_for(log, "interleaved rounds", child, 120)
        time.sleep(1.0)  # inside the rounds
        os.killpg(child.pid, signal.SIGINT)
        sent = time.monotonic()
        child.wait(60)
        stopped_after = time.monotonic() - sent
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    stderr = log.read_text()
    assert child.returncode == 130, stderr
    assert stopped_after < 15, f"still running {stopped_after:.1f} s after Ctrl-C"
    assert "Traceback" not in stderr
    # the complete report is untouched; the partial one is beside it and says what it is
    assert (out / "report.json").read_text() == complete["text"]
    assert (out / "report.html").read_text() == "<p>earlier complete run</p>\n"
    partial = json.loads((out / "report.partial.json").read_text())
    validate_report(partial)
    assert partial["method"]["interrupted"] is True
    assert partial["ok"] is False
    assert "INTERRUPTED" in (out / "report.partial.md").read_text()
    assert "INTERRUPTED" in (out / "report.partial.html").read_text()
    assert "report.html was left as it was" in child.stdout.read().decode()  # type: ignore[union-attr]


def test_ctrl_c_during_throughput_stops_and_writes_partial_beside(
    tmp_path: Path, lab_factory: object
) -> None:
    """The throughput part runs its own server and swtpms; Ctrl-C reaches them too (same
    process group) and the run ends at once, exit 130, with the partial report beside."""
    out = tmp_path / "reports"
    log = tmp_path / "stderr.log"
    argv = ["bench", "run", "--quick", "--rounds", "1", "--out", str(out)]
    child = _start([*argv, "--lab-dir", str(tmp_path / "lab")], log)
    try:
        _wait_for(log, "throughput: levels", child, 600)
        time.sleep(2.0)  # the warm-up provisioning is under way
        os.killpg(child.pid, signal.SIGINT)
        sent = time.monotonic()
        child.wait(120)
        stopped_after = time.monotonic() - sent
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    stderr = log.read_text()
    assert child.returncode == 130, stderr
    assert stopped_after < 15, f"still running {stopped_after:.1f} s after Ctrl-C"
    assert not (out / "report.json").exists()  # nothing complete was claimed
    partial = json.loads((out / "report.partial.json").read_text())
    validate_report(partial)
    assert partial["method"]["interrupted"] is True and partial["ok"] is False
    # the lab this run brought up is down again
    assert not (tmp_path / "lab" / "lab.json").exists()
