"""`card info`'s reading of a whole card (uicc/survey.py) on the emulated card in process:
every declared file read and decoded (session keys withheld), the SUCI by the USIM or by the ME,
the ARA-M's rules; a card that lacks ISIM or ARA-M, or guards files, is reported, not fatal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aka.suci import Suci, deconceal
from firmware_stubs.usim.engine import UsimEngine
from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile
from uicc import fs
from uicc.links.inprocess import InProcessLink
from uicc.survey import declared_files, survey
from uicc.usim import UsimClient

REPO = Path(__file__).resolve().parents[3]
C4 = {
    s["profile"]: s for s in json.loads((REPO / "aka/data/suci_33501_c4.json").read_text())["suci"]
}


def client_for(doc: Any = DEFAULT_PROFILE, *, pin: bool = True) -> tuple[UsimClient, UsimEngine]:
    engine = UsimEngine(parse_profile(doc))
    client = UsimClient(InProcessLink(engine))
    if pin:
        client.verify_pin("1234")
    return client, engine


def test_every_declared_file_is_read_and_decoded_as_the_card_holds_it() -> None:
    client, engine = client_for()
    found = survey(client)
    declared = dict(declared_files())
    assert [f.path for f in found.files] == list(declared)  # every EF of MF, USIM and ISIM
    for reading in found.files:
        ef = declared[reading.path]
        if ef.holds_keys:
            assert reading.status == "withheld" and reading.value is None
        elif ef.read is fs.Access.ADM1:
            assert reading.status == "refused" and "6982" in (reading.detail or "")
        else:
            assert reading.status == "read", reading
            content = engine.state.files.get(ef.name, engine._base_files[ef.name])
            expected = (
                [ef.codec.decode(r) for r in content]
                if isinstance(content, tuple)
                else ef.codec.decode(content)
            )
            assert reading.value == expected, reading.path
    assert [a.label for a in found.applications] == ["USIM", "ISIM"]
    assert found.value("ADF.ISIM/EF.IMPI") == {
        "nai": "001010123456789@ims.mnc001.mcc001.3gppnetwork.org"
    }
    assert found.access_rules == {"ara_m": True, "rules": []}
    # JSON form has no key material: the withheld files carry no value
    text = json.dumps(found.to_json())
    assert DEFAULT_PROFILE["k"] not in text and DEFAULT_PROFILE["opc"] not in text


def test_suci_by_the_usim_opens_with_the_annex_c4_key() -> None:
    client, _ = client_for()
    found = survey(client)
    assert found.suci is not None and found.suci["calculated_by"] == "usim"
    suci = Suci.parse(found.suci["suci"])
    assert suci.key_id == 2  # Profile B first in the default card's list
    assert deconceal(suci, bytes.fromhex(C4["B"]["hn_private"])) == "imsi-001010123456789"


def test_suci_by_the_me_when_the_usim_leaves_it_to_the_me() -> None:
    doc = DEFAULT_PROFILE | {
        "suci": DEFAULT_PROFILE["suci"] | {"schemes": ["A", "null"], "calculation": "me"}
    }
    client, _ = client_for(doc)
    found = survey(client)
    assert found.suci is not None and found.suci["calculated_by"] == "me"
    suci = Suci.parse(found.suci["suci"])
    assert suci.key_id == 1
    assert deconceal(suci, bytes.fromhex(C4["A"]["hn_private"])) == "imsi-001010123456789"
    plain = {k: v for k, v in DEFAULT_PROFILE.items() if k != "suci"}
    assert survey(client_for(plain)[0]).suci is None  # no service 124: no privacy


def test_without_the_pin_guarded_files_are_reported_not_fatal() -> None:
    client, _ = client_for(pin=False)
    found = survey(client)
    assert found.value("MF/EF.ICCID") == DEFAULT_PROFILE["iccid"]
    imsi = next(f for f in found.files if f.path == "ADF.USIM/EF.IMSI")
    assert imsi.status == "refused" and "6982" in (imsi.detail or "")
    assert found.suci is None  # EF.UST itself needs the PIN


class _CardWithout:
    """A link to a card that lacks some applications (as many physical SIMs lack ISIM/ARA-M):
    SELECT of their AIDs answers 6A82, everything else goes to the emulated card."""

    def __init__(self, link: InProcessLink, aids: tuple[bytes, ...]) -> None:
        self._link, self._aids = link, aids
        self.name, self.atr = link.name, link.atr

    def transmit(self, apdu: bytes) -> bytes:
        if (
            apdu[1] == 0xA4
            and apdu[2] == 0x04
            and any(apdu[5:].startswith(a[:7]) for a in self._aids)
        ):
            return b"\x6a\x82"
        if apdu[1] == 0xB2 and apdu[2] == 2:  # EF.DIR's ISIM record erased on this card
            out = self._link.transmit(apdu)
            return b"\xff" * (len(out) - 2) + out[-2:] if b"ISIM" in out else out
        return self._link.transmit(apdu)

    def close(self) -> None:
        self._link.close()


def test_a_card_without_isim_and_ara_m() -> None:
    engine = UsimEngine(parse_profile(DEFAULT_PROFILE))
    client = UsimClient(_CardWithout(InProcessLink(engine), (fs.ISIM_AID, fs.ARA_M_AID)))  # type: ignore[arg-type]
    client.verify_pin("1234")
    found = survey(client)
    assert [a.label for a in found.applications] == ["USIM"]
    assert not any(f.path.startswith("ADF.ISIM") for f in found.files)
    assert found.access_rules["ara_m"] is False
    assert found.suci is not None and found.suci["calculated_by"] == "usim"


def test_ims_aka_through_the_host_client() -> None:
    from aka.usim import AkaSuccess, AkaSyncFailure
    from tests.usim_vectors import milenage_cards
    from uicc.errors import NoUsimApplication

    v = milenage_cards()[0]
    client, _ = client_for(v.profile)
    result = client.authenticate_ims(v.rand, v.autn)
    assert isinstance(result, AkaSuccess)
    got = result.to_json()
    assert (got["res"], got["ck"], got["ik"]) == (
        v.expected["res"],
        v.expected["ck"],
        v.expected["ik"],
    )
    assert isinstance(client.authenticate_ims(v.rand, v.autn), AkaSyncFailure)  # replayed
    engine = UsimEngine(parse_profile(v.profile))
    usim_only = UsimClient(_CardWithout(InProcessLink(engine), (fs.ISIM_AID,)))  # type: ignore[arg-type]
    usim_only.verify_pin("1234")
    try:
        usim_only.authenticate_ims(v.rand, v.autn)
    except NoUsimApplication as exc:
        assert "no ISIM" in str(exc)
    else:
        raise AssertionError("a USIM-only card has no IMS AKA")


def test_access_rules_resolved_from_ef_arr_and_pin2_reported() -> None:
    """Each file's FCP names an EF.ARR record (tag 8B); the survey decodes it from the EF.ARR
    it read, so `card info` shows who may read and update: EF.FDN updated under PIN2 (TS 31.102
    §4.2.24), EF.ICCID never updated (TS 102 221 §13.2)."""
    client, _ = client_for()
    found = survey(client)
    by_path = {f.path: f for f in found.files}
    assert by_path["ADF.USIM/EF.FDN"].access == {"read": "PIN1", "update": "PIN2"}
    assert by_path["ADF.USIM/EF.BDN"].access == {"read": "PIN1", "update": "PIN2"}
    assert by_path["MF/EF.ICCID"].access == {"read": "always", "update": "never"}
    assert by_path["ADF.USIM/EF.IMSI"].access == {"read": "PIN1", "update": "ADM1"}
    # a file of a sub-DF is ruled by its application's EF.ARR
    suci = by_path["ADF.USIM/DF.5GS/EF.SUCI_Calc_Info"]
    assert suci.arr_reference is not None and suci.arr_reference[0] == 0x6F06
    assert suci.access is not None and suci.access["update"] == "ADM1"
    assert by_path["MF/DF.TELECOM/DF.PHONEBOOK/EF.ADN"].access is not None
    assert found.to_json()["files"][0]["access"]
    info = client.info()
    assert info.pin2 is not None and (info.pin2.state, info.pin2.tries_left) == ("enabled", 3)


def test_a_card_without_pin2_says_so() -> None:
    doc = {k: v for k, v in DEFAULT_PROFILE.items() if k not in ("pin2", "puk2")}
    client, _ = client_for(doc)
    assert client.info().pin2 is None


def test_the_me_reads_the_cards_suci_settings() -> None:
    """DF.5GS's EF.SUCI_Calc_Info, EF.Routing_Indicator and EF.AD's MNC length, as `attach
    --suci-profile A|B` takes them from a card when no --hn-pub is given."""
    client, _ = client_for()
    settings = client.read_suci_settings()
    assert settings["mnc_length"] == 2 and settings["routing_indicator"] == "0"
    keys = {k["id"]: k["public"] for k in settings["info"]["keys"]}
    personalised = DEFAULT_PROFILE["suci"]["home_network_keys"]
    assert keys == {k["id"]: k["public"] for k in personalised}
    assert [e["scheme"] for e in settings["info"]["schemes"]] == ["B", "A", "null"]
