"""Every fuzz harness, briefly, on every test run: the committed starting corpus first, then fresh
mutations for ``TRELAB_FUZZ_SECONDS`` (default 8) each. A finding fails the test and leaves
the input in the test's temporary directory (and its path in the message); ``make fuzz``
runs the same harnesses for as long as asked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tests.fuzz.run import CORPUS, TARGETS

ROOT = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("TRELAB_FUZZ_SECONDS", "8"))


def _fuzz(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", target, "-timeout=1", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SECONDS + 240,
        check=False,
    )


def test_every_target_has_a_starting_corpus() -> None:
    assert len(TARGETS) >= 15
    for target in TARGETS:
        assert any((CORPUS / target).iterdir()), f"no starting inputs for {target}"


@pytest.mark.parametrize("target", TARGETS)
def test_harness_finds_nothing(target: str, tmp_path: Path) -> None:
    fresh = tmp_path / "corpus"
    fresh.mkdir()
    run = _fuzz(
        target,
        f"-max_total_time={SECONDS}",
        f"-artifact_prefix={tmp_path}/",
        str(fresh),
        str(CORPUS / target),
    )
    log = run.stderr
    found = sorted(p for p in tmp_path.iterdir() if p.is_file())
    if run.returncode != 0 and [p.name.split("-")[0] for p in found] == ["timeout"]:
        # a stall of this shared machine, or a real hang? a hang repeats on its own input
        again = _fuzz(target, "-runs=3", str(found[0]))
        assert again.returncode == 0, f"{target}: hangs on {found[0]}\n{again.stderr[-3000:]}"
        warnings.warn(f"{target}: one input took over 1 s once, then not again", stacklevel=1)
        return
    assert run.returncode == 0, f"{target}: finding saved as {found}\n{log[-4000:]}"
    done = re.search(r"Done (\d+) runs", log)
    starting = len(list((CORPUS / target).iterdir()))
    assert done is not None and int(done.group(1)) >= starting, log[-2000:]
