"""3GPP conformance sets (TS 35.208 Milenage, TS 35.233 TUAK) as card profiles and AUTHENTICATE
inputs: each set becomes a USIM whose SQN_MS sits one SEQ below the set's SQN, so the set's
own RAND/AUTN is fresh once and its RES/CK/IK are the expected answer."""

from __future__ import annotations

import json
import os
from typing import Any

from aka.autn import build_autn
from aka.sqn import join_sqn, split_sqn
from tests.helpers import REPO

__all__ = ["TestCard", "milenage_cards", "tuak_cards", "unique_iccid"]


def unique_iccid() -> str:
    """A random 19-digit ICCID: tells our card apart from any other in a shared reader."""
    return "8999" + "".join(str(b % 10) for b in os.urandom(15))


class TestCard:
    """One conformance set as a card: profile mapping, RAND, AUTN and the expected outputs."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        name: str,
        profile: dict[str, Any],
        rand: bytes,
        autn: bytes,
        sqn: bytes,
        expected: dict[str, str],
    ) -> None:
        self.name = name
        self.profile = profile
        self.rand = rand
        self.autn = autn
        self.sqn = sqn
        self.expected = expected

    def __repr__(self) -> str:
        return f"TestCard({self.name!r})"


def _sqn_ms_below(sqn_hex: str) -> str:
    seq, ind = split_sqn(bytes.fromhex(sqn_hex))
    return join_sqn(seq - 1, ind).hex()


def _base(iccid: str | None, imsi: str) -> dict[str, Any]:
    return {
        "iccid": iccid or unique_iccid(),
        "imsi": imsi,
        "pin1": "1234",
        "puk1": "12345678",
        "adm1": "88888888",
    }


def milenage_cards(iccid: str | None = None) -> list[TestCard]:
    """TS 35.208 §4.3 test sets 1–20 (expected: RES, CK, IK, and Kc = c3(CK, IK))."""
    data = json.loads((REPO / "aka" / "data" / "milenage_35208.json").read_text())
    cards = []
    for v in data["milenage"]:
        profile = _base(iccid, "001010000000001") | {
            "algorithm": "milenage",
            "k": v["K"],
            "opc": v["OPc"],
            "amf": v["AMF"],
            "sqn_ms": _sqn_ms_below(v["SQN"]),
        }
        expected = {
            "result": "success",
            "res": v["f2_res"],
            "ck": v["f3_ck"],
            "ik": v["f4_ik"],
            "kc": v["derived"]["kc_c3"],
            "sres": v["derived"]["sres_c2"],
        }
        rand, autn = bytes.fromhex(v["RAND"]), bytes.fromhex(v["derived"]["AUTN"])
        cards.append(TestCard(v["name"], profile, rand, autn, bytes.fromhex(v["SQN"]), expected))
    return cards


def tuak_cards(iccid: str | None = None) -> list[TestCard]:
    """TS 35.233 §6 test sets 1–6 (RES/CK/IK of the set's lengths; AUTN built from f1, f5)."""
    data = json.loads((REPO / "aka" / "data" / "tuak_35233.json").read_text())
    cards = []
    for v in data["tuak"]:
        bits = v["lengths_bits"]
        profile = _base(iccid, "001010000000002") | {
            "algorithm": "tuak",
            "k": v["K"],
            "topc": v["TOPc"],
            "iterations": v["keccak_iterations"],
            "mac_bits": bits["MAC"],
            "res_bits": bits["RES"],
            "ck_bits": bits["CK"],
            "ik_bits": bits["IK"],
            "amf": v["AMF"],
            "sqn_ms": _sqn_ms_below(v["SQN"]),
        }
        sqn = bytes.fromhex(v["SQN"])
        ak, amf, mac = (bytes.fromhex(v[key]) for key in ("f5_ak", "AMF", "f1"))
        autn = build_autn(sqn, ak, amf, mac)
        expected = {"result": "success", "res": v["f2_res"], "ck": v["f3_ck"], "ik": v["f4_ik"]}
        cards.append(TestCard(v["name"], profile, bytes.fromhex(v["RAND"]), autn, sqn, expected))
    return cards
