"""The emulated USIM on the real PC/SC stack: pyscard → pcscd → vpcd → `trelab card serve` →
USIM core. The lab's card sits in reader 0; tests that need a card of their own (3GPP sets,
kill -9, PIN blocking) run `trelab card serve` on reader 1 with a random ICCID and check, through
PC/SC, that the card in the reader is theirs before using it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aka.autn import recover_sqn_ms
from aka.hss import Hss
from aka.sqn import split_sqn
from aka.usim import AkaMacFailure, AkaSuccess, AkaSyncFailure
from firmware_stubs.usim.engine import ATR
from firmware_stubs.usim.personalise import hss_subscriber
from firmware_stubs.usim.profile import DEFAULT_PROFILE, load_profile, parse_profile
from lab.lab import LabStatus
from tests.card_process import READER_1, CardProcess
from tests.helpers import REPO
from tests.usim_vectors import TestCard, milenage_cards, tuak_cards, unique_iccid
from trelab import proc
from trelab.errors import BadInput
from uicc.errors import CardRefused
from uicc.links.pcsc import PcscLink, resolve_reader
from uicc.usim import UsimClient

pytestmark = pytest.mark.lab

READER_0 = "Virtual PCD 00 00"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def own_card(tmp_path: Path, lab: LabStatus) -> Iterator[CardProcess]:
    """A default-profile card with a unique ICCID on reader 1, stopped after the test."""
    card = CardProcess(tmp_path / "card", dict(DEFAULT_PROFILE) | {"iccid": unique_iccid()})
    try:
        yield card.start()
    finally:
        card.stop()


# ---- the lab's card, right after `lab up` ----------------------------------------------------


def test_lab_status_reports_the_card(lab: LabStatus, usim_reader: str) -> None:
    status = _cli("lab", "status", "--lab-dir", str(lab.lab_dir), "--json")
    card = json.loads(status.stdout)["components"]["card"]
    assert card["state"] == "running" and card["reader"] == usim_reader == READER_0
    assert proc.matches(card["pid"], program=os.path.basename(sys.executable))
    assert Path(card["profile"]).is_file() and Path(card["state_file"]).is_file()
    assert card["link"] in ("attached", "connected")
    assert oct(Path(card["profile"]).stat().st_mode & 0o777) == "0o600"  # K is in there


def test_card_info_on_the_lab_reader(lab: LabStatus, usim_reader: str) -> None:
    done = _cli("card", "info", "--reader", usim_reader, "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["atr"] == ATR.hex() and info["iccid"] == DEFAULT_PROFILE["iccid"]
    assert info["pin"]["state"] in ("enabled", "disabled") and info["imsi"] is None
    by_index = json.loads(_cli("card", "info", "--reader", "0", "--pin", "1234", "--json").stdout)
    assert by_index["imsi"] == DEFAULT_PROFILE["imsi"]
    # each file's rule, from the EF.ARR record its FCP (tag 8B) names; PIN2's state
    files = {f["path"]: f for f in by_index["files"]}
    assert files["ADF.USIM/EF.FDN"]["access"] == {"read": "PIN1", "update": "PIN2"}
    assert files["ADF.USIM/EF.FDN"]["arr"] == {"fid": "6F06", "record": 7}
    assert files["MF/EF.ICCID"]["access"] == {"read": "always", "update": "never"}
    assert by_index["pin2"]["state"] == "enabled"
    text = _cli("card", "info", "--reader", "0", "--pin", "1234")
    assert text.returncode == 0, text.stderr
    fdn = next(line for line in text.stdout.splitlines() if line.startswith("ADF.USIM/EF.FDN "))
    assert fdn.endswith("[read PIN1 update PIN2]")
    assert any(
        line.startswith("pin2") and "3 tries left" in line for line in text.stdout.splitlines()
    )


def test_card_aka_on_the_lab_reader_with_resync(lab: LabStatus, usim_reader: str) -> None:
    """What an operator does: a vector; on AUTS resynchronise and retry; the answer is 3GPP's."""
    assert lab.card is not None
    profile = load_profile(lab.card.profile)
    hss = Hss(os.urandom)
    hss.add(hss_subscriber(profile))

    def aka(rand: bytes, autn: bytes) -> tuple[int, dict[str, str]]:
        done = _cli("card", "aka", "--reader", usim_reader, "--rand", rand.hex(),
                    "--autn", autn.hex(), "--json", env={"TRELAB_CARD_PIN": "1234"})  # fmt: skip
        assert "Traceback" not in done.stderr
        assert done.stdout, done.stderr
        return done.returncode, json.loads(done.stdout)

    sqn_he = hss.subscriber(profile.imsi).sqn
    vector = hss.generate_vectors(profile.imsi)[0]
    code, out = aka(vector.rand, vector.autn)
    if out["result"] == "sync_failure":  # the card has seen higher SQNs (an earlier run)
        assert code == 0
        hss.resynchronise(profile.imsi, vector.rand, bytes.fromhex(out["auts"]))
        vector = hss.generate_vectors(profile.imsi)[0]
        code, out = aka(vector.rand, vector.autn)
    accepted_seq = sqn_he.seq_he  # the SEQ of the vector just used
    assert code == 0 and out["result"] == "success"
    assert (out["res"], out["ck"], out["ik"]) == (
        vector.xres.hex(),
        vector.ck.hex(),
        vector.ik.hex(),
    )
    # Replay: AUTS; MAC-S verifies and SQN_MS is at least the SQN the card just accepted
    # (equal, unless another process authenticated on this card in between).
    code, replay = aka(vector.rand, vector.autn)
    assert (code, replay["result"]) == (0, "sync_failure"), replay
    sqn_ms = hss.resynchronise(profile.imsi, vector.rand, bytes.fromhex(replay["auts"]))
    assert split_sqn(sqn_ms)[0] >= accepted_seq
    # A forged MAC: exit 1, {"result": "mac_failure"}.
    forged = vector.autn[:-1] + bytes([vector.autn[-1] ^ 0x80])
    code, out = aka(hss.generate_vectors(profile.imsi)[0].rand, forged)
    assert code == 1 and out == {"result": "mac_failure"}


