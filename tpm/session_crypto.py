"""Pure. The cryptography of TPM 2.0 authorization sessions (TPM 2.0 Part 1 §11.4, §19, §21).

KDFa (HMAC counter mode, §11.4.10.2) and KDFe (hash counter mode for ECC, §11.4.10.3), the
salt a caller encrypts to a TPM key (ECDH one-pass with KDFe, or RSA-OAEP; Part 1 Annex B/C),
the session key, command/response HMACs and AES-CFB parameter encryption (§21.3). Everything
keyed goes through ``cryptography``; nothing here talks to a TPM.

SHA-256 is the only session hash trelab uses (the PC Client profile requires it); the
functions take the hash name so a caller's choice is explicit.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from trelab.errors import BadInput

__all__ = [
    "ALG_SHA256",
    "DIGEST_SIZE",
    "EccSaltKey",
    "KeyedHmac",
    "RsaSaltKey",
    "SaltKey",
    "cfb_key",
    "command_hmac",
    "cp_hash",
    "decrypt_cfb",
    "digest",
    "encrypt_cfb",
    "encrypt_salt",
    "hmac_equal",
    "kdfa",
    "kdfe",
    "response_hmac",
    "rp_hash",
    "session_key",
    "sha256",
]

ALG_SHA256 = 0x000B
DIGEST_SIZE = {ALG_SHA256: 32}
_HASHES: dict[int, type[hashes.HashAlgorithm]] = {ALG_SHA256: hashes.SHA256}


def _hash(alg: int) -> hashes.HashAlgorithm:
    try:
        return _HASHES[alg]()
    except KeyError:
        raise BadInput(f"session hash 0x{alg:04x}: only SHA-256 is supported") from None


def digest(alg: int, *parts: bytes) -> bytes:
    """H(part1 ‖ part2 ‖ …)."""
    h = hashes.Hash(_hash(alg))
    for part in parts:
        h.update(part)
    return h.finalize()


def _hmac(alg: int, key: bytes, *parts: bytes) -> bytes:
    mac = crypto_hmac.HMAC(key, _hash(alg))
    for part in parts:
        mac.update(part)
    return mac.finalize()


def _label(label: bytes) -> bytes:
    """A KDF label ends in one zero octet (Part 1 §11.4.10.1); added if the caller left it out."""
    return label if label.endswith(b"\x00") else label + b"\x00"


def kdfa(
    alg: int, key: bytes, label: bytes, context_u: bytes, context_v: bytes, bits: int
) -> bytes:
    """KDFa (Part 1 §11.4.10.2): HMAC in counter mode, ``bits`` a multiple of 8."""
    if bits <= 0 or bits % 8:
        raise BadInput(f"KDFa: {bits} bits, expected a positive multiple of 8")
    fixed = _label(label) + context_u + context_v + struct.pack(">I", bits)
    out = bytearray()
    counter = 0
    while len(out) * 8 < bits:
        counter += 1
        out += _hmac(alg, key, struct.pack(">I", counter), fixed)
    return bytes(out[: bits // 8])


def kdfe(alg: int, z: bytes, label: bytes, party_u: bytes, party_v: bytes, bits: int) -> bytes:
    """KDFe (Part 1 §11.4.10.3): the hash in counter mode over the ECDH shared x-coordinate."""
    if bits <= 0 or bits % 8:
        raise BadInput(f"KDFe: {bits} bits, expected a positive multiple of 8")
    other = _label(label) + party_u + party_v
    out = bytearray()
    counter = 0
    while len(out) * 8 < bits:
        counter += 1
        out += digest(alg, struct.pack(">I", counter), z, other)
    return bytes(out[: bits // 8])


@dataclass(frozen=True)
class EccSaltKey:
    """The public part of a TPM ECC decryption key a salt is encrypted to."""

    curve: ec.EllipticCurve
    x: bytes
    y: bytes
    name_alg: int = ALG_SHA256


@dataclass(frozen=True)
class RsaSaltKey:
    """The public part of a TPM RSA decryption key a salt is encrypted to."""

    public: rsa.RSAPublicKey
    name_alg: int = ALG_SHA256


SaltKey = EccSaltKey | RsaSaltKey


def _tpm2b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def encrypt_salt(
    key: SaltKey, *, salt: bytes | None = None, label: bytes = b"SECRET"
) -> tuple[bytes, bytes]:
    """A fresh salt and its encryption to ``key`` as (salt, TPM2B_ENCRYPTED_SECRET payload).

    ECC (Part 1 Annex C.6.4): one-pass ECDH with an ephemeral key; the salt is
    KDFe(nameAlg, Z, "SECRET", Qe.x, Qs.x, |nameAlg|) and the payload the marshalled
    TPMS_ECC_POINT Qe — the salt itself never leaves the host. RSA (Annex B.10.3): a random
    salt of the nameAlg's size, RSA-OAEP with the nameAlg and label "SECRET\\0".
    ``salt`` is only accepted for RSA (tests pin it); ECC derives it. ``label`` names the
    use: "SECRET" for a session salt, "DUPLICATE" for a duplication seed, "IDENTITY" for
    MakeCredential's (Part 1 §24.4, §24.6).
    """
    size = DIGEST_SIZE.get(key.name_alg)
    if size is None:
        raise BadInput(f"salt key nameAlg 0x{key.name_alg:04x}: only SHA-256 is supported")
    if isinstance(key, EccSaltKey):
        if salt is not None:
            raise BadInput("an ECC salt is derived, not chosen")
        field = (key.curve.key_size + 7) // 8
        peer = _ecc_public(type(key.curve), key.x, key.y)
        ephemeral = ec.generate_private_key(peer.curve)  # fresh for every salt
        z = ephemeral.exchange(_ECDH, peer)
        point = ephemeral.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        ex, ey = point[1 : 1 + field], point[1 + field :]
        salt_value = kdfe(key.name_alg, z, label, ex, key.x.rjust(field, b"\x00"), size * 8)
        return salt_value, _tpm2b(ex) + _tpm2b(ey)
    salt_value = salt if salt is not None else os.urandom(size)
    if len(salt_value) != size:
        raise BadInput(f"RSA salt: {len(salt_value)} bytes, expected {size}")
    oaep = padding.OAEP(
        mgf=padding.MGF1(_hash(key.name_alg)), algorithm=_hash(key.name_alg), label=_label(label)
    )
    return salt_value, key.public.encrypt(salt_value, oaep)


_ECDH = ec.ECDH()


@functools.lru_cache(maxsize=64)
def _ecc_public(curve: type[ec.EllipticCurve], x: bytes, y: bytes) -> ec.EllipticCurvePublicKey:
    """The public key of a salt key's point, checked on the curve once per key (it is public:
    a MID parent's, the same on every AKA)."""
    return ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve()
    ).public_key()


