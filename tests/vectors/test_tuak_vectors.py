"""TS 35.233 TUAK conformance: every set, every function, from TOP and from TOPc, both engines.

``aka/data/tuak_35233.json`` holds the document's Test Sets 1-6.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aka.keccak import keccak_f1600
from aka.keyholder import KeccakKeyholder
from aka.tuak import KEY_FIELD, SoftwareKeccak, Tuak, encode_key_field, topc_from_top

REPO = Path(__file__).resolve().parents[2]
IN_REPO = REPO / "aka" / "data" / "tuak_35233.json"
h = bytes.fromhex


def _sets(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text())["tuak"])


def _params() -> list[Any]:
    return [pytest.param(v, id=v["name"]) for v in _sets(IN_REPO)]


SETS = _params()


class PlainKeccak(KeccakKeyholder):
    """A keyholder outside aka.tuak: only the ABC, so Tuak takes its generic 200-byte path."""

    def __init__(self, key: bytes) -> None:
        self._field = encode_key_field(key)
        self.key_bits = 8 * len(key)

    def permute(self, state: bytes, iterations: int) -> bytes:
        keyed = state[: KEY_FIELD.start] + self._field + state[KEY_FIELD.stop :]
        return keccak_f1600(keyed, iterations)


HOLDERS = {
    "hashlib": lambda k: SoftwareKeccak(k),
    "python": lambda k: SoftwareKeccak(k, use_hashlib=False),
    "abc-only": PlainKeccak,
}


def _lengths(v: dict[str, Any]) -> dict[str, int]:
    n = v["lengths_bits"]
    return {
        "mac_bits": n["MAC"],
        "res_bits": n["RES"],
        "ck_bits": n["CK"],
        "ik_bits": n["IK"],
        "iterations": v["keccak_iterations"],
    }


def _outputs(alg: Tuak, v: dict[str, Any]) -> dict[str, str]:
    rand, sqn, amf = h(v["RAND"]), h(v["SQN"]), h(v["AMF"])
    f = alg.f2345(rand)
    mac, fused = alg.f1_f2345(rand, sqn, amf)
    assert mac == alg.f1(rand, sqn, amf) and fused == f
    return {
        "f1": alg.f1(rand, sqn, amf).hex(),
        "f1_star": alg.f1star(rand, sqn, amf).hex(),
        "f2_res": f.res.hex(),
        "f3_ck": f.ck.hex(),
        "f4_ik": f.ik.hex(),
        "f5_ak": f.ak.hex(),
        "f5_star_ak": alg.f5star(rand).hex(),
    }


def _expected(v: dict[str, Any]) -> dict[str, str]:
    keys = ("f1", "f1_star", "f2_res", "f3_ck", "f4_ik", "f5_ak", "f5_star_ak")
    return {key: v[key] for key in keys}


def test_in_repo_file_has_all_six_sets() -> None:
    sets = _sets(IN_REPO)
    assert [s["name"].rsplit(" ", 1)[1] for s in sets] == ["1", "2", "3", "4", "5", "6"]
    assert {s["keccak_iterations"] for s in sets} == {1, 2}
    assert any(s["lengths_bits"]["RES"] == 256 for s in sets)
    assert any(s["lengths_bits"]["CK"] == 256 for s in sets)
    assert any(s["lengths_bits"]["IK"] == 256 for s in sets)


@pytest.mark.parametrize("engine", HOLDERS)
@pytest.mark.parametrize("v", SETS)
def test_topc_from_top(v: dict[str, Any], engine: str) -> None:
    holder = HOLDERS[engine](h(v["K"]))
    topc = topc_from_top(holder, h(v["TOP"]), v["keccak_iterations"])
    assert topc.hex() == v["TOPc"]


@pytest.mark.parametrize("engine", HOLDERS)
@pytest.mark.parametrize("v", SETS)
def test_every_function_from_topc(v: dict[str, Any], engine: str) -> None:
    alg = Tuak(HOLDERS[engine](h(v["K"])), h(v["TOPc"]), **_lengths(v))
    assert _outputs(alg, v) == _expected(v)


@pytest.mark.parametrize("v", SETS)
def test_every_function_from_top(v: dict[str, Any]) -> None:
    alg = Tuak.from_top(SoftwareKeccak(h(v["K"])), h(v["TOP"]), **_lengths(v))
    assert _outputs(alg, v) == _expected(v)


def _flip(v: dict[str, Any], field: str, byte: int) -> dict[str, Any]:
    raw = bytearray(h(v[field]))
    raw[byte] ^= 0x01
    return {**v, field: raw.hex()}


@pytest.mark.parametrize("byte", [0, -1], ids=["first-byte", "last-byte"])
@pytest.mark.parametrize("field", ["K", "TOPc", "RAND", "SQN", "AMF"])
@pytest.mark.parametrize("v", SETS)
def test_must_fail_when_one_bit_flips(v: dict[str, Any], field: str, byte: int) -> None:
    """One flipped input bit changes every output that depends on it, and only those."""
    flipped = _flip(v, field, byte)
    alg = Tuak(SoftwareKeccak(h(flipped["K"])), h(flipped["TOPc"]), **_lengths(v))
    got, want = _outputs(alg, flipped), _expected(v)
    assert got["f1"] != want["f1"]
    assert got["f1_star"] != want["f1_star"]
    if field in ("SQN", "AMF"):  # f2…f5* never see SQN or AMF (TS 35.231 §6.4, §6.5)
        assert {k: got[k] for k in got if k not in ("f1", "f1_star")} == {
            k: want[k] for k in want if k not in ("f1", "f1_star")
        }
    else:
        for key in ("f2_res", "f3_ck", "f4_ik", "f5_ak", "f5_star_ak"):
            assert got[key] != want[key], key


@pytest.mark.parametrize("v", SETS)
def test_must_fail_with_wrong_iterations(v: dict[str, Any]) -> None:
    lengths = {**_lengths(v), "iterations": v["keccak_iterations"] + 1}
    alg = Tuak(SoftwareKeccak(h(v["K"])), h(v["TOPc"]), **lengths)
    got, want = _outputs(alg, v), _expected(v)
    assert all(got[key] != want[key] for key in want)
    assert (
        topc_from_top(SoftwareKeccak(h(v["K"])), h(v["TOP"]), lengths["iterations"]).hex()
        != (v["TOPc"])
    )


@pytest.mark.parametrize("v", SETS)
def test_check_autn_and_vectors_on_every_set(v: dict[str, Any]) -> None:
    alg = Tuak(SoftwareKeccak(h(v["K"])), h(v["TOPc"]), **_lengths(v))
    rand, sqn, amf = h(v["RAND"]), h(v["SQN"]), h(v["AMF"])
    concealed = bytes(a ^ b for a, b in zip(sqn, h(v["f5_ak"]), strict=True))
    autn = concealed + amf + h(v["f1"])
    got_sqn, ok, f = alg.check_autn(rand, autn)
    assert got_sqn == sqn and ok
    assert (f.res.hex(), f.ck.hex(), f.ik.hex()) == (v["f2_res"], v["f3_ck"], v["f4_ik"])
    assert alg.vectors(rand, sqn, amf) == [(rand, f.res, f.ck, f.ik, autn)]
