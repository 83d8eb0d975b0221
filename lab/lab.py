"""Edge: processes, filesystem. The lab: a swtpm TRE with EK certificates, pcscd + vpcd, and
the emulated USIM in reader 0 and behind a modem on a pty.

``Lab(path).up()`` brings the parts up (idempotent: running parts are left as they are, a
crashed swtpm is restarted over the same TPM state), ``.down()`` stops only what ``up`` started,
``.status()`` looks without touching. The CLI (``trelab lab``), the benchmark and the test
fixtures all go through this class.

Lab directory::

    lab.json            what is running (pids, start times, ports); written atomically,
                        present from `lab up` to `lab down`
    swtpm/state/        TPM state (EKs, NV with certificates) — kept across up/down
    swtpm/swtpm.pid     swtpm's own pid file; swtpm.log, setup.log, *.conf
    ca/                 manufacturer CA for the network side: manufacturer-ca.pem (root +
                        issuer), root.pem, intermediate.pem; ca/private/ holds the CA keys
    certs/              ek-rsa2048.pem, ek-ecc-p384.pem, platform.pem as read back from NV
    tpm-front/          with ``--tpm-profile`` / ``--resource-manager``: the TPM proxy and
                        tpm2-abrmd in front of swtpm (front.json, logs; see :mod:`lab.front`)
    pcscd.log           output of a pcscd this lab started
    card/               the virtual card in reader ``Virtual PCD 00 00`` (`trelab card serve`):
                        profile.json (the default test profile, written on first up; holds K),
                        state.json (SQN, PIN counters — kept across up/down), card.log,
                        status.json (waiting / connected / attached to vpcd)
    modem/              the modem emulator (`trelab modem serve --pty`): profile.json (the default
                        profile with its own ICCID and IMSI), state.json, modem.log, and ``tty``,
                        a symlink to its pty — what ``--serial`` takes

pcscd is host-wide and shared between labs; see :mod:`lab.pcscd` for who stops it. vpcd
serves one card per reader: when several labs are up, the first lab's card holds reader 0 and
the others wait in vpcd's queue until it leaves (``lab status`` shows "attached" or "waiting").
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from lab import pcscd, swtpm
from lab.front import FrontStatus, TpmFront, check_choice
from lab.postgres import PostgresServer, PostgresStatus
from trelab import proc
from trelab.atomic import atomic_write_text, file_lock
from trelab.errors import BadInput, Unavailable

__all__ = [
    "CARD_READER",
    "CARD_VPCD",
    "LAB_JSON_VERSION",
    "MODEM_PROFILE_CHANGES",
    "OPTIONAL_PARTS",
    "CaStatus",
    "CardStatus",
    "Lab",
    "LabStatus",
    "ModemStatus",
    "SwtpmStatus",
]

LAB_JSON_VERSION = 1
OPTIONAL_PARTS = ("postgres",)  # `lab up --with PART`
State = Literal["running", "stopped", "crashed"]
CARD_READER = "Virtual PCD 00 00"  # vpcd's first reader …
CARD_VPCD = "127.0.0.1:35963"  # … and the port its card connects to
#: The modem's card differs from reader 0's by ICCID and IMSI only (same test K/OPc).
MODEM_PROFILE_CHANGES: Mapping[str, str] = {
    "iccid": "8988211000000000029",
    "imsi": "001010123456790",
}
_DAEMON_START_TIMEOUT = 20.0  # a python start on a loaded 2-core machine
_ATTACH_TIMEOUT = 5.0


@dataclass(frozen=True)
class SwtpmStatus:
    """The lab's swtpm: "crashed" means lab.json says it runs but the process is gone."""

    state: State
    pid: int | None
    port: int | None
    ctrl_port: int | None
    state_dir: Path
    log: Path
    note: str = ""

    @property
    def tcti(self) -> str | None:
        return swtpm.tcti(self.port) if self.state == "running" and self.port else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pid": self.pid,
            "port": self.port,
            "ctrl_port": self.ctrl_port,
            "tcti": self.tcti,
            "state_dir": str(self.state_dir),
            "log": str(self.log),
            "note": self.note,
        }


@dataclass(frozen=True)
class CaStatus:
    """The exported manufacturer CA and NV certificates (paths exist once ``up`` ran)."""

    bundle: Path
    root: Path
    intermediate: Path
    certs: dict[str, Path]
    verified: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": str(self.bundle),
            "root": str(self.root),
            "intermediate": str(self.intermediate),
            "certs": {name: str(path) for name, path in self.certs.items()},
            "exists": self.bundle.is_file(),
            "verified": self.verified,
        }


