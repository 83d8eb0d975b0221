"""Pure. Key derivations after AKA: one KDF (TS 33.220 Annex B.2) under EPS AKA (TS 33.401
Annex A), 5G AKA (TS 33.501 Annex A) and EAP-AKA' (TS 33.402 Annex A.2, RFC 9048 §3.3/§3.4).

The TRE's output (RES, CK, IK, AK) is the same whatever the access; these functions are what
the ME and the network do with it. Every function takes and returns bytes; lengths are
checked so a mixed-up argument is a :class:`BadInput`, never a silently different key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import NamedTuple

from trelab.errors import BadInput

__all__ = [
    "EPS_ALGORITHM_DISTINGUISHERS",
    "EapAkaPrimeKeys",
    "FiveGKeys",
    "Plmn",
    "ck_ik_prime",
    "eap_aka_prime_keys",
    "eps_algorithm_key",
    "five_g_keys",
    "hres_star",
    "kamf",
    "kasme",
    "kausf",
    "kdf",
    "kenb",
    "kseaf",
    "parse_supi",
    "prf_prime",
    "res_star",
]

# FC values (TS 33.220 Annex A.2 allocation, as used by the specs cited at each function)
FC_KASME = 0x10
FC_KENB = 0x11
FC_EPS_ALGORITHM_KEY = 0x15
FC_CK_IK_PRIME = 0x20
FC_KAUSF = 0x6A
FC_RES_STAR = 0x6B
FC_KSEAF = 0x6C
FC_KAMF = 0x6D

# TS 33.401 Annex A.7 algorithm type distinguishers
EPS_ALGORITHM_DISTINGUISHERS = {
    "nas-enc": 0x01,
    "nas-int": 0x02,
    "rrc-enc": 0x03,
    "rrc-int": 0x04,
    "up-enc": 0x05,
    "up-int": 0x06,
}

_DIGITS = re.compile(r"[0-9]+")


def kdf(key: bytes, fc: int, *params: bytes) -> bytes:
    """HMAC-SHA-256(key, FC ‖ P0 ‖ L0 ‖ P1 ‖ L1 …), each L a two-byte length (TS 33.220 B.2.2)."""
    if not 0 <= fc <= 0xFF:
        raise BadInput(f"KDF: FC {fc} is not one byte")
    s = bytearray((fc,))
    for p in params:
        if len(p) > 0xFFFF:
            raise BadInput("KDF: a parameter is longer than 65535 bytes")
        s += p
        s += len(p).to_bytes(2, "big")
    return hmac.new(key, bytes(s), hashlib.sha256).digest()


def _need(name: str, value: bytes, size: int) -> None:
    if len(value) != size:
        raise BadInput(f"{name}: {len(value)} bytes, expected {size}")


def _ck_ik(ck: bytes, ik: bytes) -> bytes:
    """KEY = CK ‖ IK; 128-bit CK and IK, or TUAK's 256-bit ones (TS 35.231) concatenated alike."""
    if len(ck) not in (16, 32) or len(ik) != len(ck):
        raise BadInput(f"CK, IK: {len(ck)} and {len(ik)} bytes, expected 16 (or 32) each")
    return ck + ik


class Plmn(NamedTuple):
    """A PLMN identity: MCC (3 digits) and MNC (2 or 3 digits)."""

    mcc: str
    mnc: str

    @classmethod
    def parse(cls, text: str) -> Plmn:
        """``MCCMNC``: 5 digits (2-digit MNC) or 6 (3-digit MNC)."""
        if not _DIGITS.fullmatch(text) or len(text) not in (5, 6):
            raise BadInput("PLMN: expected MCC and MNC as 5 or 6 digits")
        return cls(text[:3], text[3:])

    def encoded(self) -> bytes:
        """The three octets of TS 24.008 §10.5.1.13 (what TS 33.401 A.2 calls SN id)."""
        mnc3 = self.mnc[2] if len(self.mnc) == 3 else "F"
        nibbles = (
            (self.mcc[1], self.mcc[0]),
            (mnc3, self.mcc[2]),
            (self.mnc[1], self.mnc[0]),
        )
        return bytes(int(hi + lo, 16) for hi, lo in nibbles)

    def serving_network_name(self) -> str:
        """The 5G serving network name for 3GPP access (TS 24.501 §9.12.1, TS 33.501 §6.1.1.4)."""
        return f"5G:mnc{self.mnc:0>3}.mcc{self.mcc}.3gppnetwork.org"