def session_key(
    alg: int, salt: bytes, bind_auth: bytes, nonce_tpm: bytes, nonce_caller: bytes
) -> bytes:
    """sessionKey = KDFa(authHash, bindAuth ‖ salt, "ATH", nonceTPM, nonceCaller, |authHash|)
    (Part 1 §19.6.8); empty for an unbound, unsalted session."""
    secret = bind_auth + salt
    if not secret:
        return b""
    return kdfa(alg, secret, b"ATH", nonce_tpm, nonce_caller, DIGEST_SIZE[alg] * 8)


def cp_hash(alg: int, command_code: int, names: list[bytes], parameters: bytes) -> bytes:
    """cpHash = H(commandCode ‖ name₁ ‖ … ‖ parameters) (Part 1 §18.7), parameters as sent
    (the first one already encrypted when the session decrypts)."""
    return digest(alg, struct.pack(">I", command_code), *names, parameters)


def rp_hash(alg: int, command_code: int, parameters: bytes) -> bytes:
    """rpHash = H(TPM_RC_SUCCESS ‖ commandCode ‖ parameters) (Part 1 §18.8)."""
    return digest(alg, struct.pack(">II", 0, command_code), parameters)


def _strip(auth_value: bytes) -> bytes:
    """An authValue used as HMAC key loses its trailing zero octets (Part 1 §19.6.5)."""
    return auth_value.rstrip(b"\x00")


