"""Pure. SUPI concealment (TS 33.501 §6.12.2, Annex C): the null scheme and the ECIES
Profiles A (X25519) and B (P-256), the SUCI as a value, its string and 5GS mobile identity forms.

ECIES is split where a TRE can take over: the ephemeral key agreement (an
:class:`EphemeralAgreement` — software here, TPM2_ECDH_KeyGen in :mod:`tpm.suci`) gives the
ephemeral public key and the shared secret; the symmetric part (ANSI X9.63 KDF with SHA-256,
AES-128-CTR, HMAC-SHA-256 tag of 64 bits, TS 33.501 C.3.4) is the same for every holder.
The home network side (:func:`deconceal`) checks the tag in constant time before decrypting.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from hashlib import sha256
from typing import Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

from trelab.errors import BadInput, MacMismatch

from .kdf import parse_supi

__all__ = [
    "EphemeralAgreement",
    "Profile",
    "SoftwareAgreement",
    "Suci",
    "conceal",
    "deconceal",
    "hn_public_key",
    "msin_bcd",
    "new_home_key",
    "profile_name",
    "public_of",
]

_DIGITS = re.compile(r"[0-9]+")
_HEX = re.compile(r"[0-9a-fA-F]*")
MAC_SIZE = 8


class Profile(IntEnum):
    """Protection scheme identifiers (TS 33.501 C.1)."""

    NULL = 0
    A = 1
    B = 2


def profile_name(profile: Profile) -> str:
    return "null" if profile is Profile.NULL else profile.name


def _profile(value: str | int | Profile) -> Profile:
    names = {"null": Profile.NULL, "a": Profile.A, "b": Profile.B}
    if isinstance(value, str):
        found = names.get(value.lower())
        if found is None:
            raise BadInput("protection scheme: null, A or B")
        return found
    try:
        return Profile(value)
    except ValueError:
        raise BadInput(f"protection scheme {value}: only null (0), A (1), B (2)") from None


def _eph_size(profile: Profile) -> int:
    return 32 if profile is Profile.A else 33


# ---- BCD ----------------------------------------------------------------------------------------


def msin_bcd(digits: str) -> bytes:
    """Packed BCD, first digit in the low nibble, odd length padded with F (TS 33.501 C.3.1)."""
    if not _DIGITS.fullmatch(digits):
        raise BadInput("BCD: digits only")
    padded = digits + ("F" if len(digits) % 2 else "")
    return bytes(int(padded[i + 1] + padded[i], 16) for i in range(0, len(padded), 2))


def bcd_digits(data: bytes, *, what: str) -> str:
    """Inverse of :func:`msin_bcd`; an F filler only as the last nibble."""
    out: list[str] = []
    for i, byte in enumerate(data):
        lo, hi = byte & 0x0F, byte >> 4
        if lo > 9 or (hi > 9 and not (hi == 0xF and i == len(data) - 1)):
            raise BadInput(f"{what}: not packed BCD digits")
        out.append(str(lo))
        if hi != 0xF:
            out.append(str(hi))
    return "".join(out)


# ---- the SUCI value ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Suci:
    """An IMSI-type SUCI (TS 23.003 §2.2B)."""

    mcc: str
    mnc: str
    routing_indicator: str
    profile: Profile
    key_id: int
    scheme_output: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not (_DIGITS.fullmatch(self.mcc) and len(self.mcc) == 3):
            raise BadInput("SUCI: MCC must be 3 digits")
        if not (_DIGITS.fullmatch(self.mnc) and len(self.mnc) in (2, 3)):
            raise BadInput("SUCI: MNC must be 2 or 3 digits")
        if not (_DIGITS.fullmatch(self.routing_indicator) and len(self.routing_indicator) <= 4):
            raise BadInput("SUCI: routing indicator must be 1 to 4 digits")
        if not 0 <= self.key_id <= 255:
            raise BadInput("SUCI: home network public key id must be 0 … 255")
        if self.profile is Profile.NULL and self.key_id != 0:
            raise BadInput("SUCI: the null scheme has key id 0")
        minimum = 1 if self.profile is Profile.NULL else _eph_size(self.profile) + MAC_SIZE + 1
        if len(self.scheme_output) < minimum:
            raise BadInput("SUCI: scheme output too short for its profile")

    def to_string(self) -> str:
        """``suci-0-MCC-MNC-RI-scheme-keyid-output`` (the form TS 29.503 carries): the output
        is the MSIN for the null scheme, hex otherwise."""
        if self.profile is Profile.NULL:
            output = bcd_digits(self.scheme_output, what="null-scheme output")
        else:
            output = self.scheme_output.hex()
        return (
            f"suci-0-{self.mcc}-{self.mnc}-{self.routing_indicator}-"
            f"{int(self.profile)}-{self.key_id}-{output}"
        )

    @classmethod
    def parse(cls, text: str) -> Suci:
        """Raises: BadInput: not an IMSI-type SUCI string."""
        parts = text.strip().split("-")
        if len(parts) != 8 or parts[0] != "suci" or parts[1] != "0":
            raise BadInput("SUCI: expected suci-0-MCC-MNC-RI-SCHEME-KEYID-OUTPUT")
        _, _, mcc, mnc, ri, scheme, key_id, output = parts
        if not (_DIGITS.fullmatch(scheme) and _DIGITS.fullmatch(key_id) and len(key_id) <= 3):
            raise BadInput("SUCI: scheme and key id must be decimal")
        profile = _profile(int(scheme))
        if profile is Profile.NULL:
            if not _DIGITS.fullmatch(output):
                raise BadInput("SUCI: null-scheme output must be the MSIN digits")
            raw = msin_bcd(output)
        else:
            if not _HEX.fullmatch(output) or len(output) % 2:
                raise BadInput("SUCI: scheme output must be hex")
            raw = bytes.fromhex(output)
        return cls(mcc, mnc, ri, profile, int(key_id), raw)

    def to_bytes(self) -> bytes:
        """5GS mobile identity, SUCI/IMSI format, from octet 4 (TS 24.501 §9.11.3.4) — what
        GET IDENTITY returns in its 'A1' object (TS 31.102 §7.5)."""
        from .kdf import Plmn

        ri = self.routing_indicator.ljust(4, "F")
        ri_bytes = bytes((int(ri[1] + ri[0], 16), int(ri[3] + ri[2], 16)))
        return (
            b"\x01"
            + Plmn(self.mcc, self.mnc).encoded()
            + ri_bytes
            + bytes((int(self.profile), self.key_id))
            + self.scheme_output
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Suci:
        """Raises: BadInput: not an IMSI-format SUCI of TS 24.501 §9.11.3.4."""
        if len(data) < 8 or data[0] & 0x77 != 0x01:
            raise BadInput("SUCI: not an IMSI-format SUCI identity")
        plmn = data[1:4].hex()  # nibble-swapped pairs
        mcc = plmn[1] + plmn[0] + plmn[3]
        mnc = plmn[5] + plmn[4] + ("" if plmn[2] in "fF" else plmn[2])
        ri_hex = data[4:6].hex()
        ri = (ri_hex[1] + ri_hex[0] + ri_hex[3] + ri_hex[2]).rstrip("fF")
        if data[6] & 0xF0:
            raise BadInput("SUCI: protection scheme octet has spare bits set")
        return cls(mcc, mnc, ri or "0", _profile(data[6] & 0x0F), data[7], data[8:])

    def __repr__(self) -> str:
        return (
            f"Suci({self.mcc}-{self.mnc}, ri={self.routing_indicator}, "
            f"profile={profile_name(self.profile)}, key_id={self.key_id})"
        )


# ---- key agreement ------------------------------------------------------------------------------


class EphemeralAgreement(Protocol):
    """Make a fresh ephemeral key pair, agree with the home network key: (eph public key as it
    goes on the wire, shared secret Z). The private half never leaves the holder."""

    def __call__(self, profile: Profile, hn_public: bytes) -> tuple[bytes, bytes]: ...


def hn_public_key(
    profile: Profile, data: bytes
) -> x25519.X25519PublicKey | ec.EllipticCurvePublicKey:
    """The home network public key of ``profile``: 32 bytes (A) or a SEC1 point (B)."""
    if profile is Profile.A:
        if len(data) != 32:
            raise BadInput(f"home network public key: {len(data)} bytes, Profile A needs 32")
        return x25519.X25519PublicKey.from_public_bytes(data)
    if profile is Profile.B:
        if len(data) not in (33, 65):
            raise BadInput("home network public key: Profile B needs a 33- or 65-byte P-256 point")
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), data)
        except ValueError:
            raise BadInput("home network public key: not a P-256 point") from None
    raise BadInput("the null scheme has no home network key")


def public_of(profile: Profile, private: bytes) -> bytes:
    """The public half of a home network key: raw X25519 (A) or a compressed P-256 point (B)."""
    if len(private) != 32:
        raise BadInput("home network private key: 32 bytes")
    if profile is Profile.A:
        return (
            x25519.X25519PrivateKey.from_private_bytes(private)
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
    if profile is Profile.B:
        try:
            key = ec.derive_private_key(int.from_bytes(private, "big"), ec.SECP256R1())
        except ValueError:
            raise BadInput("home network private key: out of range for P-256") from None
        return key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )
    raise BadInput("the null scheme has no home network key")


def new_home_key(profile: Profile) -> tuple[bytes, bytes]:
    """A fresh home network key pair (private, public) for ``profile``."""
    if profile is Profile.A:
        private = x25519.X25519PrivateKey.generate().private_bytes_raw()
    elif profile is Profile.B:
        value = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value
        private = value.to_bytes(32, "big")
    else:
        raise BadInput("the null scheme has no home network key")
    return private, public_of(profile, private)


class SoftwareAgreement:
    """Ephemeral keys in this process (``cryptography``); ``private`` pins the ephemeral private
    key for conformance data, otherwise a fresh one is drawn each call."""

    def __init__(self, private: bytes | None = None) -> None:
        self._private = private

    def __repr__(self) -> str:
        return "SoftwareAgreement(<ephemeral key hidden>)"

    def __call__(self, profile: Profile, hn_public: bytes) -> tuple[bytes, bytes]:
        peer = hn_public_key(profile, hn_public)
        if profile is Profile.A:
            assert isinstance(peer, x25519.X25519PublicKey)
            if self._private is None:
                key = x25519.X25519PrivateKey.generate()
            elif len(self._private) == 32:
                key = x25519.X25519PrivateKey.from_private_bytes(self._private)
            else:
                raise BadInput("ephemeral private key: Profile A needs 32 bytes")
            eph = key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            try:
                shared = key.exchange(peer)
            except ValueError:  # all-zero shared secret
                raise BadInput("home network public key: a low-order X25519 point") from None
            return eph, shared
        assert isinstance(peer, ec.EllipticCurvePublicKey)
        if self._private is None:
            p256 = ec.generate_private_key(ec.SECP256R1())
        else:
            if len(self._private) != 32:
                raise BadInput("ephemeral private key: Profile B needs 32 bytes")
            try:
                p256 = ec.derive_private_key(int.from_bytes(self._private, "big"), ec.SECP256R1())
            except ValueError:
                raise BadInput("ephemeral private key: out of range for P-256") from None
        eph = p256.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )
        return eph, p256.exchange(ec.ECDH(), peer)


# ---- the symmetric part (shared by every holder) ------------------------------------------------


def _keys(shared: bytes, eph_public: bytes) -> tuple[bytes, bytes, bytes]:
    """ANSI X9.63 KDF, SHA-256, SharedInfo1 = ephemeral public key → EK (16), ICB (16), MK (32)."""
    material = X963KDF(algorithm=hashes.SHA256(), length=64, sharedinfo=eph_public).derive(shared)
    return material[:16], material[16:32], material[32:]


def _ctr(key: bytes, icb: bytes, data: bytes) -> bytes:
    ctx = Cipher(algorithms.AES(key), modes.CTR(icb)).encryptor()
    return ctx.update(data) + ctx.finalize()


def _tag(mac_key: bytes, ciphertext: bytes) -> bytes:
    return hmac.new(mac_key, ciphertext, sha256).digest()[:MAC_SIZE]


def conceal(
    supi: str,
    profile: str | int | Profile,
    *,
    hn_public: bytes = b"",
    key_id: int = 0,
    mnc_length: int = 2,
    routing_indicator: str = "0",
    agreement: EphemeralAgreement | None = None,
) -> Suci:
    """A fresh SUCI for an IMSI-type SUPI.

    Raises:
        BadInput: malformed SUPI, key, MNC length, routing indicator or key id.
    """
    prof = _profile(profile)
    digits = parse_supi(supi)
    if mnc_length not in (2, 3):
        raise BadInput("MNC length: 2 or 3")
    mcc, mnc, msin = digits[:3], digits[3 : 3 + mnc_length], digits[3 + mnc_length :]
    if not msin:
        raise BadInput("SUPI: no MSIN after MCC and MNC")
    plain = msin_bcd(msin)
    if prof is Profile.NULL:
        return Suci(mcc, mnc, routing_indicator, prof, 0, plain)
    agree = agreement if agreement is not None else SoftwareAgreement()
    eph_public, shared = agree(prof, hn_public)
    if len(eph_public) != _eph_size(prof):
        raise BadInput("ephemeral public key: wrong size for the profile")
    enc_key, icb, mac_key = _keys(shared, eph_public)
    ciphertext = _ctr(enc_key, icb, plain)
    output = eph_public + ciphertext + _tag(mac_key, ciphertext)
    return Suci(mcc, mnc, routing_indicator, prof, key_id, output)


HomeKeyLookup = Callable[[Profile, int], bytes]


def _shared_at_home(profile: Profile, hn_private: bytes, eph_public: bytes) -> bytes:
    if len(hn_private) != 32:
        raise BadInput("home network private key: 32 bytes")
    if profile is Profile.A:
        key = x25519.X25519PrivateKey.from_private_bytes(hn_private)
        try:
            return key.exchange(x25519.X25519PublicKey.from_public_bytes(eph_public))
        except ValueError:  # all-zero shared secret
            raise BadInput("SUCI: ephemeral key is a low-order X25519 point") from None
    if eph_public[0] not in (2, 3):  # Profile B sends the compressed point (TS 33.501 C.3.4.2)
        raise BadInput("SUCI: Profile B ephemeral key must be a compressed P-256 point")
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), eph_public)
        p256 = ec.derive_private_key(int.from_bytes(hn_private, "big"), ec.SECP256R1())
    except ValueError:
        raise BadInput("SUCI: ephemeral key or home network key is not on P-256") from None
    return p256.exchange(ec.ECDH(), peer)


def deconceal(suci: Suci, hn_private: bytes | HomeKeyLookup = b"") -> str:
    """The SUPI (``imsi-…``) inside ``suci``; ``hn_private`` is the key itself or a lookup by
    (profile, key id) that raises for an unknown id.

    Raises:
        MacMismatch: the tag does not verify (wrong key, or the SUCI was altered).
        BadInput: malformed SUCI or key, unknown key id (from the lookup).
    """
    if suci.profile is Profile.NULL:
        msin = bcd_digits(suci.scheme_output, what="null-scheme output")
    else:
        private = hn_private(suci.profile, suci.key_id) if callable(hn_private) else hn_private
        size = _eph_size(suci.profile)
        eph_public = suci.scheme_output[:size]
        ciphertext = suci.scheme_output[size:-MAC_SIZE]
        tag = suci.scheme_output[-MAC_SIZE:]
        shared = _shared_at_home(suci.profile, private, eph_public)
        enc_key, icb, mac_key = _keys(shared, eph_public)
        if not hmac.compare_digest(_tag(mac_key, ciphertext), tag):
            raise MacMismatch("SUCI: MAC tag does not verify")
        msin = bcd_digits(_ctr(enc_key, icb, ciphertext), what="concealed MSIN")
    supi = f"imsi-{suci.mcc}{suci.mnc}{msin}"
    parse_supi(supi)
    return supi