def parse_supi(text: str) -> str:
    """``imsi-DIGITS`` (TS 23.003 §2.2A, IMSI type) → the IMSI digits.

    Raises:
        BadInput: not an IMSI-type SUPI of 6 to 15 digits.
    """
    digits = text.removeprefix("imsi-")
    if digits == text or not _DIGITS.fullmatch(digits) or not 6 <= len(digits) <= 15:
        raise BadInput("SUPI: expected imsi- followed by 6 to 15 digits")
    return digits


# ---- EPS AKA (TS 33.401 Annex A) ---------------------------------------------------------------


def kasme(ck: bytes, ik: bytes, plmn: Plmn, sqn_xor_ak: bytes) -> bytes:
    """K_ASME (TS 33.401 A.2): KDF(CK ‖ IK, 0x10, SN id, SQN ⊕ AK)."""
    _need("SQN ⊕ AK", sqn_xor_ak, 6)
    return kdf(_ck_ik(ck, ik), FC_KASME, plmn.encoded(), sqn_xor_ak)


def kenb(k_asme: bytes, uplink_nas_count: int) -> bytes:
    """K_eNB (TS 33.401 A.3): KDF(K_ASME, 0x11, uplink NAS COUNT)."""
    _need("K_ASME", k_asme, 32)
    if not 0 <= uplink_nas_count < 1 << 32:
        raise BadInput("uplink NAS COUNT: expected 0 … 2^32 − 1")
    return kdf(k_asme, FC_KENB, uplink_nas_count.to_bytes(4, "big"))


def eps_algorithm_key(k_asme: bytes, distinguisher: str, algorithm_id: int) -> bytes:
    """K_NASenc, K_NASint, K_RRC*, K_UP* (TS 33.401 A.7): the 128 low bits of
    KDF(K, 0x15, distinguisher, algorithm identity). ``k_asme`` is K_eNB for the AS keys."""
    _need("key", k_asme, 32)
    if distinguisher not in EPS_ALGORITHM_DISTINGUISHERS:
        raise BadInput(f"algorithm distinguisher: one of {', '.join(EPS_ALGORITHM_DISTINGUISHERS)}")
    if not 0 <= algorithm_id <= 0x0F:
        raise BadInput("algorithm identity: expected 0 … 15")
    kind = bytes((EPS_ALGORITHM_DISTINGUISHERS[distinguisher],))
    return kdf(k_asme, FC_EPS_ALGORITHM_KEY, kind, bytes((algorithm_id,)))[16:]


# ---- 5G AKA (TS 33.501 Annex A) ----------------------------------------------------------------


def _snn(name: str) -> bytes:
    if not name:
        raise BadInput("serving network name: empty")
    return name.encode("utf-8")


def kausf(ck: bytes, ik: bytes, snn: str, sqn_xor_ak: bytes) -> bytes:
    """K_AUSF (TS 33.501 A.2): KDF(CK ‖ IK, 0x6A, serving network name, SQN ⊕ AK)."""
    _need("SQN ⊕ AK", sqn_xor_ak, 6)
    return kdf(_ck_ik(ck, ik), FC_KAUSF, _snn(snn), sqn_xor_ak)


def res_star(ck: bytes, ik: bytes, snn: str, rand: bytes, res: bytes) -> bytes:
    """RES* / XRES* (TS 33.501 A.4): the 128 low bits of KDF(CK ‖ IK, 0x6B, SNN, RAND, RES)."""
    _need("RAND", rand, 16)
    if not 4 <= len(res) <= 16:
        raise BadInput(f"RES: {len(res)} bytes, expected 4 … 16")
    return kdf(_ck_ik(ck, ik), FC_RES_STAR, _snn(snn), rand, res)[16:]


def hres_star(rand: bytes, res_star_value: bytes) -> bytes:
    """HRES* / HXRES* (TS 33.501 A.5): the 128 low bits of SHA-256(RAND ‖ RES*)."""
    _need("RAND", rand, 16)
    _need("RES*", res_star_value, 16)
    return hashlib.sha256(rand + res_star_value).digest()[16:]


