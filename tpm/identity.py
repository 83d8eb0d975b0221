"""Edge: TPM. The attestation key (AK) and credential activation: how a verifier learns that
an AK lives in the TPM that owns a certified EK (TPM 2.0 Part 1 §24 "Credential Protection";
TR 33.812 §7.1.2.1; docs/provisioning.md M2/M3).

The AK is a restricted signing key (ECC P-256 / ECDSA-SHA256 by default, RSA-2048 /
RSASSA-SHA256 as an option) created under the RSA EK in the endorsement hierarchy, as
``tpm2_createak`` does, and persisted with TPM2_EvictControl at :data:`AK_HANDLES` —
0x81010020 (ECC) / 0x81010021 (RSA): inside the endorsement range of the TCG Provisioning
Guidance, clear of the EK handles (0x81010001/2, swtpm's 0x81010016) and of the owner range the
MID store uses. TPM2_Clear flushes it (the endorsement hierarchy's proof changes); the next
:func:`ensure_ak` makes a new one, which must be activated again.

Credential activation: the verifier (no TPM) calls :func:`make_challenge` with the EK public
(rebuilt from the verified EK certificate) and the AK public it was sent — the challenge is
bound to the AK *name*, so the TPM only releases the secret if an object with exactly that
public area (restricted, fixedTPM…) is loaded next to that EK. The device answers with
:func:`activate_credential`; :func:`verify_activation` compares in constant time.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509

from tpm.connection import TpmConnection
from tpm.ek import EkKind, ek_policy_session, ek_tpm_public, loaded_ek, read_ek_certificates
from tpm.ek import verify_ek_chain as _verify_ek_chain
from tpm.errors import CredentialRejected, EkCertificateRejected
from tpm.marshal import object_name, public_name, unmarshal_exact
from tpm.tss import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_CAP,
    TPM2_ECC,
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPMA_OBJECT,
    TPMS_ECC_PARMS,
    TPMS_ECC_POINT,
    TPMS_RSA_PARMS,
    TPMS_SCHEME_HASH,
    TPMT_ECC_SCHEME,
    TPMT_KDF_SCHEME,
    TPMT_PUBLIC,
    TPMT_RSA_SCHEME,
    TPMT_SYM_DEF_OBJECT,
    TPMU_ASYM_SCHEME,
    TPMU_PUBLIC_ID,
    TPMU_PUBLIC_PARMS,
    TSS2_Exception,
)
from trelab.errors import BadInput, Unavailable

__all__ = [
    "AK_ATTRIBUTES",
    "AK_HANDLES",
    "ActivationResult",
    "AkKind",
    "AttestationKey",
    "CredentialChallenge",
    "activate_credential",
    "activation_round_trip",
    "ak_template",
    "check_ak_public",
    "create_ak",
    "ensure_ak",
    "evict_ak",
    "load_ak",
    "make_challenge",
    "open_ak",
    "verify_activation",
]

AkKind = Literal["ecc", "rsa"]
AK_HANDLES: dict[str, int] = {"ecc": 0x81010020, "rsa": 0x81010021}
#: What a verifier requires of an AK (TCG "TPM 2.0 Keys for Device Identity and Attestation"
#: §3.3: restricted signing key that never leaves the TPM and was generated inside it).
AK_ATTRIBUTES = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.SIGN_ENCRYPT
)
_SECRET_BYTES = 32
_RC_FAILURE_LAYERS = 0xFFF  # TPM format-zero/one response code without the layer bits


def ak_template(kind: AkKind = "ecc") -> Any:
    """TPM2B_PUBLIC of a trelab AK: restricted signing, ECDSA-P256-SHA256 or
    RSASSA-2048-SHA256, empty auth with NODA (no PIN to lock out)."""
    attributes = AK_ATTRIBUTES | TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.NODA
    sha256 = TPMU_ASYM_SCHEME(ecdsa=TPMS_SCHEME_HASH(hashAlg=TPM2_ALG.SHA256))
    null_sym = TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL)
    if kind == "ecc":
        parameters = TPMU_PUBLIC_PARMS(
            eccDetail=TPMS_ECC_PARMS(
                symmetric=null_sym,
                scheme=TPMT_ECC_SCHEME(scheme=TPM2_ALG.ECDSA, details=sha256),
                curveID=TPM2_ECC.NIST_P256,
                kdf=TPMT_KDF_SCHEME(scheme=TPM2_ALG.NULL),
            )
        )
        unique = TPMU_PUBLIC_ID(ecc=TPMS_ECC_POINT())
        alg = TPM2_ALG.ECC
    elif kind == "rsa":
        parameters = TPMU_PUBLIC_PARMS(
            rsaDetail=TPMS_RSA_PARMS(
                symmetric=null_sym,
                scheme=TPMT_RSA_SCHEME(scheme=TPM2_ALG.RSASSA, details=sha256),
                keyBits=2048,
                exponent=0,
            )
        )
        unique = TPMU_PUBLIC_ID()
        alg = TPM2_ALG.RSA
    else:
        raise BadInput(f"AK kind {kind!r}: expected ecc or rsa")
    return TPM2B_PUBLIC(
        publicArea=TPMT_PUBLIC(
            type=alg,
            nameAlg=TPM2_ALG.SHA256,
            objectAttributes=attributes,
            parameters=parameters,
            unique=unique,
        )
    )


@dataclass(frozen=True)
class AttestationKey:
    """A persisted AK: where it is and its public area (TPM2B_PUBLIC)."""

    kind: AkKind
    handle: int
    public: Any = field(repr=False, compare=False)

    @functools.cached_property
    def name(self) -> bytes:
        """TPM name = nameAlg ‖ H(TPMT_PUBLIC): what credential activation binds."""
        area = self.public.publicArea
        return object_name(int(area.nameAlg), bytes(area.marshal()))

    @functools.cached_property
    def public_pem(self) -> bytes:
        return bytes(self.public.to_pem())

    @functools.cached_property
    def public_blob(self) -> bytes:
        """Marshaled TPM2B_PUBLIC (tpm2-tools ``ak.pub``)."""
        return bytes(self.public.marshal())

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "handle": f"0x{self.handle:08x}",
            "name": self.name.hex(),
            "public_pem": self.public_pem.decode(),
        }


@functools.lru_cache(maxsize=2)
def _template(kind: AkKind) -> Any:
    """:func:`ak_template` built once per kind (read only: never handed out)."""
    return ak_template(kind)


@functools.lru_cache(maxsize=2)
def _template_area(kind: AkKind) -> bytes:
    """The marshalled TPMT_PUBLIC of :func:`ak_template` (built once per kind)."""
    return bytes(_template(kind).publicArea.marshal())


def _same_shape(public: Any, kind: AkKind) -> bool:
    """Same template as :func:`ak_template` apart from the key itself."""
    area = TPM2B_PUBLIC.unmarshal(bytes(public.marshal()))[0].publicArea
    area.unique = _template(kind).publicArea.unique
    return bytes(area.marshal()) == _template_area(kind)


def _persistent_present(conn: TpmConnection, handle: int) -> bool:
    _, caps = conn.esys.get_capability(TPM2_CAP.HANDLES, handle, 1)
    return any(int(h) == handle for h in caps.data.handles)


def load_ak(conn: TpmConnection, kind: AkKind = "ecc") -> AttestationKey | None:
    """The persisted AK of ``kind``, or None if its handle is empty.

    Raises:
        Unavailable: the handle holds something that is not a trelab AK, or the TPM refuses.
    """
    from tpm import lean_commands
    from tpm.lean import TpmRefused

    handle = AK_HANDLES[kind]
    try:  # two plain commands on the lean layer: no ESYS object to make and close
        if handle not in lean_commands.handles(conn, handle, 1):
            return None
        blob, _name = lean_commands.read_public(conn, handle)
    except TpmRefused as exc:
        raise Unavailable(f"cannot read the AK at 0x{handle:08x} on {conn.tcti}: {exc}") from None
    public = unmarshal_exact(TPM2B_PUBLIC, blob, "AK public area")
    if not _same_shape(public, kind):
        raise Unavailable(
            f"0x{handle:08x} holds an object that is not a trelab {kind} AK",
            fix=f"tpm2_evictcontrol -C o -c 0x{handle:08x} (if it is yours to remove)",
        )
    return AttestationKey(kind, handle, public)


def create_ak(
    conn: TpmConnection, kind: AkKind = "ecc", *, ek_kind: EkKind = "rsa2048"
) -> AttestationKey:
    """Create an AK under the EK (Create + Load, each authorised by the EK policy session) and
    persist it at ``AK_HANDLES[kind]``; every transient handle and session is flushed.

    Raises:
        Unavailable: the handle is taken or the TPM refuses.
    """
    handle = AK_HANDLES[kind]
    esys = conn.esys
    try:
        if _persistent_present(conn, handle):
            raise Unavailable(f"0x{handle:08x} is taken", fix="trelab tpm ak --recreate")
        with loaded_ek(conn, ek_kind) as (ek, ek_public):
            session = ek_policy_session(conn, ek_public)
            try:
                private, public, _, _, _ = esys.create(
                    ek, TPM2B_SENSITIVE_CREATE(), ak_template(kind), session1=session
                )
            finally:
                conn.flush(session)
            session = ek_policy_session(conn, ek_public)
            try:
                loaded = esys.load(ek, private, public, session1=session)
            finally:
                conn.flush(session)
        with conn.transient(loaded):
            persistent = esys.evict_control(ESYS_TR.OWNER, loaded, handle)
            esys.tr_close(persistent)
    except TSS2_Exception as exc:
        raise Unavailable(f"cannot create the {kind} AK on {conn.tcti}: {exc}") from None
    return AttestationKey(kind, handle, public)


def ensure_ak(
    conn: TpmConnection, kind: AkKind = "ecc", *, ek_kind: EkKind = "rsa2048"
) -> tuple[AttestationKey, bool]:
    """The persisted AK, created if absent; also says whether it was created now."""
    found = load_ak(conn, kind)
    if found is not None:
        return found, False
    return create_ak(conn, kind, ek_kind=ek_kind), True


def evict_ak(conn: TpmConnection, kind: AkKind = "ecc") -> bool:
    """Remove the persisted AK (TPM2_EvictControl); False if there was none.

    Raises:
        Unavailable: the handle holds something that is not a trelab AK, or the TPM refuses.
    """
    if load_ak(conn, kind) is None:
        return False
    esys = conn.esys
    try:
        tr = esys.tr_from_tpmpublic(AK_HANDLES[kind])
        esys.evict_control(ESYS_TR.OWNER, tr, AK_HANDLES[kind])  # closes tr on success
    except TSS2_Exception as exc:
        raise Unavailable(f"cannot evict the AK: {exc}") from None
    return True


@contextlib.contextmanager
def open_ak(conn: TpmConnection, ak: AttestationKey) -> Iterator[Any]:
    """ESYS handle of the persisted AK for signing commands; closed afterwards (nothing to
    flush: the object is persistent)."""
    try:
        tr = conn.esys.tr_from_tpmpublic(ak.handle)
    except TSS2_Exception as exc:
        raise Unavailable(f"AK 0x{ak.handle:08x} is gone from {conn.tcti}: {exc}") from None
    try:
        yield tr
    finally:
        with contextlib.suppress(TSS2_Exception):
            conn.esys.tr_close(tr)


# ---- credential activation ---------------------------------------------------------------


def check_ak_public(ak_public: Any) -> bytes:
    """Verifier side: the AK public area a device sent must describe a restricted signing key
    that is fixed to its TPM; returns its name (what the challenge is bound to).

    Raises:
        CredentialRejected: an attribute is missing.
        BadInput: a nameAlg that cannot be hashed here.
    """
    attrs = int(ak_public.publicArea.objectAttributes)
    missing = int(AK_ATTRIBUTES) & ~attrs
    if missing:
        raise CredentialRejected(
            f"AK public area lacks {TPMA_OBJECT(missing)!s}: not an attestation key"
        )
    return public_name(ak_public, "AK public")


@dataclass(frozen=True)
class CredentialChallenge:
    """MakeCredential's output (sent to the device) and the secret (kept by the verifier)."""

    credential_blob: bytes
    encrypted_secret: bytes
    secret: bytes = field(repr=False)

    def to_wire(self) -> dict[str, str]:
        """What travels to the device: never the secret."""
        return {
            "credential_blob": self.credential_blob.hex(),
            "encrypted_secret": self.encrypted_secret.hex(),
        }


