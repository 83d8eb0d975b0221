"""A test run whose lab cannot start FAILS with the real reason — outside CI as well as
inside — instead of skipping and reporting green. Real process: pytest itself, run with a
PATH on which the lab's swtpm cannot be found."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_lab_test_without_its_lab_fails_not_skips(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = str(Path(sys.executable).parent)  # no swtpm, swtpm_setup, swtpm_localca
    env["TRELAB_LAB_DIR"] = str(tmp_path / "lab")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/integration/test_revocation.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-2000:]
    assert "the lab must run for this test, but: lab binaries missing: swtpm" in result.stdout
    assert "skipped" not in result.stdout.splitlines()[-1]
