"""Keccak-f[1600] against hashlib, TUAK's IN layout, length checks and properties."""

from __future__ import annotations

import hashlib
import itertools
import struct
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aka import keccak
from aka.algorithm import F2345, AkaAlgorithm
from aka.autn import build_auts, recover_sqn_ms, xor6
from aka.keccak import (
    SHAKE256_RATE_BYTES,
    STATE_BYTES,
    keccak_f1600,
    keccak_f1600_lanes,
    keccak_f1600_rate,
)
from aka.keyholder import KeccakKeyholder
from aka.tuak import (
    ALGONAME,
    CK_BITS,
    IK_BITS,
    KEY_FIELD,
    MAC_BITS,
    RES_BITS,
    SoftwareKeccak,
    Tuak,
    build_in,
    encode_key_field,
    topc_from_top,
)
from trelab.errors import BadInput, LocalProtocolError, MacMismatch

SLOW = settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow])

K16 = bytes(range(0xA0, 0xB0))
K32 = bytes(range(0xC0, 0xE0))
TOPC = bytes(range(0x40, 0x60))
RAND = bytes(range(0x10, 0x20))
SQN = bytes.fromhex("0123456789ab")
AMF = bytes.fromhex("8000")


# --- Keccak-f[1600] checked through sponges against hashlib ------------------------------------


def sponge(permute: Callable[[bytes], bytes], rate: int, suffix: int, msg: bytes, n: int) -> bytes:
    """FIPS 202 §4 sponge with pad10*1 after the domain suffix, over ``permute``."""
    padded = bytearray(msg + bytes((suffix,)))
    padded += bytes(-len(padded) % rate)
    padded[-1] |= 0x80
    state = bytes(STATE_BYTES)
    for i in range(0, len(padded), rate):
        block = bytes(padded[i : i + rate]) + bytes(STATE_BYTES - rate)
        state = permute(bytes(a ^ b for a, b in zip(state, block, strict=True)))
    out = b""
    while len(out) < n:
        out += state[:rate]
        state = permute(state)
    return out[:n]


HASHES = {  # name: (rate in bytes, domain suffix, output bytes)
    "sha3_224": (144, 0x06, 28),
    "sha3_256": (136, 0x06, 32),
    "sha3_384": (104, 0x06, 48),
    "sha3_512": (72, 0x06, 64),
}


@pytest.mark.parametrize("length", [0, 1, 71, 72, 135, 136, 137, 168, 300])
@pytest.mark.parametrize("name", HASHES)
def test_sha3_matches_hashlib(name: str, length: int) -> None:
    msg = bytes(i * 7 % 256 for i in range(length))
    rate, suffix, n = HASHES[name]
    assert sponge(keccak_f1600, rate, suffix, msg, n) == hashlib.new(name, msg).digest()


@pytest.mark.parametrize("length", [0, 135, 136, 167, 168, 500])
def test_shake_matches_hashlib_over_several_squeezes(length: int) -> None:
    msg = bytes(i * 13 % 256 for i in range(length))
    assert sponge(keccak_f1600, 168, 0x1F, msg, 600) == hashlib.shake_128(msg).digest(600)
    assert sponge(keccak_f1600, 136, 0x1F, msg, 500) == hashlib.shake_256(msg).digest(500)


@SLOW
@given(st.binary(max_size=400))
def test_shake256_matches_hashlib_for_any_message(msg: bytes) -> None:
    assert sponge(keccak_f1600, 136, 0x1F, msg, 300) == hashlib.shake_256(msg).digest(300)


def test_iterations_equal_repeated_calls() -> None:
    state = bytes(range(200))
    once = keccak_f1600(state)
    assert keccak_f1600(state, 1) == once
    assert keccak_f1600(state, 3) == keccak_f1600(keccak_f1600(once))


