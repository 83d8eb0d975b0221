"""The card's full file system as the specifications lay it out: TS 31.102 ADF.USIM with DF.5GS
and DF.SAIP, TS 31.103 ADF.ISIM with IMS AKA, DF.TELECOM, the ARA-M (GP SEAC), EF.UST derived
from what the card declares; SUCI by the USIM against TS 33.501 Annex C.4."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aka.suci import SoftwareAgreement, Suci, deconceal
from firmware_stubs.usim import contents
from firmware_stubs.usim.engine import UsimEngine
from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile
from tests.unit.firmware_stubs.conftest import Card, make_card
from tests.usim_vectors import milenage_cards
from uicc import fs, seac
from uicc.sw import is_valid_sw

REPO = Path(__file__).resolve().parents[3]
C4 = {
    s["profile"]: s for s in json.loads((REPO / "aka/data/suci_33501_c4.json").read_text())["suci"]
}

# FID, SFI, structure, record length (or size) per TS 31.102 §4.2/§4.4.11 and TS 31.103 §4.2,
# written out here as the specifications list them (not read back from the declarations).
SPEC_FILES: list[tuple[str, int, int | None, str, int]] = [
    ("EF.LI", 0x6F05, 0x02, "transparent", 10),
    ("EF.ARR", 0x6F06, 0x17, "linear-fixed", 24),
    ("EF.IMSI", 0x6F07, 0x07, "transparent", 9),
    ("EF.Keys", 0x6F08, 0x08, "transparent", 33),
    ("EF.KeysPS", 0x6F09, 0x09, "transparent", 33),
    ("EF.PLMNwAcT", 0x6F60, 0x0A, "transparent", 40),
    ("EF.HPPLMN", 0x6F31, 0x12, "transparent", 1),
    ("EF.UST", 0x6F38, 0x04, "transparent", 19),
    ("EF.SPN", 0x6F46, None, "transparent", 17),
    ("EF.EST", 0x6F56, 0x05, "transparent", 1),
    ("EF.ACC", 0x6F78, 0x06, "transparent", 2),
    ("EF.FPLMN", 0x6F7B, 0x0D, "transparent", 12),
    ("EF.LOCI", 0x6F7E, 0x0B, "transparent", 11),
    ("EF.AD", 0x6FAD, 0x03, "transparent", 4),
    ("EF.ECC", 0x6FB7, 0x01, "linear-fixed", 20),
    ("EF.MSISDN", 0x6F40, None, "linear-fixed", 28),
    ("EF.FDN", 0x6F3B, None, "linear-fixed", 28),
    ("EF.SMS", 0x6F3C, None, "linear-fixed", 176),
    ("EF.SMSP", 0x6F42, None, "linear-fixed", 40),
    ("EF.SMSS", 0x6F43, None, "transparent", 2),
    ("EF.SDN", 0x6F49, None, "linear-fixed", 28),
    ("EF.BDN", 0x6F4D, None, "linear-fixed", 29),
    ("EF.START-HFN", 0x6F5B, 0x0F, "transparent", 6),
    ("EF.THRESHOLD", 0x6F5C, 0x10, "transparent", 3),
    ("EF.OPLMNwAcT", 0x6F61, 0x11, "transparent", 40),
    ("EF.HPLMNwAcT", 0x6F62, 0x13, "transparent", 10),
    ("EF.PSLOCI", 0x6F73, 0x0C, "transparent", 14),
    ("EF.ICI", 0x6F80, 0x14, "cyclic", 30),
    ("EF.ICT", 0x6F82, None, "cyclic", 3),
    ("EF.NETPAR", 0x6FC4, None, "transparent", 16),
    ("EF.PNN", 0x6FC5, 0x19, "linear-fixed", 32),
    ("EF.OPL", 0x6FC6, 0x1A, "linear-fixed", 8),
    ("EF.EHPLMN", 0x6FD9, 0x1D, "transparent", 12),
    ("EF.GID1", 0x6F3E, None, "transparent", 8),
    ("EF.GID2", 0x6F3F, None, "transparent", 8),
    ("EF.SPDI", 0x6FCD, None, "transparent", 17),
    ("EF.MBDN", 0x6FC7, None, "linear-fixed", 28),
    ("EF.MBI", 0x6FC9, None, "linear-fixed", 4),
    ("EF.MWIS", 0x6FCA, None, "linear-fixed", 5),
    ("EF.EPSLOCI", 0x6FE3, 0x1E, "transparent", 18),
    ("EF.EPSNSC", 0x6FE4, 0x18, "linear-fixed", 54),
    ("EF.Kc", 0x4F20, 0x01, "transparent", 9),
    ("EF.KcGPRS", 0x4F52, 0x02, "transparent", 9),
    ("EF.5GS3GPPLOCI", 0x4F01, 0x01, "transparent", 20),
    ("EF.5GSN3GPPLOCI", 0x4F02, 0x02, "transparent", 20),
    ("EF.5GS3GPPNSC", 0x4F03, 0x03, "linear-fixed", 57),
    ("EF.5GSN3GPPNSC", 0x4F04, 0x04, "linear-fixed", 57),
    ("EF.5GAUTHKEYS", 0x4F05, 0x05, "transparent", 68),
    ("EF.UAC_AIC", 0x4F06, 0x06, "transparent", 4),
    ("EF.SUCI_Calc_Info", 0x4F07, 0x07, "transparent", 128),
    ("EF.OPL5G", 0x4F08, 0x08, "linear-fixed", 10),
    ("EF.Routing_Indicator", 0x4F0A, 0x0A, "transparent", 4),
    # Rel-16/17 files of DF.5GS (TS 31.102 §4.4.11.12–§4.4.11.21); X-byte files at this size
    ("EF.URSP", 0x4F0B, 0x0B, "transparent", 128),
    ("EF.TN3GPPSNN", 0x4F0C, 0x0C, "transparent", 64),
    ("EF.CAG", 0x4F0D, 0x0D, "transparent", 32),
    ("EF.SOR-CMCI", 0x4F0E, 0x0E, "transparent", 32),
    ("EF.DRI", 0x4F0F, 0x0F, "transparent", 7),
    ("EF.5GSEDRX", 0x4F10, 0x10, "transparent", 2),
    ("EF.5GNSWO_CONF", 0x4F11, 0x11, "transparent", 1),
    ("EF.MCHPPLMN", 0x4F15, 0x15, "transparent", 1),
    ("EF.KAUSF_DERIVATION", 0x4F16, 0x16, "transparent", 1),
    # ADF.USIM: extensions, cell broadcast identifiers, advice of charge (TS 31.102 §4.2)
    ("EF.EXT2", 0x6F4B, None, "linear-fixed", 13),
    ("EF.EXT3", 0x6F4C, None, "linear-fixed", 13),
    ("ADF.USIM/EF.EXT4", 0x6F55, None, "linear-fixed", 13),
    ("EF.EXT5", 0x6F4E, None, "linear-fixed", 13),
    ("EF.EXT6", 0x6FC8, None, "linear-fixed", 13),
    ("EF.CBMI", 0x6F45, None, "transparent", 10),
    ("EF.CBMID", 0x6F48, 0x0E, "transparent", 10),
    ("EF.CBMIR", 0x6F50, None, "transparent", 8),
    ("EF.ACMmax", 0x6F37, None, "transparent", 3),
    ("EF.ACM", 0x6F39, None, "cyclic", 3),
    ("EF.PUCT", 0x6F41, None, "transparent", 5),
    # DF.WLAN (§4.4.5), DF.HNB (§4.4.6), DF.ProSe (§4.4.8): FIDs and SFIs
    ("EF.Pseudo", 0x4F41, 0x01, "transparent", 32),
    ("EF.OWSIDL", 0x4F45, 0x05, "linear-fixed", 16),
    ("EF.HPLMNDAI", 0x4F4B, 0x0B, "transparent", 4),
    ("EF.ACSGL", 0x4F81, 0x01, "linear-fixed", 16),
    ("EF.OHNBN", 0x4F86, 0x06, "linear-fixed", 16),
    ("EF.PROSE_MON", 0x4F01, 0x01, "linear-fixed", 16),
    ("EF.PST", 0x4F10, 0x10, "transparent", 4),
    ("EF.PROSE_RELAY_DISCOVERY", 0x4F14, 0x14, "transparent", 16),
    ("EF.IMPI", 0x6F02, 0x02, "transparent", 80),
    ("EF.DOMAIN", 0x6F03, 0x05, "transparent", 48),
    ("EF.IMPU", 0x6F04, 0x04, "linear-fixed", 64),
    ("ADF.ISIM/EF.AD", 0x6FAD, 0x03, "transparent", 3),
    ("ADF.ISIM/EF.ARR", 0x6F06, 0x06, "linear-fixed", 24),
    ("EF.IST", 0x6F07, 0x07, "transparent", 2),
    ("EF.PCSCF", 0x6F09, 0x09, "linear-fixed", 64),
]


def _paths() -> dict[str, tuple[fs.ADF | None, list[int]]]:
    """Each EF's application (None: under the MF) and FID path below it."""
    out: dict[str, tuple[fs.ADF | None, list[int]]] = {}

    def walk(node: fs.DF | fs.ADF, app: fs.ADF | None, path: list[int]) -> None:
        for child in node.children:
            if isinstance(child, fs.DF):
                walk(child, app, [*path, child.fid])
            else:
                out[child.name] = (app, [*path, child.fid])

    walk(fs.MF, None, [])
    for app in fs.APPLICATIONS:
        walk(app, app, [])
    return out


