"""Edge: process. Test hooks of the operator side: kill this process with
SIGKILL at a named point — a real ``kill -9``: no cleanup, no flush, no atexit — so a test can
interrupt the server just before or just after a store transaction commits, or SHO-B's OTA
driver between two secured packets, and then check that a retry completes.

Off unless the environment variable is set when the hook is made (read once); nothing else
reads it. ``TRELAB_TEST_CRASH_SIGNAL=INT`` makes the hook send SIGINT instead — what Ctrl-C
sends: the process unwinds through its ``finally`` blocks exactly as an interrupted user's would. ``TRELAB_TEST_SERVER_CRASH_AT`` is read by :class:`network.server.NetworkApp`,
``TRELAB_TEST_CRASH_AT`` (points ``ota:…``) by :class:`network.transfer.KiTransfer`.
With ``TRELAB_TEST_CRASH_ONCE=<file>`` a hook fires only if it is first to create that file:
once across all the processes that read the same variables (gunicorn's workers, and those
that replace a killed one).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

from .digits import is_decimal

__all__ = [
    "CRASH_ONCE_ENV",
    "CRASH_SIGNAL_ENV",
    "SERVER_CRASH_ENV",
    "TRANSFER_CRASH_ENV",
    "CrashHook",
    "crash_hook",
    "no_crash",
]

SERVER_CRASH_ENV = "TRELAB_TEST_SERVER_CRASH_AT"
TRANSFER_CRASH_ENV = "TRELAB_TEST_CRASH_AT"  # the agent's variable; OTA points start "ota:"
CRASH_SIGNAL_ENV = "TRELAB_TEST_CRASH_SIGNAL"  # KILL (default) or INT
CRASH_ONCE_ENV = "TRELAB_TEST_CRASH_ONCE"  # a file: the first process to create it fires
CrashHook = Callable[[str], None]


def no_crash(point: str) -> None:
    """The hook when none is asked for: every point passes."""


def _kill_self() -> None:
    interrupt = os.environ.get(CRASH_SIGNAL_ENV, "KILL").upper() == "INT"
    os.kill(os.getpid(), signal.SIGINT if interrupt else signal.SIGKILL)


def crash_hook(
    env: str, *, target: str | None = None, kill: Callable[[], None] | None = None
) -> CrashHook | None:
    """The hook ``$env`` (or ``target``, if given) asks for — ``<point>[#n]``: ``kill`` (SIGKILL
    of this process) on reaching ``point`` for the n-th time (default the first) — or None when
    nothing is asked."""
    if target is None:
        target = os.environ.get(env)
    if not target:
        return None
    die = kill or _kill_self
    point, _, nth = target.partition("#")
    left = [int(nth) if is_decimal(nth) else 1]
    lock = threading.Lock()  # the server reaches points from several request threads
    once = os.environ.get(CRASH_ONCE_ENV)

    def first_to_fire() -> bool:
        if not once:
            return True
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return False
        return True

    def hook(reached: str) -> None:
        if reached != point:
            return
        with lock:
            left[0] -= 1
            if left[0] == 0 and first_to_fire():
                die()

    return hook