@SLOW
@given(st.binary(min_size=200, max_size=200), st.integers(1, 3))
def test_lane_variant_matches_bytes_variant(state: bytes, iterations: int) -> None:
    lanes = list(struct.unpack("<25Q", state))
    out = keccak_f1600_lanes(lanes, iterations)
    assert struct.pack("<25Q", *out) == keccak_f1600(state, iterations)
    assert lanes == list(struct.unpack("<25Q", state))  # input untouched


def _shake_block(msg: bytes) -> bytes:
    """``msg`` (< 136 bytes) padded as SHAKE256's only block, zero capacity."""
    block = bytearray(msg + b"\x1f" + bytes(135 - len(msg)))
    block[135] |= 0x80
    return bytes(block) + bytes(STATE_BYTES - SHAKE256_RATE_BYTES)


@pytest.mark.parametrize("length", [0, 1, 96, 134, 135])
@pytest.mark.parametrize("iterations", [1, 2, 5])
def test_rate_fast_path_equals_permutation(length: int, iterations: int) -> None:
    state = _shake_block(bytes(range(1, length + 1)))
    assert keccak._shake256_message(state) == bytes(range(1, length + 1))
    rate = keccak_f1600_rate(state, iterations)
    assert rate == keccak_f1600(state, iterations)[:SHAKE256_RATE_BYTES]


@SLOW
@given(st.binary(min_size=200, max_size=200), st.integers(1, 2))
def test_rate_on_any_state_equals_permutation(state: bytes, iterations: int) -> None:
    rate = keccak_f1600_rate(state, iterations)
    assert rate == keccak_f1600(state, iterations)[:SHAKE256_RATE_BYTES]


@pytest.mark.parametrize(
    "state",
    [
        bytes(200),  # no padding at all
        _shake_block(b"x")[:199] + b"\x01",  # capacity not zero
        bytes(135) + b"\x80" + bytes(64),  # final bit but no suffix
        b"\x2f" + bytes(134) + b"\x80" + bytes(64),  # last non-zero byte is not 0x1F
    ],
)
def test_states_that_are_not_one_shake_block_take_the_python_path(state: bytes) -> None:
    assert keccak._shake256_message(state) is None
    assert keccak_f1600_rate(state) == keccak_f1600(state)[:SHAKE256_RATE_BYTES]


def test_keccak_rejects_bad_shapes() -> None:
    with pytest.raises(BadInput, match="Keccak state: 199 bytes"):
        keccak_f1600(bytes(199))
    with pytest.raises(BadInput, match="Keccak state: 201 bytes"):
        keccak_f1600_rate(bytes(201))
    with pytest.raises(BadInput, match="iterations: 0"):
        keccak_f1600(bytes(200), 0)
    with pytest.raises(BadInput, match="Keccak lanes: 24"):
        keccak_f1600_lanes([0] * 24)
    with pytest.raises(BadInput, match="each lane"):
        keccak_f1600_lanes([0] * 24 + [1 << 64])
    with pytest.raises(BadInput, match="each lane"):
        keccak_f1600_lanes([-1] + [0] * 24)


# --- TUAK: IN layout and the keyholder boundary ---------------------------------------------------


def test_in_layout_is_one_shake256_block() -> None:
    state = build_in(TOPC, 0x5A, RAND, AMF, SQN)
    assert len(state) == STATE_BYTES
    assert state[0:32] == TOPC[::-1]
    assert state[32] == 0x5A
    assert state[33:40] == b"0.1KAUT" == ALGONAME[::-1]
    assert state[40:56] == RAND[::-1]
    assert state[56:58] == AMF[::-1]
    assert state[58:64] == SQN[::-1]
    assert state[KEY_FIELD] == bytes(32)
    assert state[96] == 0x1F and state[135] == 0x80
    assert not any(state[97:135]) and not any(state[136:])
    assert keccak._shake256_message(state) == state[:96]


def test_key_field_is_k_reversed_and_zero_padded() -> None:
    assert encode_key_field(K16) == K16[::-1] + bytes(16)
    assert encode_key_field(K32) == K32[::-1]


