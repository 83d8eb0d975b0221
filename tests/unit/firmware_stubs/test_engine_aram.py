"""The ARA-M's rules changed with STORE DATA (GlobalPlatform SEAC v1.1 §3.5: Command-Store-REF-AR-DO
'F0', Command-Delete 'F1', Command-UpdateRefreshTag 'F2') and read back with GET DATA 'FF40'
(Get-Next 'FF60' past 256 bytes) and 'DF20'; ADM1 stands in for the secure channel."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uicc import seac
from uicc.links.inprocess import InProcessLink
from uicc.survey import read_access_rules
from uicc.sw import is_valid_sw
from uicc.usim import UsimClient

from .conftest import ADM1, Card, make_card

ARA_M = "00a4040409a00000015141434c00"
HASH_A = bytes.fromhex("aa6872787654334567840de535c2bbd5a04f0baa")
HASH_B = bytes.fromhex("a1234567890123bb1f140de987aaa891bbbf0bdd")


def store(card: Card, command: bytes) -> int:
    return card.send(bytes([0x80, 0xE2, 0x90, 0x00, len(command)]) + command)[1]


def all_rules(card: Card) -> bytes:
    data, sw = card.send("80caff4000")
    assert sw == 0x9000
    return data


@pytest.fixture
def aram(card: Card) -> Card:
    assert card.send(ARA_M)[1] == 0x9000
    return card


def test_store_needs_adm1_and_the_ara_m(card: Card) -> None:
    rule = seac.build_store_rule(bytes.fromhex("ffffffffffaa"), HASH_A)
    card.select_usim()
    card.verify_adm1()
    assert store(card, rule) == 0x6985  # the USIM is selected, not the ARA-M
    fresh = make_card()
    assert fresh.send(ARA_M)[1] == 0x9000
    assert store(fresh, rule) == 0x6982
    assert all_rules(fresh) == bytes.fromhex("ff4000")


def test_store_then_get_all_and_the_refresh_tag_moves(aram: Card) -> None:
    tag_before = aram.send("80cadf2000")[0]
    aram.verify_adm1()
    command = seac.build_store_rule(
        bytes.fromhex("ffffffffffaa"),
        HASH_A,
        apdu=b"\x00",
        nfc=b"\x00",
        permissions=bytes.fromhex("0000000000000004"),
    )
    assert store(aram, command) == 0x9000
    # the stored REF-AR-DO comes back inside 'FF40' byte for byte
    assert all_rules(aram) == b"\xff\x40" + bytes([len(command) - 2]) + command[2:]
    assert seac.decode_rules(all_rules(aram)) == [
        {
            "aid": "ffffffffffaa",
            "device_app": HASH_A.hex(),
            "apdu": "never",
            "nfc": "never",
            "permissions": "0000000000000004",
        }
    ]
    tag_after = aram.send("80cadf2000")[0]
    assert tag_after[:3] == b"\xdf\x20\x08" and tag_after != tag_before
    assert store(aram, b"\xf2\x00") == 0x9000  # Command-UpdateRefreshTag
    assert aram.send("80cadf2000")[0] != tag_after


def test_a_second_rule_with_the_same_ref_do_conflicts(aram: Card) -> None:
    aram.verify_adm1()
    assert store(aram, seac.build_store_rule(b"", HASH_B)) == 0x9000
    before = aram.engine.state
    assert store(aram, seac.build_store_rule(b"", HASH_B, apdu=b"\x00")) == 0x6A89
    assert aram.engine.state == before


def test_delete_by_aid_by_rule_and_all(aram: Card) -> None:
    aram.verify_adm1()
    aid_a, aid_b = bytes.fromhex("ffffffffffaa"), bytes.fromhex("ffffffffffbb")
    for aid, device in ((aid_a, HASH_A), (aid_a, HASH_B), (aid_b, HASH_A)):
        assert store(aram, seac.build_store_rule(aid, device)) == 0x9000
    assert store(aram, seac.build_delete(aid_a)) == 0x9000
    assert [r["aid"] for r in seac.decode_rules(all_rules(aram))] == ["ffffffffffbb"]
    assert store(aram, seac.build_delete(aid_a)) == 0x6A88  # nothing left to delete
    assert store(aram, seac.build_delete()) == 0x9000
    assert all_rules(aram) == bytes.fromhex("ff4000")


def test_more_than_256_bytes_of_rules_come_with_get_next(aram: Card) -> None:
    aram.verify_adm1()
    for n in range(8):
        aid = bytes.fromhex("a000000151") + bytes([n])
        command = seac.build_store_rule(aid, HASH_A, apdu=bytes(8) + b"\xff" * 8, nfc=b"\x01")
        assert store(aram, command) == 0x9000
    first, sw = aram.send("80caff4000")
    assert sw == 0x9000 and len(first) == 256
    rest, sw = aram.send("80caff6000")
    assert sw == 0x9000 and rest
    assert aram.send("80caff6000")[1] == 0x6985  # nothing more to send
    rules = seac.decode_rules(first + rest)
    assert len(rules) == 8 and rules[0]["apdu"] == "0000000000000000ffffffffffffffff"


@pytest.mark.parametrize(
    ("command", "p1", "sw"),
    [
        (bytes.fromhex("f000"), 0x90, 0x6A80),  # no REF-AR-DO
        (bytes.fromhex("f004e202e100"), 0x90, 0x6A80),  # REF-AR-DO without AR-DO
        (bytes.fromhex("f00ce20ae106c10401020304e300"), 0x90, 0x6A80),  # a 4-byte hash
        (bytes.fromhex("f300"), 0x90, 0x6A80),  # a command this ARA-M does not take
        (bytes.fromhex("f1024f01"), 0x90, 0x6A80),  # truncated
        (bytes.fromhex("f2"), 0x90, 0x6A80),
        (bytes.fromhex("f200"), 0x00, 0x6A86),  # not the last block: one block only
    ],
)
def test_malformed_store_data_changes_nothing(aram: Card, command: bytes, p1: int, sw: int) -> None:
    aram.verify_adm1()
    before = aram.engine.state
    out = aram.raw(bytes([0x80, 0xE2, p1, 0x00, len(command)]) + command)
    assert out == sw.to_bytes(2, "big")
    assert aram.engine.state == before and aram.engine.last_error is None


def test_rules_survive_a_power_cycle_and_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    card = make_card(path=path)
    card.send(ARA_M)
    assert card.send(b"\x00\x20\x00\x0a\x08" + ADM1)[1] == 0x9000
    assert store(card, seac.build_store_rule(b"", b"")) == 0x9000
    again = make_card(path=path)
    again.send(ARA_M)
    assert seac.decode_rules(all_rules(again))[0]["aid"] == ""
    # and `card info` reads them as a terminal does
    client = UsimClient(InProcessLink(again.engine))
    found = read_access_rules(client)
    assert found["ara_m"] is True and len(found["rules"]) == 1


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=1, max_size=80), st.sampled_from([0x80, 0x90, 0x00, 0x10]))
def test_store_data_garbage_gets_a_status_and_changes_rules_only_on_9000(
    data: bytes, p1: int
) -> None:
    card = make_card()
    card.send(ARA_M)
    card.verify_adm1()
    before = card.engine.state
    out = card.raw(bytes([0x80, 0xE2, p1, 0x00, len(data)]) + data)
    assert card.engine.last_error is None and is_valid_sw(int.from_bytes(out[-2:], "big"))
    if out != b"\x90\x00":
        assert card.engine.state == before
    else:  # what the card stored is what GET DATA shows, and it decodes
        assert seac.decode_rules(all_rules(card)) is not None
