"""The harnesses' scratch directories do not pile up in /dev/shm: libFuzzer's exit skips
Python's atexit, so the next harness removes the directories of processes that are gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fuzz.scratch import _remove_orphans, scratch_dir


def _ended_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    return int(child.stdout)


def test_directories_of_ended_processes_are_removed(tmp_path: Path) -> None:
    ended = tmp_path / f"trelab-fuzz-identity-pid{_ended_pid()}-abc"
    running = tmp_path / f"trelab-fuzz-identity-pid{os.getpid()}-def"
    unowned = tmp_path / "trelab-fuzz-identity-ghi"  # no process named: not ours to judge
    for where in (ended, running, unowned):
        where.mkdir()
        (where / "network.db").write_bytes(b"x")
    _remove_orphans(tmp_path)
    assert not ended.exists()
    assert running.exists() and unowned.exists()


def test_scratch_dir_names_its_process() -> None:
    where = scratch_dir("card")
    assert where.is_dir() and f"-pid{os.getpid()}-" in where.name