PATHS = _paths()
BY_NAME = {ef.name: ef for ef in fs.all_efs()}


def _select(card: Card, name: str) -> fs.Fcp:
    app, path = PATHS[name]
    if app is None:
        data, sw = card.send(
            "00a40804" + f"{2 * len(path):02x}" + "".join(f"{f:04x}" for f in path)
        )
    else:
        assert card.send(b"\x00\xa4\x04\x04" + bytes([len(app.aid)]) + app.aid)[1] == 0x9000
        body = b"".join(f.to_bytes(2, "big") for f in path)
        data, sw = card.send(b"\x00\xa4\x09\x04" + bytes([len(body)]) + body)
    assert sw == 0x9000, (name, hex(sw))
    return fs.parse_fcp(data)


def _read(card: Card, name: str) -> Any:
    ef = BY_NAME[name]
    fcp = _select(card, name)
    if isinstance(ef, fs.LinearFixedEF):
        assert fcp.record_length is not None and fcp.records is not None
        out = []
        for number in range(1, fcp.records + 1):
            data, sw = card.send(bytes([0, 0xB2, number, 0x04, fcp.record_length]))
            assert sw == 0x9000
            out.append(ef.codec.decode(data))
        return out
    if isinstance(ef, fs.BerTlvEF):  # the tag list, then each object (RETRIEVE DATA)
        listed, sw = card.send(b"\x80\xcb\x00\x80\x01\x5c\x00")
        assert sw == 0x9000 and listed[0] == 0x5C, name
        tags, content, i = listed[2:], b"", 0
        while i < len(tags):
            tag, i = fs.read_ber_tag(tags, i)
            obj, sw = card.send(b"\x80\xcb\x00\x80" + bytes([len(tag)]) + tag + b"\x00")
            assert sw == 0x9000, name
            content += obj
        return ef.codec.decode(content)
    data, sw = card.send(bytes([0, 0xB0, 0, 0, (fcp.size or 0) & 0xFF]))
    assert sw == 0x9000, (name, hex(sw))
    return ef.codec.decode(data)


