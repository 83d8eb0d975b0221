"""Pure. Keccak-f[1600] (FIPS 202 §3.3; TS 35.231 Annex C) in plain Python, for TUAK.

The state is 200 bytes holding 25 little-endian 64-bit lanes, lane ``x + 5*y`` at byte
``8*(x + 5*y)`` (FIPS 202 §3.1.2): the layout of hashlib's SHA-3, which the tests use to check
this permutation through a sponge.

Speed, since CPython pays per operation, not per bit: the 25 lanes live in local variables;
theta, rho and pi are fused and unrolled (pi is only a renaming of variables); chi uses the
lane-complementing transform of the Keccak team's implementation notes, which keeps lanes
1, 2, 8, 12, 17 and 20 complemented between rounds so that 20 of the 25 chi lanes need two
operations instead of three. Complemented lanes are ``lane ^ _M``, never negative ints, so the
masked rotations stay exact.

:func:`keccak_f1600_rate` is the fast path TUAK uses: when the state is one SHAKE256-padded
block with a zero capacity (every TUAK IN is, TS 35.231 §6), the first 136 bytes after ``n``
permutations are the ``n``-th 136-byte output block of SHAKE256 of the unpadded message, which
hashlib computes in C.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

from trelab.errors import BadInput

__all__ = [
    "SHAKE256_RATE_BYTES",
    "STATE_BYTES",
    "keccak_f1600",
    "keccak_f1600_lanes",
    "keccak_f1600_rate",
]

STATE_BYTES = 200
SHAKE256_RATE_BYTES = 136  # r = 1088 bits (FIPS 202 §6.2)

_M = 0xFFFFFFFFFFFFFFFF
_LANES = struct.Struct("<25Q")
_ZERO_CAPACITY = bytes(STATE_BYTES - SHAKE256_RATE_BYTES)


def _round_constants() -> tuple[int, ...]:
    """RC[i] for the 24 rounds of Keccak-f[1600], from the LFSR rc(t) of FIPS 202 §3.2.5."""
    lfsr = 1
    constants = []
    for _ in range(24):
        rc = 0
        for j in range(7):
            if lfsr & 1:
                rc |= 1 << ((1 << j) - 1)
            lfsr = ((lfsr << 1) ^ 0x171) if lfsr & 0x80 else lfsr << 1
        constants.append(rc)
    return tuple(constants)


_RC = _round_constants()


def _permute(lanes: Sequence[int], round_constants: Sequence[int]) -> list[int]:
    """Run one Keccak-f[1600] round per constant; unrolled, lane-complemented (see module doc)."""
    # fmt: off
    (a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18,
     a19, a20, a21, a22, a23, a24) = lanes
    # fmt: on
    a1 ^= _M
    a2 ^= _M
    a8 ^= _M
    a12 ^= _M
    a17 ^= _M
    a20 ^= _M
    for rc in round_constants:
        # theta: column parities c[x], then d[x] = c[x-1] ^ rot(c[x+1], 1)
        c0 = a0 ^ a5 ^ a10 ^ a15 ^ a20
        c1 = a1 ^ a6 ^ a11 ^ a16 ^ a21
        c2 = a2 ^ a7 ^ a12 ^ a17 ^ a22
        c3 = a3 ^ a8 ^ a13 ^ a18 ^ a23
        c4 = a4 ^ a9 ^ a14 ^ a19 ^ a24
        d0 = c4 ^ (((c1 << 1) & _M) | (c1 >> 63))
        d1 = c0 ^ (((c2 << 1) & _M) | (c2 >> 63))
        d2 = c1 ^ (((c3 << 1) & _M) | (c3 >> 63))
        d3 = c2 ^ (((c4 << 1) & _M) | (c4 >> 63))
        d4 = c3 ^ (((c0 << 1) & _M) | (c0 >> 63))
        # theta, rho and pi together: b[y, 2x+3y] = rot(a[x, y] ^ d[x], r[x, y])
        b0 = a0 ^ d0
        t = a1 ^ d1
        b10 = ((t << 1) & _M) | (t >> 63)
        t = a2 ^ d2
        b20 = ((t << 62) & _M) | (t >> 2)
        t = a3 ^ d3
        b5 = ((t << 28) & _M) | (t >> 36)
        t = a4 ^ d4
        b15 = ((t << 27) & _M) | (t >> 37)
        t = a5 ^ d0
        b16 = ((t << 36) & _M) | (t >> 28)
        t = a6 ^ d1
        b1 = ((t << 44) & _M) | (t >> 20)
        t = a7 ^ d2
        b11 = ((t << 6) & _M) | (t >> 58)
        t = a8 ^ d3
        b21 = ((t << 55) & _M) | (t >> 9)
        t = a9 ^ d4
        b6 = ((t << 20) & _M) | (t >> 44)
        t = a10 ^ d0
        b7 = ((t << 3) & _M) | (t >> 61)
        t = a11 ^ d1
        b17 = ((t << 10) & _M) | (t >> 54)
        t = a12 ^ d2
        b2 = ((t << 43) & _M) | (t >> 21)
        t = a13 ^ d3
        b12 = ((t << 25) & _M) | (t >> 39)
        t = a14 ^ d4
        b22 = ((t << 39) & _M) | (t >> 25)
        t = a15 ^ d0
        b23 = ((t << 41) & _M) | (t >> 23)
        t = a16 ^ d1
        b8 = ((t << 45) & _M) | (t >> 19)
        t = a17 ^ d2
        b18 = ((t << 15) & _M) | (t >> 49)
        t = a18 ^ d3
        b3 = ((t << 21) & _M) | (t >> 43)
        t = a19 ^ d4
        b13 = ((t << 8) & _M) | (t >> 56)
        t = a20 ^ d0
        b14 = ((t << 18) & _M) | (t >> 46)
        t = a21 ^ d1
        b24 = ((t << 2) & _M) | (t >> 62)
        t = a22 ^ d2
        b9 = ((t << 61) & _M) | (t >> 3)
        t = a23 ^ d3
        b19 = ((t << 56) & _M) | (t >> 8)
        t = a24 ^ d4
        b4 = ((t << 14) & _M) | (t >> 50)
        # chi, lanes 1, 2, 8, 12, 17 and 20 kept complemented (module doc); iota on a0
        a0 = b0 ^ (b1 | b2) ^ rc
        a1 = b1 ^ ((b2 ^ _M) | b3)
        a2 = b2 ^ (b3 & b4)
        a3 = b3 ^ (b4 | b0)
        a4 = b4 ^ (b0 & b1)
        a5 = b5 ^ (b6 | b7)
        a6 = b6 ^ (b7 & b8)
        a7 = b7 ^ (b8 | (b9 ^ _M))
        a8 = b8 ^ (b9 | b5)
        a9 = b9 ^ (b5 & b6)
        a10 = b10 ^ (b11 | b12)
        a11 = b11 ^ (b12 & b13)
        a12 = b12 ^ ((b13 ^ _M) & b14)
        a13 = b13 ^ (b14 | b10) ^ _M
        a14 = b14 ^ (b10 & b11)
        a15 = b15 ^ (b16 & b17)
        a16 = b16 ^ (b17 | b18)
        a17 = b17 ^ ((b18 ^ _M) | b19)
        a18 = b18 ^ (b19 & b15) ^ _M
        a19 = b19 ^ (b15 | b16)
        a20 = b20 ^ ((b21 ^ _M) & b22)
        a21 = b21 ^ (b22 | b23) ^ _M
        a22 = b22 ^ (b23 & b24)
        a23 = b23 ^ (b24 | b20)
        a24 = b24 ^ (b20 & b21)
    a1 ^= _M
    a2 ^= _M
    a8 ^= _M
    a12 ^= _M
    a17 ^= _M
    a20 ^= _M
    # fmt: off
    return [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18,
            a19, a20, a21, a22, a23, a24]
    # fmt: on


def _check_iterations(iterations: int) -> None:
    if iterations < 1:
        raise BadInput(f"iterations: {iterations}, expected at least 1")


def keccak_f1600(state: bytes, iterations: int = 1) -> bytes:
    """Keccak-f[1600] applied ``iterations`` times to a 200-byte state (FIPS 202 §3.3).

    Raises:
        BadInput: ``state`` is not 200 bytes, or ``iterations`` is below 1.
    """
    if len(state) != STATE_BYTES:
        raise BadInput(f"Keccak state: {len(state)} bytes, expected {STATE_BYTES}")
    _check_iterations(iterations)
    return _LANES.pack(*_permute(_LANES.unpack(state), _RC * iterations))


def keccak_f1600_lanes(lanes: Sequence[int], iterations: int = 1) -> list[int]:
    """Keccak-f[1600] on 25 lanes (ints in [0, 2**64), lane ``x + 5*y``), no bytes in between.

    Raises:
        BadInput: not 25 lanes, a lane out of range, or ``iterations`` below 1.
    """
    if len(lanes) != 25:
        raise BadInput(f"Keccak lanes: {len(lanes)}, expected 25")
    if not all(0 <= lane <= _M for lane in lanes):
        raise BadInput("Keccak lanes: each lane must be in [0, 2**64)")
    _check_iterations(iterations)
    return _permute(lanes, _RC * iterations)


def _shake256_message(state: bytes) -> bytes | None:
    """The message M whose SHAKE256 padding gives ``state`` as its only block, if there is one.

    pad10*1 after the SHAKE suffix 1111 (FIPS 202 §6.2, Annex B.2) turns M (|M| < 136 bytes)
    into M || 1F || 00… || 80, or M || 9F when |M| = 135; the capacity must be all zero.
    """
    if state[SHAKE256_RATE_BYTES:] != _ZERO_CAPACITY:
        return None
    last = state[SHAKE256_RATE_BYTES - 1]
    if last == 0x9F:
        return state[: SHAKE256_RATE_BYTES - 1]
    if last != 0x80:
        return None
    body = state[: SHAKE256_RATE_BYTES - 1].rstrip(b"\x00")
    if not body or body[-1] != 0x1F:
        return None
    return body[:-1]


def keccak_f1600_rate(state: bytes, iterations: int = 1) -> bytes:
    """The 136-byte rate of ``keccak_f1600(state, iterations)``, by hashlib when it can.

    hashlib's SHAKE256 serves when ``state`` is one SHAKE256-padded block with a zero capacity
    (as every TUAK IN is); any other state goes through the Python permutation.

    Raises:
        BadInput: ``state`` is not 200 bytes, or ``iterations`` is below 1.
    """
    if len(state) != STATE_BYTES:
        raise BadInput(f"Keccak state: {len(state)} bytes, expected {STATE_BYTES}")
    _check_iterations(iterations)
    message = _shake256_message(bytes(state))
    if message is None:
        return keccak_f1600(state, iterations)[:SHAKE256_RATE_BYTES]
    squeezed = hashlib.shake_256(message).digest(SHAKE256_RATE_BYTES * iterations)
    return squeezed[-SHAKE256_RATE_BYTES:]