def test_reader_errors_are_one_line_with_a_fix(lab: LabStatus, usim_reader: str) -> None:
    # readers are there, the name is wrong: bad input that lists them (not "run lab up")
    missing = _cli("card", "info", "--reader", "No Such Reader", "--json")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "no reader matches" in missing.stderr and "#0 'Virtual PCD 00 00'" in missing.stderr
    assert "lab up" not in missing.stderr
    assert json.loads(missing.stdout)["error"]["type"] == "BadInput"
    beyond = _cli("card", "info", "--reader", "5")
    assert beyond.returncode == 2 and "no reader #5" in beyond.stderr
    assert "lab up" not in beyond.stderr
    several = _cli("card", "info", "--reader", "Virtual")
    assert several.returncode == 2 and "matches several readers" in several.stderr
    bad = _cli("card", "aka", "--reader", "0", "--rand", "00", "--autn", "00" * 16)
    assert bad.returncode == 2 and "--rand: 1 bytes" in bad.stderr
    assert resolve_reader("PCD 00 01$", [READER_0, READER_1]) == READER_1


# ---- 3GPP conformance sets through the whole stack -------------------------------------------


_SETS = milenage_cards()[:4] + tuak_cards()[:3]


@pytest.mark.parametrize("vector", _SETS, ids=lambda c: c.name.replace(" ", "-"))
def test_3gpp_sets_through_pcscd(tmp_path: Path, lab: LabStatus, vector: TestCard) -> None:
    card = CardProcess(tmp_path / "card", vector.profile | {"iccid": unique_iccid()}).start()
    try:
        with card.link() as link:
            assert link.atr == ATR and link.protocol == "T1"  # offered; pcscd prefers it
            client = UsimClient(link)
            client.verify_pin("1234")
            result = client.authenticate(vector.rand, vector.autn)
            assert isinstance(result, AkaSuccess)
            got = result.to_json()
            for key in ("res", "ck", "ik", "kc"):
                if key in vector.expected:
                    assert got[key] == vector.expected[key], key
            if "sres" in vector.expected:
                gsm = client.authenticate_gsm(vector.rand)
                assert gsm.sres.hex() == vector.expected["sres"]
            replay = client.authenticate(vector.rand, vector.autn)
            assert isinstance(replay, AkaSyncFailure)
            algorithm = parse_profile(card.profile).make_algorithm()
            assert recover_sqn_ms(algorithm, vector.rand, replay.auts) == vector.sqn
    finally:
        assert card.stop() == 0  # SIGTERM: a clean stop
    assert "stopped" in card.log.read_text()


# ---- malformed APDUs, wrong MAC, PIN, kill -9 (own card on reader 1) --------------------------


