"""uicc.links.base.exchange: the T=0 dance (61xx → GET RESPONSE, 6Cxx → resend), shared by links.

The first tests run the real emulated USIM (InProcessLink). The scripted ``send`` functions
below stand in for card behaviour the emulated USIM never shows (9Fxx of a 2G SIM, a card that
never stops asking): they test the link's loop, not a card.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from firmware_stubs.usim.engine import UsimEngine
from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile
from trelab.errors import RemoteProtocolError
from uicc.links.base import MAX_CHAINED, exchange, get_response_cla
from uicc.links.inprocess import InProcessLink


@pytest.fixture
def link() -> InProcessLink:
    return InProcessLink(UsimEngine(parse_profile(DEFAULT_PROFILE)))


def test_case_4_goes_out_as_case_3_and_data_comes_with_get_response(link: InProcessLink) -> None:
    assert link.atr is not None and link.atr[0] == 0x3B
    raw = link.transmit(bytes.fromhex("00a40004023f0000"))  # SELECT MF, FCP wanted
    assert raw[-2:] == b"\x90\x00" and raw[0] == 0x62  # FCP template, no 61xx left
    assert link.apdus == 2  # SELECT (→ 61xx) + GET RESPONSE


def test_case_2_wrong_le_is_resent_with_the_right_one(link: InProcessLink) -> None:
    link.transmit(bytes.fromhex("00a40004022fe200"))  # EF.ICCID
    before = link.apdus
    raw = link.transmit(bytes.fromhex("00b0000020"))  # Le 32, the file has 10 bytes
    assert raw[-2:] == b"\x90\x00" and len(raw) == 12
    assert link.apdus - before == 2  # 6C0A, then READ BINARY with Le 10


def test_malformed_apdus_reach_the_card_unchanged(link: InProcessLink) -> None:
    assert link.transmit(bytes.fromhex("00a40004033f00")) == b"\x67\x00"  # wrong Lc
    assert link.transmit(b"\x00\xa4") == b"\x67\x00"  # truncated header
    assert link.transmit(bytes.fromhex("00ee000000")) == b"\x6d\x00"  # unknown INS
    assert link.transmit(bytes.fromhex("ffa4000000"))[-2:] == b"\x6e\x00"  # invalid CLA


def test_get_response_class() -> None:
    assert get_response_cla(0x00) == 0x00
    assert get_response_cla(0x80) == 0x00  # STATUS (80 F2) fetches with 00 C0
    assert get_response_cla(0x81) == 0x01  # same logical channel
    assert get_response_cla(0xA0) == 0xA0  # 2G SIM class


def test_9fxx_of_a_2g_sim_fetches_with_class_a0() -> None:
    sent: list[bytes] = []

    def sim(tpdu: bytes) -> bytes:  # scripted: a TS 51.011 SIM answering SELECT with 9F0F
        sent.append(tpdu)
        return b"\x9f\x0f" if tpdu[1] == 0xA4 else bytes(15) + b"\x90\x00"

    assert exchange(sim, bytes.fromhex("a0a40000023f00")) == bytes(15) + b"\x90\x00"
    assert sent[1].hex() == "a0c000000f"


def test_multi_part_responses_are_concatenated() -> None:
    parts = iter([b"\x61\x02", b"ab\x61\x01", b"c\x90\x00"])

    def card(tpdu: bytes) -> bytes:  # scripted: data in two GET RESPONSE rounds
        return next(parts)

    assert exchange(card, bytes.fromhex("0088008100")) == b"abc\x90\x00"


def test_a_card_that_never_finishes_is_a_protocol_error() -> None:
    calls = 0

    def endless(tpdu: bytes) -> bytes:  # scripted: misbehaving card
        nonlocal calls
        calls += 1
        return b"\x61\x01"

    with pytest.raises(RemoteProtocolError, match="response rounds"):
        exchange(endless, bytes.fromhex("00a40004023f00"))
    assert calls == 1 + MAX_CHAINED  # the command, then MAX_CHAINED GET RESPONSEs


def test_an_answer_without_status_word_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError, match="no status word"):
        exchange(lambda tpdu: b"\x90", bytes.fromhex("00a40004023f00"))


def test_t1_sends_the_apdu_as_is() -> None:
    sent: list[bytes] = []

    def card(tpdu: bytes) -> bytes:
        sent.append(tpdu)
        return b"\x62\x00\x90\x00"

    exchange(card, bytes.fromhex("00a40004023f0000"), t0=False)
    assert sent == [bytes.fromhex("00a40004023f0000")]


def test_t1_parses_the_apdu_only_when_the_card_asks_for_more() -> None:
    """Over T=1 the APDU goes out as it is; a 6Cxx or 61xx answer still gets its resend or
    GET RESPONSE, and a malformed APDU's 61xx comes back unchanged."""
    sent: list[bytes] = []

    def card(answers: list[bytes]) -> Callable[[bytes], bytes]:
        def send(tpdu: bytes) -> bytes:
            sent.append(tpdu)
            return answers.pop(0)

        return send

    apdu = bytes.fromhex("00b0000004")
    assert exchange(card([b"\x6c\x02", b"\xaa\xbb\x90\x00"]), apdu, t0=False) == b"\xaa\xbb\x90\x00"
    assert sent == [apdu, bytes.fromhex("00b0000002")]
    sent.clear()
    out = exchange(card([b"\x01\x61\x01", b"\x02\x90\x00"]), bytes.fromhex("00b2010400"), t0=False)
    assert out == b"\x01\x02\x90\x00" and sent[1] == bytes.fromhex("00c0000001")
    sent.clear()
    assert exchange(card([b"\x61\x05"]), b"\x00\xb0", t0=False) == b"\x61\x05"
    assert sent == [b"\x00\xb0"]