def make_challenge(
    ek: Any | x509.Certificate, ak_public: Any, *, secret: bytes | None = None
) -> CredentialChallenge:
    """Verifier side, no TPM: TPM2_MakeCredential in software (tpm2-pytss ``make_credential``)
    to the EK (a TPM2B_PUBLIC or its verified certificate), bound to the AK's name.

    Raises:
        CredentialRejected: the AK public area is not an attestation key.
        EkCertificateRejected: the EK certificate's key has no TCG template here.
    """
    from tpm.tss import TPM2B_NAME, make_credential

    name = check_ak_public(ak_public)
    ek_public = ek_tpm_public(ek) if isinstance(ek, x509.Certificate) else ek
    secret = os.urandom(_SECRET_BYTES) if secret is None else secret
    blob, encrypted = make_credential(ek_public, secret, TPM2B_NAME(name))
    return CredentialChallenge(bytes(blob.marshal()), bytes(encrypted.marshal()), secret)


def activate_credential(
    conn: TpmConnection,
    ak: AttestationKey,
    credential_blob: bytes,
    encrypted_secret: bytes,
    *,
    ek_kind: EkKind = "rsa2048",
    layer: Literal["lean", "esys"] = "lean",
) -> bytes:
    """Device side: TPM2_ActivateCredential(AK [ADMIN: auth value], EK [USER: EK policy
    session]) → the verifier's secret, released only if the challenge was made for this EK
    and this AK's name. ``layer``: the EK's policy session and the command on the lean layer
    (default) or through ESYS (the reference).

    Raises:
        BadInput: the blobs are not marshaled TPM2B_ID_OBJECT / TPM2B_ENCRYPTED_SECRET.
        CredentialRejected: the TPM refuses the challenge (wrong EK, other AK, tampering).
    """
    blob = unmarshal_exact(TPM2B_ID_OBJECT, credential_blob, "credential blob")
    encrypted = unmarshal_exact(TPM2B_ENCRYPTED_SECRET, encrypted_secret, "encrypted secret")
    if layer == "lean":
        done = _activate_lean(conn, ak, credential_blob, encrypted_secret, ek_kind)
        if done is not None:
            return done
    elif layer != "esys":
        raise BadInput(f"TPM client layer {layer!r}: expected lean or esys")
    esys = conn.esys
    with loaded_ek(conn, ek_kind) as (ek, ek_public), open_ak(conn, ak) as ak_tr:
        session = ek_policy_session(conn, ek_public)
        try:
            secret = esys.activate_credential(
                ak_tr, ek, blob, encrypted, session1=ESYS_TR.PASSWORD, session2=session
            )
        except TSS2_Exception as exc:
            raise CredentialRejected(
                f"TPM2_ActivateCredential refused the challenge (rc 0x{int(exc.rc):x}):"
                " not made for this TPM's EK and this AK"
            ) from None
        finally:
            conn.flush(session)
    return bytes(secret)


