"""The HMAC-SHA-256 AKA set against its specification (docs/hmac-aka.md): the test sets in the
document are recomputed here from the document's message layout with nothing but the standard
library's ``hmac`` (an implementation independent of :mod:`aka.hmac_aka`), then compared with
the document and with the AKA code."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import pytest

from aka.hmac_aka import HmacAka, SoftwareHmac

DOC = Path(__file__).resolve().parents[2] / "docs" / "hmac-aka.md"
FIELDS = ("k", "op", "rand", "sqn", "amf", "res_bits", "opc", "mac_a", "mac_s", "res", "ck", "ik",
          "ak", "ak_star")  # fmt: skip


def independent(k: bytes, op: bytes, rand: bytes, sqn: bytes, amf: bytes, res_bytes: int):
    """The document's §3 layout written out again: LABEL ‖ FC ‖ LEN ‖ OPc ‖ RAND ‖ SQN ‖ AMF."""
    label = "AKA-HMAC-SHA256-v1".encode("ascii")

    def f(code: int, length: int, c: bytes, r: bytes, s: bytes, a: bytes) -> bytes:
        msg = label + code.to_bytes(1, "big") + length.to_bytes(1, "big") + c + r + s + a
        assert len(msg) == 76
        return hmac.new(k, msg, hashlib.sha256).digest()[:length]

    zero_sqn, zero_amf = b"\0" * 6, b"\0" * 2
    opc = f(0, 32, op, b"\0" * 16, zero_sqn, zero_amf)
    return {
        "opc": opc,
        "mac_a": f(1, 8, opc, rand, sqn, amf),
        "mac_s": f(2, 8, opc, rand, sqn, amf),
        "res": f(3, res_bytes, opc, rand, zero_sqn, zero_amf),
        "ck": f(4, 16, opc, rand, zero_sqn, zero_amf),
        "ik": f(5, 16, opc, rand, zero_sqn, zero_amf),
        "ak": f(6, 6, opc, rand, zero_sqn, zero_amf),
        "ak_star": f(7, 6, opc, rand, zero_sqn, zero_amf),
    }


def document_sets() -> list[dict[str, str]]:
    """The ``set N`` blocks of the document's test-vector section, as field → hex text."""
    text = DOC.read_text()
    sets = []
    for block in re.split(r"^### Test set \d+\s*$", text, flags=re.M)[1:]:
        values = dict(re.findall(r"^\s*([a-z_]+)\s*=\s*([0-9a-f]+)\s*$", block, flags=re.M))
        sets.append(values)
    return sets


SETS = document_sets()


def test_the_document_has_test_sets() -> None:
    assert len(SETS) >= 4
    for values in SETS:
        assert set(FIELDS) <= set(values), sorted(set(FIELDS) - set(values))


@pytest.mark.parametrize("index", range(len(SETS)))
def test_document_vectors_recomputed_independently(index: int) -> None:
    v = SETS[index]
    raw = {name: bytes.fromhex(v[name]) for name in ("k", "op", "rand", "sqn", "amf")}
    res_bits = int(v["res_bits"])
    expected = independent(**raw, res_bytes=res_bits // 8)
    for name, value in expected.items():
        assert value.hex() == v[name], name
    # The AKA code (its own message builder) gives the same bytes.
    algorithm = HmacAka.from_op(SoftwareHmac(raw["k"]), raw["op"], res_bits=res_bits)
    outputs = algorithm.all_outputs(raw["rand"], raw["sqn"], raw["amf"])
    for name, value in outputs.items():
        assert value.hex() == v[name], name
    assert (
        HmacAka(SoftwareHmac(raw["k"]), expected["opc"], res_bits=res_bits).f1(
            raw["rand"], raw["sqn"], raw["amf"]
        )
        == expected["mac_a"]
    )
