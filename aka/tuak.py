"""Pure. TUAK: TOPc and f1, f1*, f2…f5, f5* (TS 35.231 §6) over a KeccakKeyholder.

The keyholder only writes K into the KEY field of IN and runs Keccak-f[1600]; building IN
(TOPc, INSTANCE, ALGONAME, RAND, AMF, SQN, padding) and cutting MAC, RES, CK, IK and AK out of
OUT happen here, so a TPM or card keyholder needs nothing but the permutation.

IN as a FIPS 202 byte string (TS 35.231 §5.2, §6.1…§6.5)::

    bytes   0…31   TOP or TOPc        bytes  56…57   AMF (zero for f2…f5*)
    byte     32    INSTANCE           bytes  58…63   SQN (zero for f2…f5*)
    bytes  33…39   ALGONAME           bytes  64…95   KEY: K, then zeros for a 128-bit K
    bytes  40…55   RAND (zero: TOPc)  byte 96 = 0x1F, byte 135 = 0x80, every other byte 0

Values number their bits from the most significant (bit 0, TS 35.231 §4.2.2), IN and OUT from
bit 0 of state byte 0 (§5.2), and fields map reversed (e.g. MAC-S[0]…MAC-S[63] = OUT[63]…OUT[0],
§6.3): on bytes, every field is byte-reversed, its last byte at the lowest address. So MAC is OUT
bytes 0… reversed, RES too, CK OUT 32…, IK OUT 64…, AK OUT 96…101. INSTANCE is one byte,
INSTANCE[0] its most significant bit. All six TS 35.233 test sets pin this layout.

IN is exactly one SHAKE256-padded block (a 96-byte message, suffix 0x1F, final 0x80, zero
capacity), which is why :class:`SoftwareKeccak` can hand it to hashlib.
"""

from __future__ import annotations

from trelab.errors import BadInput, LocalProtocolError

from .algorithm import F2345, VectorTuple, check_autn_with, vectors_with
from .keccak import STATE_BYTES, keccak_f1600, keccak_f1600_rate
from .keyholder import KeccakKeyholder

__all__ = [
    "ALGONAME",
    "CK_BITS",
    "IK_BITS",
    "KEY_FIELD",
    "K_BITS",
    "MAC_BITS",
    "RES_BITS",
    "SoftwareKeccak",
    "Tuak",
    "build_in",
    "encode_key_field",
    "topc_from_top",
]

ALGONAME = b"TUAK1.0"  # TS 35.231 §5.3
KEY_FIELD = slice(64, 96)  # where a keyholder writes encode_key_field(K) into IN

# Lengths TS 35.231 §5.1 allows, in bits.
K_BITS = (128, 256)
MAC_BITS = (64, 128, 256)
RES_BITS = (32, 64, 128, 256)
CK_BITS = (128, 256)
IK_BITS = (128, 256)

# INSTANCE (TS 35.231 §6.1…§6.5): bits 7…6 pick the function (00 TOPc and f1, 10 f1*,
# 01 f2…f5, 11 f5*), bits 5…3 the MAC or RES length, bit 2 a 256-bit CK, bit 1 a 256-bit IK,
# bit 0 a 256-bit K.
_F1, _F1STAR, _F2345, _F5STAR = 0x00, 0x80, 0x40, 0xC0
_MAC_CODE = {64: 0x08, 128: 0x10, 256: 0x20}
_RES_CODE = {32: 0x00, 64: 0x08, 128: 0x10, 256: 0x20}

_OUT_BYTES = 102  # the highest byte any function reads: AK ends at OUT byte 101
_ALGONAME_IN = ALGONAME[::-1]
_ZERO_SQN_AMF = bytes(8)
_KEY_AND_PAD = bytes(32) + b"\x1f" + bytes(38) + b"\x80" + bytes(STATE_BYTES - 136)


def _bytes(name: str, value: bytes, length: int) -> None:
    if len(value) != length:
        raise BadInput(f"{name}: {len(value)} bytes, expected {length}")


def _choice(name: str, value: int, allowed: tuple[int, ...]) -> None:
    if value not in allowed:
        options = ", ".join(str(a) for a in allowed)
        raise BadInput(f"{name}: {value}, expected one of {options}")


def _iterations(iterations: int) -> None:
    if iterations < 1:
        raise BadInput(f"iterations: {iterations}, expected at least 1")


def _key_bits(holder: KeccakKeyholder) -> int:
    bits = holder.key_bits
    _choice("K length in bits", bits, K_BITS)
    return bits


def encode_key_field(key: bytes) -> bytes:
    """The 32-byte KEY field of IN for K (TS 35.231 §5.2): K byte-reversed, zero-padded.

    Raises:
        BadInput: K is not 16 or 32 bytes.
    """
    if len(key) not in (16, 32):
        raise BadInput(f"K: {len(key)} bytes, expected 16 or 32")
    return key[::-1] + bytes(32 - len(key))


