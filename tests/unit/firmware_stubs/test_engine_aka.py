"""AUTHENTICATE through the emulated USIM with the 3GPP conformance vectors (TS 35.208, TS 35.233)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from aka.autn import build_autn, recover_sqn_ms
from aka.gsm import c2_sres, c3_kc
from aka.hss import Hss
from aka.sqn import join_sqn, split_sqn
from firmware_stubs.usim.personalise import hss_subscriber
from firmware_stubs.usim.profile import DEFAULT_PROFILE
from trelab.errors import MacMismatch
from uicc import fs

from .conftest import Card, make_card

DATA = Path(__file__).resolve().parents[3] / "aka" / "data"
MILENAGE = json.loads((DATA / "milenage_35208.json").read_text())["milenage"]
TUAK = json.loads((DATA / "tuak_35233.json").read_text())["tuak"]


def below(sqn_hex: str) -> str:
    """An SQN_MS one SEQ below ``sqn`` (same IND), so ``sqn`` is fresh exactly once."""
    seq, ind = split_sqn(bytes.fromhex(sqn_hex))
    return join_sqn(seq - 1, ind).hex()


def milenage_card(vector: dict[str, Any], **extra: Any) -> Card:
    data = {
        **DEFAULT_PROFILE,
        "k": vector["K"],
        "opc": vector["OPc"],
        "amf": vector["AMF"],
        "sqn_ms": below(vector["SQN"]),
        **extra,
    }
    return make_card(data)


def tuak_card(vector: dict[str, Any]) -> Card:
    bits = vector["lengths_bits"]
    data = {key: value for key, value in DEFAULT_PROFILE.items() if key != "opc"}
    data.update(
        algorithm="tuak",
        k=vector["K"],
        topc=vector["TOPc"],
        iterations=vector["keccak_iterations"],
        res_bits=bits["RES"],
        mac_bits=bits["MAC"],
        ck_bits=bits["CK"],
        ik_bits=bits["IK"],
        amf=vector["AMF"],
        sqn_ms=below(vector["SQN"]),
    )
    return make_card(data)


def parse_success(data: bytes) -> list[bytes]:
    """DB ‖ L RES ‖ L CK ‖ L IK [‖ L Kc] (TS 31.102 §7.1.2.1) → the values."""
    assert data[0] == 0xDB
    values, i = [], 1
    while i < len(data):
        values.append(data[i + 1 : i + 1 + data[i]])
        i += 1 + data[i]
    assert i == len(data)
    return values


def ready(card: Card) -> Card:
    card.select_usim()
    card.verify_pin1()
    return card


@pytest.mark.parametrize("vector", MILENAGE, ids=lambda v: v["name"].split()[-1])
def test_milenage_vectors(vector: dict[str, Any]) -> None:
    card = ready(milenage_card(vector))
    rand = bytes.fromhex(vector["RAND"])
    autn = bytes.fromhex(vector["derived"]["AUTN"])
    # AUTN built here from the set's SQN, AK, AMF and MAC-A equals the derived one
    built = build_autn(
        bytes.fromhex(vector["SQN"]),
        bytes.fromhex(vector["f5_ak"]),
        bytes.fromhex(vector["AMF"]),
        bytes.fromhex(vector["f1"]),
    )
    assert built == autn
    data, sw = card.authenticate(rand, autn)
    assert sw == 0x9000
    res, ck, ik, kc = parse_success(data)
    assert res.hex() == vector["f2_res"]
    assert ck.hex() == vector["f3_ck"]
    assert ik.hex() == vector["f4_ik"]
    assert kc.hex() == vector["derived"]["kc_c3"]
    # the card wrote EF.Keys = KSI ‖ CK ‖ IK, and the SQN array moved
    keys, _ = card.send("00b0880021")  # SFI 08
    assert keys == b"\x07" + ck + ik
    assert card.engine.state.sqn.sqn_ms == bytes.fromhex(vector["SQN"])

    # replay: synchronisation failure with AUTS; the network recovers SQN_MS from it
    data, sw = card.authenticate(rand, autn)
    assert sw == 0x9000 and data[:2] == b"\xdc\x0e" and len(data) == 16
    algorithm = card.engine.profile.make_algorithm()
    assert recover_sqn_ms(algorithm, rand, data[2:]) == bytes.fromhex(vector["SQN"])

    # GSM context: SRES = c2(RES), Kc = c3(CK, IK)
    body = b"\x10" + rand
    data, sw = card.send(bytes([0x00, 0x88, 0x00, 0x80, len(body)]) + body)
    assert sw == 0x9000
    assert data == b"\x04" + bytes.fromhex(vector["derived"]["sres_c2"]) + b"\x08" + kc


@pytest.mark.parametrize("vector", TUAK, ids=lambda v: v["name"].split()[-1])
def test_tuak_vectors(vector: dict[str, Any]) -> None:
    card = ready(tuak_card(vector))
    rand = bytes.fromhex(vector["RAND"])
    autn = build_autn(
        bytes.fromhex(vector["SQN"]),
        bytes.fromhex(vector["f5_ak"]),
        bytes.fromhex(vector["AMF"]),
        bytes.fromhex(vector["f1"]),
    )
    data, sw = card.authenticate(rand, autn)
    assert sw == 0x9000
    values = parse_success(data)
    res, ck, ik = values[:3]
    assert (res.hex(), ck.hex(), ik.hex()) == (vector["f2_res"], vector["f3_ck"], vector["f4_ik"])
    if len(ck) == 16 == len(ik):
        assert values[3] == c3_kc(ck, ik)
    else:
        assert len(values) == 3  # no Kc from 256-bit keys
    data, sw = card.authenticate(rand, autn)
    mac_len = vector["lengths_bits"]["MAC"] // 8
    assert sw == 0x9000 and data[0] == 0xDC and data[1] == 6 + mac_len
    # AUTS = SQN_MS ⊕ AK* ‖ MAC-S
    sqn_ms = bytes(
        a ^ b for a, b in zip(data[2:8], bytes.fromhex(vector["f5_star_ak"]), strict=True)
    )
    assert sqn_ms.hex() == vector["SQN"]
    algorithm = card.engine.profile.make_algorithm()
    assert recover_sqn_ms(algorithm, rand, data[2:]) == sqn_ms


def test_wrong_mac_gives_9862_and_changes_nothing() -> None:
    vector = MILENAGE[0]
    card = ready(milenage_card(vector))
    rand = bytes.fromhex(vector["RAND"])
    autn = bytearray(bytes.fromhex(vector["derived"]["AUTN"]))
    autn[-1] ^= 0x01
    before, writes = card.engine.state, card.engine.store.writes
    assert (
        card.raw(bytes([0, 0x88, 0, 0x81, 0x22, 0x10]) + rand + b"\x10" + bytes(autn))
        == b"\x98\x62"
    )
    assert card.engine.state == before and card.engine.store.writes == writes
    # the genuine AUTN still works afterwards
    assert card.authenticate(rand, bytes.fromhex(vector["derived"]["AUTN"]))[1] == 0x9000


def test_sqn_too_far_ahead_gives_auts() -> None:
    vector = MILENAGE[0]
    card = ready(milenage_card(vector, sqn_ms="000000000000"))
    data, sw = card.authenticate(
        bytes.fromhex(vector["RAND"]), bytes.fromhex(vector["derived"]["AUTN"])
    )
    assert sw == 0x9000 and data[0] == 0xDC
    algorithm = card.engine.profile.make_algorithm()
    assert recover_sqn_ms(algorithm, bytes.fromhex(vector["RAND"]), data[2:]) == bytes(6)


def test_authenticate_preconditions(card: Card) -> None:
    vector = MILENAGE[0]
    body = (
        b"\x10" + bytes.fromhex(vector["RAND"]) + b"\x10" + bytes.fromhex(vector["derived"]["AUTN"])
    )
    apdu = bytes([0, 0x88, 0, 0x81, len(body)]) + body
    assert card.raw(apdu) == b"\x69\x85"  # USIM not selected
    card.select_usim()
    assert card.raw(apdu) == b"\x69\x82"  # PIN1 not verified
    card.verify_pin1()
    assert card.raw(apdu)[0] == 0x61
    # malformed bodies
    assert card.raw(bytes([0, 0x88, 0, 0x81, 0x21]) + body[:-1]) == b"\x67\x00"  # AUTN cut
    short = b"\x0f" + body[1:16] + b"\x10" + body[18:]
    assert card.raw(bytes([0, 0x88, 0, 0x81, len(short)]) + short) == b"\x6a\x80"  # RAND 15
    assert card.raw(bytes([0, 0x88, 1, 0x81, len(body)]) + body) == b"\x6a\x86"
    assert card.raw(bytes([0, 0x88, 0, 0x80, 0x12]) + b"\x10" + body[1:17] + b"\x00") == b"\x67\x00"


def test_end_to_end_with_the_hss() -> None:
    """The personalisation's HSS record drives AKA against the card: success, replay, resync."""
    card = ready(make_card())
    hss = Hss(os.urandom)
    hss.add(hss_subscriber(card.engine.profile))
    imsi = card.engine.profile.imsi
    first, second = hss.generate_vectors(imsi, 2)
    for vector in (first, second):
        data, sw = card.authenticate(vector.rand, vector.autn)
        assert sw == 0x9000
        res, ck, ik, kc = parse_success(data)
        assert (res, ck, ik, kc) == (vector.xres, vector.ck, vector.ik, c3_kc(vector.ck, vector.ik))
    data, sw = card.authenticate(first.rand, first.autn)  # replay
    assert data[0] == 0xDC
    sqn_ms = hss.resynchronise(imsi, first.rand, data[2:])
    assert sqn_ms == card.engine.state.sqn.sqn_ms
    (fresh,) = hss.generate_vectors(imsi, 1)
    assert parse_success(card.authenticate(fresh.rand, fresh.autn)[0])[0] == fresh.xres
    # a forged AUTS does not move the HSS
    with pytest.raises(MacMismatch):
        hss.resynchronise(imsi, first.rand, data[2:8] + bytes(8))


