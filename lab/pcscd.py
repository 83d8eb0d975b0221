"""Edge: processes, PC/SC. pcscd with the vsmartcard vpcd driver, shared by every lab on a host.

pcscd is one per host (socket ``/run/pcscd/pcscd.comm``) and vpcd listens on fixed ports
35963/35964, so two labs cannot each have their own. Ownership, decided here:

- A pcscd that trelab did **not** start (system service, socket activation, a terminal) is used
  as is and never stopped by trelab.
- A pcscd that trelab started is recorded in a per-user registry (``owner.json``: pid, start
  time, which lab started it) and shared by reference count: every lab that is up has a file in
  ``users/``. ``lab down`` removes its own entry and stops the pcscd only if trelab started it
  and no other lab is still registered — so the last lab down stops it, whichever started it.
- Entries of labs that vanished without ``lab down`` (directory deleted, machine rebooted) are
  pruned with a caller's predicate, so they cannot keep pcscd alive forever.

All registry changes happen under an exclusive ``flock`` on ``.lock``, so concurrent ``lab up``
and ``lab down`` of different labs see a consistent count. The registry lives in
``$TRELAB_PCSCD_REGISTRY``, else ``$XDG_RUNTIME_DIR/trelab/pcscd``, else a private directory under
the system temp dir (cleared at reboot, like pcscd itself).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lab import ports
from trelab import proc
from trelab.atomic import atomic_write_text, file_lock
from trelab.digits import is_decimal
from trelab.errors import Unavailable

__all__ = [
    "PCSCD_RUN_DIR",
    "VPCD_PORTS",
    "VPCD_READER_PREFIX",
    "Acquired",
    "OwnerRecord",
    "PcscdRegistry",
    "PcscdState",
    "Released",
    "acquire",
    "inspect",
    "list_readers",
    "pcscd_running",
    "release",
    "require_tools",
    "running_pid",
]

VPCD_PORTS = (35963, 35964)
VPCD_READER_PREFIX = "Virtual PCD"
PCSCD_RUN_DIR = Path("/run/pcscd")
_READER_CONF_DIR = Path("/etc/reader.conf.d")
_SCARD_E_NO_SERVICE = 0x8010001D
_SCARD_E_SERVICE_STOPPED = 0x8010001E
_SCARD_E_NO_READERS_AVAILABLE = 0x8010002E
_PCSC_FIX = "apt-get install pcscd vsmartcard-vpcd"

State = Literal["running", "stopped", "crashed"]
StillUsing = Callable[[str], bool]


# ---- tools and PC/SC ---------------------------------------------------------------------


def _pcscd_binary() -> str | None:
    # pcscd lives in /usr/sbin, which is not on every user's PATH.
    found = shutil.which("pcscd")
    if found is None and Path("/usr/sbin/pcscd").is_file():
        found = "/usr/sbin/pcscd"
    return found


def _vpcd_configured() -> bool:
    try:
        confs = list(_READER_CONF_DIR.iterdir())
    except OSError:
        return False
    for conf in confs:
        with contextlib.suppress(OSError):
            if "libifdvpcd" in conf.read_text(errors="replace"):
                return True
    return False


def require_tools() -> None:
    """Raises:
    Unavailable: pcscd is not installed, or the vpcd driver is not configured.
    """
    if _pcscd_binary() is None:
        raise Unavailable("pcscd not found (PATH or /usr/sbin)", fix=_PCSC_FIX)
    if not _vpcd_configured():
        raise Unavailable(
            f"vpcd driver not configured in {_READER_CONF_DIR}",
            fix="apt-get install vsmartcard-vpcd",
        )


def running_pid() -> int | None:
    """Pid of the live pcscd on this host, if any (there is at most one)."""
    pids = proc.find_by_name("pcscd")
    return pids[0] if pids else None


def pcscd_running() -> bool:
    """True if a pcscd process is alive."""
    return running_pid() is not None


def list_readers() -> list[str]:
    """Reader names pcscd offers now (``[]`` if it has none).

    Raises:
        Unavailable: pcscd is not running, or pyscard is not installed.
    """
    try:
        from smartcard import scard
    except ImportError:
        raise Unavailable("pyscard not installed", fix="pip install pyscard") from None
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        code = hresult & 0xFFFFFFFF
        if code in (_SCARD_E_NO_SERVICE, _SCARD_E_SERVICE_STOPPED):
            raise Unavailable("pcscd is not running", fix="run `trelab lab up` or start pcscd")
        raise Unavailable(f"PC/SC: {scard.SCardGetErrorMessage(hresult)}", fix="restart pcscd")
    try:
        hresult, names = scard.SCardListReaders(context, [])
        if hresult & 0xFFFFFFFF == _SCARD_E_NO_READERS_AVAILABLE:
            return []
        if hresult != scard.SCARD_S_SUCCESS:
            raise Unavailable(f"PC/SC: {scard.SCardGetErrorMessage(hresult)}", fix="restart pcscd")
        return [str(name) for name in names]
    finally:
        scard.SCardReleaseContext(context)


def _vpcd_readers() -> list[str]:
    try:
        return [r for r in list_readers() if r.startswith(VPCD_READER_PREFIX)]
    except Unavailable:
        return []


# ---- the registry ------------------------------------------------------------------------


def _default_registry_dir() -> Path:
    explicit = os.environ.get("TRELAB_PCSCD_REGISTRY")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "trelab" / "pcscd"
    return Path(tempfile.gettempdir()) / f"trelab-{os.getuid()}" / "pcscd"


@dataclass(frozen=True)
class OwnerRecord:
    """The pcscd trelab started: identity (pid + start time), log and starting lab."""

    pid: int
    start: int
    log: str
    started_by: str
    started_at: str

    def alive(self) -> bool:
        return proc.matches(self.pid, program="pcscd", start=self.start)


class PcscdRegistry:
    """Who started pcscd and which labs use it (see the module docstring for the policy)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else _default_registry_dir()

    def _prepare(self) -> None:
        if not self.path.parent.exists():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.path / "users").mkdir(mode=0o700, parents=True, exist_ok=True)
        # A shared temp dir: refuse a registry someone else planted for us.
        if self.path.stat().st_uid != os.getuid():
            raise Unavailable(
                f"pcscd registry {self.path} belongs to another user",
                fix="set TRELAB_PCSCD_REGISTRY to a directory of yours",
            )

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the registry's exclusive lock."""
        self._prepare()
        with file_lock(self.path / ".lock"):
            yield

    @property
    def _owner_file(self) -> Path:
        return self.path / "owner.json"

    def owner(self) -> OwnerRecord | None:
        """The recorded trelab-started pcscd, alive or not."""
        try:
            raw: dict[str, Any] = json.loads(self._owner_file.read_text())
            return OwnerRecord(
                pid=int(raw["pid"]),
                start=int(raw["start"]),
                log=str(raw["log"]),
                started_by=str(raw["started_by"]),
                started_at=str(raw["started_at"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def set_owner(self, record: OwnerRecord) -> None:
        atomic_write_text(self._owner_file, json.dumps(record.__dict__, indent=2) + "\n")

    def clear_owner(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._owner_file.unlink()

    def _user_file(self, lab_dir: str) -> Path:
        return self.path / "users" / (hashlib.sha256(lab_dir.encode()).hexdigest()[:16] + ".json")

    def users(self) -> list[str]:
        """Lab directories registered as using pcscd."""
        found: list[str] = []
        try:
            entries = sorted((self.path / "users").glob("*.json"))
        except OSError:
            return found
        for entry in entries:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                found.append(str(json.loads(entry.read_text())["lab_dir"]))
        return found

    def add_user(self, lab_dir: str) -> None:
        atomic_write_text(self._user_file(lab_dir), json.dumps({"lab_dir": lab_dir}) + "\n")

    def remove_user(self, lab_dir: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._user_file(lab_dir).unlink()

    def prune(self, still_using: StillUsing) -> list[str]:
        """Drop users for which ``still_using(lab_dir)`` is false; return the remaining ones."""
        remaining = []
        for lab_dir in self.users():
            if still_using(lab_dir):
                remaining.append(lab_dir)
            else:
                self.remove_user(lab_dir)
        return remaining


# ---- state, acquire, release -------------------------------------------------------------


@dataclass(frozen=True)
class PcscdState:
    """What pcscd looks like now, from one lab's point of view.

    ``state`` is "crashed" when trelab started a pcscd that is gone without a ``lab down``.
    ``owned`` is True when the running pcscd is the one trelab started.
    """

    state: State
    pid: int | None
    owned: bool
    started_by: str | None
    log: str | None
    readers: tuple[str, ...]
    users: tuple[str, ...]
    registry: Path
    note: str = ""

    @property
    def vpcd_ports(self) -> tuple[int, ...]:
        return VPCD_PORTS

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pid": self.pid,
            "started_by_trelab": self.owned,
            "started_by_lab": self.started_by,
            "ports": list(self.vpcd_ports),
            "readers": list(self.readers),
            "users": len(self.users),
            "log": self.log,
            "registry": str(self.registry),
            "note": self.note,
        }


def inspect(registry: PcscdRegistry) -> PcscdState:
    """Current pcscd state, without changing anything."""
    owner = registry.owner()
    pid = running_pid()
    users = tuple(registry.users())
    if pid is None:
        crashed = owner is not None
        return PcscdState(
            state="crashed" if crashed else "stopped",
            pid=None,
            owned=False,
            started_by=owner.started_by if owner else None,
            log=owner.log if owner else None,
            readers=(),
            users=users,
            registry=registry.path,
            note=f"pcscd started by trelab (pid {owner.pid}) is gone" if owner else "",
        )
    owned = owner is not None and owner.pid == pid and owner.alive()
    readers: tuple[str, ...] = ()
    note = ""
    try:
        readers = tuple(list_readers())
    except Unavailable as exc:
        note = str(exc)
    return PcscdState(
        state="running",
        pid=pid,
        owned=owned,
        started_by=owner.started_by if owned and owner else None,
        log=owner.log if owned and owner else None,
        readers=readers,
        users=users,
        registry=registry.path,
        note=note or ("" if owned else "not started by trelab: left alone"),
    )


def _clear_stale_socket() -> None:
    """pcscd refuses to start while /run/pcscd/pcscd.pid names a process that still exists —
    and a zombie does, on hosts whose init reaps late. Remove the files only when no live pcscd
    exists (the caller checked), as pcscd itself would for a dead pid."""
    pid_file = PCSCD_RUN_DIR / "pcscd.pid"
    try:
        text = pid_file.read_text().strip()
    except OSError:
        return
    if is_decimal(text) and proc.is_alive(int(text)):
        return
    for name in ("pcscd.comm", "pcscd.pid"):
        with contextlib.suppress(OSError):
            (PCSCD_RUN_DIR / name).unlink()


_children: dict[int, subprocess.Popen[bytes]] = {}  # keeps Popen objects until we reap them


def _forget(pid: int) -> None:
    """Drop (and reap, if it is our child) a pcscd we started that has died."""
    child = _children.pop(pid, None)
    if child is not None:
        child.poll()


Progress = Callable[[str], None]
#: Linux keeps a closed connection's port in TIME_WAIT for 60 s (TCP_TIMEWAIT_LEN).
PORT_WAIT = 65.0
_START_ATTEMPTS = 3


def _say_nothing(message: str) -> None:
    """The default progress sink: ``lab up`` reports through its actions instead."""


def _wait_for_vpcd_ports(say: Progress, actions: list[str]) -> None:
    """Before pcscd starts: vpcd must be able to bind its ports. Sockets still on them (a
    client the kernel gave one of them, or vpcd's own connections of a pcscd just stopped, in
    TIME_WAIT) make its ``bind`` fail; wait for the kernel to release them, and say why.

    Raises:
        Unavailable: something still holds a port after :data:`PORT_WAIT` seconds.
    """
    holders = ports.sockets_on(VPCD_PORTS)
    if not holders:
        return
    what = ports.describe_holders(holders)
    say(f"pcscd: vpcd's {what} — waiting up to {PORT_WAIT:.0f} s for the kernel to free it")
    began = time.monotonic()
    if not proc.wait_until(lambda: not ports.sockets_on(VPCD_PORTS), PORT_WAIT, interval=0.5):
        left = ports.describe_holders(ports.sockets_on(VPCD_PORTS))
        raise Unavailable(
            f"vpcd cannot listen: {left} (still held after {PORT_WAIT:.0f} s)",
            fix=f"find the holder with `ss -tanp 'sport = :{VPCD_PORTS[0]}'`",
        )
    actions.append(f"waited {time.monotonic() - began:.0f} s for vpcd's ports ({what})")


def _bind_failed(log_path: Path, since: int) -> bool:
    try:
        with log_path.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
    except OSError:
        return False
    return "Address already in use" in text or "bind" in text.lower()


def _start(
    log_path: Path, lab_dir: str, timeout: float, say: Progress, actions: list[str]
) -> OwnerRecord:
    binary = _pcscd_binary()
    if binary is None:
        raise Unavailable("pcscd not found (PATH or /usr/sbin)", fix=_PCSC_FIX)
    _clear_stale_socket()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    reserved = ports.reserve_ports(VPCD_PORTS)
    if reserved is not None:
        actions.append(reserved)
    for attempt in range(1, _START_ATTEMPTS + 1):
        _wait_for_vpcd_ports(say, actions)
        since = log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log:
            # Foreground so its log lands in our file; own session so it outlives `lab up`.
            child = subprocess.Popen(
                [binary, "--foreground"], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        _children[child.pid] = child

        def ready(child: subprocess.Popen[bytes] = child) -> bool:
            return child.poll() is not None or bool(_vpcd_readers())

        proc.wait_until(ready, timeout, interval=0.05)
        if child.poll() is not None:
            _children.pop(child.pid, None)
            last = _tail(log_path)
            fix = f"see {log_path}"
            if "Another pcscd" in last or "already exists" in last:
                fix = "another pcscd owns /run/pcscd; stop it or let trelab use it"
            elif os.geteuid() != 0:
                fix = "pcscd needs root to create /run/pcscd: start it with sudo (or systemd)"
            raise Unavailable(f"pcscd exited with {child.returncode}: {last}", fix=fix)
        start = proc.starttime(child.pid)
        if _vpcd_readers() and start is not None:
            return OwnerRecord(
                pid=child.pid,
                start=start,
                log=str(log_path),
                started_by=lab_dir,
                started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            )
        proc.terminate(child.pid)
        _children.pop(child.pid, None)
        held = ports.sockets_on(VPCD_PORTS)
        if not (_bind_failed(log_path, since) or held):
            raise Unavailable(
                f"pcscd started but shows no Virtual PCD reader (see {log_path})",
                fix="apt-get install vsmartcard-vpcd" if not _vpcd_configured() else
                "check the vpcd lines in /etc/reader.conf.d and pcscd's log",
            )  # fmt: skip
        why = f"vpcd could not bind its port ({ports.describe_holders(held) or 'in use'})"
        if attempt == _START_ATTEMPTS:
            raise Unavailable(
                f"pcscd started but shows no Virtual PCD reader: {why}, {attempt} attempts",
                fix=f"find the holder with `ss -tanp 'sport = :{VPCD_PORTS[0]}'`",
            )
        say(f"pcscd: {why}; retrying (attempt {attempt + 1} of {_START_ATTEMPTS})")
        actions.append(f"pcscd attempt {attempt}: {why}; retried")
    raise AssertionError("unreachable")  # pragma: no cover


def _tail(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(no output)"


@dataclass(frozen=True)
class Acquired:
    """Result of :func:`acquire`: the state, and whether this call started pcscd."""

    state: PcscdState
    started: bool
    actions: tuple[str, ...] = ()  # what it took: ports reserved, waits, retries


def acquire(
    registry: PcscdRegistry,
    lab_dir: str,
    log_path: Path,
    *,
    timeout: float = 10.0,
    progress: Progress | None = None,
) -> Acquired:
    """Register ``lab_dir`` as a pcscd user and make sure pcscd runs with the vpcd readers;
    start it (recorded as trelab's) only if no pcscd runs.

    Raises:
        Unavailable: pcscd is missing, will not start, or shows no Virtual PCD reader.
    """
    require_tools()
    started = False
    actions: list[str] = []
    with registry.locked():
        owner = registry.owner()
        pid = running_pid()
        if owner is not None and not (owner.pid == pid and owner.alive()):
            registry.clear_owner()  # ours crashed, or someone else's pcscd replaced it
            _forget(owner.pid)
        if pid is None:
            say = progress or _say_nothing
            registry.set_owner(_start(log_path, lab_dir, timeout, say, actions))
            started = True
        else:
            # Drivers load asynchronously after a (re)start: give the readers a moment.
            proc.wait_until(lambda: bool(_vpcd_readers()), 3.0, interval=0.05)
            if not _vpcd_readers():
                held = ports.sockets_on(VPCD_PORTS)
                listening = any(states.get("LISTEN") for states in held.values())
                if not listening and held:
                    raise Unavailable(
                        f"pcscd (pid {pid}) shows no Virtual PCD reader: vpcd could not bind "
                        f"({ports.describe_holders(held)})",
                        fix="restart pcscd once the port is free (TIME_WAIT ends within 60 s)",
                    )
                raise Unavailable(
                    f"pcscd (pid {pid}) shows no Virtual PCD reader",
                    fix="apt-get install vsmartcard-vpcd, then restart pcscd"
                    if not _vpcd_configured()
                    else "restart pcscd (its vpcd reader did not load; see its log)",
                )
        registry.add_user(lab_dir)
        state = inspect(registry)
    return Acquired(state=state, started=started, actions=tuple(actions))


@dataclass(frozen=True)
class Released:
    """Result of :func:`release`: whether pcscd was stopped, and why (not)."""

    stopped: bool
    reason: str


def release(registry: PcscdRegistry, lab_dir: str, still_using: StillUsing) -> Released:
    """Unregister ``lab_dir``; stop pcscd if trelab started it and no other lab uses it.

    ``still_using(other_lab_dir)`` says whether another registered lab is still up; entries for
    which it is false are pruned first.
    """
    with registry.locked():
        was_user = lab_dir in registry.users()
        registry.remove_user(lab_dir)
        others = registry.prune(still_using)
        owner = registry.owner()
        pid = running_pid()
        if pid is None:
            registry.clear_owner()
            return Released(False, "pcscd was not running")
        if owner is None or not (owner.pid == pid and owner.alive()):
            registry.clear_owner()
            return Released(False, f"pcscd (pid {pid}) was not started by trelab: left running")
        if others:
            return Released(False, f"pcscd (pid {pid}) left running: {len(others)} other lab(s)")
        if not was_user:
            return Released(False, f"pcscd (pid {pid}) left running: this lab was not a user")
        proc.terminate(owner.pid)
        _forget(owner.pid)
        registry.clear_owner()
        return Released(True, f"stopped pcscd (pid {owner.pid})")
