"""Pure. The HMAC-SHA-256 AKA algorithm set: OPc and f1, f1*, f2…f5, f5* over an HmacKeyholder.

TS 33.102 §6.3 leaves f1…f5* to the operator (Milenage and TUAK are example sets). This set
uses the one keyed primitive every PC Client TPM implements, HMAC-SHA-256 (TPM2_HMAC on a
keyed-hash object), so K can stay inside a TPM that lacks TPM2_EncryptDecrypt(2). The
specification, its rationale and its test vectors are in ``docs/hmac-aka.md``; in short,
every function is one HMAC-SHA-256 under K of a fixed-length message, truncated::

    offset  0…17   LABEL  = b"AKA-HMAC-SHA256-v1"   (18 bytes)
            18     FC     function code (OPc 0x00, f1 0x01, f1* 0x02, f2 0x03, f3 0x04,
                          f4 0x05, f5 0x06, f5* 0x07)
            19     LEN    output length in bytes
            20…51  OPc    (OP for the OPc derivation)
            52…67  RAND   (zero for OPc)
            68…73  SQN    (zero except f1, f1*)
            74…75  AMF    (zero except f1, f1*)

Output: the leftmost LEN bytes of HMAC-SHA-256(K, message). Lengths: MAC-A/MAC-S 8, RES 4, 8
or 16 (``res_bits``, default 64), CK and IK 16, AK 6, OPc 32. K is 16 or 32 bytes.

The keyholder sees only whole messages and returns whole 32-byte HMACs; building messages and
cutting outputs happen here, so a TPM or card keyholder needs nothing but TPM2_HMAC.
"""

from __future__ import annotations

import hmac as _hmac
from hashlib import sha256

from trelab.errors import BadInput, LocalProtocolError

from .algorithm import F2345, VectorTuple, check_autn_with, vectors_with
from .keyholder import HmacKeyholder

__all__ = [
    "FUNCTION_CODES",
    "K_BYTES",
    "LABEL",
    "MESSAGE_BYTES",
    "RES_BITS",
    "HmacAka",
    "SoftwareHmac",
    "build_message",
    "opc_from_op",
]

LABEL = b"AKA-HMAC-SHA256-v1"
MESSAGE_BYTES = 76
K_BYTES = (16, 32)
RES_BITS = (32, 64, 128)
FUNCTION_CODES = {"opc": 0, "f1": 1, "f1*": 2, "f2": 3, "f3": 4, "f4": 5, "f5": 6, "f5*": 7}
_LENGTHS = {"opc": 32, "f1": 8, "f1*": 8, "f3": 16, "f4": 16, "f5": 6, "f5*": 6}
_ZERO_SQN_AMF = bytes(8)
_ZERO_RAND = bytes(16)


def _bytes(name: str, value: bytes, length: int) -> None:
    if len(value) != length:
        raise BadInput(f"{name}: {len(value)} bytes, expected {length}")


def build_message(
    function: str, length: int, opc: bytes, rand: bytes, sqn: bytes = b"", amf: bytes = b""
) -> bytes:
    """The 76-byte HMAC input of ``function`` (a key of :data:`FUNCTION_CODES`).

    Raises:
        BadInput: a field of the wrong length.
    """
    code = FUNCTION_CODES.get(function)
    if code is None:
        raise BadInput(f"HMAC-AKA function {function!r}")
    if not 1 <= length <= 32:
        raise BadInput(f"HMAC-AKA output length {length}: 1…32 bytes")
    _bytes("OPc", opc, 32)
    _bytes("RAND", rand, 16)
    sqn_amf = sqn + amf if function in ("f1", "f1*") else _ZERO_SQN_AMF
    if function in ("f1", "f1*"):
        _bytes("SQN", sqn, 6)
        _bytes("AMF", amf, 2)
    return LABEL + bytes((code, length)) + opc + rand + sqn_amf


