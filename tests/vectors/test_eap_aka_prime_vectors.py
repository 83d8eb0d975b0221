"""RFC 9048's EAP-AKA' test vectors: CK', IK' (TS 33.402 A.2) and the master-key split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aka.kdf import ck_ik_prime, eap_aka_prime_keys
from aka.keyholder import SoftwareAes
from aka.milenage import Milenage
from tests.helpers import milenage_sets

DATA = Path(__file__).resolve().parents[2] / "aka" / "data" / "eap_aka_prime_rfc9048.json"
CASES: list[dict[str, Any]] = json.loads(DATA.read_text())["eap_aka_prime"]
h = bytes.fromhex


def test_all_four_cases_are_here() -> None:
    assert len(CASES) == 4 and {c["network_name"] for c in CASES} == {"WLAN", "HRPD"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_ck_ik_prime_and_master_keys(case: dict[str, Any]) -> None:
    ck_p, ik_p = ck_ik_prime(
        h(case["CK"]), h(case["IK"]), case["network_name"], h(case["AUTN"])[:6]
    )
    assert (ck_p.hex(), ik_p.hex()) == (case["CK'"], case["IK'"])
    keys = eap_aka_prime_keys(ck_p, ik_p, case["identity"])
    assert keys.k_encr.hex() == case["K_encr"]
    assert keys.k_aut.hex() == case["K_aut"]
    assert keys.k_re.hex() == case["K_re"]
    assert keys.msk.hex() == case["MSK"]
    assert keys.emsk.hex() == case["EMSK"]


def test_cases_1_and_2_come_from_milenage_set_19() -> None:
    """The RFC's CK, IK and AUTN are what our Milenage gives for TS 35.208 set 19."""
    (v,) = [s for s in milenage_sets() if s["name"].endswith("Test Set 19")]
    mac, out = Milenage(SoftwareAes(h(v["K"])), h(v["OPc"])).f1_f2345(
        h(v["RAND"]), h(v["SQN"]), h(v["AMF"])
    )
    for case in CASES[:2]:
        assert case["milenage"] == v["name"]
        assert (out.ck.hex(), out.ik.hex()) == (case["CK"], case["IK"])
        sqn_xor_ak = bytes(a ^ b for a, b in zip(h(v["SQN"]), out.ak, strict=True))
        assert (sqn_xor_ak + h(v["AMF"]) + mac).hex() == case["AUTN"]
