"""The lab's card and modem processes: started by `lab up`, stopped by `lab down`, restarted
after a crash on the same state, adopted when lab.json is lost; never a second copy."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Iterator

import pytest

from lab.lab import Lab
from trelab import proc
from uicc.links.at_csim import AtCsimLink
from uicc.usim import UsimClient

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def cardlab(lab_factory: Callable[..., Lab]) -> Iterator[Lab]:
    instance = lab_factory("cardlab")
    instance.up()
    yield instance
    instance.down()


def _serving(lab: Lab, kind: str) -> list[int]:
    """Pids of every live `<kind> serve` process on this lab's state file."""
    state = str((lab.card_dir if kind == "card" else lab.modem_dir) / "state.json")
    found = []
    for pid in proc.find_by_name(os.path.basename(sys.executable)):
        argv = proc.cmdline(pid) or []
        if kind in argv and "serve" in argv and state in argv:
            found.append(pid)
    return found


def test_up_starts_card_and_modem_down_stops_them(cardlab: Lab) -> None:
    status = cardlab.up()
    assert status.card is not None and status.modem is not None
    assert status.card.state == status.modem.state == "running"
    card_pid, modem_pid = status.card.pid, status.modem.pid
    assert _serving(cardlab, "card") == [card_pid] and _serving(cardlab, "modem") == [modem_pid]
    record = json.loads(cardlab.record_file.read_text())
    assert record["card"]["pid"] == card_pid and record["card"]["reader"] == "Virtual PCD 00 00"
    with AtCsimLink(str(status.modem.device)) as link:  # the stable symlink works as a port
        assert UsimClient(link).read_iccid() == "8988211000000000029"
    down = cardlab.down()
    assert down.card is not None and down.card.state == "stopped"
    assert any("stopped the virtual card" in a for a in down.actions)
    assert proc.wait_until(lambda: not proc.is_alive(card_pid or 0), 5.0)
    assert not proc.is_alive(modem_pid or 0) and not cardlab.modem_device.exists()
    assert (cardlab.card_dir / "state.json").is_file()  # the card's state stays for next up
    again = cardlab.up()
    assert again.card is not None and again.card.pid not in (None, card_pid)


def test_crashed_card_is_restarted_on_the_same_state(cardlab: Lab) -> None:
    before = cardlab.up()
    assert before.card is not None and before.card.pid is not None
    state_before = (cardlab.card_dir / "state.json").read_text()
    os.kill(before.card.pid, signal.SIGKILL)
    assert proc.wait_until(lambda: not proc.is_alive(before.card.pid or 0), 5.0)
    crashed = cardlab.status()
    assert crashed.card is not None and crashed.card.state == "crashed"
    assert "restarts" in crashed.card.note
    again = cardlab.up()
    assert again.card is not None and again.card.state == "running"
    assert again.card.pid != before.card.pid
    assert any("had crashed" in a for a in again.actions)
    assert (
        json.loads((cardlab.card_dir / "state.json").read_text())["iccid"]
        == json.loads(state_before)["iccid"]
    )
    assert _serving(cardlab, "card") == [again.card.pid]


def test_lost_lab_json_adopts_the_running_card(cardlab: Lab) -> None:
    running = cardlab.up()
    assert running.card is not None and running.modem is not None
    cardlab.record_file.unlink()
    status = cardlab.status()
    assert status.card is not None and status.card.state == "running"
    assert "lab.json missing" in status.card.note
    adopted = cardlab.up()
    assert adopted.card is not None and adopted.card.pid == running.card.pid
    assert any("adopted running virtual card" in a for a in adopted.actions)
    assert _serving(cardlab, "card") == [running.card.pid]  # no second card on the state
    cardlab.record_file.unlink()
    down = cardlab.down()
    assert any("lab.json had lost" in a and "card" in a for a in down.actions)
    assert proc.wait_until(lambda: _serving(cardlab, "card") == [], 5.0)
    assert _serving(cardlab, "modem") == []
