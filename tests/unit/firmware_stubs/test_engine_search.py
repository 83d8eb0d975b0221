"""SEARCH RECORD in the UICC class (TS 102 221 §11.1.7): simple search forward and backward from
record P1, enhanced search (offset or value, from P1 or from the next/previous record), the
record numbers of every match, the first made current; refusals that change nothing."""

from __future__ import annotations

import pytest

from uicc import fs

from .conftest import Card

# EF.ECC (6FB7, SFI 01) of the default card: record 1 '11F2FF…' (112), record 2 '19F1FF…' (911),
# records 3–5 erased (FF); 20 bytes each
ECC = "00a40004026fb7"


def search(card: Card, p1: int, p2: int, data: bytes | str) -> tuple[bytes, int]:
    if isinstance(data, str):
        data = bytes.fromhex(data)
    return card.send(bytes([0x00, 0xA2, p1, p2, len(data)]) + data)


@pytest.fixture
def ecc(card: Card) -> Card:
    card.select_usim()
    assert card.send(ECC)[1] == 0x9000
    return card


def test_simple_search_forward_and_backward(ecc: Card) -> None:
    assert search(ecc, 0x01, 0x04, "ffff") == (bytes([1, 2, 3, 4, 5]), 0x9000)
    assert search(ecc, 0x05, 0x05, "ffff") == (bytes([5, 4, 3, 2, 1]), 0x9000)
    assert search(ecc, 0x03, 0x04, "ffff") == (bytes([3, 4, 5]), 0x9000)
    assert search(ecc, 0x02, 0x05, "ffff") == (bytes([2, 1]), 0x9000)


def test_simple_search_finds_the_pattern_anywhere_and_sets_the_record_pointer(ecc: Card) -> None:
    assert search(ecc, 0x01, 0x04, "f1ff") == (b"\x02", 0x9000)  # '19 F1 FF': from byte 2
    data, sw = ecc.send("00b2000414")  # READ RECORD, current
    assert sw == 0x9000 and data[:3] == bytes.fromhex("19f1ff")
    assert search(ecc, 0x00, 0x05, "11f2") == (b"\x01", 0x9000)  # P1 00: from the current one


def test_no_match_answers_no_data_and_keeps_the_pointer(ecc: Card) -> None:
    assert search(ecc, 0x02, 0x04, "11f2")[1] == 0x9000
    assert search(ecc, 0x02, 0x04, "11f2")[0] == b""
    assert search(ecc, 0x01, 0x04, "19f1")[0] == b"\x02"
    assert ecc.send("00b2000414")[0][:2] == bytes.fromhex("19f1")
    assert search(ecc, 0x01, 0x04, "abcdef") == (b"", 0x9000)
    assert ecc.send("00b2000414")[0][:2] == bytes.fromhex("19f1")  # still record 2


def test_enhanced_search_offset_and_value(ecc: Card) -> None:
    # search indication 04: forward from P1, byte 2 an offset
    assert search(ecc, 0x01, 0x06, "0401f2") == (b"\x01", 0x9000)  # F2 at offset 1
    assert search(ecc, 0x01, 0x06, "0402f2") == (b"", 0x9000)  # not from offset 2 on
    # 0C: forward from P1, the search starts after the first byte equal to byte 2
    assert search(ecc, 0x01, 0x06, "0c19f1") == (b"\x02", 0x9000)
    assert search(ecc, 0x01, 0x06, "0c11f1") == (b"", 0x9000)  # F1 is not after 11
    # 05: backward from P1
    assert search(ecc, 0x05, 0x06, "0500ffff") == (bytes([5, 4, 3, 2, 1]), 0x9000)


def test_enhanced_search_from_the_next_and_previous_record(ecc: Card) -> None:
    assert search(ecc, 0x01, 0x04, "11f2")[0] == b"\x01"  # record 1 current
    assert search(ecc, 0x00, 0x06, "0600ffff") == (bytes([2, 3, 4, 5]), 0x9000)  # next: 2…
    assert search(ecc, 0x00, 0x06, "0700ffff") == (b"\x01", 0x9000)  # previous of 2: 1
    assert search(ecc, 0x02, 0x06, "0600ffff")[1] == 0x6A86  # P1 must be 00 there


def test_search_by_sfi_and_on_a_cyclic_file(card: Card) -> None:
    card.select_usim()
    assert search(card, 0x01, 0x01 << 3 | 0x04, "19f1") == (b"\x02", 0x9000)  # EF.ECC's SFI
    card.verify_pin1()
    assert card.send("00a40004026f80")[1] == 0x9000  # EF.ICI, cyclic
    records = fs.EF_ICI.records
    data, sw = search(card, 0x01, 0x04, "ff")
    assert sw == 0x9000 and list(data) == list(range(1, records + 1))


def test_search_needs_the_files_read_condition(card: Card) -> None:
    card.select_usim()
    assert card.send("00a40004026f3b")[1] == 0x9000  # EF.FDN: read PIN1
    assert search(card, 0x01, 0x04, "ff")[1] == 0x6982
    card.verify_pin1()
    assert search(card, 0x01, 0x04, "ff")[0] == bytes(range(1, fs.EF_FDN.records + 1))


def test_search_over_t1_answers_at_once(ecc: Card) -> None:
    out = ecc.raw(bytes.fromhex("00a2010402ffff00"))
    assert out == bytes([1, 2, 3, 4, 5]) + b"\x90\x00"


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00a2010702ffff", 0x6A86),  # proprietary search
        ("00a2010302ffff", 0x6A86),  # not a search mode
        ("00a20104", 0x6700),  # no pattern
        ("00a2010415" + "04" * 21, 0x6700),  # pattern longer than a record (20 bytes)
        ("00a2010602" + "0400", 0x6700),  # enhanced search without a pattern
        ("00a2010603" + "1400ff", 0x6A80),  # RFU bits in the search indication
        ("00a2010603" + "0000ff", 0x6A80),  # no search direction
        ("00a2060402ffff", 0x6A83),  # record 6 of 5
        ("00a201fc02ffff", 0x6A82),  # SFI 31: no such file
    ],
)
def test_malformed_search_changes_nothing(ecc: Card, apdu: str, sw: int) -> None:
    ecc.send("00b2020414")  # record 2 current
    before = (ecc.engine.state, ecc.engine._record, ecc.engine._ef)
    assert ecc.raw(apdu) == sw.to_bytes(2, "big")
    assert (ecc.engine.state, ecc.engine._record, ecc.engine._ef) == before
    assert ecc.engine.last_error is None


def test_search_on_a_transparent_file_and_without_a_file(card: Card) -> None:
    card.select_usim()
    assert card.raw("00a2010401ff") == b"\x69\x86"  # no current EF
    card.send("00a40004026f07")
    assert card.raw("00a2010401ff") == b"\x69\x81"  # EF.IMSI is transparent