CardLink = Literal["waiting", "connected", "attached", "stopped"]


@dataclass(frozen=True)
class CardStatus:
    """The lab's virtual card process (`trelab card serve` on vpcd reader 0).

    ``link`` is what the process last reported: "attached" (vpcd talks to it: the card is in
    the reader), "connected" or "waiting" (another card holds the reader, or pcscd is down).
    """

    state: State
    pid: int | None
    reader: str
    vpcd: str
    profile: Path
    state_file: Path
    log: Path
    link: CardLink | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pid": self.pid,
            "reader": self.reader,
            "vpcd": self.vpcd,
            "link": self.link,
            "profile": str(self.profile),
            "state_file": str(self.state_file),
            "log": str(self.log),
            "note": self.note,
        }


@dataclass(frozen=True)
class ModemStatus:
    """The lab's modem emulator (`trelab modem serve --pty`): ``device`` is the stable symlink
    to its pty, what ``trelab card … --serial`` takes."""

    state: State
    pid: int | None
    device: Path
    pty: str | None
    profile: Path
    state_file: Path
    log: Path
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pid": self.pid,
            "device": str(self.device),
            "pty": self.pty,
            "profile": str(self.profile),
            "state_file": str(self.state_file),
            "log": str(self.log),
            "note": self.note,
        }


@dataclass(frozen=True)
class LabStatus:
    """Everything a caller needs to use the lab, and what the last call did (``actions``)."""

    lab_dir: Path
    swtpm: SwtpmStatus
    pcscd: pcscd.PcscdState
    ca: CaStatus
    actions: tuple[str, ...] = field(default=())
    card: CardStatus | None = None
    modem: ModemStatus | None = None
    front: FrontStatus | None = None  # a TPM profile proxy and/or tpm2-abrmd (lab.front)
    postgres: PostgresStatus | None = None  # the operator store's server, once asked for

    @property
    def running(self) -> bool:
        """True if swtpm and pcscd both run and the vpcd readers are there."""
        return (
            self.swtpm.state == "running"
            and self.pcscd.state == "running"
            and any(r.startswith(pcscd.VPCD_READER_PREFIX) for r in self.pcscd.readers)
        )

    @property
    def complete(self) -> bool:
        """Every part runs: swtpm, pcscd with the vpcd readers, the virtual card and the modem
        (and the TPM proxy / tpm2-abrmd when the lab has them)."""
        return (
            self.running
            and self.card is not None
            and self.card.state == "running"
            and self.modem is not None
            and self.modem.state == "running"
            and (self.front is None or self.front.state != "crashed")
            and (self.postgres is None or self.postgres.state == "running")
        )

    @property
    def tcti(self) -> str:
        """``swtpm:host=127.0.0.1,port=P`` for tpm2-pytss / tpm2-tools — the front-most
        part's: the profile proxy's, or ``tabrmd:…`` when tpm2-abrmd is in front.

        Raises:
            Unavailable: swtpm (or the part in front of it) is not running.
        """
        if self.swtpm.tcti is None:
            raise Unavailable(f"lab swtpm is {self.swtpm.state}", fix="run `trelab lab up`")
        if self.front is not None and self.front.state != "stopped":
            if self.front.tcti is None:
                raise Unavailable(f"lab TPM front: {self.front.note}", fix="run `trelab lab up`")
            return self.front.tcti
        return self.swtpm.tcti

    @property
    def readers(self) -> tuple[str, ...]:
        return self.pcscd.readers

    def to_dict(self) -> dict[str, Any]:
        return {
            "lab_dir": str(self.lab_dir),
            "running": self.running,
            "complete": self.complete,
            "tcti": self.front.tcti
            if self.front is not None and self.front.state != "stopped"
            else self.swtpm.tcti,
            "components": {
                "swtpm": self.swtpm.to_dict(),
                **({"tpm_front": self.front.to_dict()} if self.front is not None else {}),
                "pcscd": self.pcscd.to_dict(),
                "ca": self.ca.to_dict(),
                **({"card": self.card.to_dict()} if self.card is not None else {}),
                **({"modem": self.modem.to_dict()} if self.modem is not None else {}),
                **({"postgres": self.postgres.to_dict()} if self.postgres is not None else {}),
            },
            "actions": list(self.actions),
        }