def test_software_keccak_permute_is_the_full_state() -> None:
    holder = SoftwareKeccak(K16)
    state = build_in(TOPC, 0x48, RAND, AMF, SQN)
    keyed = state[:64] + encode_key_field(K16) + state[96:]
    full = holder.permute(state, 2)
    assert full == keccak_f1600(keyed, 2)
    assert holder.permute_rate(state, 2) == full[:136]
    assert SoftwareKeccak(K16, use_hashlib=False).permute_rate(state, 2) == full[:136]


class ShortHolder(KeccakKeyholder):
    key_bits = 128

    def permute(self, state: bytes, iterations: int) -> bytes:
        return bytes(101)


class OddKeyHolder(KeccakKeyholder):
    key_bits = 192

    def permute(self, state: bytes, iterations: int) -> bytes:
        return bytes(200)


def test_a_keyholder_returning_too_little_is_our_bug() -> None:
    alg = Tuak(ShortHolder(), TOPC)
    with pytest.raises(
        LocalProtocolError, match=r"ShortHolder\.permute returned 101 bytes, expected at least 102"
    ):
        alg.f2345(RAND)


def test_a_keyholder_with_an_unsupported_k_length_is_refused() -> None:
    with pytest.raises(BadInput, match="K length in bits: 192"):
        Tuak(OddKeyHolder(), TOPC)
    with pytest.raises(BadInput, match="K length in bits: 192"):
        topc_from_top(OddKeyHolder(), TOPC)


# --- TUAK: length validation, messages without secrets ------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mac_bits": 32}, "mac_bits: 32, expected one of 64, 128, 256"),
        ({"res_bits": 16}, "res_bits: 16, expected one of 32, 64, 128, 256"),
        ({"res_bits": 48}, "res_bits: 48"),
        ({"ck_bits": 64}, "ck_bits: 64, expected one of 128, 256"),
        ({"ik_bits": 192}, "ik_bits: 192, expected one of 128, 256"),
        ({"iterations": 0}, "iterations: 0, expected at least 1"),
    ],
)
def test_tuak_rejects_bad_parameters(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(BadInput) as caught:
        Tuak(SoftwareKeccak(K16), TOPC, **kwargs)
    assert message in str(caught.value)


def test_tuak_rejects_bad_topc_and_top() -> None:
    with pytest.raises(BadInput, match="TOPc: 31 bytes, expected 32"):
        Tuak(SoftwareKeccak(K16), TOPC[:31])
    with pytest.raises(BadInput, match="TOP: 33 bytes, expected 32"):
        topc_from_top(SoftwareKeccak(K16), TOPC + b"\0")
    with pytest.raises(BadInput, match="iterations: 0"):
        topc_from_top(SoftwareKeccak(K16), TOPC, 0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: a.f1(RAND[:15], SQN, AMF), "RAND: 15 bytes, expected 16"),
        (lambda a: a.f1star(RAND, SQN[:5], AMF), "SQN: 5 bytes, expected 6"),
        (lambda a: a.f1(RAND, SQN, AMF + b"\0"), "AMF: 3 bytes, expected 2"),
        (lambda a: a.f2345(RAND + b"\0"), "RAND: 17 bytes, expected 16"),
        (lambda a: a.f5star(b""), "RAND: 0 bytes, expected 16"),
        (lambda a: a.f1_f2345(RAND, SQN, b"\0"), "AMF: 1 bytes, expected 2"),
    ],
)
def test_tuak_rejects_bad_inputs(call: Callable[[Tuak], object], message: str) -> None:
    with pytest.raises(BadInput) as caught:
        call(Tuak(SoftwareKeccak(K16), TOPC))
    assert str(caught.value) == message


@pytest.mark.parametrize("length", [0, 1, 15, 17, 24, 31, 33, 64])
def test_bad_key_lengths_are_refused_without_the_key(length: int) -> None:
    key = bytes((0xA5 + i) % 256 for i in range(length))
    for make in (SoftwareKeccak, encode_key_field):
        with pytest.raises(BadInput) as caught:
            make(key)
        text = str(caught.value)
        assert text == f"K: {length} bytes, expected 16 or 32"
        if length >= 4:
            assert key.hex() not in text and key[:4].hex() not in text


