"""Logical channels (TS 102 221 §10.1.1, §11.1.17 MANAGE CHANNEL): independent selections on
channels 0–19, the PIN state shared by the card, the classes that name channels 4–19."""

from __future__ import annotations

import pytest

from firmware_stubs.usim.engine import CHANNELS
from uicc import fs

from .conftest import PIN1, Card


def cla(channel: int, *, uicc: bool = False) -> int:
    """The class byte naming ``channel``: 0X/8X for 0–3, 4X/CX for 4–19 (TS 102 221 §10.1.1)."""
    base = (0x40 | (channel - 4)) if channel >= 4 else channel
    return base | (0x80 if uicc else 0x00)


def on(card: Card, channel: int, apdu: bytes | str) -> tuple[bytes, int]:
    """Send ``apdu`` on ``channel`` (its CLA rewritten), GET RESPONSE on the same channel."""
    raw = bytes.fromhex(apdu) if isinstance(apdu, str) else apdu
    uicc = bool(raw[0] & 0x80)
    out = card.raw(bytes([cla(channel, uicc=uicc)]) + raw[1:])
    data = b""
    while out[-2] == 0x61:
        data += out[:-2]
        out = card.raw(bytes([cla(channel), 0xC0, 0x00, 0x00, out[-1]]))
    return data + out[:-2], int.from_bytes(out[-2:], "big")


def open_channel(card: Card, from_channel: int = 0) -> int:
    data, sw = on(card, from_channel, "0070000001")
    assert sw == 0x9000 and len(data) == 1
    return data[0]


def test_open_and_close(card: Card) -> None:
    assert card.engine.open_channels == (0,)
    assert open_channel(card) == 1
    assert open_channel(card) == 2
    assert card.raw("00700005") == b"\x90\x00"  # the terminal chooses channel 5
    assert card.raw("0070000500") == b"\x6a\x86"  # already open
    assert card.engine.open_channels == (0, 1, 2, 5)
    assert card.raw("0070800500") == b"\x90\x00"  # P3 00: case 1 over T=0
    assert on(card, 5, "00a40004023f00")[1] == 0x6881  # closed
    assert card.raw("00708005") == b"\x68\x81"  # closing it twice
    assert card.raw("00708000") == b"\x6a\x86"  # the basic channel cannot be closed
    assert card.raw("02708000") == b"\x90\x00"  # P2 00: the channel the class names
    assert card.engine.open_channels == (0, 1)
    assert card.raw("0070001400") == b"\x6a\x86"  # channel 20 does not exist
    assert card.raw("0070400000") == b"\x6a\x86"  # P1 neither open nor close
    assert card.raw("00700000020000") == b"\x67\x00"  # data in MANAGE CHANNEL
    card.engine.reset()
    assert card.engine.open_channels == (0,)


def test_all_nineteen_channels_and_the_extended_classes(card: Card) -> None:
    opened = [open_channel(card) for _ in range(CHANNELS - 1)]
    assert opened == list(range(1, CHANNELS))
    assert card.raw("0070000001") == b"\x6a\x81"  # none left
    for channel in (3, 4, 11, 19):
        data, sw = on(card, channel, "00a40004022fe2")
        assert sw == 0x9000 and fs.parse_fcp(data).fid == 0x2FE2
        data, sw = on(card, channel, "80f2000000")  # STATUS in the UICC class CX/8X
        assert sw == 0x9000 and fs.parse_fcp(data).fid == 0x3F00
    assert card.raw(bytes([0x4F, 0xB0, 0x00, 0x00, 0x02]))[-2:] == b"\x90\x00"  # channel 19
    assert card.raw(bytes([0x60, 0xB0, 0x00, 0x00, 0x02])) == b"\x68\x82"  # SM on channel 4