@dataclass(frozen=True)
class _Daemon:
    """A python daemon of the lab (card or modem): pid + start time + argv[0] identify it."""

    pid: int
    start: int
    program: str

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "start": self.start, "program": self.program}

    @classmethod
    def from_json(cls, raw: Any) -> _Daemon | None:
        try:
            return cls(int(raw["pid"]), int(raw["start"]), str(raw["program"]))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class _Record:
    """lab.json: what ``up`` started, so ``down`` and ``status`` can find it again."""

    pid: int
    start: int
    port: int
    ctrl_port: int
    verified: bool
    card: _Daemon | None = None
    modem: _Daemon | None = None

    def to_json(self, lab_dir: Path, paths: swtpm.SwtpmPaths) -> str:
        data = {
            "version": LAB_JSON_VERSION,
            "lab_dir": str(lab_dir),
            "updated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "swtpm": {
                "pid": self.pid,
                "start": self.start,
                "port": self.port,
                "ctrl_port": self.ctrl_port,
                "state_dir": str(paths.state_dir),
                "pid_file": str(paths.pid_file),
            },
            "pcscd": {"user": True},
            "ca": {"verified": self.verified},
        }
        if self.card is not None:
            data["card"] = {**self.card.to_json(), "reader": CARD_READER, "vpcd": CARD_VPCD}
        if self.modem is not None:
            data["modem"] = self.modem.to_json()
        return json.dumps(data, indent=2) + "\n"


DaemonKind = Literal["card", "modem"]
DAEMON_KINDS: tuple[DaemonKind, DaemonKind] = ("card", "modem")
_REPO = Path(__file__).resolve().parents[1]
_children: dict[int, subprocess.Popen[bytes]] = {}  # daemons we started: reaped when stopped


def _forget(pid: int) -> None:
    child = _children.pop(pid, None)
    if child is not None:
        child.poll()