@pytest.mark.parametrize(
    ("name", "fid", "sfi", "structure", "unit"), SPEC_FILES, ids=[s[0] for s in SPEC_FILES]
)
def test_files_have_the_specifications_fid_sfi_and_structure(
    name: str, fid: int, sfi: int | None, structure: str, unit: int
) -> None:
    ef = BY_NAME[name]
    assert (ef.fid, ef.sfid, ef.structure) == (fid, sfi, structure)
    assert (ef.record_len if isinstance(ef, fs.LinearFixedEF) else ef.size) == unit


def test_every_file_is_selectable_with_an_fcp_that_matches_and_reads_what_it_declares() -> None:
    """Every EF of the tree, on the lab's default card: FCP (FID, SFI, structure, size, records)
    as declared; with PIN1 and ADM1 verified every file reads and its content decodes."""
    card = make_card()
    card.verify_pin1()
    card.verify_adm1()
    for name, ef in BY_NAME.items():
        fcp = _select(card, name)
        assert (fcp.fid, fcp.sfi, fcp.structure) == (ef.fid, ef.sfid, ef.structure), name
        if isinstance(ef, fs.LinearFixedEF):
            assert (fcp.record_length, fcp.records) == (ef.record_len, ef.records), name
        assert fcp.size == ef.size, name
        _read(card, name)


