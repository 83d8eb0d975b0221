"""Card state persistence: reopen keeps SQN, PIN counters and files; a crash mid-write keeps the old file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from firmware_stubs.usim.engine import UsimEngine, open_card
from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile
from firmware_stubs.usim.state import CardStore
from trelab.errors import BadInput

from .conftest import PIN1, Card
from .test_engine_aka import MILENAGE, parse_success

RAND = bytes.fromhex(MILENAGE[0]["RAND"])
AUTN = bytes.fromhex(MILENAGE[0]["derived"]["AUTN"])


def open_file_card(path: Path) -> Card:
    return Card(UsimEngine(parse_profile(DEFAULT_PROFILE), CardStore(path)))


def test_state_file_is_created_private_and_bound_to_the_iccid(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    open_file_card(path)
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["iccid"] == DEFAULT_PROFILE["iccid"]
    other = {**DEFAULT_PROFILE, "iccid": "8988211000000000025"}
    with pytest.raises(BadInput, match="belongs to ICCID"):
        UsimEngine(parse_profile(other), CardStore(path))


def test_reopen_keeps_sqn_pin_counters_and_files(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    card = open_file_card(path)
    card.select_usim()
    assert card.send(b"\x00\x20\x00\x01\x08" + b"0000\xff\xff\xff\xff")[1] == 0x63C2
    card.verify_pin1()
    assert card.authenticate(RAND, AUTN)[1] == 0x9000
    card.send("00a4000c026f7e")
    assert card.send("00d6000004 11223344".replace(" ", ""))[1] == 0x9000
    sqn_before = card.engine.state.sqn

    again = open_file_card(path)  # a new process: volatile state gone, memory kept
    assert again.engine.state.sqn == sqn_before
    assert again.engine.state.pins["pin1"].remaining == 3  # reset by the good PIN
    again.select_usim()
    again.verify_pin1()
    data, sw = again.authenticate(RAND, AUTN)
    assert sw == 0x9000 and data[0] == 0xDC  # replay still detected after restart
    assert again.send("00b08b0004")[0] == bytes.fromhex("11223344")
    # wrong PIN counts survive too
    assert again.send(b"\x00\x20\x00\x01\x08" + b"0000\xff\xff\xff\xff")[1] == 0x63C2
    third = open_file_card(path)
    assert third.send("00200001")[1] == 0x63C2


def test_open_card_from_files(tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(dict(DEFAULT_PROFILE)))
    engine = open_card(profile, tmp_path / "state.json")
    assert engine.imsi == DEFAULT_PROFILE["imsi"]
    assert open_card(profile, None).store.path is None


def test_crash_during_write_keeps_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "card.json"
    card = open_file_card(path)
    card.select_usim()
    card.verify_pin1()
    before_file = path.read_bytes()
    before_state = card.engine.state

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated power loss before rename")

    monkeypatch.setattr(os, "replace", crash)
    out = card.raw(bytes([0, 0x88, 0, 0x81, 0x22, 0x10]) + RAND + b"\x10" + AUTN)
    assert out == b"\x6f\x00"  # no RES leaves a card that could not record its SQN
    assert card.engine.last_error == "OSError"
    assert card.engine.state == before_state
    assert path.read_bytes() == before_file
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"]  # temp file cleaned up
    # a failing PIN counter write refuses too, and does not count the try in memory
    assert card.send(b"\x00\x20\x00\x01\x08" + b"0000\xff\xff\xff\xff")[1] == 0x6F00
    assert card.engine.state.pins["pin1"].remaining == 3
    monkeypatch.undo()

    # after the "reboot" the card is at the previous state and the AKA works once
    again = open_file_card(path)
    assert again.engine.state == before_state
    again.select_usim()
    again.verify_pin1()
    data, sw = again.authenticate(RAND, AUTN)
    assert sw == 0x9000 and parse_success(data)[0].hex() == MILENAGE[0]["f2_res"]


def test_state_written_before_the_response(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    card = open_file_card(path)
    card.select_usim()
    card.verify_pin1()
    raw = card.raw(bytes([0, 0x88, 0, 0x81, 0x22, 0x10]) + RAND + b"\x10" + AUTN)
    assert raw[0] == 0x61
    # RES is still inside the card (pending GET RESPONSE), but the SQN is already on disk
    on_disk = json.loads(path.read_text())["sqn"]
    assert on_disk == card.engine.state.sqn.to_json()
    assert on_disk != parse_profile(DEFAULT_PROFILE).initial_sqn_state().to_json()


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", '{"version": 2}', '{"version": 1, "iccid": "1"}'],
)
def test_malformed_state_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "card.json"
    path.write_text(content)
    with pytest.raises(BadInput, match="card state"):
        open_file_card(path)


def test_state_and_store_reprs_hide_secrets(tmp_path: Path) -> None:
    card = open_file_card(tmp_path / "card.json")
    card.select_usim()
    card.verify_pin1()
    card.authenticate(RAND, AUTN)
    text = repr(card.engine.state) + repr(card.engine.store) + repr(card.engine) + str(card.engine)
    for secret in (PIN1.hex(), "31323334", MILENAGE[0]["f3_ck"], DEFAULT_PROFILE["k"]):
        assert secret not in text