def kseaf(k_ausf: bytes, snn: str) -> bytes:
    """K_SEAF (TS 33.501 A.6): KDF(K_AUSF, 0x6C, serving network name)."""
    _need("K_AUSF", k_ausf, 32)
    return kdf(k_ausf, FC_KSEAF, _snn(snn))


def kamf(k_seaf: bytes, supi: str, abba: bytes) -> bytes:
    """K_AMF (TS 33.501 A.7): KDF(K_SEAF, 0x6D, SUPI, ABBA); an IMSI-type SUPI enters as its
    digits (TS 23.003 §2.2)."""
    _need("K_SEAF", k_seaf, 32)
    if not abba:
        raise BadInput("ABBA: empty (TS 33.501 §6.1.3.2 uses 0x0000)")
    return kdf(k_seaf, FC_KAMF, parse_supi(supi).encode("ascii"), abba)


class FiveGKeys(NamedTuple):
    """What one successful 5G AKA yields on either side; K_AMF only when the SUPI is known."""

    res_star: bytes
    hxres_star: bytes
    kausf: bytes
    kseaf: bytes
    kamf: bytes | None

    def __repr__(self) -> str:  # keys never reach logs
        return "FiveGKeys(<hidden>)"


def five_g_keys(
    ck: bytes,
    ik: bytes,
    res: bytes,
    rand: bytes,
    sqn_xor_ak: bytes,
    snn: str,
    *,
    supi: str | None = None,
    abba: bytes = b"\0\0",
) -> FiveGKeys:
    """The whole 5G AKA key chain from one AKA run (ME side with RES, home network with XRES)."""
    r_star = res_star(ck, ik, snn, rand, res)
    k_ausf = kausf(ck, ik, snn, sqn_xor_ak)
    k_seaf = kseaf(k_ausf, snn)
    k_amf = None if supi is None else kamf(k_seaf, supi, abba)
    return FiveGKeys(r_star, hres_star(rand, r_star), k_ausf, k_seaf, k_amf)


# ---- EAP-AKA' (TS 33.402 A.2, RFC 9048) -------------------------------------------------------


def ck_ik_prime(ck: bytes, ik: bytes, network_name: str, sqn_xor_ak: bytes) -> tuple[bytes, bytes]:
    """CK', IK' (TS 33.402 A.2): KDF(CK ‖ IK, 0x20, access network identity, SQN ⊕ AK) split
    in halves."""
    _need("SQN ⊕ AK", sqn_xor_ak, 6)
    if not network_name:
        raise BadInput("network name: empty")
    out = kdf(_ck_ik(ck, ik), FC_CK_IK_PRIME, network_name.encode("utf-8"), sqn_xor_ak)
    return out[:16], out[16:]


def prf_prime(key: bytes, seed: bytes, length: int) -> bytes:
    """PRF' of RFC 9048 §3.4.1: T1 = HMAC-SHA-256(K, S ‖ 1), Tn = HMAC(K, Tn-1 ‖ S ‖ n)."""
    if not 0 < length <= 255 * 32:
        raise BadInput("PRF': length out of range")
    out = bytearray()
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.new(key, block + seed + bytes((counter,)), hashlib.sha256).digest()
        out += block
        counter += 1
    return bytes(out[:length])


class EapAkaPrimeKeys(NamedTuple):
    """The EAP-AKA' master-key split (RFC 9048 §3.3): K_encr 128, K_aut 256, K_re 256 bits,
    MSK and EMSK 512 bits each."""

    k_encr: bytes
    k_aut: bytes
    k_re: bytes
    msk: bytes
    emsk: bytes

    def __repr__(self) -> str:
        return "EapAkaPrimeKeys(<hidden>)"


def eap_aka_prime_keys(ck_p: bytes, ik_p: bytes, identity: str) -> EapAkaPrimeKeys:
    """MK = PRF'(IK' ‖ CK', "EAP-AKA'" ‖ Identity), cut into the five keys."""
    _need("CK'", ck_p, 16)
    _need("IK'", ik_p, 16)
    if not identity:
        raise BadInput("identity: empty")
    mk = prf_prime(ik_p + ck_p, b"EAP-AKA'" + identity.encode("utf-8"), 208)
    return EapAkaPrimeKeys(mk[0:16], mk[16:48], mk[48:80], mk[80:144], mk[144:208])
