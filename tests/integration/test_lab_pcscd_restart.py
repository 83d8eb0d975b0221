"""`trelab card serve` reconnects when pcscd restarts: the lab's card process stays the same,
detaches when pcscd dies and attaches again to the new one.

Kills the host's pcscd (only one trelab started), so it lives in a module that sorts after
test_lab.py, whose own pcscd crash test already ends that module: later modules see a
restarted pcscd either way, and no test compares pcscd pids after this point.
"""

from __future__ import annotations

import os
import signal

import pytest

from firmware_stubs.card_serve import read_status
from firmware_stubs.usim.profile import DEFAULT_PROFILE
from lab import pcscd
from lab.lab import Lab, LabStatus
from trelab import proc
from trelab.errors import Unavailable
from uicc.links.pcsc import PcscLink
from uicc.usim import UsimClient

pytestmark = pytest.mark.lab

READER_0 = "Virtual PCD 00 00"


def test_card_serve_reconnects_when_pcscd_restarts(lab: LabStatus, usim_reader: str) -> None:
    current = Lab(lab.lab_dir).status()
    if not current.pcscd.owned:
        pytest.skip("pcscd here was not started by trelab: not ours to restart")
    assert current.card is not None and current.card.state == "running"
    card_pid = current.card.pid
    status_file = lab.lab_dir / "card" / "status.json"
    os.kill(current.pcscd.pid or 0, signal.SIGKILL)
    assert proc.wait_until(lambda: pcscd.running_pid() is None, 5.0)

    def card_state() -> object:
        status = read_status(status_file)
        return status.get("state") if status else None

    assert proc.wait_until(lambda: card_state() in ("waiting", "connected"), 10.0)
    again = Lab(lab.lab_dir).up()  # restarts pcscd; the card process is left alone
    assert again.card is not None and again.card.pid == card_pid
    assert proc.wait_until(lambda: card_state() == "attached", 15.0, interval=0.1)

    def iccid() -> str | None:  # pcscd lists the card a poll cycle after vpcd talks to it
        try:
            with PcscLink(READER_0) as link:
                return UsimClient(link).read_iccid()
        except Unavailable:
            return None

    assert proc.wait_until(lambda: iccid() is not None, 10.0, interval=0.1)
    assert iccid() == DEFAULT_PROFILE["iccid"]
    assert "detached" in (lab.lab_dir / "card" / "card.log").read_text()
