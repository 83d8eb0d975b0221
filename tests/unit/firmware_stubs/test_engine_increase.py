"""INCREASE (TS 102 221 §11.1.8, TS 51.011 §9.2.8) on EF.ACM, the accumulated call meter of
advice of charge (TS 31.102 §4.2.9): the sum becomes the most recent record, 9850 on overflow."""

from __future__ import annotations

import pytest

from uicc import fs

from .conftest import Card


@pytest.fixture
def acm(card: Card) -> Card:
    card.select_usim()
    card.verify_pin1()
    assert card.send("00a40004026f39")[1] == 0x9000
    return card


def test_increase_adds_to_the_most_recent_record(acm: Card) -> None:
    assert acm.send("8032000003000064") == (bytes.fromhex("000064000064"), 0x9000)  # 0 + 100
    assert acm.send("8032000003000010") == (bytes.fromhex("000074000010"), 0x9000)  # + 16
    records = [acm.send(bytes([0, 0xB2, n, 4, 3]))[0] for n in (1, 2)]
    assert records == [bytes.fromhex("000074"), bytes.fromhex("000064")]  # newest first
    assert fs.EF_ACM.codec.decode(records[0]) == {"units": 116}


def test_overflow_is_9850_and_changes_nothing(acm: Card) -> None:
    assert acm.send("8032000003fffffe")[1] == 0x9000
    before = acm.engine.state
    assert acm.raw("8032000003000002") == b"\x98\x50"
    assert acm.engine.state == before


def test_increase_in_the_gsm_class_and_its_refusals(card: Card) -> None:
    card.select_usim()
    card.send("00a40004026f39")
    assert card.raw("8032000003000001") == b"\x69\x82"  # PIN1 first (update condition)
    assert card.send(b"\xa0\x20\x00\x01\x08" + b"1234" + b"\xff" * 4)[1] == 0x9000
    assert card.raw("a0a40000027f20")[0] == 0x9F  # DF.GSM
    assert card.raw("a0a40000026f39")[0] == 0x9F  # EF.ACM there
    response = card.raw("a0c000000f")
    assert response[7] & 0x40 and response[9] >> 4 == 0x1  # INCREASE allowed, under CHV1
    assert card.raw("a032000003000005") == b"\x9f\x06"
    assert card.raw("a0c0000006") == bytes.fromhex("000005000005") + b"\x90\x00"
    card.send("00a40004026f07")
    assert card.raw("8032000003000001") == b"\x69\x81"  # not a cyclic file
    assert card.raw("8032010003000001") == b"\x6a\x86"
    card.send("00a40004026f39")
    assert card.raw("8032000004" + "00000001") == b"\x67\x00"  # longer than a record