def build_in(
    top: bytes,
    instance: int,
    rand: bytes = bytes(16),
    amf: bytes = bytes(2),
    sqn: bytes = bytes(6),
) -> bytes:
    """IN without K (KEY field zero) for one TUAK function (TS 35.231 §6, layout in module doc).

    Raises:
        BadInput: a field has the wrong length or ``instance`` is not a byte.
    """
    _bytes("TOP", top, 32)
    _bytes("RAND", rand, 16)
    _bytes("AMF", amf, 2)
    _bytes("SQN", sqn, 6)
    if not 0 <= instance <= 0xFF:
        raise BadInput(f"INSTANCE: {instance}, expected 0…255")
    return (
        top[::-1]
        + bytes((instance,))
        + _ALGONAME_IN
        + rand[::-1]
        + amf[::-1]
        + sqn[::-1]
        + _KEY_AND_PAD
    )


class SoftwareKeccak(KeccakKeyholder):
    """K in memory (16 or 32 bytes); the permutation in Python or, for IN, hashlib's SHAKE256.

    ``permute`` returns the full 200-byte state and always runs the Python permutation, as the
    keyholder contract asks. :meth:`permute_rate` returns only the 136-byte rate (all TUAK
    reads), through hashlib when ``use_hashlib`` (the default) and the state allows; both give
    the same bytes, which the tests check on every TS 35.233 set.

    Raises:
        BadInput: K is not 16 or 32 bytes; later, a state that is not 200 bytes.
    """

    __slots__ = ("_field", "_use_hashlib", "key_bits")

    def __init__(self, key: bytes, *, use_hashlib: bool = True) -> None:
        self._field = encode_key_field(key)
        self.key_bits = 8 * len(key)
        self._use_hashlib = use_hashlib

    def _keyed(self, state: bytes) -> bytes:
        if len(state) != STATE_BYTES:
            raise BadInput(f"Keccak state: {len(state)} bytes, expected {STATE_BYTES}")
        return state[: KEY_FIELD.start] + self._field + state[KEY_FIELD.stop :]

    def permute(self, state: bytes, iterations: int) -> bytes:
        """Write K into the KEY field and apply Keccak-f[1600] ``iterations`` times."""
        return keccak_f1600(self._keyed(state), iterations)

    def permute_rate(self, state: bytes, iterations: int) -> bytes:
        """Like :meth:`permute`, but only the first 136 bytes, fast when IN is SHAKE256-padded."""
        keyed = self._keyed(state)
        if self._use_hashlib:
            return keccak_f1600_rate(keyed, iterations)
        return keccak_f1600(keyed, iterations)[:136]

    def __repr__(self) -> str:
        return f"SoftwareKeccak(K=<hidden>, key_bits={self.key_bits})"


def _permute(holder: KeccakKeyholder, state: bytes, iterations: int) -> bytes:
    """OUT (at least its first 102 bytes) for IN ``state``: the one call that touches K."""
    if isinstance(holder, SoftwareKeccak):
        out = holder.permute_rate(state, iterations)
    else:
        out = holder.permute(state, iterations)
    if len(out) < _OUT_BYTES:
        name = type(holder).__name__
        raise LocalProtocolError(
            f"{name}.permute returned {len(out)} bytes, expected at least {_OUT_BYTES}"
        )
    return out


def topc_from_top(holder: KeccakKeyholder, top: bytes, iterations: int = 1) -> bytes:
    """TOPc = OUT[255..0] for IN = TOP, INSTANCE 0 (plus the K-length bit) (TS 35.231 §6.1).

    ``iterations`` must be the Keccak iteration count the subscriber's functions use.

    Raises:
        BadInput: TOP is not 32 bytes, the holder's K length is not 128 or 256 bits, or
            ``iterations`` is below 1.
    """
    _iterations(iterations)
    instance = _F1 | (1 if _key_bits(holder) == 256 else 0)
    return _permute(holder, build_in(top, instance), iterations)[31::-1]


