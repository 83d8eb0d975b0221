"""PIN1, PUK1 and ADM1 on the emulated USIM: VERIFY, CHANGE, DISABLE/ENABLE, UNBLOCK (TS 102 221 §11.1.9–13)."""

from __future__ import annotations

from firmware_stubs.usim.profile import DEFAULT_PROFILE

from .conftest import ADM1, PIN1, PUK1, Card, make_card

WRONG = b"9999" + b"\xff" * 4
NEW = b"4321" + b"\xff" * 4


def verify(card: Card, block: bytes, ref: int = 0x01) -> int:
    return card.send(bytes([0, 0x20, 0, ref, 8]) + block)[1]


def unblock(card: Card, puk: bytes, new: bytes) -> int:
    return card.send(bytes([0, 0x2C, 0, 0x01, 16]) + puk + new)[1]


def test_query_reports_remaining_tries(card: Card) -> None:
    assert card.send("00200001")[1] == 0x63C3  # case 1
    assert card.send("0020000100")[1] == 0x63C3  # T=0 form, P3 = 0
    assert verify(card, WRONG) == 0x63C2
    assert card.send("00200001")[1] == 0x63C2
    assert verify(card, PIN1) == 0x9000
    assert card.send("00200001")[1] == 0x9000  # verified
    assert card.engine.state.pins["pin1"].remaining == 3  # a good PIN resets the counter


def test_pin_blocks_after_three_wrong_then_puk_unblocks(card: Card) -> None:
    assert [verify(card, WRONG) for _ in range(3)] == [0x63C2, 0x63C1, 0x6983]
    assert verify(card, PIN1) == 0x6983  # even the right PIN is refused now
    assert card.send("00200001")[1] == 0x6983
    assert card.engine.pin_status()["pin1_remaining"] == 0
    card.select_usim()
    assert card.send("00b0870009")[1] == 0x6982
    # UNBLOCK: query PUK tries, wrong PUK, then the right one sets a new PIN
    assert card.send("002c0001")[1] == 0x63CA
    assert unblock(card, b"00000000", NEW) == 0x63C9
    assert unblock(card, PUK1, b"12\xff\xff\xff\xff\xff\xff") == 0x6A80  # new PIN too short
    assert card.engine.state.pins["puk1"].remaining == 9  # format error costs no try
    assert unblock(card, PUK1, NEW) == 0x9000
    assert card.engine.state.pins["puk1"].remaining == 10
    assert card.send("00b0870009")[1] == 0x9000  # PIN1 counts as verified after unblock
    card.engine.power_on()
    assert verify(card, PIN1) == 0x63C2  # old PIN gone
    assert verify(card, NEW) == 0x9000


def test_puk_blocks_after_ten_wrong(card: Card) -> None:
    for _ in range(3):
        verify(card, WRONG)
    results = [unblock(card, b"00000000", NEW) for _ in range(10)]
    assert results == [0x63C0 | n for n in range(9, 0, -1)] + [0x6983]
    assert unblock(card, PUK1, NEW) == 0x6983  # for good
    assert card.send("002c0001")[1] == 0x6983
    assert verify(card, PIN1) == 0x6983


def test_change_pin(card: Card) -> None:
    change = bytes([0, 0x24, 0, 0x01, 16])
    assert card.send(change + WRONG + NEW)[1] == 0x63C2
    assert card.send(change + PIN1 + b"12ab\xff\xff\xff\xff")[1] == 0x6A80
    assert card.send(change + PIN1 + NEW)[1] == 0x9000
    assert card.engine.state.pins["pin1"].remaining == 3
    card.engine.reset()
    assert verify(card, PIN1) == 0x63C2
    assert verify(card, NEW) == 0x9000
    assert card.send(bytes([0, 0x24, 0, 0x01, 8]) + NEW)[1] == 0x6700


def test_disable_and_enable_pin(card: Card) -> None:
    disable, enable = bytes([0, 0x26, 0, 0x01, 8]), bytes([0, 0x28, 0, 0x01, 8])
    assert card.send(enable + PIN1)[1] == 0x6985  # already enabled
    assert card.send(disable + WRONG)[1] == 0x63C2
    assert card.send(disable + PIN1)[1] == 0x9000
    assert card.engine.pin_status()["pin1_enabled"] is False
    card.engine.power_on()
    card.select_usim()
    assert card.send("00b0870009")[1] == 0x9000  # no PIN needed now
    assert card.send(disable + PIN1)[1] == 0x6985
    assert card.send(bytes([0, 0x24, 0, 0x01, 16]) + PIN1 + NEW)[1] == 0x6984  # disabled
    assert card.send(enable + PIN1)[1] == 0x9000
    card.engine.power_on()
    card.select_usim()
    assert card.send("00b0870009")[1] == 0x6982


def test_adm_counts_retries_and_blocks(card: Card) -> None:
    assert card.send("0020000a")[1] == 0x63C3
    assert verify(card, b"00000000", 0x0A) == 0x63C2
    assert verify(card, ADM1, 0x0A) == 0x9000
    assert card.engine.state.pins["adm1"].remaining == 3
    card.engine.power_on()
    assert [verify(card, b"00000000", 0x0A) for _ in range(3)] == [0x63C2, 0x63C1, 0x6983]
    assert verify(card, ADM1, 0x0A) == 0x6983
    # PIN1 is independent of ADM1
    assert verify(card, PIN1) == 0x9000
    # no PUK for ADM: UNBLOCK names PIN1 only
    assert card.send(bytes([0, 0x2C, 0, 0x0A, 16]) + PUK1 + NEW)[1] == 0x6A88


def test_verify_failure_clears_verified_status(card: Card) -> None:
    card.select_usim()
    card.verify_pin1()
    assert card.send("00b0870009")[1] == 0x9000
    assert verify(card, WRONG) == 0x63C2
    assert card.send("00b0870009")[1] == 0x6982


def test_adm1_as_hex_key() -> None:
    card = make_card({**DEFAULT_PROFILE, "adm1": "0011223344556677"})
    assert verify(card, bytes.fromhex("0011223344556677"), 0x0A) == 0x9000
