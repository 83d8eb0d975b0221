"""Pure. AUTN and AUTS: building, parsing, and recovering SQN_MS (TS 33.102 §6.3.2, §6.3.3)."""

from __future__ import annotations

import hmac
from typing import NamedTuple

from trelab.errors import BadInput, MacMismatch

from .algorithm import AkaAlgorithm

__all__ = [
    "RESYNC_AMF",
    "Autn",
    "build_autn",
    "build_auts",
    "parse_autn",
    "recover_sqn_ms",
    "xor6",
]

RESYNC_AMF = b"\0\0"  # AMF* for MAC-S is a dummy all-zero value (TS 33.102 §6.3.3)


def xor6(a: bytes, b: bytes) -> bytes:
    """XOR of two 6-byte strings (SQN ⊕ AK)."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(6, "big")


class Autn(NamedTuple):
    """AUTN = SQN ⊕ AK ‖ AMF ‖ MAC (16 bytes for a 64-bit MAC; TUAK allows longer MACs)."""

    sqn_xor_ak: bytes
    amf: bytes
    mac: bytes


def build_autn(sqn: bytes, ak: bytes, amf: bytes, mac: bytes) -> bytes:
    """Concatenate AUTN; SQN is concealed with AK."""
    if len(sqn) != 6 or len(ak) != 6 or len(amf) != 2:
        raise BadInput("AUTN: SQN and AK must be 6 bytes, AMF 2 bytes")
    return xor6(sqn, ak) + amf + mac


def parse_autn(autn: bytes, mac_len: int = 8) -> Autn:
    """Split AUTN.

    Raises:
        BadInput: wrong length for the algorithm's MAC size.
    """
    if len(autn) != 8 + mac_len:
        raise BadInput(f"AUTN: {len(autn)} bytes, expected {8 + mac_len}")
    return Autn(autn[0:6], autn[6:8], autn[8:])


def build_auts(algorithm: AkaAlgorithm, rand: bytes, sqn_ms: bytes) -> bytes:
    """AUTS = SQN_MS ⊕ AK* ‖ MAC-S, MAC-S = f1*(SQN_MS, RAND, AMF*) (TS 33.102 §6.3.3)."""
    mac_s = algorithm.f1star(rand, sqn_ms, RESYNC_AMF)
    return xor6(sqn_ms, algorithm.f5star(rand)) + mac_s


def recover_sqn_ms(algorithm: AkaAlgorithm, rand: bytes, auts: bytes) -> bytes:
    """Network side of a resynchronisation: unconceal SQN_MS and verify MAC-S.

    Raises:
        BadInput: AUTS too short.
        MacMismatch: MAC-S does not verify (constant-time comparison).
    """
    if len(auts) < 14:
        raise BadInput(f"AUTS: {len(auts)} bytes, expected at least 14")
    sqn_ms = xor6(auts[:6], algorithm.f5star(rand))
    expected = algorithm.f1star(rand, sqn_ms, RESYNC_AMF)
    if len(auts) != 6 + len(expected) or not hmac.compare_digest(expected, auts[6:]):
        raise MacMismatch("AUTS: MAC-S does not verify")
    return sqn_ms
