"""Milenage over the keyholder interface: call counts, constants, repr hygiene, bad input."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aka.keyholder import BlockCipher, SoftwareAes
from aka.milenage import Milenage, MilenageConstants
from aka.native import NATIVE_AVAILABLE, NativeMilenage
from trelab.errors import BadInput


class CountingCipher(BlockCipher):
    """A keyholder that counts kernel calls (the TPM pays per call, so the count matters)."""

    def __init__(self, key: bytes) -> None:
        self._inner = SoftwareAes(key)
        self.calls: list[int] = []

    def encrypt_blocks(self, data: bytes) -> bytes:
        self.calls.append(len(data) // 16)
        return self._inner.encrypt_blocks(data)


def test_network_side_needs_two_kernel_calls() -> None:
    cipher = CountingCipher(os.urandom(16))
    alg = Milenage(cipher, os.urandom(16))
    alg.f1_f2345(os.urandom(16), os.urandom(6), b"\x80\x00")
    assert cipher.calls == [1, 5]  # TEMP, then OUT1..OUT5 in one call


def test_usim_side_needs_three_kernel_calls() -> None:
    """MAC-A depends on SQN, which AK (from OUT2) conceals: TEMP, OUT2..5, OUT1."""
    k, opc = os.urandom(16), os.urandom(16)
    rand, sqn, amf = os.urandom(16), os.urandom(6), b"\x80\x00"
    mac, f = Milenage(SoftwareAes(k), opc).f1_f2345(rand, sqn, amf)
    autn = bytes(a ^ b for a, b in zip(sqn, f.ak, strict=True)) + amf + mac
    cipher = CountingCipher(k)
    got_sqn, ok, _ = Milenage(cipher, opc).check_autn(rand, autn)
    assert ok and got_sqn == sqn
    assert cipher.calls == [1, 4, 1]


def test_custom_constants_change_outputs_and_match_native() -> None:
    k, opc, rand = os.urandom(16), os.urandom(16), os.urandom(16)
    custom = MilenageConstants(r=(8, 16, 24, 40, 120), c=(3, 5, 7, 11, 13))
    std = Milenage(SoftwareAes(k), opc).f2345(rand)
    alt = Milenage(SoftwareAes(k), opc, custom).f2345(rand)
    assert std != alt
    if NATIVE_AVAILABLE:
        assert NativeMilenage(k, opc, custom).f2345(rand) == alt


@pytest.mark.skipif(not NATIVE_AVAILABLE, reason="native kernel not built")
@settings(max_examples=200, deadline=None)
@given(
    k=st.binary(min_size=16, max_size=16),
    opc=st.binary(min_size=16, max_size=16),
    rand=st.binary(min_size=16, max_size=16),
    sqn=st.binary(min_size=6, max_size=6),
    amf=st.binary(min_size=2, max_size=2),
    r=st.tuples(*[st.integers(0, 127)] * 5),
    c=st.tuples(*[st.integers(0, (1 << 128) - 1)] * 5),
)
def test_native_kernel_equals_reference(
    k: bytes,
    opc: bytes,
    rand: bytes,
    sqn: bytes,
    amf: bytes,
    r: tuple[int, ...],
    c: tuple[int, ...],
) -> None:
    constants = MilenageConstants(r=r, c=c)  # type: ignore[arg-type]
    ref = Milenage(SoftwareAes(k), opc, constants)
    fast = NativeMilenage(k, opc, constants)
    assert fast.all_outputs(rand, sqn, amf) == ref.all_outputs(rand, sqn, amf)
    assert fast.vectors(rand, sqn, amf) == ref.vectors(rand, sqn, amf)


def test_reprs_hide_secrets() -> None:
    k, opc = bytes(range(16)), bytes(range(16, 32))
    for obj in (SoftwareAes(k), Milenage(SoftwareAes(k), opc)):
        assert k.hex() not in repr(obj) and opc.hex() not in repr(obj)
    if NATIVE_AVAILABLE:
        assert k.hex() not in repr(NativeMilenage(k, opc))
    f = Milenage(SoftwareAes(k), opc).f2345(bytes(16))
    assert f.ck.hex() not in repr(f) and f.res.hex() not in repr(f)


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.f2345(bytes(15)),
        lambda m: m.f1(bytes(16), bytes(5), bytes(2)),
        lambda m: m.f1(bytes(16), bytes(6), bytes(3)),
        lambda m: m.check_autn(bytes(16), bytes(15)),
        lambda m: m.vectors(bytes(16), bytes(5), bytes(2)),
    ],
)
def test_bad_lengths_raise_bad_input(call: object) -> None:
    k, opc = os.urandom(16), os.urandom(16)
    algs: list[object] = [Milenage(SoftwareAes(k), opc)]
    if NATIVE_AVAILABLE:
        algs.append(NativeMilenage(k, opc))
    for alg in algs:
        with pytest.raises(BadInput) as info:
            call(alg)  # type: ignore[operator]
        assert k.hex() not in str(info.value)


def test_bad_key_and_constants() -> None:
    with pytest.raises(BadInput):
        SoftwareAes(bytes(15))
    with pytest.raises(BadInput):
        Milenage(SoftwareAes(bytes(16)), bytes(15))
    with pytest.raises(BadInput):
        MilenageConstants(r=(128, 0, 0, 0, 0))
