"""The HMAC-SHA-256 AKA set in the AKA flows: USIM and HSS agree, MAC failures and AUTS
resynchronisation work through the generic recipes, bad inputs are refused, nothing secret in
a repr; plus ``trelab aka hmac-sha256`` against the document's first test set."""

from __future__ import annotations

import json
import os

import pytest

from aka.autn import build_autn
from aka.hmac_aka import HmacAka, SoftwareHmac, build_message
from aka.hss import Hss, Subscriber
from aka.sqn import SqnState
from aka.usim import AkaMacFailure, AkaSuccess, AkaSyncFailure, usim_authenticate
from host.cli import main
from tests.vectors.test_hmac_aka_vectors import SETS
from trelab.errors import BadInput


def _pair(res_bits: int = 64) -> tuple[HmacAka, HmacAka]:
    k, opc = os.urandom(32), os.urandom(32)
    return HmacAka(SoftwareHmac(k), opc, res_bits=res_bits), HmacAka(
        SoftwareHmac(k), opc, res_bits=res_bits
    )


@pytest.mark.parametrize("res_bits", [32, 64, 128])
def test_usim_and_hss_agree(res_bits: int) -> None:
    network, card = _pair(res_bits)
    hss = Hss(os.urandom)
    hss.add(Subscriber("001010000000001", network))
    vector = hss.generate_vectors("001010000000001", 1)[0]
    state = SqnState.starting_at(bytes(6))
    outcome, _ = usim_authenticate(card, state, vector.rand, vector.autn)
    assert isinstance(outcome, AkaSuccess)
    assert outcome.res == vector.xres and len(outcome.res) == res_bits // 8
    assert outcome.ck == vector.ck and outcome.ik == vector.ik


def test_distinct_functions_and_lengths() -> None:
    algorithm, _ = _pair()
    rand, sqn, amf = os.urandom(16), os.urandom(6), b"\x80\x00"
    out = algorithm.all_outputs(rand, sqn, amf)
    assert [len(out[n]) for n in ("mac_a", "mac_s", "res", "ck", "ik", "ak", "ak_star")] == [
        8, 8, 8, 16, 16, 6, 6,
    ]  # fmt: skip
    assert out["mac_a"] != out["mac_s"] and out["ak"] != out["ak_star"]
    messages = {
        build_message(f, 8, bytes(32), rand, sqn, amf) for f in ("f1", "f1*", "f2", "f5", "f5*")
    }
    assert len(messages) == 5 and {len(m) for m in messages} == {76}
    # f2…f5* ignore SQN and AMF: zero in their message.
    assert build_message("f2", 8, bytes(32), rand, sqn, amf)[-8:] == bytes(8)


def test_mac_failure_and_resynchronisation() -> None:
    network, card = _pair()
    hss = Hss(os.urandom)
    hss.add(Subscriber("001010000000002", network))
    v = hss.generate_vectors("001010000000002", 1)[0]
    bad = v.autn[:-1] + bytes([v.autn[-1] ^ 1])
    state = SqnState.starting_at(bytes(6))
    outcome, _ = usim_authenticate(card, state, v.rand, bad)
    assert isinstance(outcome, AkaMacFailure)
    # The card is ahead: it refuses the old SQN with AUTS, the HSS resynchronises.
    ahead = SqnState.starting_at((10_000).to_bytes(6, "big"))
    outcome, _ = usim_authenticate(card, ahead, v.rand, v.autn)
    assert isinstance(outcome, AkaSyncFailure)
    sqn_ms = hss.resynchronise("001010000000002", v.rand, outcome.auts)
    assert sqn_ms == ahead.sqn_ms  # MAC-S verified, SQN_MS recovered through AK*
    fresh = hss.generate_vectors("001010000000002", 1)[0]
    outcome, _ = usim_authenticate(card, ahead, fresh.rand, fresh.autn)
    assert isinstance(outcome, AkaSuccess)


def test_bad_inputs_and_reprs() -> None:
    with pytest.raises(BadInput):
        SoftwareHmac(bytes(20))
    with pytest.raises(BadInput):
        HmacAka(SoftwareHmac(bytes(16)), bytes(16))
    with pytest.raises(BadInput):
        HmacAka(SoftwareHmac(bytes(16)), bytes(32), res_bits=48)
    algorithm = HmacAka(SoftwareHmac(bytes(16)), bytes.fromhex("ab" * 32))
    with pytest.raises(BadInput):
        algorithm.check_autn(bytes(16), bytes(15))
    with pytest.raises(BadInput):
        algorithm.f1(bytes(16), bytes(5), b"\x80\x00")
    assert "ab" not in repr(algorithm) and "hidden" in repr(SoftwareHmac(bytes(16)))


def test_cli_matches_the_document(capsys) -> None:
    v = SETS[0]
    argv = ["aka", "hmac-sha256", "--k", v["k"], "--op", v["op"], "--rand", v["rand"],
            "--sqn", v["sqn"], "--amf", v["amf"], "--json"]  # fmt: skip
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["opc"] == v["opc"] and data["f1"] == v["mac_a"] and data["f2"] == v["res"]
    assert data["f5star"] == v["ak_star"]
    autn = build_autn(
        bytes.fromhex(v["sqn"]), bytes.fromhex(v["ak"]), bytes.fromhex(v["amf"]),
        bytes.fromhex(v["mac_a"]),
    )  # fmt: skip
    assert data["autn"] == autn.hex()
    assert main([*argv[:3], "ab", *argv[4:]]) == 2  # K of one byte
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("trelab: error:")
