"""USIM and HSS recipes together: success, replay → AUTS → resync, MAC failure, GSM context."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aka.algorithm import AkaAlgorithm
from aka.autn import build_auts, recover_sqn_ms
from aka.gsm import c2_sres, c3_kc
from aka.hss import Hss, Subscriber, UnknownSubscriber
from aka.keyholder import SoftwareAes
from aka.milenage import Milenage
from aka.native import NATIVE_AVAILABLE, NativeMilenage
from aka.sqn import SqnState, join_sqn
from aka.usim import AkaMacFailure, AkaSuccess, AkaSyncFailure, gsm_authenticate, usim_authenticate
from trelab.errors import BadInput, MacMismatch

Factory = Callable[[bytes, bytes], AkaAlgorithm]
FACTORIES: list[Factory] = [lambda k, opc: Milenage(SoftwareAes(k), opc)]
if NATIVE_AVAILABLE:
    FACTORIES.append(NativeMilenage)
IMSI = "001010123456789"


def counter_random() -> Callable[[int], bytes]:
    """Deterministic RANDs for reproducible tests (production passes os.urandom)."""
    state = {"n": 0}

    def draw(n: int) -> bytes:
        out = b"".join((state["n"] + i).to_bytes(16, "big") for i in range(n // 16))
        state["n"] += n // 16
        return out

    return draw


@pytest.fixture(params=FACTORIES, ids=["python", "native"][: len(FACTORIES)])
def pair(request: pytest.FixtureRequest) -> tuple[Hss, AkaAlgorithm]:
    k, opc = os.urandom(16), os.urandom(16)
    hss = Hss(counter_random())
    hss.add(Subscriber(IMSI, request.param(k, opc)))
    return hss, request.param(k, opc)


def test_success_then_replay_gives_auts_and_resync(pair: tuple[Hss, AkaAlgorithm]) -> None:
    hss, usim = pair
    state = SqnState()
    (v,) = hss.generate_vectors(IMSI)
    result, state = usim_authenticate(usim, state, v.rand, v.autn)
    assert isinstance(result, AkaSuccess)
    assert (result.res, result.ck, result.ik) == (v.xres, v.ck, v.ik)
    assert result.kc == c3_kc(v.ck, v.ik)

    replay, same = usim_authenticate(usim, state, v.rand, v.autn)
    assert isinstance(replay, AkaSyncFailure) and same is state
    assert replay.reason == "replayed"
    assert hss.resynchronise(IMSI, v.rand, replay.auts) == state.sqn_ms

    (fresh,) = hss.generate_vectors(IMSI)
    result, _ = usim_authenticate(usim, state, fresh.rand, fresh.autn)
    assert isinstance(result, AkaSuccess)


def test_usim_ahead_of_hss_recovers_with_one_resync(pair: tuple[Hss, AkaAlgorithm]) -> None:
    hss, usim = pair
    state = SqnState.starting_at(join_sqn(5000, 0))
    (v,) = hss.generate_vectors(IMSI)
    result, state = usim_authenticate(usim, state, v.rand, v.autn)
    assert isinstance(result, AkaSyncFailure)
    hss.resynchronise(IMSI, v.rand, result.auts)
    (v2,) = hss.generate_vectors(IMSI)
    assert isinstance(usim_authenticate(usim, state, v2.rand, v2.autn)[0], AkaSuccess)


@settings(max_examples=50, deadline=None)
@given(flip=st.integers(0, 127))
def test_any_bit_flip_in_autn_mac_or_rand_is_refused(flip: int) -> None:
    k, opc = os.urandom(16), os.urandom(16)
    hss = Hss(os.urandom)
    hss.add(Subscriber(IMSI, Milenage(SoftwareAes(k), opc)))
    (v,) = hss.generate_vectors(IMSI)
    autn = bytearray(v.autn)
    autn[flip // 8] ^= 1 << (flip % 8)
    result, state = usim_authenticate(
        Milenage(SoftwareAes(k), opc), SqnState(), v.rand, bytes(autn)
    )
    assert isinstance(result, AkaMacFailure) and state == SqnState()


@settings(max_examples=100, deadline=None)
@given(
    seq=st.integers(1, (1 << 43) - 1),
    ind=st.integers(0, 31),
    rand=st.binary(min_size=16, max_size=16),
)
def test_auts_round_trip(seq: int, ind: int, rand: bytes) -> None:
    alg = Milenage(SoftwareAes(bytes(range(16))), bytes(16))
    sqn_ms = join_sqn(seq, ind)
    auts = build_auts(alg, rand, sqn_ms)
    assert recover_sqn_ms(alg, rand, auts) == sqn_ms
    bad = bytearray(auts)
    bad[-1] ^= 0x80
    with pytest.raises(MacMismatch):
        recover_sqn_ms(alg, rand, bytes(bad))


def test_resync_with_forged_auts_leaves_hss_alone(pair: tuple[Hss, AkaAlgorithm]) -> None:
    hss, _ = pair
    before = hss.subscriber(IMSI).sqn.seq_he
    with pytest.raises(MacMismatch):
        hss.resynchronise(IMSI, bytes(16), bytes(14))
    assert hss.subscriber(IMSI).sqn.seq_he == before


def test_many_subscribers_and_batches() -> None:
    hss = Hss(os.urandom)
    algs = {}
    for i in range(50):
        imsi = f"0010100000{i:05d}"
        k, opc = os.urandom(16), os.urandom(16)
        algs[imsi] = Milenage(SoftwareAes(k), opc)
        hss.add(Subscriber(imsi, FACTORIES[-1](k, opc)))
    assert len(hss) == 50
    for imsi, usim in algs.items():
        state = SqnState()
        vectors = hss.generate_vectors(imsi, 5)
        assert len({v.rand for v in vectors}) == 5
        for v in vectors:
            result, state = usim_authenticate(usim, state, v.rand, v.autn)
            assert isinstance(result, AkaSuccess) and result.res == v.xres
    with pytest.raises(UnknownSubscriber):
        hss.generate_vectors("999999999999999")
    with pytest.raises(BadInput):
        hss.generate_vectors(IMSI if IMSI in algs else next(iter(algs)), 0)


def test_gsm_context() -> None:
    alg = Milenage(SoftwareAes(os.urandom(16)), os.urandom(16))
    rand = os.urandom(16)
    f = alg.f2345(rand)
    gsm = gsm_authenticate(alg, rand)
    assert gsm.sres == c2_sres(f.res) and gsm.kc == c3_kc(f.ck, f.ik)
    assert f.res.hex() not in repr(gsm)


def test_bad_rand_autn_lengths() -> None:
    alg = Milenage(SoftwareAes(os.urandom(16)), os.urandom(16))
    with pytest.raises(BadInput):
        usim_authenticate(alg, SqnState(), bytes(15), bytes(16))
    with pytest.raises(BadInput):
        usim_authenticate(alg, SqnState(), bytes(16), bytes(15))
    with pytest.raises(BadInput):
        usim_authenticate(alg, SqnState(), bytes(16), bytes(17))