def test_reprs_hide_k_and_topc() -> None:
    holder = SoftwareKeccak(K32)
    alg = Tuak(holder, TOPC)
    for text in (repr(holder), repr(alg), str(alg)):
        assert K32.hex() not in text and K32[::-1].hex() not in text
        assert TOPC.hex() not in text and "<hidden>" in text
    assert "key_bits=256" in repr(holder)


def test_build_in_rejects_bad_fields() -> None:
    with pytest.raises(BadInput, match="INSTANCE: 256"):
        build_in(TOPC, 256)
    with pytest.raises(BadInput, match="RAND: 8 bytes"):
        build_in(TOPC, 0, RAND[:8])


# --- TUAK: the algorithm protocol and properties --------------------------------------------------


def test_tuak_is_an_aka_algorithm() -> None:
    alg: AkaAlgorithm = Tuak(SoftwareKeccak(K16), TOPC)
    assert alg.name == "tuak"
    mac, f = alg.f1_f2345(RAND, SQN, AMF)
    assert isinstance(f, F2345)
    assert mac == alg.f1(RAND, SQN, AMF) and f == alg.f2345(RAND)


def test_defaults_are_64_bit_mac_and_res_128_bit_ck_ik_one_iteration() -> None:
    holder = SoftwareKeccak(K16)
    default = Tuak(holder, TOPC)
    explicit = Tuak(holder, TOPC, mac_bits=64, res_bits=64, ck_bits=128, ik_bits=128, iterations=1)
    assert default.f1(RAND, SQN, AMF) == explicit.f1(RAND, SQN, AMF)
    assert default.f2345(RAND) == explicit.f2345(RAND)
    f = default.f2345(RAND)
    assert (len(default.f1(RAND, SQN, AMF)), len(f.res), len(f.ck), len(f.ik)) == (8, 8, 16, 16)


COMBOS = list(itertools.product((16, 32), MAC_BITS, RES_BITS, CK_BITS, IK_BITS))


