"""Edge: TPM. SUCI Profile B's ephemeral key made and used inside the TPM (TS 33.501 C.3.4.2):
the home network public key is loaded as an external P-256 decryption key and TPM2_ECDH_KeyGen
draws the ephemeral pair, returning its public point and the shared point Z = d_eph·Q_hn; the
ephemeral private key never leaves the TPM. The rest of ECIES (X9.63 KDF, AES-CTR, HMAC tag)
is :mod:`aka.suci`'s, as for every holder.

Profile A needs X25519, which TPM 2.0 does not define (no Curve25519 in TPM_ECC_CURVE): it
runs in software and :func:`holder_for` says so.
"""

from __future__ import annotations

from typing import Any

from aka.suci import EphemeralAgreement, Profile, SoftwareAgreement, hn_public_key
from tpm.connection import TpmConnection
from trelab.errors import BadInput, CheckFailed

__all__ = ["TpmAgreement", "holder_for"]


def _decrypt_public(x: int, y: int) -> Any:
    """TPM2B_PUBLIC of a P-256 point as an unrestricted ECDH decryption key (what
    TPM2_ECDH_KeyGen requires of its key, TPM 2.0 Part 3 §14.4)."""
    from tpm.tss import TPM2_ALG, TPM2_ECC, TPM2B_PUBLIC, TPMA_OBJECT, TPMT_PUBLIC

    area = TPMT_PUBLIC(type=TPM2_ALG.ECC, nameAlg=TPM2_ALG.SHA256)
    area.objectAttributes = TPMA_OBJECT.DECRYPT | TPMA_OBJECT.USERWITHAUTH
    area.parameters.eccDetail.symmetric.algorithm = TPM2_ALG.NULL
    area.parameters.eccDetail.scheme.scheme = TPM2_ALG.NULL
    area.parameters.eccDetail.curveID = TPM2_ECC.NIST_P256
    area.parameters.eccDetail.kdf.scheme = TPM2_ALG.NULL
    area.unique.ecc.x = x.to_bytes(32, "big")
    area.unique.ecc.y = y.to_bytes(32, "big")
    return TPM2B_PUBLIC(publicArea=area)


class TpmAgreement:
    """Profile B key agreement in the TPM; two TPM commands per SUCI (LoadExternal,
    ECDH_KeyGen) plus the flush."""

    def __init__(self, conn: TpmConnection) -> None:
        self._conn = conn

    def __repr__(self) -> str:
        return f"TpmAgreement({self._conn.tcti!r})"

    def __call__(self, profile: Profile, hn_public: bytes) -> tuple[bytes, bytes]:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        from tpm.tss import ESYS_TR, TSS2_Exception

        if profile is not Profile.B:
            raise BadInput("the TPM makes Profile B (P-256) ephemeral keys only")
        peer = hn_public_key(profile, hn_public)
        assert isinstance(peer, ec.EllipticCurvePublicKey)
        numbers = peer.public_numbers()
        esys = self._conn.esys
        try:
            key = esys.load_external(_decrypt_public(numbers.x, numbers.y), None, ESYS_TR.NULL)
            with self._conn.transient(key):
                z_point, pub_point = esys.ecdh_key_gen(key)
        except TSS2_Exception as exc:
            raise CheckFailed(f"TPM2_ECDH_KeyGen refused: {exc}") from None
        z = bytes(z_point.point.x)
        ex, ey = bytes(pub_point.point.x), bytes(pub_point.point.y)
        if len(z) > 32 or len(ex) > 32 or len(ey) > 32:
            raise CheckFailed("TPM2_ECDH_KeyGen: a coordinate longer than P-256's")
        eph = ec.EllipticCurvePublicNumbers(
            int.from_bytes(ex, "big"), int.from_bytes(ey, "big"), ec.SECP256R1()
        ).public_key()
        compressed = eph.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )
        return compressed, z.rjust(32, b"\0")


def holder_for(conn: TpmConnection | None, profile: Profile) -> tuple[EphemeralAgreement, str]:
    """The agreement a TPM MID uses for ``profile`` and where its ephemeral key lives."""
    if conn is not None and profile is Profile.B:
        return TpmAgreement(conn), "tpm (TPM2_ECDH_KeyGen)"
    if profile is Profile.A:
        return SoftwareAgreement(), "software (TPM 2.0 has no X25519)"
    if profile is Profile.NULL:
        return SoftwareAgreement(), "none (null scheme)"
    return SoftwareAgreement(), "software"
