"""Extended length APDUs (ISO/IEC 7816-4 §5.1: Lc of 3 bytes '00 xx xx', Le of 2 or 3 bytes):
claimed in the ATR's card capabilities, taken by READ/UPDATE BINARY and RETRIEVE/SET DATA,
answered 6700 by every other command and by the GSM class, nothing changed by a malformed one."""

from __future__ import annotations

import pytest

from firmware_stubs.usim.engine import HISTORICAL_BYTES

from .conftest import ADM1, Card


def extended(
    cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None
) -> bytes:
    """Case 2E/3E/4E: 00 ‖ Lc (2 bytes) ‖ data, then Le in 2 bytes (00 only before it if no Lc)."""
    out = bytes([cla, ins, p1, p2])
    if data:
        out += b"\x00" + len(data).to_bytes(2, "big") + data
    if le is not None:
        out += (b"" if data else b"\x00") + (le % 65536).to_bytes(2, "big")
    return out


def test_the_atr_claims_extended_lengths() -> None:
    # COMPACT-TLV '73': card capabilities, third software function byte b7 (ISO/IEC 7816-4 §8.1.1.2.7)
    index = HISTORICAL_BYTES.index(0x73)
    assert HISTORICAL_BYTES[index + 3] & 0x40


def test_read_binary_case_2e(card: Card) -> None:
    card.select_usim()
    card.verify_pin1()
    card.send("00a40004026f07")  # EF.IMSI, 9 bytes
    short = card.raw("00b0000009")
    assert card.raw(extended(0x00, 0xB0, 0, 0, le=0)) == short  # Le 0000: all there is
    assert card.raw(extended(0x00, 0xB0, 0, 0, le=9)) == short
    assert card.raw(extended(0x00, 0xB0, 0, 2, le=4)) == short[2:6] + b"\x90\x00"
    # asking for more than the file holds: the rest, with end of file reached (6282)
    assert card.raw(extended(0x00, 0xB0, 0, 0, le=300)) == short[:-2] + b"\x62\x82"
    assert card.raw(extended(0x00, 0xB0, 0, 9, le=1)) == b"\x6b\x00"  # offset past the end


def test_set_and_retrieve_data_of_more_than_256_bytes_in_one_apdu(card: Card) -> None:
    """EF.MML (1024 bytes, BER-TLV): a 600-byte object written with one extended SET DATA and
    read back with one extended RETRIEVE DATA (Le 0000), where short APDUs need blocks."""
    card.verify_pin1()
    assert card.send("00a40804067f105f3b4f47")[1] == 0x9000
    value = bytes(range(256)) * 2 + bytes(88)
    obj = b"\x80\x82" + len(value).to_bytes(2, "big") + value
    assert card.raw(extended(0x80, 0xDB, 0, 0x80, obj)) == b"\x90\x00"
    out = card.raw(extended(0x80, 0xCB, 0, 0x80, b"\x80", le=0))
    assert out == obj + b"\x90\x00"
    # a short RETRIEVE DATA still gets it in blocks of 256
    first = card.raw(bytes.fromhex("80cb00800180") + b"\x00")
    assert first[:-2] == obj[:256] and first[-2:] == b"\x62\xf1"


def test_update_binary_case_3e(card: Card) -> None:
    assert card.send(b"\x00\x20\x00\x0a\x08" + ADM1)[1] == 0x9000
    card.select_usim()
    card.send("00a40004026f46")  # EF.SPN, 17 bytes
    new = b"\x01" + b"lab".ljust(16, b"\xff")
    assert card.raw(extended(0x00, 0xD6, 0, 0, new)) == b"\x90\x00"
    assert card.raw("00b0000011")[:-2] == new
    assert card.raw(extended(0x00, 0xD6, 0, 0, new + b"\x00")) == b"\x67\x00"  # past the end


@pytest.mark.parametrize(
    "apdu",
    [
        extended(0x00, 0xA4, 0x00, 0x04, b"\x3f\x00", le=0),  # SELECT: short only
        extended(0x00, 0xB2, 0x01, 0x04, le=0),  # READ RECORD
        extended(0x00, 0x20, 0x00, 0x01, b"1234\xff\xff\xff\xff"),  # VERIFY
        extended(0x00, 0x88, 0x00, 0x81, bytes(34), le=0),  # AUTHENTICATE
        extended(0xA0, 0xB0, 0x00, 0x00, le=9),  # the GSM class has no extended APDUs
        extended(0x80, 0xF2, 0x00, 0x00, le=0),  # STATUS
        bytes.fromhex("00b00000" + "0001"),  # a 2-byte tail: neither short nor extended
        bytes.fromhex("00d60000" + "000003" + "aabb"),  # Lc 3, 2 bytes follow
        bytes.fromhex("00d60000" + "000000"),  # extended Lc 0
        bytes.fromhex("00d60000" + "000002" + "aabb" + "00"),  # a 1-byte Le after extended Lc
        extended(0x80, 0xDB, 0x00, 0x80, bytes(4097)),  # more than the card takes at once
    ],
)
def test_extended_apdus_elsewhere_are_6700_and_change_nothing(card: Card, apdu: bytes) -> None:
    card.select_usim()
    before = (card.engine.state, card.engine._df, card.engine._ef)
    assert card.raw(apdu) == b"\x67\x00"
    assert (card.engine.state, card.engine._df, card.engine._ef) == before
    assert card.engine.last_error is None
