"""Pure. The shape every AKA algorithm set (Milenage, TUAK) offers to the recipes.

The recipes in :mod:`aka.usim` and :mod:`aka.hss` only use this protocol, so a new algorithm
set or a new keyholder never touches them.
"""

from __future__ import annotations

import hmac
from typing import NamedTuple, Protocol

from trelab.errors import BadInput

__all__ = ["F2345", "AkaAlgorithm", "VectorTuple", "check_autn_with", "vectors_with"]

VectorTuple = tuple[bytes, bytes, bytes, bytes, bytes]  # RAND, XRES, CK, IK, AUTN


class F2345(NamedTuple):
    """Outputs of f2, f3, f4, f5 for one RAND (TS 33.102 §6.3.2); a tuple because it is hot."""

    res: bytes
    ck: bytes
    ik: bytes
    ak: bytes

    def __repr__(self) -> str:  # keys never reach logs
        return f"F2345(res=<{len(self.res)} bytes>, ck=<hidden>, ik=<hidden>, ak=<hidden>)"


class AkaAlgorithm(Protocol):
    """f1…f5* of one subscriber; K stays in the algorithm's keyholder."""

    name: str

    def f1(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        """MAC-A (network authentication code)."""
        ...

    def f1star(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        """MAC-S (resynchronisation authentication code)."""
        ...

    def f2345(self, rand: bytes) -> F2345:
        """RES, CK, IK and AK for ``rand``."""
        ...

    def f5star(self, rand: bytes) -> bytes:
        """AK used to conceal SQN_MS in AUTS."""
        ...

    def f1_f2345(self, rand: bytes, sqn: bytes, amf: bytes) -> tuple[bytes, F2345]:
        """MAC-A together with f2…f5: what one AKA run needs, in as few kernel calls as possible."""
        ...

    def check_autn(self, rand: bytes, autn: bytes) -> tuple[bytes, bool, F2345]:
        """USIM side: (SQN, MAC-A verified in constant time, f2…f5). AUTN length is checked."""
        ...

    def vectors(self, rands: bytes, sqns: bytes, amf: bytes) -> list[VectorTuple]:
        """HSS side: one (RAND, XRES, CK, IK, AUTN) per 16-byte RAND and 6-byte SQN."""
        ...


def vectors_with(
    algorithm: AkaAlgorithm, rands: bytes, sqns: bytes, amf: bytes
) -> list[VectorTuple]:
    """Generic :meth:`AkaAlgorithm.vectors` from f1_f2345, one vector at a time."""
    count = len(rands) // 16
    if len(rands) != 16 * count or len(sqns) != 6 * count or not count:
        raise BadInput("vectors: need 16 bytes of RAND and 6 of SQN per vector")
    out: list[VectorTuple] = []
    for i in range(count):
        rand, sqn = rands[16 * i : 16 * i + 16], sqns[6 * i : 6 * i + 6]
        mac, (res, ck, ik, ak) = algorithm.f1_f2345(rand, sqn, amf)
        concealed = (int.from_bytes(sqn, "big") ^ int.from_bytes(ak, "big")).to_bytes(6, "big")
        out.append((rand, res, ck, ik, concealed + amf + mac))
    return out


def check_autn_with(algorithm: AkaAlgorithm, rand: bytes, autn: bytes) -> tuple[bytes, bool, F2345]:
    """Generic :meth:`AkaAlgorithm.check_autn` from f2345 and f1 (TS 33.102 §6.3.3 order)."""
    out = algorithm.f2345(rand)
    ak = out.ak
    sqn = (int.from_bytes(autn[:6], "big") ^ int.from_bytes(ak, "big")).to_bytes(6, "big")
    xmac = algorithm.f1(rand, sqn, autn[6:8])
    if len(autn) != 8 + len(xmac):
        raise BadInput(f"AUTN: {len(autn)} bytes, expected {8 + len(xmac)}")
    return sqn, hmac.compare_digest(xmac, autn[8:]), out
