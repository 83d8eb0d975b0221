"""TS 33.501 Annex C.4 SUCI test data: null scheme, Profile A and Profile B, both directions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aka.suci import Profile, SoftwareAgreement, Suci, conceal, deconceal

DATA = Path(__file__).resolve().parents[2] / "aka" / "data" / "suci_33501_c4.json"
SETS: list[dict[str, Any]] = json.loads(DATA.read_text())["suci"]
h = bytes.fromhex


def test_every_profile_is_covered() -> None:
    assert [s["profile"] for s in SETS] == ["null", "A", "B"]


@pytest.mark.parametrize("v", SETS, ids=lambda v: v["name"])
def test_ue_side_gives_the_scheme_output(v: dict[str, Any]) -> None:
    agreement = SoftwareAgreement(h(v["eph_private"])) if "eph_private" in v else None
    suci = conceal(
        v["supi"],
        v["profile"],
        hn_public=h(v.get("hn_public", "")),
        key_id=0 if v["profile"] == "null" else 27,
        mnc_length=v["mnc_length"],
        agreement=agreement,
    )
    assert suci.scheme_output.hex() == v["scheme_output"]
    assert (suci.mcc, suci.mnc) == ("274", "012")


@pytest.mark.parametrize("v", SETS[1:], ids=lambda v: v["name"])
def test_intermediate_values(v: dict[str, Any]) -> None:
    """Shared key, X9.63 key split, ciphertext and tag each match the annex."""
    from aka import suci as mod

    eph_public, shared = SoftwareAgreement(h(v["eph_private"]))(
        Profile[v["profile"]], h(v["hn_public"])
    )
    assert (eph_public.hex(), shared.hex()) == (v["eph_public"], v["shared"])
    enc_key, icb, mac_key = mod._keys(shared, eph_public)
    assert (enc_key.hex(), icb.hex(), mac_key.hex()) == (v["enc_key"], v["icb"], v["mac_key"])


@pytest.mark.parametrize("v", SETS, ids=lambda v: v["name"])
def test_home_network_side_recovers_the_supi(v: dict[str, Any]) -> None:
    profile = Profile.NULL if v["profile"] == "null" else Profile[v["profile"]]
    suci = Suci(
        "274", "012", "678", profile, 0 if profile is Profile.NULL else 27, h(v["scheme_output"])
    )
    again = Suci.parse(suci.to_string())
    assert again == suci == Suci.from_bytes(suci.to_bytes())
    assert deconceal(again, h(v.get("hn_private", ""))) == v["supi"]


def test_profile_b_takes_the_uncompressed_home_key_too() -> None:
    v = SETS[2]
    suci = conceal(
        v["supi"],
        "B",
        hn_public=h(v["hn_public_uncompressed"]),
        mnc_length=3,
        agreement=SoftwareAgreement(h(v["eph_private"])),
    )
    assert suci.scheme_output.hex() == v["scheme_output"]


def test_string_form() -> None:
    v = SETS[1]
    suci = Suci("274", "012", "678", Profile.A, 27, h(v["scheme_output"]))
    assert suci.to_string() == f"suci-0-274-012-678-1-27-{v['scheme_output']}"
    null = Suci("274", "012", "0", Profile.NULL, 0, h(SETS[0]["scheme_output"]))
    assert null.to_string() == "suci-0-274-012-0-0-0-001002086"
