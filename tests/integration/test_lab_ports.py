"""The lab comes back after ``lab down`` even when vpcd's ports are still held: a socket in
TIME_WAIT on 35963 (what a swtpm TCTI client leaves when the kernel handed it that port, or
vpcd's own connections right after pcscd stopped) made vpcd's bind fail and ``lab up`` exit 3
with a wrong hint. Now ``lab up`` reserves the ports, waits for the kernel to free them and
says so.

Real processes: the host's pcscd (only one trelab started) is killed, a real TIME_WAIT socket
is made on vpcd's port, and the lab is brought up again. Sorts after test_lab_pcscd_restart.py
for the same reason as that module (no later test compares pcscd pids)."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from lab import pcscd, ports
from lab.lab import Lab, LabStatus
from trelab import proc

pytestmark = pytest.mark.lab


def _time_wait_on(port: int) -> None:
    """A client socket bound to ``port`` that closes first: its side stays in TIME_WAIT
    for 60 s, as a swtpm TCTI connection the kernel gave that port does."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.socket()  # no SO_REUSEADDR, like the TCTI's socket
    client.bind(("127.0.0.1", port))
    client.connect(server.getsockname())
    accepted, _ = server.accept()
    client.close()  # the active close: TIME_WAIT is on the client's side, port 35963
    time.sleep(0.1)
    accepted.close()
    server.close()


def test_lab_up_waits_for_a_vpcd_port_in_time_wait(lab: LabStatus) -> None:
    current = Lab(lab.lab_dir).status()
    if not current.pcscd.owned:
        pytest.skip("pcscd here was not started by trelab: not ours to restart")
    os.kill(current.pcscd.pid or 0, signal.SIGKILL)
    assert proc.wait_until(lambda: pcscd.running_pid() is None, 5.0)
    # vpcd's own connections of the killed pcscd linger in TIME_WAIT (the kernel closed them
    # from vpcd's side) — that already is the case to test; if they did not, make one
    if not ports.sockets_on(pcscd.VPCD_PORTS):
        _time_wait_on(pcscd.VPCD_PORTS[0])
    held = ports.sockets_on(pcscd.VPCD_PORTS)
    assert any(states["TIME_WAIT"] for states in held.values()), held
    heard: list[str] = []
    again = Lab(lab.lab_dir).up(progress=heard.append)
    assert any(r.startswith(pcscd.VPCD_READER_PREFIX) for r in again.readers), again.actions
    assert any("TIME_WAIT" in line and "waiting" in line for line in heard), heard
    assert any(a.startswith("waited") for a in again.actions), again.actions
    if os.geteuid() == 0:  # the kernel will not hand these ports to clients any more
        reserved = ports.parse_port_ranges(ports.RESERVED_PORTS_FILE.read_text())
        assert set(pcscd.VPCD_PORTS) <= reserved