class Tuak:
    """f1…f5* of TS 35.231 for one subscriber: K in ``holder``, TOPc and lengths fixed here.

    Defaults: 64-bit MAC-A/MAC-S, 64-bit RES, 128-bit CK and IK, one Keccak iteration, which
    match what TS 33.102 AKA carries (AUTN's 64-bit MAC, 128-bit CK/IK) and Milenage's RES.
    The K length comes from ``holder.key_bits``.

    Raises:
        BadInput: TOPc is not 32 bytes, a length is not one TS 35.231 §5.1 allows, or
            ``iterations`` is below 1 (on construction); RAND, SQN or AMF of the wrong length
            (on each call).
    """

    name = "tuak"

    __slots__ = (
        "_f1_inst",
        "_f1s_inst",
        "_f5s_inst",
        "_f25_inst",
        "_holder",
        "_iterations",
        "_lengths",
        "_topc_in",
        "ck_bits",
        "ik_bits",
        "key_bits",
        "mac_bits",
        "res_bits",
    )

    def __init__(
        self,
        holder: KeccakKeyholder,
        topc: bytes,
        *,
        mac_bits: int = 64,
        res_bits: int = 64,
        ck_bits: int = 128,
        ik_bits: int = 128,
        iterations: int = 1,
    ) -> None:
        _bytes("TOPc", topc, 32)
        _choice("mac_bits", mac_bits, MAC_BITS)
        _choice("res_bits", res_bits, RES_BITS)
        _choice("ck_bits", ck_bits, CK_BITS)
        _choice("ik_bits", ik_bits, IK_BITS)
        _iterations(iterations)
        self.key_bits = _key_bits(holder)
        self._holder = holder
        self._topc_in = topc[::-1]
        self._iterations = iterations
        self.mac_bits, self.res_bits, self.ck_bits, self.ik_bits = (
            mac_bits,
            res_bits,
            ck_bits,
            ik_bits,
        )
        k256 = 1 if self.key_bits == 256 else 0
        self._f1_inst = _F1 | _MAC_CODE[mac_bits] | k256
        self._f1s_inst = _F1STAR | _MAC_CODE[mac_bits] | k256
        self._f25_inst = (
            _F2345
            | _RES_CODE[res_bits]
            | (0x04 if ck_bits == 256 else 0)
            | (0x02 if ik_bits == 256 else 0)
            | k256
        )
        self._f5s_inst = _F5STAR | k256
        self._lengths = (mac_bits // 8, res_bits // 8, ck_bits // 8, ik_bits // 8)

    @classmethod
    def from_top(
        cls,
        holder: KeccakKeyholder,
        top: bytes,
        *,
        mac_bits: int = 64,
        res_bits: int = 64,
        ck_bits: int = 128,
        ik_bits: int = 128,
        iterations: int = 1,
    ) -> Tuak:
        """Same, deriving TOPc from TOP with :func:`topc_from_top` (TS 35.231 §6.1, §7.1)."""
        return cls(
            holder,
            topc_from_top(holder, top, iterations),
            mac_bits=mac_bits,
            res_bits=res_bits,
            ck_bits=ck_bits,
            ik_bits=ik_bits,
            iterations=iterations,
        )

    def __repr__(self) -> str:
        return (
            f"Tuak({self._holder!r}, TOPc=<hidden>, mac_bits={self.mac_bits}, "
            f"res_bits={self.res_bits}, ck_bits={self.ck_bits}, ik_bits={self.ik_bits}, "
            f"iterations={self._iterations})"
        )

    def _out(self, instance: int, rand: bytes, sqn_amf: bytes) -> bytes:
        _bytes("RAND", rand, 16)
        state = (
            self._topc_in + bytes((instance,)) + _ALGONAME_IN + rand[::-1] + sqn_amf + _KEY_AND_PAD
        )
        return _permute(self._holder, state, self._iterations)

    @staticmethod
    def _amf_sqn_in(sqn: bytes, amf: bytes) -> bytes:
        _bytes("SQN", sqn, 6)
        _bytes("AMF", amf, 2)
        return amf[::-1] + sqn[::-1]

    def _mac(self, instance: int, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        out = self._out(instance, rand, self._amf_sqn_in(sqn, amf))
        return out[self._lengths[0] - 1 :: -1]

    def f1(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        """MAC-A (TS 35.231 §6.2)."""
        return self._mac(self._f1_inst, rand, sqn, amf)

    def f1star(self, rand: bytes, sqn: bytes, amf: bytes) -> bytes:
        """MAC-S (TS 35.231 §6.3)."""
        return self._mac(self._f1s_inst, rand, sqn, amf)

    def f2345(self, rand: bytes) -> F2345:
        """RES, CK, IK and AK from one permutation (TS 35.231 §6.4)."""
        out = self._out(self._f25_inst, rand, _ZERO_SQN_AMF)
        _, res_len, ck_len, ik_len = self._lengths
        return F2345(  # positional: a NamedTuple builds faster that way
            out[res_len - 1 :: -1],
            out[32 + ck_len - 1 : 31 : -1],
            out[64 + ik_len - 1 : 63 : -1],
            out[101:95:-1],
        )

    def f5star(self, rand: bytes) -> bytes:
        """AK for resynchronisation (TS 35.231 §6.5)."""
        return self._out(self._f5s_inst, rand, _ZERO_SQN_AMF)[101:95:-1]

    def f1_f2345(self, rand: bytes, sqn: bytes, amf: bytes) -> tuple[bytes, F2345]:
        """MAC-A and f2…f5: two permutations, as INSTANCE differs (TS 35.231 §6.2, §6.4)."""
        return self.f1(rand, sqn, amf), self.f2345(rand)

    def check_autn(self, rand: bytes, autn: bytes) -> tuple[bytes, bool, F2345]:
        """USIM side (TS 33.102 §6.3.3): f2…f5 for AK, then f1 on the unconcealed SQN.

        Raises:
            BadInput: AUTN is not 8 bytes plus the MAC length, or RAND is not 16 bytes.
        """
        expected = 8 + self.mac_bits // 8
        if len(autn) != expected:
            raise BadInput(f"AUTN: {len(autn)} bytes, expected {expected}")
        return check_autn_with(self, rand, autn)

    def vectors(self, rands: bytes, sqns: bytes, amf: bytes) -> list[VectorTuple]:
        """HSS side: (RAND, XRES, CK, IK, AUTN) per RAND and SQN, two permutations each."""
        return vectors_with(self, rands, sqns, amf)