@pytest.mark.parametrize(("k_len", "mac", "res", "ck", "ik"), COMBOS)
def test_every_length_combination_gives_the_right_lengths(
    k_len: int, mac: int, res: int, ck: int, ik: int
) -> None:
    alg = Tuak(
        SoftwareKeccak(K32[:k_len]), TOPC, mac_bits=mac, res_bits=res, ck_bits=ck, ik_bits=ik
    )
    f = alg.f2345(RAND)
    assert len(alg.f1(RAND, SQN, AMF)) == len(alg.f1star(RAND, SQN, AMF)) == mac // 8
    assert (len(f.res), len(f.ck), len(f.ik), len(f.ak)) == (res // 8, ck // 8, ik // 8, 6)
    assert len(alg.f5star(RAND)) == 6
    assert alg.f1(RAND, SQN, AMF) != alg.f1star(RAND, SQN, AMF)
    assert f.ak != alg.f5star(RAND)


def test_instance_separates_every_length_choice() -> None:
    """INSTANCE encodes each length, so no output is a prefix of another configuration's."""
    holder = SoftwareKeccak(K16)
    macs = {m: Tuak(holder, TOPC, mac_bits=m).f1(RAND, SQN, AMF) for m in MAC_BITS}
    assert len({mac[:8] for mac in macs.values()}) == len(MAC_BITS)
    res = {r: Tuak(holder, TOPC, res_bits=r).f2345(RAND).res for r in RES_BITS}
    assert len({value[:4] for value in res.values()}) == len(RES_BITS)
    aks = {
        (c, i): Tuak(holder, TOPC, ck_bits=c, ik_bits=i).f2345(RAND).ak
        for c in CK_BITS
        for i in IK_BITS
    }
    assert len(set(aks.values())) == 4
    # f5* does not depend on any length but K's
    assert len({Tuak(holder, TOPC, res_bits=r).f5star(RAND) for r in RES_BITS}) == 1


keys = st.one_of(st.binary(min_size=16, max_size=16), st.binary(min_size=32, max_size=32))
blocks32 = st.binary(min_size=32, max_size=32)
blocks16 = st.binary(min_size=16, max_size=16)


@SLOW
@given(keys, blocks32, blocks16, st.integers(1, 4), st.integers(1, 3))
def test_different_iterations_give_different_outputs(
    key: bytes, topc: bytes, rand: bytes, first: int, extra: int
) -> None:
    holder = SoftwareKeccak(key)
    a = Tuak(holder, topc, iterations=first)
    b = Tuak(holder, topc, iterations=first + extra)
    assert a.f2345(rand) != b.f2345(rand)
    assert a.f5star(rand) != b.f5star(rand)
    assert topc_from_top(holder, topc, first) != topc_from_top(holder, topc, first + extra)


@SLOW
@given(keys, blocks32, blocks16, st.binary(min_size=6, max_size=6), st.integers(1, 2))
def test_hashlib_and_python_engines_agree(
    key: bytes, topc: bytes, rand: bytes, sqn: bytes, iterations: int
) -> None:
    fast = Tuak(SoftwareKeccak(key), topc, mac_bits=256, res_bits=256, iterations=iterations)
    slow = Tuak(
        SoftwareKeccak(key, use_hashlib=False),
        topc,
        mac_bits=256,
        res_bits=256,
        iterations=iterations,
    )
    assert fast.f1_f2345(rand, sqn, AMF) == slow.f1_f2345(rand, sqn, AMF)
    assert fast.f1star(rand, sqn, AMF) == slow.f1star(rand, sqn, AMF)
    assert fast.f5star(rand) == slow.f5star(rand)


@SLOW
@given(blocks16, blocks16, blocks32)
def test_k_length_is_part_of_the_input(k: bytes, rand: bytes, topc: bytes) -> None:
    """A 128-bit K and the same bytes zero-extended to 256 bits are different keys."""
    short = Tuak(SoftwareKeccak(k), topc)
    long = Tuak(SoftwareKeccak(k + bytes(16)), topc)
    assert short.f2345(rand) != long.f2345(rand)


# --- TUAK in the AKA recipes: AUTN, vectors, AUTS ------------------------------------------------


@pytest.mark.parametrize("mac_bits", MAC_BITS)
def test_vectors_and_check_autn_round_trip(mac_bits: int) -> None:
    alg = Tuak(SoftwareKeccak(K32), TOPC, mac_bits=mac_bits, res_bits=128)
    rands = RAND + bytes(reversed(RAND))
    sqns = SQN + bytes.fromhex("000000000021")
    vectors = alg.vectors(rands, sqns, AMF)
    assert len(vectors) == 2
    for i, (rand, xres, ck, ik, autn) in enumerate(vectors):
        sqn = sqns[6 * i : 6 * i + 6]
        mac, f = alg.f1_f2345(rand, sqn, AMF)
        assert (xres, ck, ik) == (f.res, f.ck, f.ik)
        assert autn == xor6(sqn, f.ak) + AMF + mac and len(autn) == 8 + mac_bits // 8
        assert alg.check_autn(rand, autn) == (sqn, True, f)
        tampered = autn[:-1] + bytes((autn[-1] ^ 1,))
        assert alg.check_autn(rand, tampered) == (sqn, False, f)
        with pytest.raises(BadInput, match=f"AUTN: {len(autn) - 1} bytes"):
            alg.check_autn(rand, autn[:-1])


@pytest.mark.parametrize("mac_bits", MAC_BITS)
def test_resynchronisation_with_tuak(mac_bits: int) -> None:
    alg = Tuak(SoftwareKeccak(K16), TOPC, mac_bits=mac_bits)
    auts = build_auts(alg, RAND, SQN)
    assert len(auts) == 6 + mac_bits // 8
    assert recover_sqn_ms(alg, RAND, auts) == SQN
    with pytest.raises(MacMismatch):
        recover_sqn_ms(alg, RAND, auts[:-1] + bytes((auts[-1] ^ 0x80,)))