def test_the_usim_service_table_says_what_the_card_offers() -> None:
    card = make_card()
    card.verify_pin1()
    ust = set(_read(card, "EF.UST"))
    declared = fs.declared_services(fs.ADF_USIM)
    # exactly the file services plus the command services; nothing claimed beyond them
    assert ust == declared | contents.COMMAND_SERVICES
    assert {
        2,
        4,
        6,
        10,
        12,
        19,
        20,
        21,
        27,
        42,
        43,
        17,
        18,
        45,
        46,
        47,
        48,
        51,
        71,
        85,
        122,
        123,
        124,
        125,
        126,
        129,
    } <= ust
    assert 1 not in ust and 8 not in ust and 130 not in ust  # no local phonebook, OCI, SUPI_NAI
    # every service's files are there and readable
    for ef in fs.efs_under(fs.ADF_USIM):
        if ef.service in ust and ef.read is not fs.Access.ADM1:
            _read(card, ef.name)
    # without keys: no 124/125; with the ME computing: 124 without 125
    plain = parse_profile({k: v for k, v in DEFAULT_PROFILE.items() if k != "suci"})
    assert not {124, 125} & set(contents.ust_services(plain))
    me = parse_profile(DEFAULT_PROFILE | {"suci": DEFAULT_PROFILE["suci"] | {"calculation": "me"}})
    assert 124 in contents.ust_services(me) and 125 not in contents.ust_services(me)
    assert set(_read(card, "EF.IST")) == {1} == fs.declared_services(fs.ADF_ISIM)


def test_profile_values_reach_their_files() -> None:
    card = make_card()
    card.verify_pin1()
    assert _read(card, "EF.MSISDN")[0] == {"alpha": "", "number": "+491700000001"}
    assert _read(card, "EF.IMPI") == {"nai": "001010123456789@ims.mnc001.mcc001.3gppnetwork.org"}
    assert _read(card, "EF.DOMAIN") == {"domain": "ims.mnc001.mcc001.3gppnetwork.org"}
    assert _read(card, "EF.IMPU")[:2] == [
        "sip:001010123456789@ims.mnc001.mcc001.3gppnetwork.org",
        "tel:+491700000001",
    ]
    assert _read(card, "EF.Routing_Indicator") == "0"
    info = _read(card, "EF.SUCI_Calc_Info")
    assert info["schemes"][0] == {"scheme": "B", "key_index": 2}
    assert info["keys"][1] == {"id": 2, "public": C4["B"]["hn_public"]}
    assert _read(card, "EF.EHPLMN") == ("00101",)
    dir_records = _read(card, "EF.DIR")
    assert [r["label"] for r in dir_records if r] == ["USIM", "ISIM"]  # ARA-M is not listed
    # DF.SAIP's copy is for the USIM only
    card2 = make_card()
    card2.verify_pin1()
    _select(card2, "EF.SUCI_Calc_Info_USIM")
    assert card2.send("00b0000010")[1] == 0x6982


def _c4_card(profile: str) -> Card:
    v = C4[profile]
    doc = DEFAULT_PROFILE | {
        "imsi": v["supi"].removeprefix("imsi-"),
        "mnc_length": v["mnc_length"],
        "suci": {
            "routing_indicator": "0",
            "schemes": [profile],
            "home_network_keys": [{"id": 27, "profile": profile, "public": v["hn_public"]}],
        },
    }
    engine = UsimEngine(parse_profile(doc))
    engine.suci_agreement = SoftwareAgreement(bytes.fromhex(v["eph_private"]))
    return Card(engine)


@pytest.mark.parametrize("profile", ["A", "B"])
def test_get_identity_gives_the_annex_c4_suci_and_the_network_opens_it(profile: str) -> None:
    card = _c4_card(profile)
    card.select_usim()
    card.verify_pin1()
    data, sw = card.send("807800010000".removesuffix("00"))
    assert sw == 0x9000
    tlvs = fs.parse_tlvs(data)
    assert tlvs[0][0] == 0xA1
    suci = Suci.from_bytes(tlvs[0][1])
    assert suci.scheme_output.hex() == C4[profile]["scheme_output"]
    assert (suci.mcc, suci.mnc, suci.key_id) == ("274", "012", 27)
    # the home network's de-concealment (the SIDF's) recovers the SUPI
    supi = deconceal(suci, bytes.fromhex(C4[profile]["hn_private"]))
    assert supi == C4[profile]["supi"]