class SoftwareHmac(HmacKeyholder):
    """HMAC-SHA-256 under K with the standard library (the reference keyholder)."""

    __slots__ = ("_inner",)

    def __init__(self, key: bytes) -> None:
        if len(key) not in K_BYTES:
            raise BadInput(f"K: {len(key)} bytes, expected 16 or 32")
        self._inner = _hmac.new(key, digestmod=sha256)

    def mac(self, message: bytes) -> bytes:
        h = self._inner.copy()
        h.update(message)
        return h.digest()

    def __repr__(self) -> str:
        return "SoftwareHmac(K=<hidden>)"


def _call(holder: HmacKeyholder, message: bytes) -> bytes:
    out = holder.mac(message)
    if len(out) != 32:
        raise LocalProtocolError(f"HMAC keyholder returned {len(out)} bytes, expected 32")
    return out


def opc_from_op(holder: HmacKeyholder, op: bytes) -> bytes:
    """OPc = HMAC(K, LABEL ‖ 0x00 ‖ 0x20 ‖ OP ‖ 0²⁴): binds the operator's OP to K, so the
    subscription carries OPc and never OP."""
    _bytes("OP", op, 32)
    return _call(holder, LABEL + b"\x00\x20" + op + _ZERO_RAND + _ZERO_SQN_AMF)


class HmacAka:
    """f1…f5* of one subscriber; K lives in ``holder``, OPc is given (32 bytes)."""

    name = "hmac-sha256"
    __slots__ = ("_holder", "_opc", "res_bits")

    def __init__(self, holder: HmacKeyholder, opc: bytes, *, res_bits: int = 64) -> None:
        _bytes("OPc", opc, 32)
        if res_bits not in RES_BITS:
            raise BadInput(f"RES length {res_bits} bits, expected one of {RES_BITS}")
        self._holder = holder
        self._opc = opc
        self.res_bits = res_bits

    @classmethod
    def from_op(cls, holder: HmacKeyholder, op: bytes, *, res_bits: int = 64) -> HmacAka:
        return cls(holder, opc_from_op(holder, op), res_bits=res_bits)

    def __repr__(self) -> str:
        return f"HmacAka(res_bits={self.res_bits}, K=<keyholder>, OPc=<hidden>)"

    def _f(self, function: str, rand: bytes, sqn: bytes = b"", amf: bytes = b"") -> bytes:
        length = self.res_bits // 8 if function == "f2" else _LENGTHS[function]
        message = build_message(function, length, self._opc, rand, sqn, amf)
        return _call(self._holder, message)[:length]

    def f1(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        return self._f("f1", rand, sqn, amf)

    def f1star(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        return self._f("f1*", rand, sqn, amf)

    def f2345(self, rand: bytes) -> F2345:
        return F2345(
            self._f("f2", rand), self._f("f3", rand), self._f("f4", rand), self._f("f5", rand)
        )

    def f5star(self, rand: bytes) -> bytes:
        return self._f("f5*", rand)

    def f1_f2345(self, rand: bytes, sqn: bytes, amf: bytes) -> tuple[bytes, F2345]:
        return self.f1(rand, sqn, amf), self.f2345(rand)

    def check_autn(self, rand: bytes, autn: bytes) -> tuple[bytes, bool, F2345]:
        _bytes("AUTN", autn, 16)
        return check_autn_with(self, rand, autn)

    def vectors(self, rands: bytes, sqns: bytes, amf: bytes) -> list[VectorTuple]:
        return vectors_with(self, rands, sqns, amf)

    def all_outputs(self, rand: bytes, sqn: bytes, amf: bytes) -> dict[str, bytes]:
        """Every function's output for one input (the ``trelab aka hmac-sha256`` verb)."""
        res, ck, ik, ak = self.f2345(rand)
        return {
            "mac_a": self.f1(rand, sqn, amf),
            "mac_s": self.f1star(rand, sqn, amf),
            "res": res,
            "ck": ck,
            "ik": ik,
            "ak": ak,
            "ak_star": self.f5star(rand),
        }
