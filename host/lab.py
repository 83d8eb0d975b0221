"""Edge: processes, filesystem. The lab: a swtpm TRE with EK certificates and pcscd + vpcd.

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
    pcscd.log           output of a pcscd this lab started

pcscd is host-wide and shared between labs; see :mod:`uicc.pcscd` for who stops it.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from tpm import swtpm
from trelab.atomic import atomic_write_text
from trelab.errors import BadInput, Unavailable
from uicc import pcscd

__all__ = [
    "LAB_JSON_VERSION",
    "CaStatus",
    "Lab",
    "LabStatus",
    "SwtpmStatus",
    "default_lab_dir",
]

LAB_JSON_VERSION = 1
State = Literal["running", "stopped", "crashed"]


def default_lab_dir() -> Path:
    """``$TRELAB_LAB_DIR``, else ``<user state dir>/trelab/lab`` (platformdirs)."""
    explicit = os.environ.get("TRELAB_LAB_DIR")
    if explicit:
        return Path(explicit)
    import platformdirs

    return Path(platformdirs.user_state_dir("trelab")) / "lab"


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


@dataclass(frozen=True)
class LabStatus:
    """Everything a caller needs to use the lab, and what the last call did (``actions``)."""

    lab_dir: Path
    swtpm: SwtpmStatus
    pcscd: pcscd.PcscdState
    ca: CaStatus
    actions: tuple[str, ...] = field(default=())

    @property
    def running(self) -> bool:
        """True if swtpm and pcscd both run and the vpcd readers are there."""
        return (
            self.swtpm.state == "running"
            and self.pcscd.state == "running"
            and any(r.startswith(pcscd.VPCD_READER_PREFIX) for r in self.pcscd.readers)
        )

    @property
    def tcti(self) -> str:
        """``swtpm:host=127.0.0.1,port=P`` for tpm2-pytss / tpm2-tools.

        Raises:
            Unavailable: swtpm is not running.
        """
        if self.swtpm.tcti is None:
            raise Unavailable(f"lab swtpm is {self.swtpm.state}", fix="run `trelab lab up`")
        return self.swtpm.tcti

    @property
    def readers(self) -> tuple[str, ...]:
        return self.pcscd.readers

    def to_dict(self) -> dict[str, Any]:
        return {
            "lab_dir": str(self.lab_dir),
            "running": self.running,
            "tcti": self.swtpm.tcti,
            "components": {
                "swtpm": self.swtpm.to_dict(),
                "pcscd": self.pcscd.to_dict(),
                "ca": self.ca.to_dict(),
            },
            "actions": list(self.actions),
        }


@dataclass(frozen=True)
class _Record:
    """lab.json: what ``up`` started, so ``down`` and ``status`` can find it again."""

    pid: int
    start: int
    port: int
    ctrl_port: int
    verified: bool

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
        return json.dumps(data, indent=2) + "\n"


def _lab_json_in_use(lab_dir: str) -> bool:
    """Predicate for the pcscd registry: a lab is still up while its lab.json exists."""
    return (Path(lab_dir) / "lab.json").is_file()


class Lab:
    """One lab directory. Cheap to construct; every method re-reads the directory, so separate
    processes (``lab up`` now, ``lab down`` later) agree.

    ``port`` asks for a specific swtpm port (P and P + 1); without it ``up`` reuses the port
    of a crashed swtpm if free, else picks a free pair. ``registry`` overrides where pcscd
    ownership is recorded (tests use this to play "a pcscd trelab did not start").
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        registry: pcscd.PcscdRegistry | None = None,
    ) -> None:
        if port is not None and not 1024 <= port < 65535:
            raise BadInput(f"--port: {port} not in 1024..65534")
        base = Path(path) if path is not None else default_lab_dir()
        self.path = base.expanduser().absolute()
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
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable: treated like no record; `up` rewrites it

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise up/down of this lab across processes."""
        self.path.mkdir(parents=True, exist_ok=True)
        with (self.path / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

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

    def up(self) -> LabStatus:
        """Bring the lab up; what already runs is left alone.

        Raises:
            Unavailable: a tool is missing, a port is taken, or a part will not start.
            CheckFailed: the EK certificates do not chain to the lab's CA.
        """
        swtpm.require_tools()
        pcscd.require_tools()
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
                new = _Record(process.pid, process.start, process.port, process.ctrl_port, True)
                atomic_write_text(self.record_file, new.to_json(self.path, paths))
                got = pcscd.acquire(self.registry, str(self.path), self.pcscd_log)
            except BaseException:
                if started:  # leave nothing half-up that this call started
                    swtpm.stop(paths, process.pid, process.start)
                    with contextlib.suppress(FileNotFoundError):
                        self.record_file.unlink()
                raise
            if got.started:
                actions.append(f"started pcscd (pid {got.state.pid})")
            else:
                whose = "trelab's" if got.state.owned else "not trelab's: left alone"
                actions.append(f"pcscd already running (pid {got.state.pid}, {whose})")
            return self.status(tuple(actions))

    # ---- down ------------------------------------------------------------------------------

    def down(self) -> LabStatus:
        """Stop what ``up`` started (swtpm; pcscd if no other lab uses it); remove pid/state
        files. Never kills a process it cannot prove is this lab's."""
        actions: list[str] = []
        if not self.path.is_dir():
            return self.status(("no lab here: nothing to stop",))
        with self._locked():
            paths = self._paths
            record = self._read_record()
            if record is not None:
                if swtpm.stop(paths, record.pid, record.start):
                    actions.append(f"stopped swtpm (pid {record.pid})")
                else:
                    actions.append(f"swtpm (pid {record.pid}) was not running")
            orphan = swtpm.find_ours(paths)
            if orphan is not None and swtpm.stop(paths, orphan.pid, orphan.start):
                actions.append(f"stopped swtpm (pid {orphan.pid}) that lab.json had lost")
            stale = swtpm.pid_file_pid(paths)
            if stale is not None:
                with contextlib.suppress(FileNotFoundError):
                    paths.pid_file.unlink()
                actions.append(f"removed stale pid file (pid {stale}); that process left alone")
            released = pcscd.release(self.registry, str(self.path), _lab_json_in_use)
            actions.append(released.reason)
            with contextlib.suppress(FileNotFoundError):
                self.record_file.unlink()
            return self.status(tuple(actions))
