"""The ``trelab`` process behaves like a Unix tool: a reader that leaves early (``| head -1``)
ends it silently, and usage errors under ``--json`` still print the ``{"error"}`` object.

Real processes, real pipes: the pipe's read end is closed *before* the child writes, so the
write fails every time (``head`` exiting early only makes it fail sometimes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

MILENAGE = [
    "aka", "milenage", "--k", "465b5ce8b199b49faa5f0a2ee238a6bc",
    "--op", "cdc202d5123e20f62b6d676ac72cb318", "--rand", "23553cbe9637a89d218ae64dae47bf35",
    "--sqn", "ff9bb4d0b607", "--amf", "b9b9",
]  # fmt: skip


def _run_into_closed_pipe(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte
    try:
        return subprocess.run(
            [sys.executable, "-m", "host.cli", *argv],
            stdout=write_end, stderr=subprocess.PIPE, timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)


def test_closed_stdout_ends_the_process_by_sigpipe_without_a_traceback() -> None:
    lab_status = ["lab", "status", "--lab-dir", "/nonexistent-lab"]  # prints, then exits 3
    for argv in (MILENAGE, [*MILENAGE, "--json"], lab_status):
        result = _run_into_closed_pipe(argv)
        assert result.returncode == -signal.SIGPIPE, (argv, result.returncode, result.stderr)
        assert b"Traceback" not in result.stderr, result.stderr.decode()
        assert b"BrokenPipeError" not in result.stderr


def test_shell_pipeline_into_head_exits_quietly() -> None:
    cmd = f"{sys.executable} -m host.cli aka milenage --help | head -1"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], capture_output=True, timeout=60, check=False
    )
    assert result.stdout.startswith(b"usage: trelab aka milenage")
    assert b"Traceback" not in result.stderr
    assert result.returncode in (0, 128 + signal.SIGPIPE)


def test_usage_error_with_json_prints_the_error_object() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "host.cli", "aka", "milenage", "--k", "00", "--json"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "UsageError"
    assert "--rand" in error["message"]
    assert result.stderr.decode().startswith("trelab: error: aka milenage:")
