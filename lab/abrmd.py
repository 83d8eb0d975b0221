"""Edge: processes, D-Bus. tpm2-abrmd, the TCG access broker and resource manager, in front of
the lab TPM — what ``/dev/tpmrm0`` is on a board: each client connection sees only its own
transient objects and sessions (virtualised handles), the broker swaps contexts in and out of
the TPM's few slots, and flushes what a client leaves behind when it disconnects.

tpm2-abrmd talks D-Bus. The lab does not touch the host's system bus: it starts a private
``dbus-daemon --session`` per lab and runs ``tpm2-abrmd --session`` on it under a bus name
unique to the lab. Clients reach it with the TCTI ``tabrmd:bus_name=NAME,bus_type=session``
and the bus address in ``DBUS_SESSION_BUS_ADDRESS``: the lab writes the address to a small
per-user registry (:func:`tpm.connection.bus_registry_dir`) where
:class:`tpm.connection.TpmConnection` finds it, so ``--tpm`` with the lab's TCTI works from
any process. GLib keeps one session-bus connection per process: a process talks to one lab's
tpm2-abrmd.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tpm.connection import TABRMD_BUS_PREFIX, bus_registry_dir
from trelab import proc
from trelab.atomic import atomic_write_text
from trelab.errors import Unavailable

__all__ = [
    "BUS_NAME_PREFIX",
    "Broker",
    "bus_name_for",
    "require_tools",
    "start",
    "stop",
    "tcti",
]

BUS_NAME_PREFIX = TABRMD_BUS_PREFIX
_FIX = "apt-get install tpm2-abrmd libtss2-tcti-tabrmd0 dbus-daemon"
_START_TIMEOUT = 15.0


def require_tools() -> None:
    """Raises:
    Unavailable: tpm2-abrmd, dbus-daemon or the tabrmd TCTI library is missing.
    """
    for tool in ("tpm2-abrmd", "dbus-daemon", "dbus-send"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).is_file():
            raise Unavailable(f"{tool} not found", fix=_FIX)
    libs = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/lib")
    if not any(Path(d, "libtss2-tcti-tabrmd.so.0").exists() for d in libs):
        raise Unavailable("libtss2-tcti-tabrmd.so.0 not found", fix=_FIX)


def _program(tool: str) -> str:
    found = shutil.which(tool)
    return found if found else str(Path("/usr/sbin", tool))


def bus_name_for(lab_dir: Path) -> str:
    """A D-Bus name unique to the lab directory (well-known names allow [A-Za-z0-9_.])."""
    digest = hashlib.sha256(str(lab_dir).encode()).hexdigest()[:16]
    return BUS_NAME_PREFIX + digest


def tcti(bus_name: str) -> str:
    return f"tabrmd:bus_name={bus_name},bus_type=session"


@dataclass(frozen=True)
class Broker:
    """A running tpm2-abrmd and its private bus: both identified by pid and start time."""

    abrmd_pid: int
    abrmd_start: int
    dbus_pid: int
    dbus_start: int
    bus_name: str
    bus_address: str
    upstream: str  # the TCTI tpm2-abrmd uses to reach the TPM

    @property
    def tcti(self) -> str:
        return tcti(self.bus_name)

    def alive(self) -> bool:
        return proc.matches(
            self.abrmd_pid, program="tpm2-abrmd", start=self.abrmd_start, contains=self.bus_name
        ) and proc.matches(self.dbus_pid, program="dbus-daemon", start=self.dbus_start)


def _name_owned(bus_name: str, env: dict[str, str]) -> bool:
    done = subprocess.run(
        ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
         "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", f"string:{bus_name}"],
        env=env, capture_output=True, timeout=5, check=False,
    )  # fmt: skip
    return done.returncode == 0 and b"boolean true" in done.stdout


def start(workdir: Path, bus_name: str, upstream_tcti: str) -> Broker:
    """Start a private session bus and tpm2-abrmd on it, serving ``upstream_tcti``.

    Raises:
        Unavailable: a tool is missing, or a part did not come up (logs in ``workdir``).
    """
    require_tools()
    workdir.mkdir(parents=True, exist_ok=True)
    address_file = workdir / "dbus.address"
    address_file.unlink(missing_ok=True)
    with (workdir / "dbus.log").open("ab") as err, address_file.open("wb") as out:
        bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
        )  # fmt: skip

    def address() -> str:
        with contextlib.suppress(OSError):
            return address_file.read_text().strip()
        return ""

    if not proc.wait_until(lambda: bool(address()) or bus.poll() is not None, _START_TIMEOUT):
        bus.kill()
        raise Unavailable("dbus-daemon printed no address", fix=f"see {workdir / 'dbus.log'}")
    if bus.poll() is not None:
        raise Unavailable(f"dbus-daemon exited with {bus.returncode}", fix=f"see {workdir}")
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": address()}
    argv = [_program("tpm2-abrmd"), "--session", f"--dbus-name={bus_name}",
            f"--tcti={upstream_tcti}", "--flush-all"]  # fmt: skip
    if os.geteuid() == 0:
        argv.append("--allow-root")  # the lab runs as root on CI machines
    with (workdir / "abrmd.log").open("ab") as log:
        broker = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
    ready = proc.wait_until(
        lambda: broker.poll() is not None or _name_owned(bus_name, env), _START_TIMEOUT, 0.1
    )
    bus_start, abrmd_start = proc.starttime(bus.pid), proc.starttime(broker.pid)
    if not ready or broker.poll() is not None or bus_start is None or abrmd_start is None:
        for child in (broker, bus):
            if child.poll() is None:
                proc.terminate(child.pid)
        last = _tail(workdir / "abrmd.log")
        raise Unavailable(f"tpm2-abrmd did not come up: {last}", fix=f"see {workdir}/abrmd.log")
    registry = bus_registry_dir()
    registry.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write_text(registry / bus_name, address() + "\n", mode=0o600)
    return Broker(broker.pid, abrmd_start, bus.pid, bus_start, bus_name, address(), upstream_tcti)


def stop(broker: Broker) -> bool:
    """Stop tpm2-abrmd and its bus if they are still these processes; True if one was."""
    stopped = False
    if proc.matches(broker.abrmd_pid, program="tpm2-abrmd", start=broker.abrmd_start):
        proc.terminate(broker.abrmd_pid)
        stopped = True
    if proc.matches(broker.dbus_pid, program="dbus-daemon", start=broker.dbus_start):
        proc.terminate(broker.dbus_pid)
        stopped = True
    (bus_registry_dir() / broker.bus_name).unlink(missing_ok=True)
    return stopped


def _tail(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(no output)"