def test_get_identity_follows_the_cards_files() -> None:
    card = make_card()
    card.select_usim()
    card.verify_pin1()
    assert card.send("8078000100")[1] == 0x9000
    # ADM rewrites EF.UST without service 125: the USIM stops calculating SUCIs
    card.verify_adm1()
    ust = fs.EF_UST.codec.encode(
        tuple(s for s in contents.ust_services(parse_profile(DEFAULT_PROFILE)) if s != 125), 19
    )
    assert card.send(b"\x00\xd6\x84\x00\x13" + ust)[1] == 0x9000
    assert card.send("8078000100")[1] == 0x6985
    me = make_card(DEFAULT_PROFILE | {"suci": DEFAULT_PROFILE["suci"] | {"calculation": "me"}})
    me.select_usim()
    me.verify_pin1()
    assert me.send("8078000100")[1] == 0x6985


def test_garbage_in_suci_files_gives_a_status_word_not_a_crash() -> None:
    card = make_card()
    card.select_usim()
    card.verify_pin1()
    card.verify_adm1()
    _select(card, "EF.SUCI_Calc_Info_USIM")
    for garbage in (
        b"\xa0\x03\x09\x01\x00",
        b"\xa0\x02\x02\x05",
        b"\xa0\x02\x01\x01\xa1\x03\x80\x01\x01",
    ):
        assert card.send(b"\x00\xd6\x00\x00" + bytes([len(garbage)]) + garbage)[1] == 0x9000
        card.select_usim()
        before = card.engine.state
        out = card.engine.process(bytes.fromhex("8078000100"))
        assert out == b"\x69\x85" and card.engine.state == before
        _select(card, "EF.SUCI_Calc_Info_USIM")


def test_ims_aka_in_the_isim_context() -> None:
    v = milenage_cards()[0]
    card = make_card(v.profile)
    assert card.send(b"\x00\xa4\x04\x04\x10" + fs.ISIM_AID)[1] == 0x9000
    card.verify_pin1()
    assert card.send(b"\x00\x88\x00\x80\x11\x10" + v.rand)[1] == 0x6A86  # no GSM context here
    data, sw = card.authenticate(v.rand, v.autn)
    assert sw == 0x9000 and data[0] == 0xDB
    res = data[2 : 2 + data[1]]
    ck = data[3 + len(res) : 3 + len(res) + 16]
    ik = data[4 + len(res) + 16 : 4 + len(res) + 32]
    assert (res.hex(), ck.hex(), ik.hex()) == (
        v.expected["res"],
        v.expected["ck"],
        v.expected["ik"],
    )
    assert len(data) == 4 + len(res) + 32  # RES, CK, IK: no Kc in IMS AKA
    # one SQN array with the USIM: the same challenge replayed is a synchronisation failure
    card.select_usim()
    data, sw = card.authenticate(v.rand, v.autn)
    assert sw == 0x9000 and data[0] == 0xDC


def test_ara_m_answers_its_rules() -> None:
    card = make_card()
    assert card.send("80caff4000")[1] == 0x6985  # not selected
    assert card.send(b"\x00\xa4\x04\x00\x09" + fs.ARA_M_AID)[1] == 0x9000
    data, sw = card.send("80caff4000")
    assert sw == 0x9000 and data == seac.ALL_RULES and seac.decode_rules(data) == []
    data, sw = card.send("80cadf2000")
    assert sw == 0x9000 and data[:3] == bytes.fromhex("df2008")
    assert card.send("80ca00ff00")[1] == 0x6A88
    assert card.send("80caff400100")[1] in (0x6700, 0x6A88)
    assert card.authenticate(bytes(16), bytes(16))[1] == 0x6985  # no AUTHENTICATE in the ARA-M


def test_seac_decoder_reads_the_allow_all_rule_and_refuses_malformed() -> None:
    assert seac.decode_rules(seac.ALLOW_ALL_RULES) == [
        {"aid": "", "device_app": "", "apdu": "always", "nfc": "always"}
    ]
    for bad in (b"", b"\xff\x40", b"\xff\x40\x02\xe2\x00", b"\xff\x41\x00", b"\xff\x40\x05\xe2"):
        with pytest.raises(Exception) as caught:
            seac.decode_rules(bad)
        assert type(caught.value).__name__ == "BadInput"


