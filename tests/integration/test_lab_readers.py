"""Labs do not fight over the card reader: ``trelab threats --lab-dir NEW`` while another lab's
card holds reader 0 waits, says which lab holds it, and then exits 3 naming it — instead of
staging every USIM attack against nothing and reporting them "not run" with exit 0. Real
processes: the session lab's card in the reader, a second lab brought up by the command."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.lab import LabStatus

pytestmark = pytest.mark.lab


def test_threats_wait_for_a_reader_held_by_another_lab_and_say_so(
    lab: LabStatus, usim_reader: str, tmp_path: Path
) -> None:
    other = tmp_path / "other-lab"
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "host.cli", "threats", "--lab-dir", str(other), "--only", "3a-1",
         "--reader-wait", "3"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    took = time.monotonic() - began
    assert result.returncode == 3, result.stderr[-1500:]
    assert f"holds the card of lab {lab.lab_dir}: waiting up to 3 s" in result.stderr
    assert f"trelab lab down --lab-dir {lab.lab_dir}" in result.stderr
    assert not (other / "lab.json").exists()  # what the command brought up, it took down
    assert took < 120, took