def _activate_lean(
    conn: TpmConnection,
    ak: AttestationKey,
    credential_blob: bytes,
    encrypted_secret: bytes,
    ek_kind: EkKind,
) -> bytes | None:
    """:func:`activate_credential` on the lean layer: the EK's policy session is the layer's
    own and ends with the command. The AK's name is the one its public area gives: if the
    object at its handle were another, the TPM's cpHash would differ from the one the EK
    session's HMAC covers and the TPM would refuse. None for an EK whose nameAlg is not
    SHA-256 (the layer's sessions are SHA-256 only; ESYS serves it)."""
    from tpm import lean_commands
    from tpm.ek import ek_policy_or_list
    from tpm.lean import TpmRefused

    with loaded_ek(conn, ek_kind) as (ek, ek_public):
        if int(ek_public.publicArea.nameAlg) != int(TPM2_ALG.SHA256):
            return None
        ek_object = lean_commands.LeanObject(
            int(conn.esys.tr_get_tpm_handle(ek)), lean_commands.public_name(ek_public)
        )
        ak_object = lean_commands.LeanObject(ak.handle, lean_commands.public_name(ak.public))
        try:
            session = lean_commands.ek_session(conn, ek_policy_or_list(ek_public))
        except TpmRefused as exc:
            raise Unavailable(f"cannot start the EK's policy session: {exc}") from None
        try:
            return lean_commands.activate_credential(
                conn, ak_object, ek_object, credential_blob, encrypted_secret,
                session=session, last_use=True,
            )  # fmt: skip
        except TpmRefused as exc:
            raise CredentialRejected(
                f"TPM2_ActivateCredential refused the challenge (rc 0x{exc.rc:x}):"
                " not made for this TPM's EK and this AK"
            ) from None
        finally:
            lean_commands.flush_session(conn, session)


