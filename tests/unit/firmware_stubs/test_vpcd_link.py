"""firmware_stubs.vpcd: length framing, controls and APDUs, bytes in any split, with the real
emulated USIM behind it (no socket: the vpcd side is played by the test, as h11's tests do)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_stubs.usim.engine import ATR, UsimEngine
from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile
from firmware_stubs.vpcd import (
    CTRL_ATR,
    CTRL_OFF,
    CTRL_ON,
    CTRL_RESET,
    VpcdConnection,
    encode_frame,
)
from trelab.errors import LocalProtocolError, RemoteProtocolError


def _frames(data: bytes) -> list[bytes]:
    out = []
    while data:
        n = int.from_bytes(data[:2], "big")
        out.append(data[2 : 2 + n])
        data = data[2 + n :]
    return out


@pytest.fixture
def conn() -> VpcdConnection:
    return VpcdConnection(UsimEngine(parse_profile(DEFAULT_PROFILE)))


def test_power_controls_get_no_answer_and_atr_does(conn: VpcdConnection) -> None:
    for control in (CTRL_OFF, CTRL_ON, CTRL_RESET):
        assert conn.receive_data(encode_frame(bytes([control]))) == b""
    assert _frames(conn.receive_data(encode_frame(bytes([CTRL_ATR])))) == [ATR]
    assert [e.kind for e in conn.events] == ["power_off", "power_on", "reset", "atr"]


def test_apdu_is_answered_in_a_frame(conn: VpcdConnection) -> None:
    out = conn.receive_data(encode_frame(bytes.fromhex("00a40004023f00")))
    assert _frames(out) == [b"\x61" + out[-1:]]  # T=0: 61xx, data waits for GET RESPONSE
    fcp = _frames(conn.receive_data(encode_frame(bytes([0x00, 0xC0, 0, 0, out[-1]]))))[0]
    assert fcp[0] == 0x62 and fcp[-2:] == b"\x90\x00"
    assert conn.counts["apdu"] == 2


def test_bytes_may_arrive_one_at_a_time_or_many_frames_at_once(conn: VpcdConnection) -> None:
    stream = encode_frame(bytes([CTRL_ON])) + encode_frame(bytes([CTRL_ATR]))
    stream += encode_frame(bytes.fromhex("00ee000000"))  # unknown INS
    out = b"".join(conn.receive_data(stream[i : i + 1]) for i in range(len(stream)))
    assert _frames(out) == [ATR, b"\x6d\x00"]
    assert conn.pending == 0
    again = VpcdConnection(conn.card)
    assert _frames(again.receive_data(stream)) == [ATR, b"\x6d\x00"]


def test_unknown_control_byte_is_ignored(conn: VpcdConnection) -> None:
    assert conn.receive_data(encode_frame(b"\x03")) == b""
    assert conn.events[-1].kind == "unknown_control" and conn.events[-1].length == 3


def test_malformed_apdus_get_status_words(conn: VpcdConnection) -> None:
    for apdu, sw in (("00a40004053f00", "6700"), ("00a4", "6700"), ("", "6700")):
        assert _frames(conn.receive_data(encode_frame(bytes.fromhex(apdu)))) == [bytes.fromhex(sw)]


def test_a_frame_longer_than_any_tpdu_is_a_remote_protocol_error(conn: VpcdConnection) -> None:
    with pytest.raises(RemoteProtocolError, match="not a command TPDU"):
        conn.receive_data(b"\xff\xff" + bytes(10))


def test_encode_frame_limits() -> None:
    assert encode_frame(b"") == b"\x00\x00"
    with pytest.raises(LocalProtocolError):
        encode_frame(bytes(0x10000))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=264), max_size=8), st.integers(1, 7))
def test_any_sequence_of_frames_in_any_split_gets_one_answer_per_apdu(
    payloads: list[bytes], split: int
) -> None:
    conn = VpcdConnection(UsimEngine(parse_profile(DEFAULT_PROFILE)))
    stream = b"".join(encode_frame(p) for p in payloads)
    out = b"".join(conn.receive_data(stream[i : i + split]) for i in range(0, len(stream), split))
    answered = [p for p in payloads if len(p) != 1 or p[0] == CTRL_ATR]
    frames = _frames(out)
    assert len(frames) == len(answered)
    assert all(len(f) >= 2 for f in frames)


def test_an_extended_command_tpdu_is_one_frame(conn: VpcdConnection) -> None:
    """A 611-byte extended SET DATA (ISO/IEC 7816-4 case 3E) reaches the card whole."""
    tpdu = b"\x80\xdb\x00\x80\x00\x02\x5c" + bytes(604)
    answers = _frames(conn.receive_data(encode_frame(tpdu)))
    assert len(answers) == 1 and len(answers[0]) == 2  # one status word back, no drop
