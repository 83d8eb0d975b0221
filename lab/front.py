"""Edge: processes. What the lab puts in front of its swtpm: a capability profile (the TPM
proxy of :mod:`firmware_stubs.tpm_proxy`, making swtpm present a named real part) and/or a
resource manager (tpm2-abrmd, :mod:`lab.abrmd`). Chain, when both are asked for::

    trelab ── tabrmd TCTI ──▶ tpm2-abrmd ── swtpm TCTI ──▶ proxy (part) ──▶ swtpm

The lab's TCTI becomes the front-most part's. State lives in ``<lab>/tpm-front/``:
``front.json`` (what runs: pids, start times, ports, bus), ``proxy.log``, ``abrmd.log``,
``dbus.log``. :class:`TpmFront` is what ``trelab lab up | down | status`` calls.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lab import abrmd, swtpm
from trelab import proc
from trelab.atomic import atomic_write_text
from trelab.errors import BadInput, Unavailable

__all__ = [
    "RESOURCE_MANAGERS",
    "FrontStatus",
    "ProxyProcess",
    "TpmFront",
    "check_choice",
    "profile_names",
    "start_proxy",
    "stop_proxy",
]

RESOURCE_MANAGERS = ("abrmd",)
NONE = "none"
_REPO = Path(__file__).resolve().parents[1]
_PROXY_START_TIMEOUT = 20.0  # a python start on a loaded 2-core machine
State = Literal["running", "stopped", "crashed"]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((swtpm.HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def profile_names() -> list[str]:
    from firmware_stubs.tpm_proxy import profiles

    return profiles.names()


def check_choice(profile: str | None, manager: str | None) -> None:
    """Raises: BadInput for an unknown profile or resource manager."""
    if profile is not None and profile != NONE and profile not in profile_names():
        raise BadInput(
            f"{profile!r} is not one of {', '.join(profile_names())} (or none)",
            field="tpm_profile",
        )
    if manager is not None and manager != NONE and manager not in RESOURCE_MANAGERS:
        raise BadInput(f"{manager!r} is not abrmd (or none)", field="resource_manager")


@dataclass(frozen=True)
class _Proxy:
    """A running TPM proxy process (pid + start time identify it)."""

    pid: int
    start: int
    port: int
    profile: str
    swtpm_port: int

    @property
    def tcti(self) -> str:
        return swtpm.tcti(self.port)

    def alive(self) -> bool:
        return proc.matches(
            self.pid,
            program=os.path.basename(sys.executable),
            start=self.start,
            contains="firmware_stubs.tpm_proxy",
        )


ProxyProcess = _Proxy


def stop_proxy(proxy: _Proxy) -> bool:
    """Stop the proxy if it is still that process; True if it was."""
    if not proxy.alive():
        return False
    proc.terminate(proxy.pid)
    return True


@dataclass(frozen=True)
class FrontStatus:
    """What stands in front of the lab's swtpm; ``tcti`` is the front-most part's, or None
    when nothing does (or it is not running)."""

    profile: str | None
    resource_manager: str | None
    state: State
    proxy_pid: int | None = None
    proxy_port: int | None = None
    abrmd_pid: int | None = None
    bus_name: str | None = None
    bus_address: str | None = None
    tcti: str | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        proxy = None
        if self.profile is not None:
            proxy = {"pid": self.proxy_pid, "port": self.proxy_port}
        broker = None
        if self.resource_manager is not None:
            broker = {"pid": self.abrmd_pid, "bus_name": self.bus_name,
                      "bus_address": self.bus_address}  # fmt: skip
        return {
            "tpm_profile": self.profile,
            "resource_manager": self.resource_manager,
            "state": self.state,
            "proxy": proxy,
            "abrmd": broker,
            "tcti": self.tcti,
            "note": self.note,
        }


class TpmFront:
    """The front of one lab's swtpm. Cheap; every method re-reads ``front.json``."""

    def __init__(self, lab_dir: Path) -> None:
        self.dir = lab_dir / "tpm-front"
        self.record_file = self.dir / "front.json"

    # ---- record ---------------------------------------------------------------------------

    def _read(self) -> tuple[_Proxy | None, abrmd.Broker | None] | None:
        try:
            raw = json.loads(self.record_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None, None
        try:
            proxy = _Proxy(**raw["proxy"]) if raw.get("proxy") else None
            broker = abrmd.Broker(**raw["abrmd"]) if raw.get("abrmd") else None
        except (TypeError, KeyError):
            return None, None
        return proxy, broker

    def _write(self, proxy: _Proxy | None, broker: abrmd.Broker | None) -> None:
        data = {
            "proxy": proxy.__dict__ if proxy else None,
            "abrmd": broker.__dict__ if broker else None,
        }
        atomic_write_text(self.record_file, json.dumps(data, indent=2) + "\n")

    @staticmethod
    def _proxy_alive(proxy: _Proxy) -> bool:
        return proxy.alive()

    # ---- status ---------------------------------------------------------------------------

    def status(self) -> FrontStatus:
        record = self._read()
        if record is None:
            return FrontStatus(None, None, "stopped")
        proxy, broker = record
        if proxy is None and broker is None:
            return FrontStatus(None, None, "stopped", note="front.json unreadable")
        proxy_ok = proxy is None or self._proxy_alive(proxy)
        broker_ok = broker is None or broker.alive()
        state: State = "running" if proxy_ok and broker_ok else "crashed"
        tcti = None
        if state == "running":
            if broker is not None:
                tcti = broker.tcti
            elif proxy is not None:
                tcti = swtpm.tcti(proxy.port)
        gone = [n for n, ok in (("proxy", proxy_ok), ("tpm2-abrmd", broker_ok)) if not ok]
        return FrontStatus(
            profile=proxy.profile if proxy else None,
            resource_manager="abrmd" if broker else None,
            state=state,
            proxy_pid=proxy.pid if proxy else None,
            proxy_port=proxy.port if proxy else None,
            abrmd_pid=broker.abrmd_pid if broker else None,
            bus_name=broker.bus_name if broker else None,
            bus_address=broker.bus_address if broker else None,
            tcti=tcti,
            note=f"{' and '.join(gone)} gone; `lab up` restarts it" if gone else "",
        )

    # ---- up / down ------------------------------------------------------------------------

    def ensure(
        self, swtpm_port: int, profile: str | None, manager: str | None, actions: list[str]
    ) -> FrontStatus:
        """Bring the front to what is asked: ``None`` keeps what runs (restarting a crashed
        part), ``"none"`` removes it, a name (re)starts it. A changed profile restarts the
        resource manager too (it holds a connection to what it fronts).

        Raises:
            BadInput: unknown profile or resource manager.
            Unavailable: a part will not start.
        """
        check_choice(profile, manager)
        record = self._read() or (None, None)
        old_proxy, old_broker = record
        want_profile = (old_proxy.profile if old_proxy else None) if profile is None else profile
        want_manager = ("abrmd" if old_broker else None) if manager is None else manager
        want_profile = None if want_profile == NONE else want_profile
        want_manager = None if want_manager == NONE else want_manager
        proxy = old_proxy
        if proxy is not None and (
            proxy.profile != want_profile
            or proxy.swtpm_port != swtpm_port
            or not self._proxy_alive(proxy)
        ):
            self._stop_proxy(proxy, actions)
            proxy = None
        if want_profile is not None and proxy is None:
            proxy = start_proxy(self.dir, want_profile, swtpm_port)
            actions.append(f"started the TPM proxy as {want_profile} (pid {proxy.pid}, "
                           f"port {proxy.port})")  # fmt: skip
        elif proxy is not None:
            actions.append(f"TPM proxy already running as {proxy.profile} (pid {proxy.pid})")
        upstream = swtpm.tcti(proxy.port if proxy else swtpm_port)
        broker = old_broker
        if broker is not None and (
            want_manager is None or broker.upstream != upstream or not broker.alive()
        ):
            abrmd.stop(broker)
            actions.append(f"stopped tpm2-abrmd (pid {broker.abrmd_pid})")
            broker = None
        if want_manager == "abrmd" and broker is None:
            try:
                broker = abrmd.start(self.dir, abrmd.bus_name_for(self.dir.parent), upstream)
            except BaseException:
                self._write(proxy, None)
                raise
            actions.append(f"started tpm2-abrmd (pid {broker.abrmd_pid}) on a private bus")
        elif broker is not None:
            actions.append(f"tpm2-abrmd already running (pid {broker.abrmd_pid})")
        if proxy is None and broker is None:
            self.record_file.unlink(missing_ok=True)
        else:
            self._write(proxy, broker)
        return self.status()

    def stop(self, actions: list[str]) -> None:
        """Stop the resource manager and the proxy (in that order) if they run."""
        record = self._read()
        if record is None:
            return
        proxy, broker = record
        if broker is not None and abrmd.stop(broker):
            actions.append(f"stopped tpm2-abrmd (pid {broker.abrmd_pid})")
        if proxy is not None:
            self._stop_proxy(proxy, actions)
        self.record_file.unlink(missing_ok=True)

    def _stop_proxy(self, proxy: _Proxy, actions: list[str]) -> None:
        if stop_proxy(proxy):
            actions.append(f"stopped the TPM proxy (pid {proxy.pid})")


def start_proxy(workdir: Path, profile: str, swtpm_port: int) -> _Proxy:
    """Start ``python -m firmware_stubs.tpm_proxy`` as ``profile`` in front of the swtpm on
    ``swtpm_port``, on a free port pair; its log is ``workdir/proxy.log``.

    Raises:
        Unavailable: it exited or did not listen in time.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "proxy.log"
    for _ in range(3):  # a port pair taken between the pick and the bind: pick again
        port = swtpm.find_free_port_pair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
        argv = [sys.executable, "-m", "firmware_stubs.tpm_proxy", "--profile", profile,
                "--port", str(port), "--swtpm-port", str(swtpm_port)]  # fmt: skip
        with log_path.open("ab") as log:
            child = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, env=env,
            )  # fmt: skip

        def listening(child: subprocess.Popen[bytes] = child, port: int = port) -> bool:
            return child.poll() is not None or _accepts(port)

        proc.wait_until(listening, _PROXY_START_TIMEOUT, interval=0.05)
        started = proc.starttime(child.pid)
        if child.poll() is None and started is not None:
            return _Proxy(child.pid, started, port, profile, swtpm_port)
        if child.returncode != 3:
            break
    with contextlib.suppress(Exception):
        if child.poll() is None:
            proc.terminate(child.pid)
    raise Unavailable(
        f"the TPM proxy ({profile}) did not start (exit {child.returncode})",
        fix=f"see {log_path}",
    )
