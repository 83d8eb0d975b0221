"""BER-TLV structured EFs (TS 102 221 §11.3): SET DATA and RETRIEVE DATA on EF.MML of
DF.MULTIMEDIA (TS 31.102 §4.6.3.1), objects larger than one APDU in blocks, the tag list, and
the host client reading the file back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_stubs.usim.engine import UsimEngine
from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile
from firmware_stubs.usim.state import CardStore
from uicc import fs
from uicc.links.inprocess import InProcessLink
from uicc.survey import read_files
from uicc.sw import is_valid_sw
from uicc.usim import UsimClient

from .conftest import PIN1, Card, make_card

MML_PATH = "00a40804067f105f3b4f47"


def ready(card: Card) -> Card:
    assert card.send(MML_PATH)[1] == 0x9000
    card.verify_pin1()
    return card


def set_object(card: Card, tag: bytes, value: bytes, block: int = 255) -> list[int]:
    """SET DATA in blocks of ``block`` bytes: the status words the card gave."""
    whole = fs.encode_ber_tlv(tag, value)
    words, first = [], True
    while whole:
        part, whole = whole[:block], whole[block:]
        p2 = 0x80 if first else 0x00
        words.append(card.send(bytes([0x80, 0xDB, 0x00, p2, len(part)]) + part)[1])
        first = False
    return words


def retrieve(card: Card, tag: bytes, le: int = 0) -> tuple[bytes, list[int]]:
    """RETRIEVE DATA as over T=1 (Le given) until the card stops answering 62F1."""
    out = card.raw(bytes([0x80, 0xCB, 0x00, 0x80, len(tag)]) + tag + bytes([le]))
    data, words = out[:-2], [int.from_bytes(out[-2:], "big")]
    while words[-1] == 0x62F1:
        out = card.raw(bytes([0x80, 0xCB, 0x00, 0x00, le]))
        data += out[:-2]
        words.append(int.from_bytes(out[-2:], "big"))
    return data, words


def test_the_file_is_ber_tlv_structured(card: Card) -> None:
    data, sw = card.send(MML_PATH)
    assert sw == 0x9000
    fcp = fs.parse_fcp(data)
    assert fcp.structure == "ber-tlv" and not fcp.is_df
    assert fcp.fid == 0x4F47 and fcp.size == fs.EF_MML.size
    assert card.send("00b0000001")[1] == 0x6981  # not a transparent file
    assert card.send("00b2010400")[1] == 0x6981
    assert card.send("80cb008001 5c".replace(" ", ""))[1] == 0x6982  # PIN1 first
    card.verify_pin1()
    assert retrieve(card, b"\x5c") == (b"\x5c\x00", [0x9000])  # no objects yet
    assert retrieve(card, b"\x80")[1] == [0x6A88]


def test_small_objects_created_replaced_and_deleted(card: Card) -> None:
    ready(card)
    assert set_object(card, b"\x80", b"\x01\x02\x03") == [0x9000]
    assert set_object(card, b"\xdf\x21", b"two-byte tag") == [0x9000]
    assert retrieve(card, b"\x80") == (bytes.fromhex("8003010203"), [0x9000])
    assert retrieve(card, b"\xdf\x21")[0] == fs.encode_ber_tlv(b"\xdf\x21", b"two-byte tag")
    assert set_object(card, b"\x80", b"\x09") == [0x9000]  # replaced where it was
    assert retrieve(card, b"\x5c")[0] == b"\x5c\x03\x80\xdf\x21"
    assert card.send("80db008001 80".replace(" ", ""))[1] == 0x9000  # the tag alone: delete
    assert retrieve(card, b"\x80")[1] == [0x6A88]
    assert card.send("80db00800180")[1] == 0x6A88  # nothing left to delete
    content = card.engine.state.files[fs.EF_MML.name]
    assert fs.EF_MML.codec.decode(content) == [{"tag": "df21", "value": b"two-byte tag".hex()}]


@pytest.mark.parametrize("le", [0x00, 0x80])
def test_an_object_larger_than_an_apdu_moves_in_blocks(card: Card, le: int) -> None:
    ready(card)
    value = os.urandom(600)
    assert set_object(card, b"\xa1", value) == [0x63F1, 0x63F1, 0x9000]
    data, words = retrieve(card, b"\xa1", le=le)
    assert data == fs.encode_ber_tlv(b"\xa1", value)
    size = le or 256
    assert words == [0x62F1] * (len(data) // size) + [0x9000]


def test_retrieve_the_t0_way(card: Card) -> None:
    """Without Le the first block comes with 61xx and GET RESPONSE; its status, 62F1, says a
    next block follows."""
    ready(card)
    value = bytes(range(256)) * 2
    set_object(card, b"\xa2", value)
    out = card.raw("80cb008001a2")
    assert out == b"\x61\x00"  # 256 bytes waiting
    block = card.raw("00c0000000")
    assert block[-2:] == b"\x62\xf1" and len(block) == 258
    whole, out = block[:-2], block
    while out[-2:] == b"\x62\xf1":  # next blocks, case 2: they come at once
        out = card.raw("80cb000000")
        whole += out[:-2]
    assert out[-2:] == b"\x90\x00" and whole == fs.encode_ber_tlv(b"\xa2", value)


def test_refusals_change_nothing(card: Card) -> None:
    ready(card)
    set_object(card, b"\x80", b"kept")
    before = card.engine.state

    def refused(apdu: str | bytes, sw: int) -> None:
        assert card.send(apdu)[1] == sw, apdu
        assert card.engine.state == before

    refused(b"\x80\xdb\x00\x80\x04\x81\x82\x04\x00", 0x6A84)  # 1024 bytes do not fit
    refused("80db008004800100ff", 0x6700)  # more value than the length says
    refused("80db0080020081", 0x6A80)  # length 81 then nothing
    refused("80db0080038081" + "05", 0x6A80)  # 81 05: not the shortest length
    refused("80db0080015c", 0x6A80)  # the tag list is not an object
    refused("80db00800100", 0x6A80)  # tag 00
    refused("80db0080011f", 0x6A80)  # a tag whose second byte is missing
    refused("80db008000", 0x6700)  # no data
    refused("80db00800380014100", 0x6700)  # Le in SET DATA
    refused("80db0000028000", 0x6985)  # next block without a first one
    refused("80db01800180", 0x6A86)
    refused("80db00010180", 0x6A86)
    refused("80cb0080028000", 0x6A80)  # bytes after the tag
    refused("80cb000000", 0x6985)  # next block of nothing
    refused("00cb00800180", 0x6E00)  # interindustry class
    # a transfer cut short by a new first block, or by too much data, leaves the old object
    first = fs.encode_ber_tlv(b"\x80", b"x" * 300)[:255]
    assert card.send(bytes([0x80, 0xDB, 0x00, 0x80, 255]) + first)[1] == 0x63F1
    refused(b"\x80\xdb\x00\x00\x40" + b"y" * 64, 0x6700)  # 49 bytes left, 64 sent
    refused(b"\x80\xdb\x00\x00\x01y", 0x6985)  # the transfer ended with the error
    assert retrieve(card, b"\x80")[0] == b"\x80\x04kept"


def test_selecting_another_file_ends_a_transfer(card: Card) -> None:
    ready(card)
    whole = fs.encode_ber_tlv(b"\x80", b"z" * 300)
    assert card.send(bytes([0x80, 0xDB, 0x00, 0x80, 200]) + whole[:200])[1] == 0x63F1
    card.send("00a4000c022fe2")
    card.send("00a4080c067f105f3b4f47")
    assert card.send(b"\x80\xdb\x00\x00\x02zz")[1] == 0x6985
    assert retrieve(card, b"\x80")[1] == [0x6A88]


def test_transfers_are_per_channel(card: Card) -> None:
    ready(card)
    assert card.send("0070000001") == (b"\x01", 0x9000)
    assert card.send("01a4080c067f105f3b4f47")[1] == 0x9000
    whole = fs.encode_ber_tlv(b"\x81", b"a" * 300)
    assert card.send(bytes([0x80, 0xDB, 0x00, 0x80, 200]) + whole[:200])[1] == 0x63F1
    other = fs.encode_ber_tlv(b"\x82", b"b" * 10)
    assert card.send(bytes([0x81, 0xDB, 0x00, 0x80, len(other)]) + other)[1] == 0x9000
    rest = whole[200:]
    assert card.send(bytes([0x80, 0xDB, 0x00, 0x00, len(rest)]) + rest)[1] == 0x9000
    assert retrieve(card, b"\x5c")[0] == b"\x5c\x02\x82\x81"


def test_objects_survive_a_power_cycle(tmp_path: Path) -> None:
    profile = parse_profile(DEFAULT_PROFILE)
    card = Card(UsimEngine(profile, CardStore(tmp_path / "state.json")))
    ready(card)
    set_object(card, b"\xa3", b"kept across restarts" * 20)
    again = Card(UsimEngine(profile, CardStore(tmp_path / "state.json")))
    ready(again)
    assert retrieve(again, b"\xa3")[0] == fs.encode_ber_tlv(b"\xa3", b"kept across restarts" * 20)


def test_the_host_client_reads_the_objects_back() -> None:
    engine = make_card().engine
    card = ready(Card(engine))
    set_object(card, b"\x80", b"\x01")
    set_object(card, b"\xa1", bytes(400))
    client = UsimClient(InProcessLink(engine))
    client.verify_pin("1234")
    readings = {r.path: r for r in read_files(client, client.applications())}
    mml = readings["MF/DF.TELECOM/DF.MULTIMEDIA/EF.MML"]
    assert mml.status == "read" and mml.structure == "ber-tlv"
    assert mml.value == [{"tag": "80", "value": "01"}, {"tag": "a1", "value": "00" * 400}]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([0xCB, 0xDB]),
    st.integers(0, 255),
    st.sampled_from([0x00, 0x80, 0x01, 0xFF]),
    st.binary(max_size=40),
    st.one_of(st.none(), st.integers(0, 255)),
)
def test_garbage_never_breaks_the_card(
    ins: int, p1: int, p2: int, data: bytes, le: int | None
) -> None:
    card = ready(make_card())
    apdu = bytes([0x80, ins, p1, p2]) + (bytes([len(data)]) + data if data else b"")
    apdu += bytes([le]) if le is not None else b""
    before = card.engine.state
    out = card.raw(apdu)
    assert is_valid_sw(int.from_bytes(out[-2:], "big")) and card.engine.last_error is None
    if out[-2:] not in (b"\x90\x00", b"\x63\xf1", b"\x62\xf1") and out[-2] != 0x61:
        assert card.engine.state == before
    assert card.send(b"\x00\x20\x00\x01\x08" + PIN1)[1] == 0x9000  # still a working card
