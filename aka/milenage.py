"""Pure. Milenage f1, f1*, f2…f5, f5* and OPc (TS 35.206 §4.1) over any :class:`BlockCipher`.

Only two kernel calls produce a whole vector: TEMP = E_K(RAND ⊕ OPc), then OUT1…OUT5 as one
five-block call. A USIM needs a third (OUT1 after AK has revealed SQN); TEMP of the last RAND
is kept so f2345 followed by f1 on the same RAND does not repeat it.
"""

from __future__ import annotations

from dataclasses import dataclass

from trelab.errors import BadInput

from .algorithm import F2345, VectorTuple, check_autn_with, vectors_with
from .keyholder import BlockCipher

__all__ = ["DEFAULT_C", "DEFAULT_R", "Milenage", "MilenageConstants", "opc_from_op"]

_MASK128 = (1 << 128) - 1
DEFAULT_R: tuple[int, int, int, int, int] = (64, 0, 32, 64, 96)
DEFAULT_C: tuple[int, int, int, int, int] = (0, 1, 2, 4, 8)


def _rot(x: int, bits: int) -> int:
    """Cyclic left rotation of a 128-bit integer (TS 35.206 §4.1, rot)."""
    bits %= 128
    if not bits:
        return x
    return ((x << bits) | (x >> (128 - bits))) & _MASK128


def _check(name: str, value: bytes, length: int) -> None:
    if type(value) is not bytes or len(value) != length:
        got = (
            f"{len(value)} bytes" if isinstance(value, bytes | bytearray) else type(value).__name__
        )
        raise BadInput(f"{name}: {got}, expected {length} bytes")


@dataclass(frozen=True, slots=True)
class MilenageConstants:
    """The operator-selectable rotations r1…r5 (bits) and constants c1…c5 (TS 35.206 §4.1)."""

    r: tuple[int, int, int, int, int] = DEFAULT_R
    c: tuple[int, int, int, int, int] = DEFAULT_C

    def __post_init__(self) -> None:
        if len(self.r) != 5 or len(self.c) != 5:
            raise BadInput("Milenage constants: need five r and five c values")
        if any(not 0 <= r < 128 for r in self.r):
            raise BadInput("Milenage r: each rotation must be 0…127 bits")
        if any(not 0 <= c <= _MASK128 for c in self.c):
            raise BadInput("Milenage c: each constant must fit in 128 bits")


def opc_from_op(cipher: BlockCipher, op: bytes) -> bytes:
    """OPc = OP ⊕ E_K(OP) (TS 35.206 §4.1)."""
    _check("OP", op, 16)
    return bytes(a ^ b for a, b in zip(op, cipher.encrypt_blocks(op), strict=True))


