"""The vector pool the TRE rows draw from, and the bare AUTHENTICATE TPDU of the UICC raw case,
against the real HSS, USIM logic and APDU encoder (no lab)."""

from __future__ import annotations

import os

from aka.hss import Hss, Subscriber
from aka.keyholder import SoftwareAes
from aka.milenage import Milenage
from aka.sqn import SqnState, split_sqn
from aka.usim import AkaSuccess, usim_authenticate
from bench.tres.pool import VectorPool
from bench.tres.uicc import auth_tpdu
from uicc.apdu import build_authenticate_3g, to_t0

IMSI = "001010000000042"


def _network() -> tuple[Hss, Milenage]:
    k, opc = os.urandom(16), os.urandom(16)
    hss = Hss(os.urandom)
    hss.add(Subscriber(IMSI, Milenage(SoftwareAes(k), opc)))
    return hss, Milenage(SoftwareAes(k), opc)


def test_pool_hands_out_vectors_in_sqn_order_that_a_usim_accepts() -> None:
    hss, usim = _network()
    pool = VectorPool(hss, IMSI, ahead=4)
    pool.top_up()
    assert len(pool) == 4
    state = SqnState()
    seqs = []
    for _ in range(10):  # more than drawn ahead: refills between takes, like a teardown does
        vector = pool.take()
        result, state = usim_authenticate(usim, state, vector.rand, vector.autn)
        assert isinstance(result, AkaSuccess) and result.res == vector.xres
        seqs.append(state.highest_seq)
        pool.top_up()
    assert seqs == sorted(seqs) and len(set(seqs)) == 10
    assert pool.misses == 0 and len(pool) == 4
    assert split_sqn(state.sqn_ms)[0] == 10


def test_an_empty_pool_still_answers_and_counts_the_miss() -> None:
    hss, usim = _network()
    pool = VectorPool(hss, IMSI, ahead=2)
    vector = pool.take()
    result, _ = usim_authenticate(usim, SqnState(), vector.rand, vector.autn)
    assert isinstance(result, AkaSuccess)
    assert pool.misses == 1 and len(pool) == 0
    pool.top_up()
    pool.discard()
    assert len(pool) == 0


def test_raw_tpdu_is_what_the_client_sends_on_t0() -> None:
    hss, _ = _network()
    (vector,) = hss.generate_vectors(IMSI)
    expected = to_t0(build_authenticate_3g(vector.rand, vector.autn))
    assert auth_tpdu(vector) == expected
    assert auth_tpdu(vector)[:5] == bytes.fromhex("0088008122")  # 1 + 16 + 1 + 16 data bytes
