"""Pure (native code, no I/O). Milenage with K in software, fused in C around OpenSSL's AES.

Same outputs as :class:`aka.milenage.Milenage` over :class:`aka.keyholder.SoftwareAes`
(the tests cross-check them); only faster. TREs that hold K (TPM, card) use the pure path.
"""

from __future__ import annotations

from trelab.errors import BadInput, Unavailable

from .algorithm import F2345, VectorTuple
from .milenage import MilenageConstants

__all__ = ["NATIVE_AVAILABLE", "NativeMilenage"]

try:
    from . import _milenage_native  # type: ignore[attr-defined]

    NATIVE_AVAILABLE = True
except ImportError:  # built without a compiler or libssl-dev
    NATIVE_AVAILABLE = False


class NativeMilenage:
    """AkaAlgorithm for one subscriber whose K is in memory (HSS, software USIM, benchmarks)."""

    __slots__ = ("_check", "_k", "_out1", "_out2345", "_out12345", "_vectors", "name")

    def __init__(self, k: bytes, opc: bytes, constants: MilenageConstants | None = None) -> None:
        if not NATIVE_AVAILABLE:
            raise Unavailable(
                "native Milenage kernel not built",
                fix="install libssl-dev and a C compiler, then re-run scripts/setup.sh",
            )
        if len(k) != 16 or len(opc) != 16:
            raise BadInput("K and OPc: 16 bytes each expected")
        constants = constants or MilenageConstants()
        kernel = _milenage_native.Kernel(k, opc, constants.r, constants.c)
        self.name = "milenage"
        self._k = kernel
        self._out1 = kernel.out1
        self._out2345 = kernel.out2345
        self._out12345 = kernel.out12345
        self._check = kernel.check_autn
        self._vectors = kernel.vectors

    def __repr__(self) -> str:
        return "NativeMilenage(K=<hidden>, OPc=<hidden>)"

    def _call(self, fn: object, *args: bytes) -> bytes:
        try:
            return fn(*args)  # type: ignore[operator, no-any-return]
        except ValueError as exc:
            raise BadInput(str(exc)) from None

    def f1(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        return self._call(self._out1, rand, sqn, amf)[:8]

    def f1star(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        return self._call(self._out1, rand, sqn, amf)[8:]

    def f2345(self, rand: bytes) -> F2345:
        out = self._call(self._out2345, rand)
        return F2345(out[8:16], out[16:32], out[32:48], out[0:6])

    def f5star(self, rand: bytes) -> bytes:
        return self._call(self._out2345, rand)[48:54]

    def f1_f2345(self, rand: bytes, sqn: bytes, amf: bytes) -> tuple[bytes, F2345]:
        try:
            out: bytes = self._out12345(rand, sqn, amf)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        return out[0:8], F2345(out[24:32], out[32:48], out[48:64], out[16:22])

    def check_autn(self, rand: bytes, autn: bytes) -> tuple[bytes, bool, F2345]:
        try:
            sqn, ok, res, ck, ik, ak = self._check(rand, autn)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        return sqn, ok, F2345(res, ck, ik, ak)

    def vectors(self, rands: bytes, sqns: bytes, amf: bytes) -> list[VectorTuple]:
        """n vectors in two AES calls in total (all TEMPs, then all OUT blocks)."""
        try:
            return self._vectors(rands, sqns, amf)  # type: ignore[no-any-return]
        except (ValueError, TypeError) as exc:
            raise BadInput(str(exc)) from None

    def all_outputs(self, rand: bytes, sqn: bytes, amf: bytes) -> dict[str, bytes]:
        out = self._call(self._out12345, rand, sqn, amf)
        return {
            "f1": out[0:8],
            "f1star": out[8:16],
            "f2": out[24:32],
            "f3": out[32:48],
            "f4": out[48:64],
            "f5": out[16:22],
            "f5star": out[64:70],
        }