def test_telecom_and_its_sub_dfs() -> None:
    card = make_card()
    card.verify_pin1()
    assert card.send("00a40004027f10")[1] == 0x9000
    for sub in ("5f3a", "5f50", "5f3d"):
        assert card.send("00a4000402" + sub)[1] == 0x9000
        assert card.send("00a4000002" + "7f10")[1] == 0x9000
    assert _read(card, "EF.PBR")[0] == {"c0": "4f3a"}
    assert _read(card, "EF.MST") == ()


@pytest.mark.parametrize(
    "apdu",
    [
        "8078000200",
        "8078010100",
        "80780001",
        "807800010100",
        "0078000100",
        "80caff40",
        "80caff4001ff",
        "00caff4000",
        "80cadf21",
        "0088008000",
        "00880082021000",
        "008800810110",
    ],
)
def test_bad_commands_to_the_new_applications_get_a_status_and_change_nothing(apdu: str) -> None:
    for app in (fs.ADF_USIM, fs.ADF_ISIM, fs.ADF_ARA_M):
        card = make_card()
        assert card.send(b"\x00\xa4\x04\x00" + bytes([len(app.aid)]) + app.aid)[1] == 0x9000
        card.verify_pin1()
        before = card.engine.state
        out = card.engine.process(bytes.fromhex(apdu))
        assert len(out) >= 2 and is_valid_sw(int.from_bytes(out[-2:], "big"))
        assert card.engine.last_error is None
        assert card.engine.state == before


_CLAS = st.sampled_from([0x00, 0x80, 0x01, 0x81, 0xA0, 0x0C])
_INS = st.sampled_from([0x78, 0xCA, 0x88, 0xA4, 0xB0, 0xB2, 0xD6, 0xDC, 0xF2, 0xC0])


@settings(max_examples=150, deadline=None)
@given(
    app=st.sampled_from([fs.ADF_USIM, fs.ADF_ISIM, fs.ADF_ARA_M]),
    head=st.tuples(_CLAS, _INS, st.integers(0, 255), st.integers(0, 255)),
    body=st.binary(max_size=40),
    le=st.one_of(st.none(), st.integers(0, 255)),
)
def test_any_command_in_the_new_applications_answers_a_status_and_only_success_changes_state(
    app: fs.ADF, head: tuple[int, int, int, int], body: bytes, le: int | None
) -> None:
    card = make_card()
    card.send(b"\x00\xa4\x04\x00" + bytes([len(app.aid)]) + app.aid)
    card.verify_pin1()
    apdu = (
        bytes(head)
        + (bytes([len(body)]) + body if body else b"")
        + (bytes([le]) if le is not None else b"")
    )
    before = card.engine.state
    out = card.engine.process(apdu)
    assert len(out) >= 2 and is_valid_sw(int.from_bytes(out[-2:], "big"))
    assert card.engine.last_error is None, apdu.hex()
    if out[-2] not in (0x90, 0x61, 0x91):
        assert card.engine.state == before, apdu.hex()


def test_the_optional_files_services_are_offered_and_unimplemented_ones_are_not() -> None:
    """EF.UST (TS 31.102 §4.2.8) offers the services of the files added for a commercial card's
    set — extensions 2–5 (3, 5, 7, 44), CBMI/CBMIR (15, 16), WLAN, HNB, ProSe, the Rel-16/17
    DF.5GS files (132, 133, 137, 138, 140, 141, 144, 145), advice of charge (13, with INCREASE)
    — and not data download via SMS-CB (29) or 5G NSWO (142: no GET IDENTITY NSWO context),
    although their files are there."""
    card = make_card()
    card.verify_pin1()
    ust = set(_read(card, "EF.UST"))
    offered = {3, 5, 7, 13, 15, 16, 44, 59, 60, 61, 62, 63, 66, 81, 82, 83, 84, 86, 88, 90, 101}
    offered |= {132, 133, 137, 138, 140, 141, 144, 145}
    assert offered <= ust
    assert not {29, 142} & ust
    for name in ("EF.CBMID", "EF.5GNSWO_CONF"):
        _read(card, name)  # the files are there all the same