def _tail(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(no output)"


def _lab_still_up(lab_dir: str) -> bool:
    """Predicate for the pcscd registry: a lab is still up while its lab.json exists and the
    swtpm it records still serves that lab. A lab killed without ``lab down`` keeps its
    lab.json; counting it would keep pcscd running for ever. An unreadable lab.json counts as
    up: never stop pcscd under a lab we cannot judge."""
    lab = Lab(lab_dir)
    if not lab.record_file.is_file():
        return False
    record = lab._read_record()
    if record is None:
        return True
    return swtpm.running_process(lab._paths, record.pid, record.start)


class Lab:
    """One lab directory. Cheap to construct; every method re-reads the directory, so separate
    processes (``lab up`` now, ``lab down`` later) agree.

    ``port`` asks for a specific swtpm port (P and P + 1); without it ``up`` reuses the port
    of a crashed swtpm if free, else picks a free pair. ``registry`` overrides where pcscd
    ownership is recorded (tests use this to play "a pcscd trelab did not start").
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        port: int | None = None,
        registry: pcscd.PcscdRegistry | None = None,
        tpm_profile: str | None = None,
        resource_manager: str | None = None,
    ) -> None:
        if port is not None and not 1024 <= port < 65535:
            raise BadInput(f"{port} not in 1024..65534", field="port")
        check_choice(tpm_profile, resource_manager)
        self.tpm_profile, self.resource_manager = tpm_profile, resource_manager
        self.path = Path(path).expanduser().absolute()
        self.port = port
        self.registry = registry if registry is not None else pcscd.PcscdRegistry()
        self._paths = swtpm.SwtpmPaths(self.path)

    def __repr__(self) -> str:
        return f"Lab({str(self.path)!r})"

    # ---- context manager: `with Lab(p) as status:` brings it up and always down ----------

    def __enter__(self) -> LabStatus:
        try:
            return self.up()
        except BaseException:
            self.down()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    # ---- files -----------------------------------------------------------------------------

    @property
    def record_file(self) -> Path:
        return self.path / "lab.json"

    @property
    def pcscd_log(self) -> Path:
        return self.path / "pcscd.log"

    def _read_record(self) -> _Record | None:
        try:
            raw = json.loads(self.record_file.read_text())
            tpm = raw["swtpm"]
            return _Record(
                pid=int(tpm["pid"]),
                start=int(tpm["start"]),
                port=int(tpm["port"]),
                ctrl_port=int(tpm["ctrl_port"]),
                verified=bool(raw.get("ca", {}).get("verified", False)),
                card=_Daemon.from_json(raw["card"]) if "card" in raw else None,
                modem=_Daemon.from_json(raw["modem"]) if "modem" in raw else None,
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable: treated like no record; `up` rewrites it

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise up/down of this lab across processes."""
        with file_lock(self.path / ".lock"):
            yield

    # ---- the virtual card and the modem: python daemons -----------------------------------

    @property
    def card_dir(self) -> Path:
        return self.path / "card"

    @property
    def modem_dir(self) -> Path:
        return self.path / "modem"

    @property
    def modem_device(self) -> Path:
        """The stable path of the lab modem's pty (a symlink to /dev/pts/N)."""
        return self.modem_dir / "tty"

    def _daemon_argv(self, kind: DaemonKind) -> list[str]:
        base = self.card_dir if kind == "card" else self.modem_dir
        argv = [kind, "serve", "--profile", str(base / "profile.json")]
        argv += ["--state", str(base / "state.json")]
        if kind == "card":
            return [*argv, "--vpcd", CARD_VPCD, "--status-file", str(base / "status.json")]
        return [*argv, "--pty", "--link", str(self.modem_device)]

    def _write_default_profiles(self, actions: list[str]) -> None:
        """First up: the default test profile for the card, the same with another ICCID and
        IMSI for the modem. Existing files (edited by the user) are left alone."""
        from firmware_stubs.usim.profile import DEFAULT_PROFILE

        for kind, changes in (("card", {}), ("modem", MODEM_PROFILE_CHANGES)):
            target = (self.card_dir if kind == "card" else self.modem_dir) / "profile.json"
            if not target.exists():
                data = {**dict(DEFAULT_PROFILE), **changes}
                # K and OPc are in there: owner-only, like the card state.
                atomic_write_text(target, json.dumps(data, indent=2) + "\n", mode=0o600)
                actions.append(f"wrote the default test profile for the {kind}: {target}")

    def _daemon_alive(self, kind: DaemonKind, rec: _Daemon | None) -> bool:
        if rec is None:
            return False
        state = str((self.card_dir if kind == "card" else self.modem_dir) / "state.json")
        return proc.matches(rec.pid, program=rec.program, start=rec.start, contains=state)

    def _find_daemon(self, kind: DaemonKind) -> _Daemon | None:
        """A live `trelab <kind> serve` on this lab's state file that lab.json lost track of."""
        program = os.path.basename(sys.executable)
        wanted = self._daemon_argv(kind)
        for pid in proc.find_by_name(program):
            argv = proc.cmdline(pid) or []
            if argv[3 : 3 + len(wanted)] == wanted and argv[1:3] == ["-m", "host.cli"]:
                started = proc.starttime(pid)
                if started is not None:
                    return _Daemon(pid, started, program)
        return None

    def _spawn(self, kind: DaemonKind) -> subprocess.Popen[bytes]:
        base = self.card_dir if kind == "card" else self.modem_dir
        base.mkdir(parents=True, exist_ok=True)
        if kind == "modem" and self.modem_device.is_symlink():
            self.modem_device.unlink()  # a crashed modem's link: readiness means a new one
        env = dict(os.environ)
        # `-m host.cli` must import this very checkout, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
        with (base / f"{kind}.log").open("ab") as log:
            # Own session: it outlives `lab up` and ignores the terminal's Ctrl-C.
            child = subprocess.Popen(
                [sys.executable, "-m", "host.cli", *self._daemon_argv(kind)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env=env,
            )  # fmt: skip
        _children[child.pid] = child
        return child

    def _daemon_ready(self, kind: DaemonKind, pid: int) -> bool:
        if kind == "card":
            from firmware_stubs.card_serve import read_status

            status = read_status(self.card_dir / "status.json")
            return status is not None and status.get("pid") == pid
        link = self.modem_device
        return link.is_symlink() and Path(os.readlink(link)).exists()

    def _start_daemons(
        self, kinds: list[DaemonKind], actions: list[str]
    ) -> dict[DaemonKind, _Daemon]:
        """Start card and/or modem together and wait until each serves.

        Raises:
            Unavailable: one exited or did not come up (the other one is stopped again).
        """
        children = {kind: self._spawn(kind) for kind in kinds}
        started: dict[DaemonKind, _Daemon] = {}
        try:
            for kind, child in children.items():

                def ready(kind: DaemonKind = kind, child: subprocess.Popen[bytes] = child) -> bool:
                    return child.poll() is not None or self._daemon_ready(kind, child.pid)

                proc.wait_until(ready, _DAEMON_START_TIMEOUT, interval=0.05)
                log = (self.card_dir if kind == "card" else self.modem_dir) / f"{kind}.log"
                start = proc.starttime(child.pid)
                if child.poll() is not None or start is None:
                    raise Unavailable(
                        f"`trelab {kind} serve` exited with {child.returncode}: {_tail(log)}",
                        fix=f"see {log}",
                    )
                if not self._daemon_ready(kind, child.pid):
                    raise Unavailable(
                        f"`trelab {kind} serve` did not come up in {_DAEMON_START_TIMEOUT:.0f} s",
                        fix=f"see {log}",
                    )
                started[kind] = _Daemon(child.pid, start, os.path.basename(sys.executable))
                actions.append(f"started the virtual {kind} (pid {child.pid})")
        except BaseException:
            for child in children.values():
                if child.poll() is None:
                    proc.terminate(child.pid)
                _forget(child.pid)
            raise
        return started

    def _ensure_daemons(
        self, record: _Record | None, actions: list[str]
    ) -> tuple[_Daemon, _Daemon]:
        """The card and the modem, started if needed (crashed ones restart on the same state)."""
        self._write_default_profiles(actions)
        have: dict[DaemonKind, _Daemon] = {}
        missing: list[DaemonKind] = []
        for kind in DAEMON_KINDS:
            rec = getattr(record, kind) if record is not None else None
            if self._daemon_alive(kind, rec):
                assert rec is not None
                actions.append(f"virtual {kind} already running (pid {rec.pid})")
                have[kind] = rec
            elif (orphan := self._find_daemon(kind)) is not None:
                actions.append(f"adopted running virtual {kind} (pid {orphan.pid})")
                have[kind] = orphan
            else:
                if rec is not None:
                    actions.append(f"virtual {kind} pid {rec.pid} had crashed: restarting it")
                missing.append(kind)
        if missing:
            have.update(self._start_daemons(missing, actions))
        self._wait_attached(have["card"], actions)
        return have["card"], have["modem"]

    def reader_holder(self) -> str | None:
        """The lab directory of another lab whose card holds the card reader now, if any."""
        from firmware_stubs.card_serve import read_status

        for lab_dir in self.registry.users():
            if Path(lab_dir) == self.path:
                continue
            status = read_status(Path(lab_dir) / "card" / "status.json")
            pid = status.get("pid") if status else None
            attached = status is not None and status.get("state") == "attached"
            if attached and isinstance(pid, int) and proc.is_alive(pid):
                return lab_dir
        return None

    def card_attached(self) -> bool:
        """Is this lab's card the one in the reader now (vpcd talks to it)?"""
        from firmware_stubs.card_serve import read_status

        status = read_status(self.card_dir / "status.json")
        return status is not None and status.get("state") == "attached"

    def wait_for_reader(self, timeout: float, progress: Callable[[str], None]) -> None:
        """Wait until this lab's card holds the reader; another lab's card there is waited
        out (vpcd serves one card per reader), saying which lab and for how long.

        Raises:
            Unavailable: the reader is still another lab's after ``timeout`` seconds.
        """
        if self.card_attached():
            return
        holder = self.reader_holder()
        if holder is not None:
            progress(
                f"{CARD_READER} holds the card of lab {holder}: waiting up to {timeout:.0f} s "
                "for it to leave"
            )
        if proc.wait_until(self.card_attached, timeout, interval=0.2):
            return
        holder = self.reader_holder()
        if holder is not None:
            raise Unavailable(
                f"{CARD_READER} still holds the card of lab {holder} after {timeout:.0f} s "
                "(vpcd serves one card per reader)",
                fix=f"`trelab lab down --lab-dir {holder}`, or run against that lab",
            )
        raise Unavailable(
            f"this lab's card is not attached to {CARD_READER}",
            fix=f"see {self.card_dir / 'card.log'}",
        )

    def _wait_attached(self, card: _Daemon, actions: list[str]) -> None:
        """So that `card aka --reader 'Virtual PCD 00 00'` works as soon as `up` returns."""
        from firmware_stubs.card_serve import read_status

        def attached() -> bool:
            status = read_status(self.card_dir / "status.json")
            return status is not None and status.get("state") == "attached"

        if attached():
            return
        holder = self.reader_holder()
        if holder is not None:
            actions.append(f"{CARD_READER} holds the card of lab {holder}: ours waits its turn")
            return
        if proc.wait_until(attached, _ATTACH_TIMEOUT, interval=0.05):
            actions.append(f"virtual card attached to {CARD_READER}")
        else:
            actions.append(f"virtual card not attached to {CARD_READER} yet (see card.log)")

    def _stop_daemons(self, record: _Record | None, actions: list[str]) -> None:
        for kind in DAEMON_KINDS:
            rec = getattr(record, kind) if record is not None else None
            if self._daemon_alive(kind, rec):
                assert rec is not None
                proc.terminate(rec.pid)
                _forget(rec.pid)
                actions.append(f"stopped the virtual {kind} (pid {rec.pid})")
            orphan = self._find_daemon(kind)
            if orphan is not None:
                proc.terminate(orphan.pid)
                _forget(orphan.pid)
                actions.append(f"stopped the virtual {kind} (pid {orphan.pid}) lab.json had lost")
        with contextlib.suppress(OSError):
            if self.modem_device.is_symlink():
                self.modem_device.unlink()  # dangling once the modem is gone

    def _card_status(self, record: _Record | None) -> CardStatus:
        from firmware_stubs.card_serve import read_status

        base = self.card_dir
        rec = record.card if record is not None else None
        state, pid, note = self._daemon_state("card", rec)
        status = read_status(base / "status.json") if state == "running" else None
        link = status.get("state") if status else None
        return CardStatus(
            state=state,
            pid=pid,
            reader=CARD_READER,
            vpcd=CARD_VPCD,
            profile=base / "profile.json",
            state_file=base / "state.json",
            log=base / "card.log",
            link=link if link in ("waiting", "connected", "attached", "stopped") else None,
            note=note,
        )

    def _modem_status(self, record: _Record | None) -> ModemStatus:
        base = self.modem_dir
        rec = record.modem if record is not None else None
        state, pid, note = self._daemon_state("modem", rec)
        pty = None
        if state == "running" and self.modem_device.is_symlink():
            pty = os.readlink(self.modem_device)
        return ModemStatus(
            state=state,
            pid=pid,
            device=self.modem_device,
            pty=pty,
            profile=base / "profile.json",
            state_file=base / "state.json",
            log=base / "modem.log",
            note=note,
        )

    def _daemon_state(self, kind: DaemonKind, rec: _Daemon | None) -> tuple[State, int | None, str]:
        if rec is not None:
            if self._daemon_alive(kind, rec):
                return "running", rec.pid, ""
            return "crashed", rec.pid, f"pid {rec.pid} is gone; `lab up` restarts it (same state)"
        orphan = self._find_daemon(kind)
        if orphan is not None:
            note = "lab.json missing: `lab up` adopts it, `lab down` stops it"
            return "running", orphan.pid, note
        return "stopped", None, ""

    # ---- status ----------------------------------------------------------------------------

    def _swtpm_status(self, record: _Record | None) -> SwtpmStatus:
        paths = self._paths

        def make(state: State, rec: _Record | None, note: str = "") -> SwtpmStatus:
            return SwtpmStatus(
                state=state,
                pid=rec.pid if rec else None,
                port=rec.port if rec else None,
                ctrl_port=rec.ctrl_port if rec else None,
                state_dir=paths.state_dir,
                log=paths.log_file,
                note=note,
            )

        if record is not None:
            if swtpm.running_process(paths, record.pid, record.start):
                return make("running", record)
            return make("crashed", record, f"pid {record.pid} is gone; `lab up` restarts it")
        orphan = swtpm.find_ours(paths)
        if orphan is not None:
            lost = _Record(orphan.pid, orphan.start, orphan.port, orphan.ctrl_port, False)
            return make(
                "running", lost, "lab.json missing: `lab up` adopts it, `lab down` stops it"
            )
        stale = swtpm.pid_file_pid(paths)
        if stale is not None:
            return make("stopped", None, f"stale pid file (pid {stale}); `lab up` removes it")
        return make("stopped", None)

    def _ca_status(self, record: _Record | None) -> CaStatus:
        paths = self._paths
        certs = {
            name: paths.certs_dir / f"{name}.pem"
            for name in swtpm.EK_CERT_INDICES
            if (paths.certs_dir / f"{name}.pem").is_file()
        }
        return CaStatus(
            bundle=paths.ca_dir / "manufacturer-ca.pem",
            root=paths.ca_dir / "root.pem",
            intermediate=paths.ca_dir / "intermediate.pem",
            certs=certs,
            verified=record is not None and record.verified,
        )

    def status(self, actions: tuple[str, ...] = ()) -> LabStatus:
        """What runs now; changes nothing."""
        record = self._read_record()
        return LabStatus(
            lab_dir=self.path,
            swtpm=self._swtpm_status(record),
            pcscd=pcscd.inspect(self.registry),
            ca=self._ca_status(record),
            actions=actions,
            card=self._card_status(record),
            modem=self._modem_status(record),
            front=TpmFront(self.path).status(),
            postgres=self.postgres.status() if self.postgres.initialised else None,
        )

    # ---- up --------------------------------------------------------------------------------

    def _start_swtpm(self, preferred: int | None, actions: list[str]) -> swtpm.SwtpmProcess:
        if self.port is not None:
            return swtpm.start(self._paths, self.port)  # PortInUse goes to the user as is
        port = preferred if preferred is not None and swtpm.port_pair_free(preferred) else None
        if preferred is not None and port is None:
            actions.append(f"previous port {preferred} is taken: picking a free one")
        for attempt in range(3):
            chosen = port if port is not None else swtpm.find_free_port_pair()
            try:
                return swtpm.start(self._paths, chosen)
            except swtpm.PortInUse:
                # Lost a race with another process for the pair: pick again.
                port = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _ensure_swtpm(
        self, record: _Record | None, actions: list[str]
    ) -> tuple[swtpm.SwtpmProcess, bool]:
        """The lab's swtpm, started if needed; True if this call started it."""
        paths = self._paths
        if record is not None and swtpm.running_process(paths, record.pid, record.start):
            if self.port is not None and self.port != record.port:
                raise Unavailable(
                    f"lab swtpm already runs on port {record.port}, not {self.port}",
                    fix="run `trelab lab down` first to change the port",
                )
            actions.append(f"swtpm already running (pid {record.pid}, port {record.port})")
            running = swtpm.SwtpmProcess(record.pid, record.start, record.port, record.ctrl_port)
            return running, False
        orphan = swtpm.find_ours(paths)
        if orphan is not None:  # ours by its command line, but lab.json lost track of it
            actions.append(f"adopted running swtpm (pid {orphan.pid}, port {orphan.port})")
            return orphan, False
        if record is not None:
            actions.append(f"swtpm pid {record.pid} had crashed: restarting it, same state")
        elif (stale := swtpm.pid_file_pid(paths)) is not None:
            actions.append(f"removed stale pid file (pid {stale})")
        process = self._start_swtpm(record.port if record else None, actions)
        actions.append(f"started swtpm (pid {process.pid}, port {process.port})")
        return process, True

    @property
    def postgres(self) -> PostgresServer:
        """The lab's PostgreSQL (``<lab>/postgres/``), made by ``up(with_parts=("postgres",))``."""
        return PostgresServer(self.path / "postgres")

    def up(
        self, progress: Callable[[str], None] | None = None, with_parts: tuple[str, ...] = ()
    ) -> LabStatus:
        """Bring the lab up; what already runs is left alone. ``progress`` hears about waits
        as they happen (vpcd's port still held, a retried pcscd start). ``with_parts``:
        ``postgres`` adds a PostgreSQL server for the operator store (:mod:`lab.postgres`);
        once made, it is started with the lab every time.

        Raises:
            Unavailable: a tool is missing, a port is taken, or a part will not start.
            CheckFailed: the EK certificates do not chain to the lab's CA.
        """
        unknown = [p for p in with_parts if p not in OPTIONAL_PARTS]
        if unknown:
            raise BadInput(f"lab up --with: parts are {', '.join(OPTIONAL_PARTS)}; got {unknown}")
        swtpm.require_tools()
        pcscd.require_tools()
        if "postgres" in with_parts:
            from lab.postgres import require_tools

            require_tools()
        actions: list[str] = []
        with self._locked():
            paths = self._paths
            record = self._read_record()
            if not swtpm.is_manufactured(paths):
                swtpm.manufacture(paths)
                actions.append("manufactured TPM state: EKs certified by the lab's local CA")
            process, started = self._ensure_swtpm(record, actions)
            try:
                nv_certs = swtpm.read_nv_certificates(process.port)
                swtpm.export_ca(paths, nv_certs)
                actions.append("EK certificate chains verified; manufacturer CA exported")
                new = _Record(
                    process.pid, process.start, process.port, process.ctrl_port, True,
                    card=record.card if record else None,
                    modem=record.modem if record else None,
                )  # fmt: skip
                atomic_write_text(self.record_file, new.to_json(self.path, paths))
                got = pcscd.acquire(
                    self.registry, str(self.path), self.pcscd_log, progress=progress
                )
            except BaseException:
                if started:  # leave nothing half-up that this call started
                    swtpm.stop(paths, process.pid, process.start)
                    with contextlib.suppress(FileNotFoundError):
                        self.record_file.unlink()
                raise
            actions += got.actions
            if got.started:
                actions.append(f"started pcscd (pid {got.state.pid})")
            else:
                whose = "trelab's" if got.state.owned else "not trelab's: left alone"
                actions.append(f"pcscd already running (pid {got.state.pid}, {whose})")
            # A card or modem that will not start is an error, but swtpm and pcscd stay up:
            # fix the profile, run `lab up` again.
            card, modem = self._ensure_daemons(record, actions)
            new = replace(new, card=card, modem=modem)
            atomic_write_text(self.record_file, new.to_json(self.path, paths))
            front = TpmFront(self.path)
            front.ensure(process.port, self.tpm_profile, self.resource_manager, actions)
            if "postgres" in with_parts or self.postgres.initialised:
                self.postgres.ensure(actions)
            return self.status(tuple(actions))

    # ---- reset -----------------------------------------------------------------------------

    def reset(
        self, parts: tuple[DaemonKind, ...], progress: Callable[[str], None] | None = None
    ) -> LabStatus:
        """Give the virtual card and/or modem their factory state back: stop the process,
        remove its profile and state (a K rotated over the air, SQN, PIN counters, OTA key
        sets), and bring the lab up again with the default profile. The TPM is not touched.

        Raises:
            BadInput: an unknown part.
            Unavailable: as :meth:`up`.
        """
        unknown = [p for p in parts if p not in DAEMON_KINDS]
        if unknown or not parts:
            raise BadInput(f"lab reset: parts are {', '.join(DAEMON_KINDS)}; got {parts!r}")
        actions: list[str] = []
        self.path.mkdir(parents=True, exist_ok=True)
        with self._locked():
            record = self._read_record()
            for kind in parts:
                rec = getattr(record, kind) if record is not None else None
                if self._daemon_alive(kind, rec):
                    assert rec is not None
                    proc.terminate(rec.pid)
                    _forget(rec.pid)
                    actions.append(f"stopped the virtual {kind} (pid {rec.pid})")
                orphan = self._find_daemon(kind)
                if orphan is not None:
                    proc.terminate(orphan.pid)
                    _forget(orphan.pid)
                base = self.card_dir if kind == "card" else self.modem_dir
                for name in ("profile.json", "state.json", "status.json"):
                    with contextlib.suppress(FileNotFoundError):
                        (base / name).unlink()
                actions.append(f"virtual {kind}: profile and state back to the default")
        status = self.up(progress=progress)
        return replace(status, actions=(*actions, *status.actions))

    # ---- down ------------------------------------------------------------------------------

    def down(self) -> LabStatus:
        """Stop what ``up`` started (swtpm, card, modem; pcscd if no other lab uses it); remove
        pid/state files. Never kills a process it cannot prove is this lab's. The TPM state and
        the card states stay for the next ``up``."""
        actions: list[str] = []
        if not self.path.is_dir():
            return self.status(("no lab here: nothing to stop",))
        with self._locked():
            paths = self._paths
            record = self._read_record()
            TpmFront(self.path).stop(actions)  # before swtpm: they hold connections to it
            if self.postgres.initialised:
                self.postgres.stop(actions)
            if record is not None:
                if swtpm.stop(paths, record.pid, record.start):
                    actions.append(f"stopped swtpm (pid {record.pid})")
                else:
                    actions.append(f"swtpm (pid {record.pid}) was not running")
            orphan = swtpm.find_ours(paths)
            if orphan is not None and swtpm.stop(paths, orphan.pid, orphan.start):
                actions.append(f"stopped swtpm (pid {orphan.pid}) that lab.json had lost")
            self._stop_daemons(record, actions)
            stale = swtpm.pid_file_pid(paths)
            if stale is not None:
                with contextlib.suppress(FileNotFoundError):
                    paths.pid_file.unlink()
                actions.append(f"removed stale pid file (pid {stale}); that process left alone")
            released = pcscd.release(self.registry, str(self.path), _lab_still_up)
            actions.append(released.reason)
            with contextlib.suppress(FileNotFoundError):
                self.record_file.unlink()
            return self.status(tuple(actions))