def test_same_application_on_two_channels(card: Card) -> None:
    one = open_channel(card)
    card.select_usim()
    assert on(card, one, "00a4040407a0000000871002")[1] == 0x9000
    # different current EFs on each channel, interleaved
    card.send("00a4000c026f07")  # channel 0: EF.IMSI
    on(card, one, "00a4000c026fad")  # channel 1: EF.AD
    assert on(card, one, "00b0000004") == (bytes.fromhex("00000002"), 0x9000)  # ALW
    assert card.send("00b0000009")[1] == 0x6982  # IMSI needs PIN1
    # PIN1 verified on channel 1 counts on channel 0 (one PIN state per card)
    assert on(card, one, b"\x00\x20\x00\x01\x08" + PIN1)[1] == 0x9000
    data, sw = card.send("00b0000009")
    assert sw == 0x9000 and fs.decode_imsi(data) == card.engine.profile.imsi
    data, sw = on(card, one, "00b0000004")
    assert sw == 0x9000 and fs.EF_AD.codec.decode(data)["mnc_length"] == 2
    # record pointers are per channel too
    card.send("00a4000c022f00")
    on(card, one, "00a4080c022f00")
    assert card.send("00b2000220")[1] == 0x9000  # record 1 on channel 0
    assert card.send("00b2000220")[1] == 0x9000  # record 2
    data, sw = on(card, one, "00b2000220")  # channel 1's pointer is still before record 1
    assert sw == 0x9000 and fs.EF_DIR.codec.decode(data) is not None
    # STATUS with P2 01 names the application active on each channel
    assert on(card, one, "80f2000100")[0] == b"\x84\x10" + fs.USIM_AID


def test_a_channel_opened_from_another_starts_where_that_one_is(card: Card) -> None:
    one = open_channel(card)
    on(card, one, "00a4040407a0000000871002")
    two = open_channel(card, from_channel=one)
    data, sw = on(card, two, "00a40004026f07")  # relative to ADF.USIM
    assert sw == 0x9000 and fs.parse_fcp(data).fid == 0x6F07
    three = open_channel(card)  # from the basic channel: the MF, no application
    assert on(card, three, "00a40004026f07")[1] == 0x6A82


def test_responses_stay_on_their_channel(card: Card) -> None:
    one = open_channel(card)
    out = card.raw(bytes([cla(one), 0xA4, 0x00, 0x04, 0x02, 0x3F, 0x00]))
    assert out[0] == 0x61
    assert card.raw(bytes([0x00, 0xC0, 0x00, 0x00, out[1]])) == b"\x69\x85"  # other channel
    out = card.raw(bytes([cla(one), 0xA4, 0x00, 0x04, 0x02, 0x3F, 0x00]))
    data = card.raw(bytes([cla(one), 0xC0, 0x00, 0x00, out[1]]))
    assert data[-2:] == b"\x90\x00" and fs.parse_fcp(data[:-2]).fid == 0x3F00


def test_authenticate_on_a_logical_channel(card: Card) -> None:
    import os

    one = open_channel(card)
    assert on(card, one, b"\x00\x88\x00\x80\x11\x10" + os.urandom(16))[1] == 0x6985  # no app
    on(card, one, "00a4040407a0000000871002")
    on(card, one, b"\x00\x20\x00\x01\x08" + PIN1)
    data, sw = on(card, one, b"\x00\x88\x00\x80\x11\x10" + os.urandom(16))
    assert sw == 0x9000 and data[0] == 4 and data[5] == 8


def test_the_gsm_class_is_the_basic_channel(card: Card) -> None:
    one = open_channel(card)
    on(card, one, "00a4000c022fe2")
    assert card.raw("a0a40000027f20") == b"\x9f\x16"
    # channel 1 kept its EF.ICCID; the GSM SELECT moved the basic channel only
    assert on(card, one, "00b000000a")[1] == 0x9000


@pytest.mark.parametrize(
    "apdu",
    ["0170000001", "0070800100", "00708001", "4070000001", "0070000101", "0070008000"],
)
def test_refusals_change_nothing(card: Card, apdu: str) -> None:
    before = card.engine.open_channels
    out = card.raw(apdu)
    assert out[-2:] != b"\x90\x00" and card.engine.open_channels == before
    assert card.engine.last_error is None
