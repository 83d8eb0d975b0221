"""The GSM SIM class (CLA A0, TS 51.011 §9) on the dual-mode card: SELECT with 9Fxx and the GSM
response layout, files shared with ADF.USIM, CHV commands and their status words, SEEK, RUN GSM
ALGORITHM against the TS 35.208 / TS 35.233 sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from uicc import fs

from .conftest import ADM1, PIN1, PUK1, Card, make_card
from .test_engine_aka import milenage_card, tuak_card

DATA = Path(__file__).resolve().parents[3] / "aka" / "data"
MILENAGE = json.loads((DATA / "milenage_35208.json").read_text())["milenage"]
TUAK = json.loads((DATA / "tuak_35233.json").read_text())["tuak"]


def gsm(card: Card, apdu: bytes | str) -> tuple[bytes, int]:
    """(data, SW) of a GSM-class command, following 9Fxx with A0 C0 as a GSM terminal does."""
    out = card.raw(apdu)
    if out[-2] == 0x9F and len(out) == 2:
        out = card.raw(bytes([0xA0, 0xC0, 0x00, 0x00, out[-1]]))
    return out[:-2], int.from_bytes(out[-2:], "big")


def select(card: Card, fid: int) -> tuple[bytes, int]:
    return gsm(card, bytes([0xA0, 0xA4, 0x00, 0x00, 0x02]) + fid.to_bytes(2, "big"))


def test_the_card_tools_probe_finds_a_sim(card: Card) -> None:
    # the first thing SIM tooling and many modems send after the ATR
    assert card.raw("a0a40000022fe2") == b"\x9f\x0f"
    data = card.raw("a0c000000f")
    assert data[-2:] == b"\x90\x00"
    response = data[:-2]
    assert len(response) == 15
    assert response[2:4] == b"\x00\x0a"  # 10 bytes
    assert response[4:6] == b"\x2f\xe2" and response[6] == 0x04  # EF
    assert response[8] == 0x0F  # READ always, UPDATE never
    assert response[12] == 2 and response[13] == 0x00  # transparent
    data, sw = gsm(card, "a0b000000a")
    assert sw == 0x9000 and fs.decode_iccid(data) == card.engine.profile.iccid


def test_mf_and_df_gsm_responses(card: Card) -> None:
    data, sw = select(card, 0x3F00)
    assert sw == 0x9000 and len(data) == 22
    assert data[4:6] == b"\x3f\x00" and data[6] == 0x01 and data[12] == 9
    dfs = sum(1 for c in fs.MF.children if isinstance(c, fs.DF))
    assert (data[14], data[15]) == (dfs, len(fs.MF.children) - dfs)
    assert data[13] & 0x80 == 0  # CHV1 enabled
    assert data[18] == 0x83 and data[19] == 0x8A  # CHV1: 3 tries, UNBLOCK CHV1: 10
    assert data[16] == 5  # CHV1, CHV2, UNBLOCK CHV1, UNBLOCK CHV2, ADM
    assert data[20] == 0x83 and data[21] == 0x8A  # CHV2: 3 tries, UNBLOCK CHV2: 10
    data, sw = select(card, 0x7F20)
    assert sw == 0x9000 and data[4:6] == b"\x7f\x20" and data[6] == 0x02
    assert data[15] == len(fs.DF_GSM.children)
    # STATUS answers for the current directory; a shorter P3 takes its first bytes
    status = card.raw("a0f2000016")
    assert status == data + b"\x90\x00"
    assert card.raw("a0f200000d") == data[:13] + b"\x90\x00"
    assert card.raw("a0f2000020") == b"\x67\x16"


def test_gsm_files_are_the_usims_files(card: Card) -> None:
    select(card, 0x7F20)
    data, sw = select(card, 0x6F07)
    assert sw == 0x9000 and data[2:4] == b"\x00\x09" and data[8] == 0x1A  # CHV1 | ADM
    assert gsm(card, "a0b0000009")[1] == 0x9804  # CHV1 not verified
    assert gsm(card, b"\xa0\x20\x00\x01\x08" + PIN1)[1] == 0x9000
    data, sw = gsm(card, "a0b0000009")
    assert sw == 0x9000 and fs.decode_imsi(data) == card.engine.profile.imsi
    # rewritten in the UICC class under ADF.USIM: the GSM class reads the new IMSI
    card.select_usim()
    card.verify_adm1()
    new = fs.encode_imsi("001019876543210")
    assert card.send(b"\x00\xd6\x87\x00\x09" + new)[1] == 0x9000  # SFI 07
    select(card, 0x7F20)
    select(card, 0x6F07)
    assert gsm(card, "a0b0000009")[0] == new
    # the SIM's own files
    data, sw = select(card, 0x6F38)
    assert sw == 0x9000
    sst = gsm(card, bytes([0xA0, 0xB0, 0, 0, fs.EF_SST.size]))[0]
    assert 1 in fs.EF_SST.codec.decode(sst) and 17 in fs.EF_SST.codec.decode(sst)
    select(card, 0x6FAE)
    assert gsm(card, "a0b0000001")[0] == b"\x03"
    select(card, 0x6F20)
    assert gsm(card, "a0b0000009")[0] == b"\xff" * 8 + b"\x07"
    # EF.Kc is DF.GSM-ACCESS's (4F20 under ADF.USIM): what the ME stores there, the SIM reads
    card.select_usim()
    card.verify_pin1()
    kc = bytes(range(8)) + b"\x02"
    assert card.send(b"\x00\xa4\x09\x0c\x04\x5f\x3b\x4f\x20")[1] == 0x9000
    assert card.send(b"\x00\xd6\x00\x00\x09" + kc)[1] == 0x9000
    select(card, 0x7F20)
    select(card, 0x6F20)
    assert gsm(card, "a0b0000009")[0] == kc
    # a BER-TLV EF is no SIM file
    select(card, 0x7F10)
    assert select(card, 0x5F3B)[1] == 0x9000
    assert select(card, 0x4F47)[1] == 0x9404


def test_applications_are_not_reachable(card: Card) -> None:
    assert select(card, 0x7FFF)[1] == 0x9404
    assert card.raw("a0a4040407a0000000871002") == b"\x6b\x00"
    assert select(card, 0x6F07)[1] == 0x9404  # not under the MF
    assert select(card, 0x1234)[1] == 0x9404


def test_read_and_update_errors_speak_gsm(card: Card) -> None:
    assert gsm(card, "a0b0000001")[1] == 0x9400  # no EF selected
    select(card, 0x2FE2)
    assert card.raw("a0b0000010") == b"\x67\x0a"  # P3 too long: the right length
    assert gsm(card, "a0b0000a01")[1] == 0x9402  # offset out of range
    assert gsm(card, "a0b0820001")[1] == 0x9402  # no SFI in this class
    assert gsm(card, "a0b2010420")[1] == 0x9408  # READ RECORD on a transparent EF
    assert gsm(card, "a0d6000001ff")[1] == 0x9804  # EF.ICCID: UPDATE never
    assert gsm(card, "a0c0000010")[1] == 0x6F00  # GET RESPONSE out of sequence
    assert gsm(card, "a0ee000000")[1] == 0x6D00
    assert gsm(card, "a1a40000023f00")[1] == 0x6E00


def test_records_and_seek(card: Card) -> None:
    data, sw = select(card, 0x2F00)
    assert sw == 0x9000 and data[13] == 0x01 and data[14] == fs.EF_DIR.record_len
    record, sw = gsm(card, bytes([0xA0, 0xB2, 0x01, 0x04, fs.EF_DIR.record_len]))
    assert sw == 0x9000 and fs.EF_DIR.codec.decode(record)["aid"] == fs.USIM_AID.hex()
    beyond = fs.EF_DIR.records + 1
    assert gsm(card, bytes([0xA0, 0xB2, beyond, 0x04, 0x20]))[1] == 0x9402
    assert card.raw("a0b2010410") == b"\x67\x20"
    assert gsm(card, "a0b2010c20")[1] == 0x6B00  # no SFI in this class
    # SEEK type 2 for an application template: from the beginning record 1 (the USIM's),
    # from the end backward record 2 (the ISIM's)
    assert gsm(card, "a0a200100161") == (b"\x01", 0x9000)
    assert gsm(card, "a0a200110161") == (b"\x02", 0x9000)
    # type 1 for the USIM's AID from the end backward: the pointer moves to record 1,
    # so NEXT reads record 2; nothing starting with 61 comes after record 2
    usim = "61184f10" + fs.USIM_AID[:12].hex()
    assert gsm(card, "a0a20001" + f"{len(usim) // 2:02x}" + usim) == (b"", 0x9000)
    assert fs.EF_DIR.codec.decode(gsm(card, "a0b2000220")[0])["label"] == "ISIM"
    assert gsm(card, "a0a200020161")[1] == 0x9404
    assert gsm(card, "a0a2002001ff")[1] == 0x6B00  # type 3
    assert gsm(card, "a0a2000000")[1] == 0x6700  # empty pattern
    select(card, 0x2FE2)
    assert gsm(card, "a0a200000198")[1] == 0x9408  # not a record EF


def test_chv_commands_and_status_words(card: Card) -> None:
    wrong = b"9999" + b"\xff" * 4
    assert gsm(card, b"\xa0\x20\x00\x01\x08" + wrong)[1] == 0x9804
    assert gsm(card, b"\xa0\x20\x00\x02\x08" + PIN1)[1] == 0x9804  # CHV2 is not PIN1
    assert gsm(card, b"\xa0\x20\x00\x01\x00")[1] == 0x6700  # no query form in this class
    assert gsm(card, b"\xa0\x26\x00\x01\x08" + PIN1)[1] == 0x9000  # DISABLE CHV1
    assert card.engine.pin_status()["pin1_enabled"] is False
    assert gsm(card, b"\xa0\x26\x00\x01\x08" + PIN1)[1] == 0x9808  # already disabled
    assert gsm(card, b"\xa0\x24\x00\x01\x10" + PIN1 + PIN1)[1] == 0x9808  # CHANGE: disabled
    assert gsm(card, b"\xa0\x28\x00\x01\x08" + PIN1)[1] == 0x9000  # ENABLE CHV1
    new = b"4321" + b"\xff" * 4
    assert gsm(card, b"\xa0\x24\x00\x01\x10" + PIN1 + new)[1] == 0x9000
    for _ in range(3):
        sw = gsm(card, b"\xa0\x20\x00\x01\x08" + PIN1)[1]
    assert sw == 0x9840  # the third wrong presentation blocks CHV1
    assert gsm(card, b"\xa0\x20\x00\x01\x08" + new)[1] == 0x9840
    assert gsm(card, b"\xa0\x2c\x00\x00\x10" + b"00000000" + PIN1)[1] == 0x9804
    assert gsm(card, b"\xa0\x2c\x00\x00\x10" + PUK1 + PIN1)[1] == 0x9000  # P2 00: CHV1
    assert card.engine.pin_status() == {
        "pin1_enabled": True,
        "pin1_verified": True,
        "pin1_remaining": 3,
        "puk1_remaining": 10,
    }
    # the GSM class and the UICC class share the PIN: ADM through either
    assert gsm(card, b"\xa0\x20\x00\x0a\x08" + ADM1)[1] == 0x9000
    assert gsm(card, b"\xa0\x20\x01\x01\x08" + PIN1)[1] == 0x6B00


@pytest.mark.parametrize("vector", MILENAGE, ids=lambda v: v["name"].split()[-1])
def test_run_gsm_algorithm_milenage_sets(vector: dict[str, Any]) -> None:
    """SRES and Kc of each TS 35.208 set, as the data file records them (c2/c3 of the set's
    RES, CK, IK; they equal TS 55.205's SRES#1 and Kc for the sets that document shares)."""
    card = milenage_card(vector)
    select(card, 0x7F20)
    gsm(card, b"\xa0\x20\x00\x01\x08" + PIN1)
    assert card.raw(b"\xa0\x88\x00\x00\x10" + bytes.fromhex(vector["RAND"])) == b"\x9f\x0c"
    data, sw = gsm(card, "a0c000000c")
    assert sw == 0x9000
    assert data[:4].hex() == vector["derived"]["sres_c2"]
    assert data[4:].hex() == vector["derived"]["kc_c3"]


def _c2_c3(res: bytes, ck: bytes, ik: bytes) -> bytes:
    """TS 33.102 §6.8.1.2 written out again in the test (not the code under test)."""
    padded = res.ljust(16, b"\0")
    w0, w1, w2, w3 = (padded[i : i + 4] for i in (0, 4, 8, 12))
    sres = bytes(a ^ b ^ c ^ d for a, b, c, d in zip(w0, w1, w2, w3, strict=True))
    kc = bytes(a ^ b ^ c ^ d for a, b, c, d in zip(ck[:8], ck[8:], ik[:8], ik[8:], strict=True))
    return sres + kc


@pytest.mark.parametrize("vector", TUAK, ids=lambda v: v["name"].split()[-1])
def test_run_gsm_algorithm_tuak_sets(vector: dict[str, Any]) -> None:
    card = tuak_card(vector)
    select(card, 0x7F20)
    gsm(card, b"\xa0\x20\x00\x01\x08" + PIN1)
    bits = vector["lengths_bits"]
    data, sw = gsm(card, b"\xa0\x88\x00\x00\x10" + bytes.fromhex(vector["RAND"]))
    if bits["RES"] <= 128 and bits["CK"] == bits["IK"] == 128:
        res, ck, ik = (bytes.fromhex(vector[k]) for k in ("f2_res", "f3_ck", "f4_ik"))
        assert (data, sw) == (_c2_c3(res, ck, ik), 0x9000)
    else:  # c2/c3 are not defined for these lengths: the card has no GSM algorithm
        assert (data, sw) == (b"", 0x6D00)


def test_run_gsm_algorithm_preconditions(card: Card) -> None:
    rand = bytes(range(16))
    assert gsm(card, b"\xa0\x88\x00\x00\x10" + rand)[1] == 0x9804  # MF is current
    select(card, 0x7F20)
    assert gsm(card, b"\xa0\x88\x00\x00\x10" + rand)[1] == 0x9804  # CHV1 not verified
    gsm(card, b"\xa0\x20\x00\x01\x08" + PIN1)
    assert gsm(card, b"\xa0\x88\x00\x00\x0f" + rand[:15])[1] == 0x6700
    assert gsm(card, b"\xa0\x88\x00\x01\x10" + rand)[1] == 0x6B00
    select(card, 0x6F07)  # an EF of DF.GSM: DF.GSM stays the current directory
    data, sw = gsm(card, b"\xa0\x88\x00\x00\x10" + rand)
    assert sw == 0x9000 and len(data) == 12
    # the same values as AUTHENTICATE in the USIM's GSM context
    card.select_usim()
    auth, sw = card.send(b"\x00\x88\x00\x80\x11\x10" + rand)
    assert sw == 0x9000 and auth == b"\x04" + data[:4] + b"\x08" + data[4:]


def test_t1_style_commands_are_answered_at_once(card: Card) -> None:
    """With Le (as over T=1) a case-4 command answers its data directly, in both classes."""
    out = card.raw("a0a40000027f2000")
    assert out[-2:] == b"\x90\x00" and out[4:6] == b"\x7f\x20" and len(out) == 24
    out = card.raw("00a40004023f0000")
    assert out[-2:] == b"\x90\x00" and fs.parse_fcp(out[:-2]).fid == 0x3F00
    out = card.raw("00a40004023f0004")  # a shorter Le: the rest with 61xx
    assert len(out) == 6 and out[-2] == 0x61
    assert card.raw(bytes([0, 0xC0, 0, 0, out[-1]]))[-2:] == b"\x90\x00"


def test_disabled_pin_shows_in_the_df_response() -> None:
    from firmware_stubs.usim.profile import DEFAULT_PROFILE

    card = make_card({**DEFAULT_PROFILE, "pin1_enabled": False})
    data, _ = select(card, 0x3F00)
    assert data[13] & 0x80
    select(card, 0x7F20)
    select(card, 0x6F07)
    assert gsm(card, "a0b0000009")[1] == 0x9000  # CHV1 disabled: readable


def test_the_host_client_probes_the_gsm_class(card: Card) -> None:
    from uicc.links.inprocess import InProcessLink
    from uicc.usim import UsimClient

    link = InProcessLink(card.engine)
    client = UsimClient(link)
    probe = client.probe_gsm()
    assert (probe.answers, probe.sw, probe.df_gsm, probe.chv1_enabled) == (True, 0x9000, True, True)
    assert client.read_iccid() == card.engine.profile.iccid  # the client re-selects afterwards

    class UiccOnly:  # a card without the GSM class (such cards exist; none is in the lab)
        name, atr = "uicc-only", None

        def transmit(self, apdu: bytes) -> bytes:
            return b"\x6e\x00" if apdu[0] == 0xA0 else link.transmit(apdu)

        def close(self) -> None:
            link.close()

    probe = UsimClient(UiccOnly()).probe_gsm()
    assert probe.to_json() == {
        "answers": False,
        "sw": "6E00",
        "df_gsm": False,
        "chv1_enabled": None,
    }
