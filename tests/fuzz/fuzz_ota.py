"""OTA secured packets both ways (TS 102 225, TS 31.115).

Card side: a genuine SMS-PP download (RFM UPDATE BINARY of EF.IMSI, correctly keyed) with
fuzzer-chosen bytes flipped, or raw bytes, goes to the card as an ENVELOPE: the card answers
with a valid status word, no internal error, and a changed EF.IMSI only ever comes from the
unmodified command packet. Host side: a genuine proof of receipt with bytes flipped is either
refused with a typed error or, if it says "authenticated", is the genuine one."""

from __future__ import annotations

from collections.abc import Iterator

from tests.fuzz.oracle import Reader, typed
from tests.fuzz.usim_common import MILENAGE, Watched, keyset
from uicc import fs
from uicc.ota import (
    DEFAULT_SPI,
    TAR_RFM_USIM,
    PorStatus,
    build_command_packet,
    build_envelope_sms_pp,
    build_response_packet,
    build_sms_deliver,
    encode_compact,
    parse_envelope_sms_pp,
    parse_remote_response,
    parse_response_packet,
    parse_sms_deliver,
)

KEYS = keyset(MILENAGE)
UPDATE_IMSI = bytes([0x00, 0xD6, 0x87, 0x00, 0x09]) + fs.EF_IMSI.codec.encode("001020000000001", 9)
PACKET = build_command_packet(KEYS, tar=TAR_RFM_USIM, counter=1, data=encode_compact([UPDATE_IMSI]))
ENVELOPE = build_envelope_sms_pp(build_sms_deliver(PACKET))
POR = build_response_packet(
    tar=TAR_RFM_USIM,
    counter=1,
    status=PorStatus.OK,
    data=bytes.fromhex("019000"),
    spi=DEFAULT_SPI,
    keyset=KEYS,
)


def _mutate(genuine: bytes, reader: Reader) -> bytes:
    """``genuine`` with up to 4 bytes changed (position, XOR mask), then maybe cut short."""
    out = bytearray(genuine)
    for _ in range(1 + reader.pick(4)):
        position, mask = reader.byte() % len(out), reader.byte()
        out[position] ^= mask
    if reader.flag():
        del out[reader.byte() % (len(out) + 1) :]
    return bytes(out)


def _card_side(reader: Reader) -> None:
    if reader.flag():  # an ENVELOPE header, then the fuzzer's bytes as its data
        body = reader.take(255)
        envelope = bytes([0x80, 0xC2, 0x00, 0x00, len(body)]) + body
    else:
        envelope = _mutate(ENVELOPE, reader)  # the whole command APDU, header included
    card = Watched(MILENAGE)
    before = card.engine.imsi
    card.send(envelope)
    if card.engine.imsi != before:
        data = envelope[5 : 5 + envelope[4]]  # the card ran it: header and Lc are intact
        packet = parse_sms_deliver(parse_envelope_sms_pp(data)).payload
        assert packet == PACKET, "a modified command packet changed the card"


def _host_side(reader: Reader) -> None:
    por_bytes = reader.take(120) if reader.flag() else _mutate(POR, reader)
    por = typed(parse_response_packet, por_bytes, spi=DEFAULT_SPI, keyset=KEYS)
    if isinstance(por, Exception):
        return
    if por.authenticated:
        genuine = parse_response_packet(POR, spi=DEFAULT_SPI, keyset=KEYS)
        assert (por.tar, por.counter, por.status, por.data) == (
            genuine.tar,
            genuine.counter,
            genuine.status,
            genuine.data,
        ), "a modified PoR verified"
    typed(parse_remote_response, por.data, expanded=reader.flag())


def test_one_input(data: bytes) -> None:
    reader = Reader(data)
    if reader.flag():
        _card_side(reader)
    else:
        _host_side(reader)


def starting_inputs() -> Iterator[bytes]:
    # side (1 card, 0 host), raw (1) or mutated (0: count, position, mask …, cut?)
    yield b"\x01\x01" + ENVELOPE
    yield b"\x00\x01" + POR
    yield b"\x01\x00\x00\x05\x00\x00"  # the genuine envelope, unchanged
    yield b"\x01\x00\x00\x30\x01\x00"  # one bit of the secured packet flipped
    yield b"\x00\x00\x00\x05\x00\x00"
    yield b"\x00\x00\x00\x20\x80\x00"
