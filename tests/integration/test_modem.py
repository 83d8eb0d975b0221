"""The modem path: pyserial → pty → AT interpreter → USIM core, as a host talks to a cellular
modem's SIM with AT+CSIM. `modem_pty` runs `trelab modem serve --pty` as a process; the 3GPP
sets use an in-thread ModemServer per set (the same pty path, without a python start each)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import serial

from aka.autn import recover_sqn_ms
from aka.hss import Hss
from aka.usim import AkaMacFailure, AkaSuccess, AkaSyncFailure
from firmware_stubs.modem.at import AtModem
from firmware_stubs.modem.serve import ModemServer
from firmware_stubs.usim.engine import UsimEngine
from firmware_stubs.usim.personalise import hss_subscriber
from firmware_stubs.usim.profile import DEFAULT_PROFILE, load_profile, parse_profile
from lab.lab import LabStatus
from tests.conftest import ModemProcess
from tests.helpers import REPO
from tests.usim_vectors import TestCard, milenage_cards, tuak_cards
from trelab.errors import Unavailable
from uicc.errors import CardRefused
from uicc.links.at_csim import AtCommandFailed, AtCsimLink
from uicc.usim import UsimClient


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args], cwd=REPO, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


@contextmanager
def modem_thread(profile: dict[str, object]) -> Iterator[str]:
    """A modem with ``profile`` on a fresh pty, served by a thread; yields the pty path."""
    server = ModemServer(AtModem(UsimEngine(parse_profile(profile))), log=open(os.devnull, "w"))  # noqa: SIM115
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.device
    finally:
        server.stop()
        thread.join(5)
        server.close()
        server.log.close()


# ---- the modem process ---------------------------------------------------------------------


def test_modem_serve_answers_at_on_its_pty(modem_pty: ModemProcess) -> None:
    with AtCsimLink(modem_pty.device, timeout=5) as link:
        assert link.command("AT+CGMI") == ("trelab",)
        assert link.command("AT+CPIN?") == ("+CPIN: SIM PIN",)
        client = UsimClient(link)
        info = client.info()
        assert info.iccid == DEFAULT_PROFILE["iccid"] and info.atr is None
        client.verify_pin("1234")
        assert link.command("AT+CIMI") == (DEFAULT_PROFILE["imsi"],)
        card = milenage_cards()[0]  # the default profile is TS 35.208 Test Set 1
        result = client.authenticate(card.rand, card.autn)
        assert result.to_json() == {
            k: card.expected[k] for k in ("result", "res", "ck", "ik", "kc")
        }
        assert isinstance(client.authenticate(card.rand, card.autn), AkaSyncFailure)
        sw, imsi = link.restricted(176, 0x6F07, 0, 0, 9)
        assert sw == 0x9000 and imsi.hex() == "080910101032547698"
    assert modem_pty.stop() == 0  # SIGTERM: clean


def test_cli_card_aka_over_serial(modem_pty: ModemProcess) -> None:
    card = milenage_cards()[0]
    done = _cli("card", "aka", "--serial", modem_pty.device, "--rand", card.rand.hex(),
                "--autn", card.autn.hex(), "--pin", "1234", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["res"] == card.expected["res"]
    again = _cli("card", "aka", "--serial", modem_pty.device, "--rand", card.rand.hex(),
                 "--autn", card.autn.hex(), "--pin", "1234", "--json")  # fmt: skip
    assert again.returncode == 0 and json.loads(again.stdout)["result"] == "sync_failure"
    info = _cli("card", "info", "--serial", modem_pty.device, "--json")
    assert json.loads(info.stdout)["atr"] is None


@pytest.mark.parametrize(
    "card", milenage_cards() + tuak_cards(), ids=lambda c: c.name.split(" ", 1)[1].replace(" ", "-")
)
def test_3gpp_sets_through_the_modem(card: TestCard) -> None:
    with modem_thread(card.profile) as device, AtCsimLink(device) as link:
        client = UsimClient(link)
        client.verify_pin("1234")
        result = client.authenticate(card.rand, card.autn)
        assert isinstance(result, AkaSuccess)
        got = result.to_json()
        for key in ("res", "ck", "ik", "kc"):
            if key in card.expected:
                assert got[key] == card.expected[key], key
        replay = client.authenticate(card.rand, card.autn)
        assert isinstance(replay, AkaSyncFailure)
        algorithm = parse_profile(card.profile).make_algorithm()
        assert recover_sqn_ms(algorithm, card.rand, replay.auts) == card.sqn
        forged = card.autn[:-1] + bytes([card.autn[-1] ^ 1])
        assert isinstance(client.authenticate(card.rand, forged), AkaMacFailure)


def test_pin_blocked_and_unblocked_over_serial(modem_pty: ModemProcess) -> None:
    with AtCsimLink(modem_pty.device) as link:
        client = UsimClient(link)
        sws = []
        for _ in range(3):
            with pytest.raises(CardRefused) as caught:
                client.verify_pin("0000")
            sws.append(caught.value.sw)
        assert sws == [0x63C2, 0x63C1, 0x6983]
        assert link.command("AT+CPIN?") == ("+CPIN: SIM PUK",)
    done = _cli("card", "unblock", "--serial", modem_pty.device, "--puk", "12345678",
                "--new-pin", "5678", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pin"]["state"] == "enabled"
    with AtCsimLink(modem_pty.device) as link:
        UsimClient(link).verify_pin("5678")
        assert link.command("AT+CPIN?") == ("+CPIN: READY",)


def _exchange(port: serial.Serial, data: bytes, *, wait: float = 3.0) -> bytes:
    """Write ``data``, read until a final result code (or ``wait`` seconds pass)."""
    port.write(data)
    out = b""
    deadline = time.monotonic() + wait
    finals = (b"OK\r\n", b"ERROR\r\n")
    while time.monotonic() < deadline:
        out += port.read(port.in_waiting or 1)
        if out.endswith(finals) or (b"+CME ERROR" in out and out.endswith(b"\r\n")):
            break
    return out


def test_malformed_at_lines_over_the_pty(modem_pty: ModemProcess) -> None:
    with serial.Serial(modem_pty.device, 115200, timeout=0.1) as port:
        assert _exchange(port, b"ATE0\r").endswith(b"OK\r\n")
        assert _exchange(port, b"AT+CMEE=1\r") == b"\r\nOK\r\n"
        assert _exchange(port, b"hello modem\r") == b"\r\nERROR\r\n"
        assert _exchange(port, b"\x00\xff\x1b[2J garbage\n") == b"\r\nERROR\r\n"
        assert _exchange(port, b"AT" + b"A" * 5000 + b"\r") == b"\r\nERROR\r\n"  # over-long
        assert _exchange(port, b'AT+CSIM=99,"00A4000C023F00"\r') == b"\r\n+CME ERROR: 50\r\n"
        assert _exchange(port, b'AT+CSIM=14,"00A4000C023FXY"\r') == b"\r\n+CME ERROR: 25\r\n"
        truncated = _exchange(port, b'AT+CSIM=4,"00A4"\r')
        assert truncated == b'\r\n+CSIM: 4,"6700"\r\n\r\nOK\r\n'
        wrong_lc = _exchange(port, b'AT+CSIM=14,"00A40004053F00"\r')
        assert wrong_lc == b'\r\n+CSIM: 4,"6700"\r\n\r\nOK\r\n'
        assert _exchange(port, b'AT+CSIM=10,"00EE000000"\r') == b'\r\n+CSIM: 4,"6D00"\r\n\r\nOK\r\n'
        assert _exchange(port, b"AT+CRSM=1,2,3\r") == b"\r\n+CME ERROR: 50\r\n"
        assert _exchange(port, os.urandom(300).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n")
        assert _exchange(port, b"AT\r\n") == b"\r\nOK\r\n"  # still alive, CR LF accepted
        assert _exchange(port, b"AT\n") == b"\r\nOK\r\n"  # LF alone too
    assert modem_pty.process.poll() is None


def test_modem_state_survives_kill_9(tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(dict(DEFAULT_PROFILE)))
    state = tmp_path / "state.json"
    card = milenage_cards()[0]
    modem = ModemProcess(profile, state, tmp_path / "modem.log")
    try:
        with AtCsimLink(modem.device) as link:
            client = UsimClient(link)
            client.verify_pin("1234")
            assert isinstance(client.authenticate(card.rand, card.autn), AkaSuccess)
        os.kill(modem.pid, signal.SIGKILL)
    finally:
        modem.stop()
    json.loads(state.read_text())
    again = ModemProcess(profile, state, tmp_path / "modem2.log")
    try:
        with AtCsimLink(again.device) as link:
            client = UsimClient(link)
            client.verify_pin("1234")
            replay = client.authenticate(card.rand, card.autn)
            assert isinstance(replay, AkaSyncFailure)  # no rollback after kill -9
    finally:
        assert again.stop() == 0


def test_a_silent_port_times_out_as_unavailable() -> None:
    master, slave = os.openpty()  # nobody answers on the other side
    try:
        with pytest.raises(Unavailable, match=r"did not answer ATE0 within 0\.3 s"):
            AtCsimLink(os.ttyname(slave), timeout=0.3)
    finally:
        os.close(master)
        os.close(slave)
    with pytest.raises(Unavailable, match="cannot open serial port"):
        AtCsimLink("/dev/nonexistent-tty")


def test_a_modem_that_refuses_csim_is_a_protocol_error(modem_pty: ModemProcess) -> None:
    with AtCsimLink(modem_pty.device) as link, pytest.raises(AtCommandFailed, match="ERROR"):
        link.command("AT+NOSUCHCOMMAND")


# ---- the lab's modem, right after `lab up` ---------------------------------------------------


@pytest.mark.lab
def test_lab_modem_authenticates(lab: LabStatus) -> None:
    assert lab.modem is not None and lab.modem.state == "running"
    device = str(lab.modem.device)
    profile = load_profile(lab.modem.profile)
    hss = Hss(os.urandom)
    hss.add(hss_subscriber(profile))
    with AtCsimLink(device) as link:
        client = UsimClient(link)
        assert client.read_iccid() == profile.iccid
        client.verify_pin(profile.pin1)
        vector = hss.generate_vectors(profile.imsi)[0]
        result = client.authenticate(vector.rand, vector.autn)
        if isinstance(result, AkaSyncFailure):  # an earlier run moved the card's SQN on
            hss.resynchronise(profile.imsi, vector.rand, result.auts)
            vector = hss.generate_vectors(profile.imsi)[0]
            result = client.authenticate(vector.rand, vector.autn)
        assert isinstance(result, AkaSuccess) and result.res == vector.xres
        assert link.command("AT+CIMI") == (profile.imsi,)


def test_modem_on_an_existing_serial_device() -> None:
    """--device: the modem opens a port that exists (here the slave of a pty pair standing in
    for a USB gadget UART); the host is on the master side."""
    master, slave = os.openpty()
    os.set_blocking(master, False)
    engine = UsimEngine(parse_profile(DEFAULT_PROFILE))
    with open(os.devnull, "w") as quiet:
        server = ModemServer(AtModem(engine), device=os.ttyname(slave), log=quiet)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            os.write(master, b"ATE0\rAT+CGMM\r")
            out = b""
            deadline = time.monotonic() + 5
            while out.count(b"OK\r\n") < 2 and time.monotonic() < deadline:
                try:
                    out += os.read(master, 1024)
                except BlockingIOError:
                    time.sleep(0.01)
            assert out.endswith(b"\r\ntrelab virtual M2M modem\r\n\r\nOK\r\n")
        finally:
            server.stop()
            thread.join(5)
            server.close()
            os.close(master)
            os.close(slave)
    assert not thread.is_alive()
