"""Edge: TPM. The endorsement key (EK): certificates from NV, chain check, the EK object, and
the policy session its USER role needs (TCG EK Credential Profile 2.x; TR 33.812 §7.1.2.1
"unique certified TRE identity").

Device side: :func:`read_ek_certificates`, :func:`load_ek` / :func:`loaded_ek`,
:func:`ek_policy_session`. Verifier side (no TPM): :func:`verify_ek_chain`,
:func:`ek_public_from_certificate`, :func:`ek_tpm_public` (the EK's TPM2B_PUBLIC rebuilt from
the certificate and the TCG template, what ``make_credential`` needs).

The EK's authPolicy is PolicyA = PolicySecret(TPM_RH_ENDORSEMENT) for the low-range templates
and PolicyB = PolicyOR(PolicyA, PolicyC) for the high-range ones (swtpm's P-384 EK); both are
satisfied by :func:`ek_policy_session`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ObjectIdentifier

from tpm.connection import TpmConnection
from tpm.errors import EkCertificateRejected
from tpm.tss import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_CAP,
    TPM2_SE,
    TPM2B_PUBLIC,
    TPMA_NV,
    TPMA_OBJECT,
    TPML_DIGEST,
    TPMT_SYM_DEF,
    TSS2_Exception,
    ek_template,
)
from trelab.errors import BadInput, Unavailable

if TYPE_CHECKING:
    from tpm.marshal import PublicArea

__all__ = [
    "EK_CERT_INDICES",
    "EK_PERSISTENT_RANGE",
    "X509_DECODE_ERRORS",
    "EkKind",
    "ek_policy_a",
    "ek_policy_b",
    "ek_policy_or_list",
    "ek_policy_session",
    "ek_public_from_certificate",
    "ek_tpm_public",
    "find_ek_certificate",
    "load_ca_bundle",
    "load_certificate_der",
    "load_ek",
    "loaded_ek",
    "read_ek_certificates",
    "read_nv",
    "release_ek",
    "tpm_public_key",
    "trust_anchors",
    "verify_ek_chain",
]

EkKind = Literal["rsa2048", "ecc"]

#: EK certificate NV indices by kind, first present wins (TCG EK Credential Profile §2.2.1.4/5):
#: low-range RSA-2048 and ECC P-256, high-range RSA-2048, ECC P-256 and ECC P-384 (swtpm).
EK_CERT_INDICES: dict[str, tuple[tuple[int, str], ...]] = {
    "rsa2048": ((0x01C00002, "EK-RSA2048"), (0x01C00012, "EK-HIGH-RSA2048")),
    "ecc": (
        (0x01C0000A, "EK-ECC256"),
        (0x01C00014, "EK-HIGH-ECC256"),
        (0x01C00016, "EK-HIGH-ECC384"),
    ),
}
#: Persistent handles the TCG Provisioning Guidance reserves for endorsement keys.
EK_PERSISTENT_RANGE = (0x81010000, 0x81020000)
_TCG_KP_EK_CERTIFICATE = ObjectIdentifier("2.23.133.8.1")
_NV_BUFFER_MAX = 0x12C  # TPM2_PT_NV_BUFFER_MAX
_CC_POLICY_SECRET = 0x151
_CC_POLICY_OR = 0x171
_TPM_RH_ENDORSEMENT = 0x4000000B
_HASHES = {"sha256": TPM2_ALG.SHA256, "sha384": TPM2_ALG.SHA384, "sha512": TPM2_ALG.SHA512}
#: PolicyC = PolicyAuthorizeNV(0x01C07F01/2/3), published in the TCG EK Credential Profile
#: (Annex B.6.4); not computable without that index's public area, so taken as constants.
_POLICY_C = {
    "sha256": bytes.fromhex("3767e2edd43ff45a3a7e1eaefcef78643dca964632e7aad82c673a30d8633fde"),
    "sha384": bytes.fromhex(
        "d6032ce61f2fb3c240eb3cf6a33237ef2b6a16f4293c22b455e261cffd217ad5"
        "b4947c2d73e63005eed2dc2b3593d165"
    ),
    "sha512": bytes.fromhex(
        "589ee1e146544716e8deafe6db247b01b81e9f9c7dd16b814aa159138749105f"
        "ba5388dd1dea702f35240c184933121e2c61b8f50d3ef91393a49a38c3f73fc8"
    ),
}
_EK_ATTRIBUTES = (
    TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT
)


# ---- policy digests (off-TPM) --------------------------------------------------------------


def _hash_name(alg: int) -> str:
    for name, value in _HASHES.items():
        if int(value) == int(alg):
            return name
    raise Unavailable(f"EK name algorithm 0x{int(alg):04x} is not supported here")


def ek_policy_a(hash_name: str = "sha256") -> bytes:
    """PolicyA = PolicySecret(TPM_RH_ENDORSEMENT), empty policyRef (TPM 2.0 Part 3 §23.4)."""
    size = hashlib.new(hash_name).digest_size
    step = hashlib.new(
        hash_name,
        bytes(size) + _CC_POLICY_SECRET.to_bytes(4, "big") + _TPM_RH_ENDORSEMENT.to_bytes(4, "big"),
    ).digest()
    return hashlib.new(hash_name, step).digest()  # PolicyUpdate's second hash over policyRef=""


def ek_policy_b(hash_name: str = "sha256") -> bytes:
    """PolicyB = PolicyOR(PolicyA, PolicyC), the high-range EK policy (Part 3 §23.6)."""
    size = hashlib.new(hash_name).digest_size
    data = bytes(size) + _CC_POLICY_OR.to_bytes(4, "big")
    return hashlib.new(hash_name, data + ek_policy_a(hash_name) + _POLICY_C[hash_name]).digest()


# ---- certificates ----------------------------------------------------------------------------


def _der_length(blob: bytes) -> int:
    """Length of the DER SEQUENCE at the start of ``blob``: NV areas may be zero-padded."""
    if len(blob) < 2 or blob[0] != 0x30:
        return len(blob)
    first = blob[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    return 2 + count + int.from_bytes(blob[2 : 2 + count], "big")


def read_nv(conn: TpmConnection, index: int) -> bytes | None:
    """The whole content of NV ``index`` (read with its own empty auth, in NV_BUFFER_MAX
    chunks), or None if the index is not defined.

    Raises:
        Unavailable: the TPM refuses the read.
    """
    from tpm import lean_commands
    from tpm.lean import TpmRefused

    try:
        if index not in lean_commands.handles(conn, index, 1):
            return None
        chunk = lean_commands.tpm_property(conn, _NV_BUFFER_MAX) or 512
        public = lean_commands.nv_read_public(conn, index)
        # EK certificate indices are AUTHREAD with an empty auth (TCG EK Credential
        # Profile §2.2.1.2); some chips only allow OWNERREAD.
        owner_read = public.attributes & int(TPMA_NV.AUTHREAD) == 0
        data = b""
        while len(data) < public.data_size:
            n = min(chunk, public.data_size - len(data))
            data += lean_commands.nv_read(conn, index, n, len(data), by_owner=owner_read)
    except TpmRefused as exc:
        raise Unavailable(f"cannot read NV index 0x{index:08x} on {conn.tcti}: {exc}") from None
    return data


def find_ek_certificate(
    conn: TpmConnection, kind: EkKind
) -> tuple[int, str, x509.Certificate] | None:
    """The first EK certificate of ``kind`` in NV as (NV index, TCG template name, certificate),
    or None.

    Raises:
        EkCertificateRejected: the index holds something that is not DER X.509.
        Unavailable: the TPM cannot be read.
    """
    for index, template in EK_CERT_INDICES[kind]:
        blob = read_nv(conn, index)
        if blob is None:
            continue
        der = blob[: _der_length(blob)]
        return index, template, load_certificate_der(der, f"EK certificate at NV 0x{index:08x}")
    return None


#: what cryptography raises for bytes that are not X.509: ValueError, or InvalidVersion (not a
#: ValueError) for a version field other than v1…v3
X509_DECODE_ERRORS = (ValueError, x509.InvalidVersion)


def load_certificate_der(der: bytes, what: str = "EK certificate") -> x509.Certificate:
    """One DER X.509 certificate from outside (a TPM's NV, a device's message).

    Raises:
        EkCertificateRejected: not DER X.509.
    """
    try:
        return x509.load_der_x509_certificate(der)
    except X509_DECODE_ERRORS:
        raise EkCertificateRejected(f"{what} is not DER X.509") from None


def read_ek_certificates(conn: TpmConnection) -> dict[str, x509.Certificate]:
    """The EK certificates the manufacturer left in NV, ``{"rsa2048": …, "ecc": …}``; kinds
    with no certificate are left out (low range first, then high range).

    Raises:
        EkCertificateRejected: an index holds something that is not DER X.509.
        Unavailable: the TPM cannot be read.
    """
    found: dict[str, x509.Certificate] = {}
    for kind in ("rsa2048", "ecc"):
        hit = find_ek_certificate(conn, kind)
        if hit is not None:
            found[kind] = hit[2]
    return found


def load_ca_bundle(ca_bundle: Path | Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """Certificates from a PEM bundle file (or an already loaded list).

    Raises:
        BadInput: the file is missing, not PEM certificates, or empty.
    """
    if isinstance(ca_bundle, (str, Path)):
        try:
            certs = x509.load_pem_x509_certificates(Path(ca_bundle).read_bytes())
        except OSError as exc:
            raise BadInput(f"CA bundle {ca_bundle}: {exc.strerror}") from None
        except X509_DECODE_ERRORS:
            raise BadInput(f"CA bundle {ca_bundle}: not PEM X.509 certificates") from None
    else:
        certs = list(ca_bundle)
    if not certs:
        raise BadInput("CA bundle holds no certificate")
    return certs


@functools.lru_cache(maxsize=64)
def _self_signed(cert: x509.Certificate) -> bool:
    """Issuer = subject and the certificate's own key verifies its signature. Remembered per
    certificate: a verifier asks it of the same pinned CAs for every EK it checks."""
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def trust_anchors(
    ca_bundle: Path | Sequence[x509.Certificate], *, partial_chain: bool = False
) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """Split a CA bundle into (anchors, intermediates): the anchors are its self-signed roots;
    with ``partial_chain`` every certificate is an anchor (``openssl verify -partial_chain``).

    Raises:
        EkCertificateRejected: no self-signed root and no ``partial_chain``.
        BadInput: the bundle is unreadable.
    """
    certs = load_ca_bundle(ca_bundle)
    if partial_chain:
        return certs, []
    roots = [c for c in certs if _self_signed(c)]
    if not roots:
        raise EkCertificateRejected(
            "CA bundle holds no self-signed root: an intermediate alone is no trust anchor"
            " (add the root, or accept a partial chain explicitly)"
        )
    return roots, [c for c in certs if c not in roots]


def verify_ek_chain(
    cert: x509.Certificate,
    ca_bundle: Path | Sequence[x509.Certificate],
    *,
    now: datetime.datetime | None = None,
    name: str = "EK certificate",
    partial_chain: bool = False,
) -> None:
    """Check that ``cert`` chains to a self-signed root of ``ca_bundle`` (the bundle's other
    certificates serve as intermediates): signatures, validity at ``now``, CA constraints
    (RFC 5280 path validation by cryptography) and the tcg-kp-EKCertificate EKU (TCG EK
    Credential Profile §3.2.16). EK end-entity extensions are TCG ones (critical SAN dirName),
    so they are not held to web-PKI rules.

    A bundle without a self-signed root is refused: an intermediate is no trust anchor unless
    the caller says so with ``partial_chain`` (then every bundle certificate is an anchor,
    as ``openssl verify -partial_chain``).

    Raises:
        EkCertificateRejected: naming the failed check.
        BadInput: the bundle is unreadable.
    """
    from cryptography.x509.verification import (
        ExtensionPolicy,
        PolicyBuilder,
        Store,
        VerificationError,
    )

    roots, intermediates = trust_anchors(ca_bundle, partial_chain=partial_chain)
    builder = (
        PolicyBuilder()
        .store(Store(roots))
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
    )
    if now is not None:
        builder = builder.time(now)
    try:
        builder.build_client_verifier().verify(cert, intermediates)
    except VerificationError as exc:
        raise EkCertificateRejected(
            f"{name} does not chain to the manufacturer CA: {exc}"
        ) from None
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise EkCertificateRejected(f"{name} has no extended key usage") from None
    if _TCG_KP_EK_CERTIFICATE not in usages:
        raise EkCertificateRejected(f"{name} lacks the tcg-kp-EKCertificate key usage")


def ek_public_from_certificate(
    cert: x509.Certificate,
) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """The EK public key a (verified) certificate vouches for.

    Raises:
        EkCertificateRejected: the key is neither RSA nor ECC.
    """
    key = cert.public_key()
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise EkCertificateRejected("EK certificate key is neither RSA nor ECC")
    return key


def _template_for_key(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size != 2048:
            raise EkCertificateRejected(f"RSA-{key.key_size} EK: no TCG template known here")
        return "EK-RSA2048"
    curves = {"secp256r1": "EK-ECC256", "secp384r1": "EK-HIGH-ECC384"}
    if key.curve.name not in curves:
        raise EkCertificateRejected(f"EK on curve {key.curve.name}: no TCG template known here")
    return curves[key.curve.name]


@functools.lru_cache(maxsize=8)
def _template_area(name: str) -> PublicArea:
    from tpm.marshal import PublicArea

    return PublicArea.parse(bytes(ek_template.lookup(name).template.marshal()), name)


def ek_public_area(cert: x509.Certificate) -> PublicArea:
    """:func:`ek_tpm_public` as a plain :class:`tpm.marshal.PublicArea`: the same bytes, built
    from the TCG template parsed once per process (the operator does this for every device
    that registers).

    Raises:
        EkCertificateRejected: unsupported key type or size.
    """
    key = ek_public_from_certificate(cert)
    template = _template_area(_template_for_key(key))
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        if numbers.e != 65537:
            raise EkCertificateRejected("RSA EK with an exponent other than 65537")
        unique: tuple[bytes, ...] = (numbers.n.to_bytes(key.key_size // 8, "big"),)
    else:
        size = (key.curve.key_size + 7) // 8
        point = key.public_numbers()
        unique = (point.x.to_bytes(size, "big"), point.y.to_bytes(size, "big"))
    return dataclasses.replace(template, unique=unique)


def ek_tpm_public(cert: x509.Certificate) -> Any:
    """The EK's TPM2B_PUBLIC rebuilt from its certificate and the TCG template for its key
    type (:func:`ek_public_area`, as tpm2-pytss' type): what the verifier hands tpm2-pytss'
    ``make_credential`` (``tpm.tss``).

    Raises:
        EkCertificateRejected: unsupported key type or size.
    """
    return TPM2B_PUBLIC.unmarshal(ek_public_area(cert).marshal_sized())[0]


def tpm_public_key(public: Any) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """A TPM2B_PUBLIC's key as a cryptography object (via tpm2-pytss' PEM encoder)."""
    key = serialization.load_pem_public_key(bytes(public.to_pem()))
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise BadInput("TPM public area holds neither an RSA nor an ECC key")
    return key


def _same_key(public: Any, cert: x509.Certificate) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        mine = tpm_public_key(public).public_bytes(*spki)
    except (ValueError, TypeError):
        return False
    return mine == cert.public_key().public_bytes(*spki)


# ---- the EK object ---------------------------------------------------------------------------


def _looks_like_ek(public: Any, kind: str) -> bool:
    area = public.publicArea
    want = TPM2_ALG.RSA if kind == "rsa2048" else TPM2_ALG.ECC
    if int(area.type) != int(want):
        return False
    if kind == "rsa2048" and int(area.parameters.rsaDetail.keyBits) != 2048:
        return False
    if int(area.objectAttributes) & int(_EK_ATTRIBUTES) != int(_EK_ATTRIBUTES):
        return False
    try:
        alg = _hash_name(area.nameAlg)
    except Unavailable:
        return False
    return bytes(area.authPolicy) in (ek_policy_a(alg), ek_policy_b(alg))


def load_ek(conn: TpmConnection, kind: EkKind = "rsa2048") -> tuple[Any, Any]:
    """The EK of ``kind`` as (ESYS_TR, TPM2B_PUBLIC): a persistent EK (0x8101xxxx) whose key
    matches the EK certificate if there is one, else TPM2_CreatePrimary(ENDORSEMENT) with the
    TCG template (rebuilt by ``create_ek_template``, nonce/template NV indices honoured).
    Release it with :func:`release_ek` (flushes a transient EK, closes a persistent one's
    ESYS handle), or use :func:`loaded_ek`.

    Raises:
        EkCertificateRejected: no key in the TPM matches the EK certificate.
        Unavailable: the TPM refuses.
    """
    from tpm.tss import NoSuchIndex, create_ek_template

    if kind not in EK_CERT_INDICES:
        raise BadInput(f"EK kind {kind!r}: expected rsa2048 or ecc")
    esys = conn.esys
    remembered = conn.facts.ek.get(kind)
    if remembered is not None:
        return remembered
    hit = find_ek_certificate(conn, kind)
    cert = hit[2] if hit else None
    try:
        _, caps = esys.get_capability(TPM2_CAP.HANDLES, EK_PERSISTENT_RANGE[0], 64)
        handles = [int(h) for h in caps.data.handles if int(h) < EK_PERSISTENT_RANGE[1]]
        for persistent in handles:
            tr = esys.tr_from_tpmpublic(persistent)
            public, _, _ = esys.read_public(tr)
            if _looks_like_ek(public, kind) and (cert is None or _same_key(public, cert)):
                # a persistent EK that matches its certificate stays so for the connection
                # (only EvictControl or TPM2_Clear move it; factory_reset forgets it)
                conn.facts.ek[kind] = (tr, public)
                return tr, public
            esys.tr_close(tr)
        template_name = hit[1] if hit else ("EK-RSA2048" if kind == "rsa2048" else "EK-ECC256")

        def nv_read(index: int) -> bytes:
            data = read_nv(conn, int(index))
            if data is None:
                raise NoSuchIndex(index)
            return data

        _, template = create_ek_template(template_name, nv_read)
        tr, public, _, _, _ = esys.create_primary(
            None, template, primary_handle=ESYS_TR.ENDORSEMENT
        )
    except TSS2_Exception as exc:
        raise Unavailable(f"cannot load the {kind} EK on {conn.tcti}: {exc}") from None
    if cert is not None and not _same_key(public, cert):
        conn.flush(tr)
        raise EkCertificateRejected(
            f"the {kind} EK created from the TCG template does not match its EK certificate"
        )
    return tr, public


def release_ek(conn: TpmConnection, handle: Any) -> None:
    """Undo :func:`load_ek`: flush a transient EK, close a persistent EK's ESYS handle (unless
    the connection keeps it)."""
    if conn.facts.holds_ek(handle):
        return
    with contextlib.suppress(TSS2_Exception):
        if int(conn.esys.tr_get_tpm_handle(handle)) >> 24 == 0x80:
            conn.flush(handle)
        else:
            conn.esys.tr_close(handle)


@contextlib.contextmanager
def loaded_ek(conn: TpmConnection, kind: EkKind = "rsa2048") -> Iterator[tuple[Any, Any]]:
    """``with loaded_ek(conn) as (ek, ek_public):`` — :func:`load_ek`, always released."""
    handle, public = load_ek(conn, kind)
    try:
        yield handle, public
    finally:
        release_ek(conn, handle)


def ek_policy_or_list(ek_public: Any) -> list[bytes] | None:
    """For a SHA-256 EK: None for TCG PolicyA (PolicySecret(TPM_RH_ENDORSEMENT) alone), the
    PolicyOR branch list after it for PolicyB. Used by the lean layer's EK session.

    Raises:
        EkCertificateRejected: not a SHA-256 EK with a TCG EK policy.
    """
    area = ek_public.publicArea
    if _hash_name(area.nameAlg) != "sha256":
        raise EkCertificateRejected("EK nameAlg is not SHA-256")
    policy = bytes(area.authPolicy)
    if policy == ek_policy_a("sha256"):
        return None
    if policy == ek_policy_b("sha256"):
        return [ek_policy_a("sha256"), _POLICY_C["sha256"]]
    raise EkCertificateRejected("EK authPolicy is neither TCG PolicyA nor PolicyB")


def ek_policy_session(conn: TpmConnection, ek_public: Any) -> Any:
    """A policy session (hash = the EK's nameAlg) that satisfies the EK's authPolicy: PolicyA
    = PolicySecret(TPM_RH_ENDORSEMENT, empty endorsement auth), plus PolicyOR(A, C) for
    high-range EKs. The caller flushes it (``conn.flush``); the EK's USER role (Import, Load,
    ActivateCredential) takes it.

    Raises:
        EkCertificateRejected: the EK's authPolicy is not a TCG EK policy.
        Unavailable: the TPM refuses (e.g. endorsement auth is set).
    """
    area = ek_public.publicArea
    alg = _hash_name(area.nameAlg)
    policy = bytes(area.authPolicy)
    if policy not in (ek_policy_a(alg), ek_policy_b(alg)):
        raise EkCertificateRejected("EK authPolicy is neither TCG PolicyA nor PolicyB")
    esys = conn.esys
    try:
        session = esys.start_auth_session(
            tpm_key=ESYS_TR.NONE,
            bind=ESYS_TR.NONE,
            session_type=TPM2_SE.POLICY,
            symmetric=TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
            auth_hash=_HASHES[alg],
        )
    except TSS2_Exception as exc:
        raise Unavailable(f"cannot start a policy session on {conn.tcti}: {exc}") from None
    try:
        esys.policy_secret(ESYS_TR.ENDORSEMENT, session, expiration=0)
        if policy == ek_policy_b(alg):
            esys.policy_or(session, TPML_DIGEST([ek_policy_a(alg), _POLICY_C[alg]]))
    except TSS2_Exception as exc:
        conn.flush(session)
        raise Unavailable(f"EK policy (PolicySecret ENDORSEMENT) refused: {exc}") from None
    return session