def verify_activation(challenge: CredentialChallenge, returned: bytes) -> None:
    """Verifier side: the device returned the secret (constant-time compare).

    Raises:
        CredentialRejected: it did not.
    """
    if not hmac.compare_digest(challenge.secret, returned):
        raise CredentialRejected("credential activation returned a different secret")


@dataclass(frozen=True)
class ActivationResult:
    """One local round trip, for ``trelab tpm activate``."""

    ak: AttestationKey
    ek_kind: EkKind
    ek_source: Literal["certificate", "tpm"]
    chain_verified: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "activated": True,
            "ak_kind": self.ak.kind,
            "ak_handle": f"0x{self.ak.handle:08x}",
            "ak_name": self.ak.name.hex(),
            "ek_kind": self.ek_kind,
            "ek_source": self.ek_source,
            "ek_chain_verified": self.chain_verified,
        }


def activation_round_trip(
    conn: TpmConnection,
    ak: AttestationKey,
    *,
    ca_bundle: Any = None,
    ek_kind: EkKind = "rsa2048",
    partial_chain: bool = False,
) -> ActivationResult:
    """Both ends locally: the verifier takes the EK from its certificate (chain-checked when
    ``ca_bundle`` is given, to its root unless ``partial_chain``; the TPM's own EK public
    only if there is no certificate), makes a
    challenge for ``ak``; the TPM activates it; the verifier compares.

    Raises:
        EkCertificateRejected: the certificate does not chain to ``ca_bundle``.
        CredentialRejected: activation failed.
    """
    cert = read_ek_certificates(conn).get(ek_kind)
    if cert is None and ca_bundle is not None:
        raise EkCertificateRejected(f"no {ek_kind} EK certificate in NV to verify")
    if cert is not None:
        if ca_bundle is not None:
            _verify_ek_chain(cert, ca_bundle, partial_chain=partial_chain)
        challenge = make_challenge(cert, ak.public)
        source: Literal["certificate", "tpm"] = "certificate"
    else:
        with loaded_ek(conn, ek_kind) as (_, ek_public):
            challenge = make_challenge(ek_public, ak.public)
        source = "tpm"
    returned = activate_credential(
        conn, ak, challenge.credential_blob, challenge.encrypted_secret, ek_kind=ek_kind
    )
    verify_activation(challenge, returned)
    return ActivationResult(ak, ek_kind, source, ca_bundle is not None)