def test_malformed_apdus_get_status_words_and_the_card_survives(own_card: CardProcess) -> None:
    with own_card.link() as link:
        raw = link.transmit_raw
        assert raw(bytes.fromhex("00a40004053f00")) == b"\x67\x00"  # Lc 5, 2 bytes follow
        assert raw(bytes.fromhex("00a4000402")) == b"\x67\x00"  # Lc, no data
        assert raw(bytes.fromhex("00ee000000")) == b"\x6d\x00"  # unknown INS
        assert raw(bytes.fromhex("ffa4000000")) == b"\x6e\x00"  # invalid CLA
        assert raw(bytes.fromhex("0088008100")) == b"\x67\x00"  # AUTHENTICATE without data
        for garbage in (os.urandom(5), os.urandom(40), bytes(255)):
            assert len(raw(garbage)) >= 2
        try:
            short = raw(b"\x00\xa4")
        except BadInput:
            short = None  # pcscd itself may refuse a TPDU shorter than a header
        assert short in (None, b"\x67\x00")
        # Still a working card: SELECT MF, and AKA with the right answer.
        assert link.transmit(bytes.fromhex("00a40004023f0000"))[-2:] == b"\x90\x00"
        client = UsimClient(link)
        client.verify_pin("1234")
        vector = milenage_cards()[0]
        assert (
            client.authenticate(vector.rand, vector.autn).to_json()["res"] == vector.expected["res"]
        )
    assert own_card.process is not None and own_card.process.poll() is None


def test_both_protocols_and_the_gsm_class_through_pcscd(own_card: CardProcess) -> None:
    """pcscd accepts the ATR (T=0 and T=1 offered); over each protocol, what SIM tooling sends
    first (the GSM class) finds a SIM, and RUN GSM ALGORITHM gives the USIM's GSM values."""
    vector = milenage_cards()[0]
    # pcscd keeps the protocol it negotiated until the card is reset: T=1 first (what the
    # fixture's automatic choice took), then a reset on close lets T=0 be negotiated
    for protocol in ("T1", "T0"):
        with PcscLink(READER_1, protocol=protocol) as link:
            link.reset_on_close = True  # also: CHV1 verified for this test only
            assert link.protocol == protocol and link.atr == ATR
            raw = link.transmit_raw
            assert raw(bytes.fromhex("a0a40000022fe2")) == b"\x9f\x0f"
            response = raw(bytes.fromhex("a0c000000f"))
            assert response[-2:] == b"\x90\x00" and response[4:7] == b"\x2f\xe2\x04"
            assert raw(bytes.fromhex("a0a40000027f20"))[0] == 0x9F
            assert raw(b"\xa0\x20\x00\x01\x08" + b"1234" + b"\xff" * 4) == b"\x90\x00"
            assert raw(b"\xa0\x88\x00\x00\x10" + vector.rand) == b"\x9f\x0c"
            answer = raw(bytes.fromhex("a0c000000c"))
            assert answer[:4].hex() == vector.expected["sres"]
            assert answer[4:12].hex() == vector.expected["kc"]
            assert answer[12:] == b"\x90\x00"
            # the same card keeps answering the UICC class, through the link's exchange
            assert link.transmit(bytes.fromhex("00a40004023f0000"))[-2:] == b"\x90\x00"


def test_wrong_mac_gives_9862(own_card: CardProcess) -> None:
    vector = milenage_cards()[0]
    forged = vector.autn[:-1] + bytes([vector.autn[-1] ^ 1])
    with own_card.link() as link:
        client = UsimClient(link)
        client.verify_pin("1234")
        body = b"\x10" + vector.rand + b"\x10" + forged
        assert link.transmit_raw(bytes([0, 0x88, 0, 0x81, len(body)]) + body) == b"\x98\x62"
        assert isinstance(client.authenticate(vector.rand, forged), AkaMacFailure)
        assert isinstance(client.authenticate(vector.rand, vector.autn), AkaSuccess)