def command_hmac(
    alg: int,
    session_key_: bytes,
    auth_value: bytes,
    cphash: bytes,
    nonce_caller: bytes,
    nonce_tpm: bytes,
    attributes: int,
) -> bytes:
    """The command HMAC (Part 1 §19.6.5), one session that is also the encrypt/decrypt
    session (so no nonceDecrypt/nonceEncrypt terms)."""
    return _hmac(
        alg, session_key_ + _strip(auth_value), cphash, nonce_caller, nonce_tpm, bytes([attributes])
    )


def response_hmac(
    alg: int,
    session_key_: bytes,
    auth_value: bytes,
    rphash: bytes,
    nonce_tpm: bytes,
    nonce_caller: bytes,
    attributes: int,
) -> bytes:
    """The response HMAC (Part 1 §19.6.16): the TPM's new nonce first."""
    return _hmac(
        alg, session_key_ + _strip(auth_value), rphash, nonce_tpm, nonce_caller, bytes([attributes])
    )


class KeyedHmac:
    """HMAC under one key, keyed once: every MAC and KDFa of a session under the same
    sessionKey ‖ authValue copies the keyed state instead of keying again (the hot path)."""

    __slots__ = ("_template",)

    def __init__(self, alg: int, key: bytes) -> None:
        self._template = crypto_hmac.HMAC(key, _hash(alg))

    def __repr__(self) -> str:
        return "KeyedHmac(<key>)"

    def mac(self, *parts: bytes) -> bytes:
        mac = self._template.copy()
        for part in parts:
            mac.update(part)
        return mac.finalize()

    def mac1(self, data: bytes) -> bytes:
        """The MAC of one buffer (the hot path joins its parts first: one update)."""
        mac = self._template.copy()
        mac.update(data)
        return mac.finalize()

    def cfb_material(self, newer: bytes, older: bytes) -> bytes:
        """KDFa(key, "CFB", ``newer``, ``older``, 256): parameter encryption's AES-128 key ‖ IV
        (Part 1 §21.3), :meth:`kdfa`'s one SHA-256 block written out."""
        mac = self._template.copy()
        mac.update(b"\x00\x00\x00\x01CFB\x00" + newer + older + b"\x00\x00\x01\x00")
        return mac.finalize()

    def kdfa(self, label: bytes, context_u: bytes, context_v: bytes, bits: int) -> bytes:
        """KDFa keyed with this key (as :func:`kdfa`)."""
        if bits <= 0 or bits % 8:
            raise BadInput(f"KDFa: {bits} bits, expected a positive multiple of 8")
        fixed = _label(label) + context_u + context_v + struct.pack(">I", bits)
        out = b""
        counter = 0
        while len(out) * 8 < bits:
            counter += 1
            out += self.mac(struct.pack(">I", counter), fixed)
        return out[: bits // 8]


_SHA256 = hashlib.sha256()  # copied: a copy skips looking the algorithm up again


def sha256(*parts: bytes) -> bytes:
    """SHA-256 of the concatenation (cpHash/rpHash on the hot path)."""
    h = _SHA256.copy()
    for part in parts:
        h.update(part)
    return h.digest()


def hmac_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two MACs."""
    return hmac.compare_digest(a, b)


def cfb_key(
    alg: int, session_value: bytes, nonce_newer: bytes, nonce_older: bytes
) -> tuple[bytes, bytes]:
    """AES-128 key and IV for parameter encryption (Part 1 §21.3): KDFa(authHash,
    sessionValue, "CFB", nonceNewer, nonceOlder, 128 + 128)."""
    material = kdfa(alg, session_value, b"CFB", nonce_newer, nonce_older, 256)
    return material[:16], material[16:]


def encrypt_cfb(key: bytes, iv: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), CFB(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def decrypt_cfb(key: bytes, iv: bytes, data: bytes) -> bytes:
    dec = Cipher(algorithms.AES(key), CFB(iv)).decryptor()
    return dec.update(data) + dec.finalize()
