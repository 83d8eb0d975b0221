"""Edge: /proc and signals. Find, check and stop the lab's own daemons (swtpm, pcscd) by pid.

A pid alone is not an identity: pids are reused and, on hosts whose init is slow to reap, a
killed daemon lingers as a zombie. So a process is "ours" only when it is alive (not a zombie),
its start time (``/proc/PID/stat`` field 22) equals the one recorded when we started it, and its
command line looks like what we started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from .digits import is_decimal

__all__ = [
    "cmdline",
    "find_by_name",
    "is_alive",
    "matches",
    "reap",
    "starttime",
    "terminate",
    "wait_until",
]

_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the ``(comm)`` field, or None if there is no such process."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def is_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (a zombie no longer serves anything)."""
    if pid <= 0:
        return False
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def starttime(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot; None if it is gone or a zombie."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22 overall; fields[0] is field 3 (state)


def cmdline(pid: int) -> list[str] | None:
    """argv of ``pid``; None if it is gone (or a zombie, whose cmdline is empty)."""
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if not raw:
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def matches(
    pid: int,
    *,
    program: str,
    start: int | None = None,
    contains: str | None = None,
) -> bool:
    """True if ``pid`` is a live ``program`` (argv[0] basename), started at ``start``, whose
    command line contains ``contains``: guards against killing a reused pid."""
    argv = cmdline(pid)
    if not argv or os.path.basename(argv[0]) != program:
        return False
    if start is not None and starttime(pid) != start:
        return False
    return contains is None or any(contains in arg for arg in argv)


def find_by_name(program: str) -> list[int]:
    """Pids of live processes whose argv[0] basename is ``program`` (like ``pgrep -x``)."""
    found: list[int] = []
    for entry in _PROC.iterdir():
        if is_decimal(entry.name):
            pid = int(entry.name)
            argv = cmdline(pid)
            if argv and os.path.basename(argv[0]) == program and is_alive(pid):
                found.append(pid)
    return sorted(found)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; return the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return condition()
        time.sleep(interval)


def reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our child (or we are its subreaper), so it does
    not linger as a zombie; a no-op for anyone else's process."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def terminate(pid: int, *, timeout: float = 5.0) -> None:
    """SIGTERM ``pid``, wait up to ``timeout`` s, then SIGKILL; reap it if it is our child.

    The caller has checked with :func:`matches` that ``pid`` is the process it means.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)

    def gone() -> bool:
        reap(pid)
        return not is_alive(pid)

    if not wait_until(gone, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_until(gone, 2.0)
    reap(pid)