def test_pin_blocked_after_three_tries_and_unblocked_with_the_puk(own_card: CardProcess) -> None:
    with own_card.link() as link:
        client = UsimClient(link)
        sws = []
        for _ in range(3):
            with pytest.raises(CardRefused) as caught:
                client.verify_pin("0000")
            sws.append(caught.value.sw)
        assert sws == [0x63C2, 0x63C1, 0x6983]
        assert client.pin_status().state == "blocked"
    status = _cli("card", "info", "--reader", READER_1, "--json")
    assert json.loads(status.stdout)["pin"] == {
        "state": "blocked",
        "verified": False,
        "tries_left": 0,
    }
    blocked = _cli("card", "info", "--reader", READER_1, "--pin", "1234")
    assert blocked.returncode == 1 and "6983" in blocked.stderr
    assert "trelab card unblock --puk" in blocked.stderr  # the pointer to the remedy
    wrong = _cli("card", "unblock", "--reader", READER_1, "--puk", "11111111", "--new-pin", "4321")
    assert wrong.returncode == 1 and "63C9" in wrong.stderr
    done = _cli("card", "unblock", "--reader", READER_1, "--puk", "12345678", "--new-pin", "4321",
                "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    vector = milenage_cards()[0]
    aka = _cli("card", "aka", "--reader", READER_1, "--rand", vector.rand.hex(),
               "--autn", vector.autn.hex(), "--pin", "4321", "--json")  # fmt: skip
    assert aka.returncode == 0 and json.loads(aka.stdout)["res"] == vector.expected["res"]
    no_pin = _cli("card", "aka", "--reader", READER_1, "--rand", vector.rand.hex(),
                  "--autn", vector.autn.hex())  # fmt: skip
    assert no_pin.returncode == 1 and "6982" in no_pin.stderr and "pass --pin" in no_pin.stderr
    # The CLI reset the card when it closed: the PIN does not stay verified for others.
    assert json.loads(_cli("card", "info", "--reader", READER_1, "--json").stdout)["pin"] == {
        "state": "enabled", "verified": False, "tries_left": 3,
    }  # fmt: skip


def test_state_survives_kill_9(own_card: CardProcess) -> None:
    vector = milenage_cards()[0]
    with own_card.link() as link:
        client = UsimClient(link)
        client.verify_pin("1234")
        assert isinstance(client.authenticate(vector.rand, vector.autn), AkaSuccess)
        with pytest.raises(CardRefused):
            client.verify_pin("0000")  # one PIN try spent: also non-volatile
    own_card.kill9()
    json.loads(own_card.state.read_text())  # whole, parseable: written atomically
    own_card.start()  # same profile, same state file, new process
    with own_card.link() as link:
        client = UsimClient(link)
        assert client.pin_status().tries_left == 2
        client.verify_pin("1234")
        replay = client.authenticate(vector.rand, vector.autn)
        assert isinstance(replay, AkaSyncFailure)  # no SQN rollback
        algorithm = parse_profile(own_card.profile).make_algorithm()
        assert recover_sqn_ms(algorithm, vector.rand, replay.auts) == vector.sqn


def test_card_serve_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(dict(DEFAULT_PROFILE) | {"k": "00"}))
    done = _cli("card", "serve", "--profile", str(bad))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "profile: k" in done.stderr
    done = _cli("card", "serve", "--profile", str(bad), "--vpcd", "localhost:99999")
    assert done.returncode == 2 and "--vpcd" in done.stderr


def test_pin2_search_record_and_extended_lengths_through_pcscd(own_card: CardProcess) -> None:
    """Through pyscard → pcscd → vpcd over T=1: EF.FDN updated only with PIN2 (CHV2 in the GSM
    class), SEARCH RECORD finding it, and extended APDUs longer than 256 bytes both ways
    (SET DATA and RETRIEVE DATA of a 600-byte object in EF.MML) as the ATR claims them."""
    fdn = bytes.fromhex("486f6d65ffffffffffffffffffff058121436587ffffffffffffffffffff")[:28]
    with PcscLink(READER_1, protocol="T1") as link:
        link.reset_on_close = True
        send = link.transmit
        assert send(b"\x00\x20\x00\x01\x08" + b"1234" + b"\xff" * 4)[-2:] == b"\x90\x00"
        assert send(bytes.fromhex("00a4040c07a0000000871002"))[-2:] == b"\x90\x00"
        assert send(bytes.fromhex("00a4000c026f3b"))[-2:] == b"\x90\x00"
        update = bytes([0x00, 0xDC, 0x01, 0x04, 28]) + fdn
        assert send(update)[-2:] == b"\x69\x82"  # PIN1 is not enough
        assert send(b"\xa0\x20\x00\x02\x08" + b"5678" + b"\xff" * 4) == b"\x90\x00"  # CHV2
        assert send(bytes.fromhex("00a4000c026f3b"))[-2:] == b"\x90\x00"  # (GSM went to MF)
        assert send(update)[-2:] == b"\x90\x00"
        assert send(bytes.fromhex("00a201040421436587")) == b"\x01\x90\x00"  # SEARCH RECORD
        # extended: one SET DATA of 604 bytes and one RETRIEVE DATA answering all of them
        assert send(bytes.fromhex("00a4080c067f105f3b4f47"))[-2:] == b"\x90\x00"
        value = bytes(range(256)) * 2 + bytes(88)
        obj = b"\x80\x82" + len(value).to_bytes(2, "big") + value
        set_data = b"\x80\xdb\x00\x80\x00" + len(obj).to_bytes(2, "big") + obj
        assert link.transmit_raw(set_data) == b"\x90\x00"
        answer = link.transmit_raw(bytes.fromhex("80cb0080000001800000"))
        assert answer == obj + b"\x90\x00"
