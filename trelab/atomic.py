"""Edge: filesystem. Write a file so that a crash at any point leaves the old or the new file."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "file_lock", "observe_fsync"]

#: wrappers each fsync and the rename run through (benchmarks time durability apart)
_fsync_runners: list[Callable[[Callable[[], None]], None]] = []


@contextlib.contextmanager
def observe_fsync(runner: Callable[[Callable[[], None]], None]) -> Iterator[None]:
    """Inside the block, every fsync and the rename of :func:`atomic_write_bytes` are done by
    calling ``runner(step)`` (which must call ``step`` once: e.g. to time it)."""
    _fsync_runners.append(runner)
    try:
        yield
    finally:
        _fsync_runners.remove(runner)


def _fsync(fd: int) -> None:
    if not _fsync_runners:
        os.fsync(fd)
        return
    _fsync_runners[-1](lambda: os.fsync(fd))


def _replace(source: str, target: Path) -> None:
    if not _fsync_runners:
        os.replace(source, target)
        return
    _fsync_runners[-1](lambda: os.replace(source, target))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory, fsync, rename, fsync dir."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except FileNotFoundError:  # the directory first (only then: a state write is a hot path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            _fsync(fd)
        finally:
            os.close(fd)
        _replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        _fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, mode: int = 0o600) -> None:
    """Text variant of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode(), mode=mode)


@contextlib.contextmanager
def file_lock(lock_path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if absent) for a read-modify-write
    across processes; released when the block ends, or by the kernel if the process dies."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
    try:
        fd = os.open(lock_path, flags, 0o666)
    except FileNotFoundError:  # the directory first (only then: an AKA takes this lock)
        Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, flags, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
