"""Pure. GSM conversion functions c2 (SRES) and c3 (Kc) of TS 33.102 §6.8.1.2."""

from __future__ import annotations

from trelab.errors import BadInput

__all__ = ["c2_sres", "c3_kc"]


def c2_sres(res: bytes) -> bytes:
    """SRES = XOR of the four 32-bit words of RES zero-padded to 128 bits (c2)."""
    if not 4 <= len(res) <= 16:
        raise BadInput(f"RES: {len(res)} bytes, expected 4…16")
    padded = int.from_bytes(res.ljust(16, b"\0"), "big")
    sres = 0
    for shift in (96, 64, 32, 0):
        sres ^= (padded >> shift) & 0xFFFFFFFF
    return sres.to_bytes(4, "big")


def c3_kc(ck: bytes, ik: bytes) -> bytes:
    """Kc = CK1 ⊕ CK2 ⊕ IK1 ⊕ IK2 over the 64-bit halves of CK and IK (c3)."""
    if len(ck) != 16 or len(ik) != 16:
        raise BadInput("c3: CK and IK must be 16 bytes each")
    a = int.from_bytes(ck, "big") ^ int.from_bytes(ik, "big")
    return ((a >> 64) ^ (a & 0xFFFFFFFFFFFFFFFF)).to_bytes(8, "big")