class Milenage:
    """Milenage for one subscriber: K in ``cipher``, OPc given (derive it with :func:`opc_from_op`).

    Arithmetic runs on Python ints: ``x ‖ x`` shifted right by 128 − r is rot(x, r), so the
    four OUT2…OUT5 input blocks come from one doubled integer without per-block conversions.
    """

    __slots__ = (
        "_c1",
        "_cipher",
        "_cv2345",
        "_enc",
        "_last",
        "_opc",
        "_opc4",
        "_opc5",
        "_s",
        "name",
    )

    def __init__(
        self,
        cipher: BlockCipher,
        opc: bytes,
        constants: MilenageConstants | None = None,
    ) -> None:
        _check("OPc", opc, 16)
        constants = constants or MilenageConstants()
        self.name = "milenage"
        self._cipher = cipher
        self._enc = cipher.encrypt_blocks
        self._opc = int.from_bytes(opc, "big")
        self._opc4 = int.from_bytes(opc * 4, "big")
        self._opc5 = int.from_bytes(opc * 5, "big")
        # right shifts of x‖x that give rot(x, r_i); r = 0 gives a shift of 128, i.e. x itself
        self._s = tuple(128 - r for r in constants.r)
        self._c1 = constants.c[0]
        self._cv2345 = int.from_bytes(
            b"".join(c.to_bytes(16, "big") for c in constants.c[1:]), "big"
        )
        self._last: tuple[bytes, int] = (b"", 0)

    def __repr__(self) -> str:
        return f"Milenage(cipher={type(self._cipher).__name__}, OPc=<hidden>)"

    # -- kernel steps ----------------------------------------------------------------------------
    def _temp(self, rand: bytes) -> int:
        """TEMP = E_K(RAND ⊕ OPc), remembered for the last RAND."""
        if len(rand) != 16:
            _check("RAND", rand, 16)
        last = self._last
        if last[0] == rand:
            return last[1]
        temp = int.from_bytes(
            self._enc((int.from_bytes(rand, "big") ^ self._opc).to_bytes(16, "big")), "big"
        )
        self._last = (bytes(rand), temp)
        return temp

    def _in1(self, temp: int, sqn: bytes, amf: bytes) -> int:
        """Input block of OUT1: TEMP ⊕ rot(IN1 ⊕ OPc, r1) ⊕ c1."""
        if len(sqn) != 6 or len(amf) != 2:
            _check("SQN", sqn, 6)
            _check("AMF", amf, 2)
        y = int.from_bytes(sqn + amf, "big")
        y = ((y << 64) | y) ^ self._opc
        y = ((y << 128) | y) >> self._s[0]
        return temp ^ (y & _MASK128) ^ self._c1

    def _in2345(self, temp: int) -> int:
        """The four input blocks of OUT2…OUT5 as one 512-bit integer."""
        x = temp ^ self._opc
        x2 = (x << 128) | x
        s = self._s
        return (
            (((x2 >> s[1]) & _MASK128) << 384)
            | (((x2 >> s[2]) & _MASK128) << 256)
            | (((x2 >> s[3]) & _MASK128) << 128)
            | ((x2 >> s[4]) & _MASK128)
        ) ^ self._cv2345

    # -- the functions -----------------------------------------------------------------------------
    def out1(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        """OUT1 = f1 ‖ f1* (MAC-A ‖ MAC-S)."""
        block = self._enc(self._in1(self._temp(rand), sqn, amf).to_bytes(16, "big"))
        return (int.from_bytes(block, "big") ^ self._opc).to_bytes(16, "big")

    def f1(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        """MAC-A = OUT1[0..63]."""
        return self.out1(rand, sqn, amf)[:8]

    def f1star(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        """MAC-S = OUT1[64..127]."""
        return self.out1(rand, sqn, amf)[8:]

    def _out2345(self, rand: bytes) -> bytes:
        block = self._enc(self._in2345(self._temp(rand)).to_bytes(64, "big"))
        return (int.from_bytes(block, "big") ^ self._opc4).to_bytes(64, "big")

    def f2345(self, rand: bytes) -> F2345:
        """RES = OUT2[64..127], CK = OUT3, IK = OUT4, AK = OUT2[0..47]."""
        out = self._out2345(rand)
        return F2345(res=out[8:16], ck=out[16:32], ik=out[32:48], ak=out[0:6])

    def f5star(self, rand: bytes) -> bytes:
        """AK for resynchronisation = OUT5[0..47]."""
        return self._out2345(rand)[48:54]

    def _out12345(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        temp = self._temp(rand)
        blocks = (self._in1(temp, sqn, amf) << 512) | self._in2345(temp)
        return (int.from_bytes(self._enc(blocks.to_bytes(80, "big")), "big") ^ self._opc5).to_bytes(
            80, "big"
        )

    def f1_f2345(self, rand: bytes, sqn: bytes, amf: bytes) -> tuple[bytes, F2345]:
        """MAC-A and f2…f5 with two kernel calls: TEMP, then OUT1…OUT5 together."""
        out = self._out12345(rand, sqn, amf)
        return out[0:8], F2345(res=out[24:32], ck=out[32:48], ik=out[48:64], ak=out[16:22])

    def check_autn(self, rand: bytes, autn: bytes) -> tuple[bytes, bool, F2345]:
        """USIM: three kernel calls (TEMP, OUT2…OUT5 for AK, then OUT1 once SQN is known)."""
        if len(autn) != 16:
            raise BadInput(f"AUTN: {len(autn)} bytes, expected 16")
        return check_autn_with(self, rand, autn)

    def vectors(self, rands: bytes, sqns: bytes, amf: bytes) -> list[VectorTuple]:
        """HSS side, vector by vector (two kernel calls each)."""
        return vectors_with(self, rands, sqns, amf)

    def all_outputs(self, rand: bytes, sqn: bytes, amf: bytes) -> dict[str, bytes]:
        """Every Milenage output for one input, in two kernel calls (CLI, conformance)."""
        out = self._out12345(rand, sqn, amf)
        return {
            "f1": out[0:8],
            "f1star": out[8:16],
            "f2": out[24:32],
            "f3": out[32:48],
            "f4": out[48:64],
            "f5": out[16:22],
            "f5star": out[64:70],
        }