def test_gsm_context_matches_c2_c3() -> None:
    card = ready(make_card())
    rand = os.urandom(16)
    data, sw = card.send(bytes([0, 0x88, 0, 0x80, 0x11, 0x10]) + rand)
    out = card.engine.profile.make_algorithm().f2345(rand)
    assert sw == 0x9000
    assert data == b"\x04" + c2_sres(out.res) + b"\x08" + c3_kc(out.ck, out.ik)


def test_ef_keys_keeps_ksi(card: Card) -> None:
    ready(card)
    card.send("00a4000c026f08")
    assert card.send("00d6000001 02".replace(" ", ""))[1] == 0x9000  # ME stores KSI 2
    vector = MILENAGE[0]
    card.authenticate(bytes.fromhex(vector["RAND"]), bytes.fromhex(vector["derived"]["AUTN"]))
    keys = fs.EF_KEYS.codec.decode(card.send("00b0000021")[0])
    assert keys == {"ksi": 2, "ck": vector["f3_ck"], "ik": vector["f4_ik"]}


def _hmac_sets() -> list[dict[str, str]]:
    from tests.vectors.test_hmac_aka_vectors import SETS

    return SETS


@pytest.mark.parametrize("vector", _hmac_sets(), ids=lambda v: f"res{v['res_bits']}")
def test_hmac_sha256_card_authenticates_the_documents_sets(vector: dict[str, str]) -> None:
    """The emulated card with an ``hmac-sha256`` profile (K, OP → OPc): AUTHENTICATE gives the
    document's RES, CK, IK (docs/hmac-aka.md test sets), then AUTS on replay carries MAC-S
    and SQN_MS ⊕ AK*; the card's HSS record feeds the network side."""
    from firmware_stubs.usim.personalise import hss_record

    data = {key: value for key, value in DEFAULT_PROFILE.items() if key != "opc"}
    data.update(
        algorithm="hmac-sha256", k=vector["k"], op=vector["op"], amf=vector["amf"],
        res_bits=int(vector["res_bits"]), sqn_ms=below(vector["sqn"]),
    )  # fmt: skip
    card = ready(make_card(data))
    assert card.engine.profile.opc == bytes.fromhex(vector["opc"])
    rand = bytes.fromhex(vector["rand"])
    autn = build_autn(
        bytes.fromhex(vector["sqn"]), bytes.fromhex(vector["ak"]), bytes.fromhex(vector["amf"]),
        bytes.fromhex(vector["mac_a"]),
    )  # fmt: skip
    reply, sw = card.authenticate(rand, autn)
    assert sw == 0x9000
    res, ck, ik, kc = parse_success(reply)
    assert (res.hex(), ck.hex(), ik.hex()) == (vector["res"], vector["ck"], vector["ik"])
    assert kc == c3_kc(ck, ik)
    reply, sw = card.authenticate(rand, autn)
    assert sw == 0x9000 and reply[:2] == b"\xdc\x0e"
    concealed = bytes.fromhex(vector["sqn"])
    ak_star = bytes.fromhex(vector["ak_star"])
    assert reply[2:8] == bytes(a ^ b for a, b in zip(concealed, ak_star, strict=True))
    # MAC-S is f1* over the dummy AMF 0000 (TS 33.102 §6.3.3), recomputed independently
    from tests.vectors.test_hmac_aka_vectors import independent

    raw = {name: bytes.fromhex(vector[name]) for name in ("k", "op", "rand", "sqn")}
    mac_s = independent(**raw, amf=bytes(2), res_bytes=int(vector["res_bits"]) // 8)["mac_s"]
    assert reply[8:16] == mac_s
    record = hss_record(card.engine.profile)
    assert record.to_json()["algorithm"] == "hmac-sha256"
    assert record.to_json()["res_bits"] == int(vector["res_bits"])
    network = hss_subscriber(record).algorithm
    assert recover_sqn_ms(network, rand, reply[2:]) == bytes.fromhex(vector["sqn"])
