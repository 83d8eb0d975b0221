"""Pure. Run 3GPP conformance sets (TS 35.207/35.208 Milenage, TS 35.233 TUAK) on our code.

Input is the JSON layout of ``aka/data/*.json`` (keys as printed in the specs); output is one
:class:`SetResult` per set naming each function that disagreed. Used by the main job's report
and by the tests; no set is skipped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .algorithm import AkaAlgorithm
from .gsm import c2_sres, c3_kc
from .keyholder import SoftwareAes
from .milenage import Milenage, opc_from_op
from .native import NATIVE_AVAILABLE, NativeMilenage

__all__ = ["SetResult", "run_milenage_sets", "run_tuak_sets"]

_FIELDS = {
    "f1": "f1",
    "f1star": "f1_star",
    "f2": "f2_res",
    "f3": "f3_ck",
    "f4": "f4_ik",
    "f5": "f5_ak",
    "f5star": "f5_star_ak",
}


@dataclass(frozen=True, slots=True)
class SetResult:
    """One conformance set on one implementation: which outputs matched."""

    algorithm: str
    implementation: str
    name: str
    checked: int
    mismatches: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.checked > 0 and not self.mismatches

    def to_json(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "implementation": self.implementation,
            "set": self.name,
            "checked": self.checked,
            "passed": self.passed,
            "mismatches": list(self.mismatches),
        }


def _compare(
    alg: AkaAlgorithm, v: Mapping[str, Any], rand: bytes, sqn: bytes, amf: bytes
) -> tuple[int, list[str]]:
    f = alg.f2345(rand)
    got = {
        "f1": alg.f1(rand, sqn, amf),
        "f1star": alg.f1star(rand, sqn, amf),
        "f2": f.res,
        "f3": f.ck,
        "f4": f.ik,
        "f5": f.ak,
        "f5star": alg.f5star(rand),
    }
    checked, bad = 0, []
    for ours, theirs in _FIELDS.items():
        if theirs in v:
            checked += 1
            if got[ours].hex() != v[theirs].lower():
                bad.append(ours)
    return checked, bad


def run_milenage_sets(sets: Iterable[Mapping[str, Any]]) -> list[SetResult]:
    """Every set on the reference (BlockCipher) path and, when built, the native kernel."""
    h = bytes.fromhex
    makers: list[tuple[str, Callable[[bytes, bytes], AkaAlgorithm]]] = [
        ("python", lambda k, opc: Milenage(SoftwareAes(k), opc))
    ]
    if NATIVE_AVAILABLE:
        makers.append(("native", NativeMilenage))
    results = []
    for v in sets:
        k, rand, sqn, amf = h(v["K"]), h(v["RAND"]), h(v["SQN"]), h(v["AMF"])
        for impl, make in makers:
            bad: list[str] = []
            checked = 0
            opc = h(v["OPc"]) if "OPc" in v else opc_from_op(SoftwareAes(k), h(v["OP"]))
            if "OP" in v and "OPc" in v:
                checked += 1
                if opc_from_op(SoftwareAes(k), h(v["OP"])) != opc:
                    bad.append("opc")
            n, more = _compare(make(k, opc), v, rand, sqn, amf)
            checked += n
            bad += more
            derived = v.get("derived", {})
            if "sres_c2" in derived:
                checked += 2
                if c2_sres(h(v["f2_res"])).hex() != derived["sres_c2"]:
                    bad.append("c2")
                if c3_kc(h(v["f3_ck"]), h(v["f4_ik"])).hex() != derived["kc_c3"]:
                    bad.append("c3")
            results.append(SetResult("milenage", impl, v["name"], checked, tuple(bad)))
    return results


def run_tuak_sets(sets: Iterable[Mapping[str, Any]]) -> list[SetResult]:
    """Every TUAK set, computing TOPc from TOP (and checking it) when TOP is given."""
    from .tuak import SoftwareKeccak, Tuak, topc_from_top

    h = bytes.fromhex
    results = []
    for v in sets:
        lengths = v.get("lengths_bits", {})
        iterations = int(v.get("keccak_iterations") or v.get("iterations") or 1)
        holder = SoftwareKeccak(h(v["K"]))
        checked, bad = 0, []
        topc = h(v["TOPc"]) if "TOPc" in v else topc_from_top(holder, h(v["TOP"]), iterations)
        if "TOP" in v and "TOPc" in v:
            checked += 1
            if topc_from_top(holder, h(v["TOP"]), iterations) != topc:
                bad.append("topc")
        alg = Tuak(
            holder,
            topc,
            mac_bits=int(lengths.get("MAC", 64)),
            res_bits=int(lengths.get("RES", 64)),
            ck_bits=int(lengths.get("CK", 128)),
            ik_bits=int(lengths.get("IK", 128)),
            iterations=iterations,
        )
        n, more = _compare(alg, v, h(v["RAND"]), h(v["SQN"]), h(v["AMF"]))
        results.append(SetResult("tuak", "python", v["name"], checked + n, tuple(bad + more)))
    return results
