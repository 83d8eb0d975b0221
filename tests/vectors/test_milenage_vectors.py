"""TS 35.207/35.208 Milenage conformance: every set, every function, both kernels."""

from __future__ import annotations

from typing import Any

import pytest

from aka.autn import build_autn
from aka.gsm import c2_sres, c3_kc
from aka.keyholder import SoftwareAes
from aka.milenage import Milenage, opc_from_op
from aka.native import NATIVE_AVAILABLE, NativeMilenage
from tests.helpers import milenage_sets

SETS = milenage_sets()
h = bytes.fromhex


def test_we_have_the_3gpp_sets() -> None:
    assert len(SETS) >= 6


def _algorithms(v: dict[str, Any]) -> list[Any]:
    k, opc = h(v["K"]), h(v["OPc"])
    algs: list[Any] = [Milenage(SoftwareAes(k), opc)]
    if NATIVE_AVAILABLE:
        algs.append(NativeMilenage(k, opc))
    return algs


@pytest.mark.parametrize("v", SETS, ids=[s["name"] for s in SETS])
def test_opc_from_op(v: dict[str, Any]) -> None:
    assert opc_from_op(SoftwareAes(h(v["K"])), h(v["OP"])).hex() == v["OPc"]


@pytest.mark.parametrize("v", SETS, ids=[s["name"] for s in SETS])
def test_all_functions(v: dict[str, Any]) -> None:
    rand, sqn, amf = h(v["RAND"]), h(v["SQN"]), h(v["AMF"])
    for alg in _algorithms(v):
        out = alg.all_outputs(rand, sqn, amf)
        assert out["f1"].hex() == v["f1"]
        assert out["f1star"].hex() == v["f1_star"]
        assert out["f2"].hex() == v["f2_res"]
        assert out["f3"].hex() == v["f3_ck"]
        assert out["f4"].hex() == v["f4_ik"]
        assert out["f5"].hex() == v["f5_ak"]
        assert out["f5star"].hex() == v["f5_star_ak"]
        # the single-function entry points agree with the fused ones
        assert alg.f1(rand, sqn, amf).hex() == v["f1"]
        assert alg.f1star(rand, sqn, amf).hex() == v["f1_star"]
        f = alg.f2345(rand)
        assert (f.res.hex(), f.ck.hex(), f.ik.hex(), f.ak.hex()) == (
            v["f2_res"],
            v["f3_ck"],
            v["f4_ik"],
            v["f5_ak"],
        )
        assert alg.f5star(rand).hex() == v["f5_star_ak"]
        mac, f2 = alg.f1_f2345(rand, sqn, amf)
        assert mac.hex() == v["f1"] and f2 == f


@pytest.mark.parametrize("v", SETS, ids=[s["name"] for s in SETS])
def test_derived_autn_and_gsm(v: dict[str, Any]) -> None:
    autn = build_autn(h(v["SQN"]), h(v["f5_ak"]), h(v["AMF"]), h(v["f1"]))
    if "derived" in v:
        assert autn.hex() == v["derived"]["AUTN"]
        assert c2_sres(h(v["f2_res"])).hex() == v["derived"]["sres_c2"]
        assert c3_kc(h(v["f3_ck"]), h(v["f4_ik"])).hex() == v["derived"]["kc_c3"]
    for alg in _algorithms(v):
        sqn, ok, f = alg.check_autn(h(v["RAND"]), autn)
        assert ok and sqn.hex() == v["SQN"] and f.res.hex() == v["f2_res"]


@pytest.mark.parametrize("v", SETS, ids=[s["name"] for s in SETS])
@pytest.mark.parametrize("field", ["K", "OPc", "RAND", "SQN", "AMF"])
def test_must_fail_when_one_bit_flips(v: dict[str, Any], field: str) -> None:
    """A one-bit change of any input must change MAC-A (and RES unless only SQN/AMF moved)."""
    flipped = dict(v)
    raw = bytearray(h(v[field]))
    raw[-1] ^= 1
    flipped[field] = raw.hex()
    for alg in _algorithms(flipped):
        out = alg.all_outputs(h(flipped["RAND"]), h(flipped["SQN"]), h(flipped["AMF"]))
        assert out["f1"].hex() != v["f1"]
        if field in ("K", "OPc", "RAND"):
            assert out["f2"].hex() != v["f2_res"]
            assert out["f5"].hex() != v["f5_ak"]
