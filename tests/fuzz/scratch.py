"""Scratch directories of the harnesses, on a RAM disk where there is one.

libFuzzer ends a run with the C library's ``exit()``, so Python's ``atexit`` handlers never run
and a harness's directory (an operator store grows by an audit entry per refused request) would
stay in ``/dev/shm`` after every run. Each directory is named after the process that made it,
and the next harness to start removes those whose process is gone."""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

_PREFIX = "trelab-fuzz-"
_OWNED = re.compile(re.escape(_PREFIX) + r"[a-z_]+-pid([0-9]{1,10})-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_orphans(parent: Path) -> None:
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            owner = _OWNED.match(entry.name)
            if owner is not None and entry.is_dir() and not _alive(int(owner.group(1))):
                shutil.rmtree(entry, ignore_errors=True)


def scratch_dir(name: str) -> Path:
    """A fresh directory for harness ``name`` (lower-case letters), removed at a normal exit
    and otherwise by the next harness that starts after this process ended."""
    shm = Path("/dev/shm")
    parent = shm if shm.is_dir() else Path(tempfile.gettempdir())
    _remove_orphans(parent)
    where = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{name}-pid{os.getpid()}-", dir=parent))
    atexit.register(shutil.rmtree, where, ignore_errors=True)
    return where
