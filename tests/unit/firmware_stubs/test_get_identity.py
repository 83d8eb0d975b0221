"""GET IDENTITY on the emulated USIM (TS 31.102 §7.5): the card conceals its own IMSI with the
home network key of its profile, the SIDF side opens it; EF.UST services 124/125, DF.5GS's
EF.SUCI_Calc_Info and EF.Routing_Indicator; strict profile keys."""

from __future__ import annotations

from typing import Any

import pytest

from aka.suci import Profile, Suci, deconceal, new_home_key
from firmware_stubs.usim.engine import UsimEngine
from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile
from trelab.errors import BadInput
from uicc import fs
from uicc.errors import CardRefused
from uicc.links.inprocess import InProcessLink
from uicc.usim import UsimClient

KEYS = {p: new_home_key(p) for p in (Profile.A, Profile.B)}


def card(suci: dict[str, Any] | None) -> UsimClient:
    doc = {k: v for k, v in DEFAULT_PROFILE.items() if k != "suci"}
    if suci is not None:
        doc["suci"] = suci
    return UsimClient(InProcessLink(UsimEngine(parse_profile(doc))))


def settings(*schemes: str, ri: str = "17") -> dict[str, Any]:
    keys = [
        {"id": 3, "profile": "A", "public": KEYS[Profile.A][1].hex()},
        {"id": 200, "profile": "B", "public": KEYS[Profile.B][1].hex()},
    ]
    return {"routing_indicator": ri, "schemes": list(schemes), "home_network_keys": keys}


@pytest.mark.parametrize(("first", "key_id"), [("B", 200), ("A", 3), ("null", 0)])
def test_the_card_conceals_its_imsi(first: str, key_id: int) -> None:
    client = card(settings(first, *[s for s in ("A", "B", "null") if s != first]))
    client.verify_pin("1234")
    one, two = client.get_identity(), client.get_identity()
    assert isinstance(one, Suci) and one.key_id == key_id and one.routing_indicator == "17"
    assert (one.mcc, one.mnc) == ("001", "01")
    private = KEYS[Profile[first]][0] if first != "null" else b""
    for suci in (one, two):
        assert deconceal(Suci.parse(suci.to_string()), private) == "imsi-001010123456789"
    if first != "null":
        assert one.scheme_output != two.scheme_output  # a fresh ephemeral key each time


def test_files_and_services() -> None:
    client = card(settings("B", "null"))
    client.verify_pin("1234")
    ust = fs.EF_UST.codec.decode(_read_ef(client, "6f38"))
    assert {124, 125} <= set(ust)
    info = fs.parse_tlvs(_read_ef(client, "5fc04f07"))
    assert [tag for tag, _ in info] == [0xA0, 0xA1]
    assert info[0][1] == bytes([2, 2, 0, 0])  # B with the 2nd key, then null
    keys = fs.parse_tlvs(info[1][1])
    assert keys[0] == (0x80, b"\x03") and keys[3] == (0x81, KEYS[Profile.B][1])
    assert _read_ef(client, "5fc04f0a") == bytes.fromhex("71ffffff")


def _read_ef(client: UsimClient, path: str) -> bytes:
    """SELECT by path from ADF.USIM, then READ BINARY of the whole file."""
    from uicc.apdu import CommandApdu

    client.forget_selection()
    client.select_usim()
    raw = bytes.fromhex(path)
    select = CommandApdu(0x00, 0xA4, 0x09, 0x04, raw, 256)
    fcp = client._ok("SELECT", select)
    size = fs.parse_fcp(fcp.data).size if fcp.data else 0
    return client._ok("READ BINARY", CommandApdu(0x00, 0xB0, 0, 0, b"", size or 256)).data


def test_refusals() -> None:
    locked = card(settings("B"))
    with pytest.raises(CardRefused) as caught:
        locked.get_identity()  # PIN1 not verified
    assert "6982" in str(caught.value)
    plain = card(None)
    plain.verify_pin("1234")
    with pytest.raises(CardRefused):
        plain.get_identity()  # service 125 not on this card
    ust = fs.EF_UST.codec.decode(_read_ef(plain, "6f38"))
    assert 125 not in ust


@pytest.mark.parametrize(
    ("suci", "needle"),
    [
        ({"schemes": ["B"], "routing_indicator": "0"}, "without a home network key"),
        ({"routing_indicator": "12345"}, "routing_indicator"),
        ({"schemes": ["C"]}, "schemes"),
        ({"schemes": ["A", "A"]}, "schemes"),
        ({"colour": "red"}, "unknown key suci.colour"),
        ({"home_network_keys": [{"id": 1, "profile": "A"}]}, "exactly id, profile, public"),
        ({"home_network_keys": [{"id": 0, "profile": "A", "public": "00" * 32}]}, ".id"),
        ({"home_network_keys": [{"id": 1, "profile": "B", "public": "02" + "ff" * 32}]}, "P-256"),
    ],
)
def test_strict_profile_keys(suci: dict[str, Any], needle: str) -> None:
    doc = dict(DEFAULT_PROFILE)
    doc["suci"] = suci
    with pytest.raises(BadInput, match=needle.replace(".", r"\.")):
        parse_profile(doc)
