"""Edge: TPM. The lean layer's commands on a connection: :mod:`tpm.lean` builds and checks the
bytes, the connection's transport (:mod:`tpm.tss`) moves them.

Objects loaded by ESYS are addressed here by their TPM handle and name (ESYS keeps the
object; the layer only authorises commands on it); sessions started here stay here
(:class:`tpm.lean.Session`, never an ESYS handle). tpm2-pytss's marshalling types turn public
areas and PCR selections into bytes and names.
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
from collections.abc import Iterator
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tpm import lean
from tpm import session_crypto as sc
from tpm.connection import TpmConnection
from tpm.lean import CC, Auth, Session
from tpm.marshal import hash_name
from tpm.pcrsel import PcrSelection, selection_from_bitmaps
from tpm.tss import TPM2_ALG, TPM2_ECC, TPM2B_PUBLIC, TPML_PCR_SELECTION
from trelab.errors import BadInput, RemoteProtocolError

__all__ = [
    "LeanObject",
    "encrypt_decrypt2",
    "execute",
    "flush_session",
    "hmac",
    "load",
    "pcr_read",
    "pcr_read_selected",
    "policy_auth_value",
    "policy_command_code",
    "policy_pcr",
    "policy_restart",
    "policy_secret",
    "quote",
    "salt_key",
    "session",
    "start_session",
    "unseal",
]

_CURVES: dict[int, ec.EllipticCurve] = {
    int(TPM2_ECC.NIST_P256): ec.SECP256R1(),
    int(TPM2_ECC.NIST_P384): ec.SECP384R1(),
}


class LeanObject:
    """A loaded TPM object as the layer addresses it: TPM handle, name, authValue."""

    __slots__ = ("auth_value", "handle", "name")

    def __init__(self, handle: int, name: bytes, auth_value: bytes = b"") -> None:
        self.handle = handle
        self.name = name
        self.auth_value = auth_value

    @classmethod
    def from_esys(
        cls, conn: TpmConnection, esys_handle: Any, auth_value: bytes = b""
    ) -> LeanObject:
        """The layer's view of an object ESYS loaded (ESYS keeps ownership and flushes it)."""
        handle = int(conn.esys.tr_get_tpm_handle(esys_handle))
        name = bytes(conn.esys.tr_get_name(esys_handle).marshal())[2:]
        return cls(handle, name, auth_value)

    def __repr__(self) -> str:
        return f"LeanObject(0x{self.handle:08x})"


def salt_key(public: Any) -> sc.SaltKey:
    """The salt key of a TPM2B_PUBLIC (ECC or RSA decryption key, SHA-256 name).

    Raises:
        BadInput: not an ECC/RSA key, or a curve or nameAlg the layer does not handle.
    """
    area = public.publicArea
    name_alg = int(area.nameAlg)
    if area.type == TPM2_ALG.ECC:
        curve = _CURVES.get(int(area.parameters.eccDetail.curveID))
        if curve is None:
            raise BadInput("salt key: unsupported ECC curve")
        return sc.EccSaltKey(
            curve, bytes(area.unique.ecc.x), bytes(area.unique.ecc.y), name_alg=name_alg
        )
    if area.type == TPM2_ALG.RSA:
        exponent = int(area.parameters.rsaDetail.exponent) or 65537
        modulus = int.from_bytes(bytes(area.unique.rsa), "big")
        return sc.RsaSaltKey(rsa.RSAPublicNumbers(exponent, modulus).public_key(), name_alg)
    raise BadInput("salt key: not an ECC or RSA key")


@functools.lru_cache(maxsize=64)
def _salt_key_of(public: bytes) -> sc.SaltKey:
    """:func:`salt_key` of a marshalled TPM2B_PUBLIC, parsed once per public area (a MID's
    parent is the salt key of every AKA)."""
    area, _ = TPM2B_PUBLIC.unmarshal(public)
    return salt_key(area)


def start_session(
    conn: TpmConnection,
    *,
    kind: Literal["hmac", "policy"] = "hmac",
    salt_to: tuple[int, Any] | None = None,
    symmetric: bool = True,
) -> Session:
    """TPM2_StartAuthSession for the layer: ``salt_to`` = (TPM handle, TPM2B_PUBLIC or its
    marshalled bytes) of a loaded decryption key the caller trusts (its public area checked by
    the TPM, e.g. it was loaded from the operator's package); the salt is encrypted to it.

    Raises:
        TpmRefused: the TPM refuses.
    """
    nonce_caller = os.urandom(sc.DIGEST_SIZE[sc.ALG_SHA256])
    salt, secret = b"", b""
    tpm_key = lean.RH_NULL
    if salt_to is not None:
        tpm_key = salt_to[0]
        public = salt_to[1]
        key = _salt_key_of(public) if isinstance(public, bytes) else salt_key(public)
        salt, secret = sc.encrypt_salt(key)
    command = lean.wrap_start_auth_session(
        tpm_key=tpm_key,
        bind=lean.RH_NULL,
        nonce_caller=nonce_caller,
        encrypted_salt=secret,
        kind=kind,
        symmetric=symmetric,
    )
    handle, nonce_tpm = lean.unwrap_start_auth_session(execute(conn, command))
    return lean.open_session(handle, nonce_tpm, nonce_caller, salt, kind=kind, symmetric=symmetric)


def flush_session(conn: TpmConnection, session: Session) -> None:
    """TPM2_FlushContext of a layer session (best effort: it may be gone already; nothing
    to send when its last use ended it)."""
    if not session.ended:
        flush_object(conn, session.handle)


@contextlib.contextmanager
def session(conn: TpmConnection, **kwargs: Any) -> Iterator[Session]:
    """A layer session, flushed afterwards."""
    s = start_session(conn, **kwargs)
    try:
        yield s
    finally:
        flush_session(conn, s)


#: TPM_RC_YIELDED, TPM_RC_TESTING, TPM_RC_RETRY: the TPM did not execute the command; the
#: same bytes go again (its sessions are unchanged), as ESYS does
_TRY_AGAIN = frozenset({0x908, 0x90A, 0x922})
_ATTEMPTS = 16


def execute(conn: TpmConnection, command: bytes) -> bytes:
    """Send ``command`` on the connection's transport, again while the TPM answers that it did
    not execute it (retry, yielded, testing); the last response."""
    response = conn.transport.execute(command)
    sent = 1
    # a response code's third byte is 0x09 only for warnings such as these
    while (
        sent < _ATTEMPTS
        and len(response) >= 10
        and response[8] == 0x09
        and _RC.unpack_from(response, 6)[0] in _TRY_AGAIN
    ):
        response = conn.transport.execute(command)
        sent += 1
    return response


_RC = struct.Struct(">I")


def _run(
    conn: TpmConnection,
    code: int,
    handles: list[LeanObject],
    params: bytes,
    auths: list[Auth],
    *,
    extra_handles: tuple[tuple[int, bytes], ...] = (),
    response_handles: int = 0,
) -> tuple[list[int], bytes]:
    if len(handles) == 1 and not extra_handles:  # the common case
        numbers: list[int] = [handles[0].handle]
        names: list[bytes] = [handles[0].name]
    else:
        numbers = [h.handle for h in handles] + [h for h, _ in extra_handles]
        names = [h.name for h in handles] + [n for _, n in extra_handles]
    command, pending = lean.wrap(
        code, numbers, names, params, auths, response_handles=response_handles
    )
    return pending.unwrap(execute(conn, command))


def _auth(obj: LeanObject, session: Session | None, *, decrypt: bool, encrypt: bool) -> Auth:
    if session is None:
        if decrypt or encrypt:
            raise BadInput("parameter encryption needs a session")
        return Auth(None, obj.auth_value)
    return Auth(session, obj.auth_value, decrypt=decrypt, encrypt=encrypt)


def encrypt_decrypt2(
    conn: TpmConnection,
    key: LeanObject,
    data: bytes,
    *,
    decrypt: bool,
    mode: int,
    iv: bytes,
    session: Session | None,
    protect: bool = True,
) -> bytes:
    """TPM2_EncryptDecrypt2 on ``key``: with a ``session`` and ``protect``, inData and outData
    travel AES-CFB encrypted under the session (TPMA_SESSION decrypt|encrypt). Returns outData.
    """
    params = lean.encrypt_decrypt2_params(data, decrypt=decrypt, mode=mode, iv=iv)
    on = protect and session is not None
    _, out = _run(
        conn, CC.ENCRYPT_DECRYPT_2, [key], params, [_auth(key, session, decrypt=on, encrypt=on)]
    )
    return lean.encrypt_decrypt2_result(out)[0]


def encrypt_decrypt(
    conn: TpmConnection,
    key: LeanObject,
    data: bytes,
    *,
    decrypt: bool,
    mode: int,
    iv: bytes,
    session: Session | None,
    protect: bool = False,
) -> bytes:
    """TPM2_EncryptDecrypt (v1, Part 3 §15.2): its first parameter is the decrypt flag, not a
    TPM2B, so parameter encryption cannot hide inData; ``protect`` must stay False.

    Raises:
        BadInput: ``protect`` asked for.
    """
    if protect:
        raise BadInput("TPM2_EncryptDecrypt cannot carry an encrypted inData")
    params = bytes([1 if decrypt else 0]) + mode.to_bytes(2, "big") + lean.tpm2b(iv)
    params += lean.tpm2b(data)
    _, out = _run(
        conn, CC.ENCRYPT_DECRYPT, [key], params, [_auth(key, session, decrypt=False, encrypt=False)]
    )
    return lean.encrypt_decrypt2_result(out)[0]


def hmac(
    conn: TpmConnection,
    key: LeanObject,
    data: bytes,
    *,
    session: Session | None,
    protect: bool = True,
) -> bytes:
    """TPM2_HMAC (Part 3 §15.5) with SHA-256 under the keyed-hash key ``key``: with a
    ``session`` and ``protect``, buffer and outHMAC travel AES-CFB encrypted under the session
    (both are the first parameter of their direction). Returns outHMAC."""
    on = protect and session is not None
    params = lean.tpm2b(data) + struct.pack(">H", sc.ALG_SHA256)
    _, out = _run(conn, CC.HMAC, [key], params, [_auth(key, session, decrypt=on, encrypt=on)])
    return lean.single_tpm2b(out, "HMAC")


def unseal(
    conn: TpmConnection, item: LeanObject, *, session: Session | None, protect: bool = True
) -> bytes:
    """TPM2_Unseal: with a ``session`` and ``protect``, the response is encrypted."""
    on = protect and session is not None
    _, out = _run(conn, CC.UNSEAL, [item], b"", [_auth(item, session, decrypt=False, encrypt=on)])
    return lean.single_tpm2b(out, "Unseal")


def load(
    conn: TpmConnection,
    parent: LeanObject,
    private: bytes,
    public: bytes,
    *,
    session: Session | None,
    auth_value: bytes = b"",
    last_use: bool = False,
) -> LeanObject:
    """TPM2_Load under ``parent`` (``private`` a marshalled TPM2B_PRIVATE, ``public`` a
    marshalled TPM2B_PUBLIC); the TPM's name is checked against the public area's. The caller
    flushes the object (:func:`flush_object`). ``last_use``: the session's last command (the
    TPM flushes it on success, which saves a TPM2_FlushContext)."""
    params = private + public
    auth = _auth(parent, session, decrypt=False, encrypt=False)
    if last_use and session is not None:
        auth = Auth(session, parent.auth_value, last_use=True)
    handles, out = _run(conn, CC.LOAD, [parent], params, [auth], response_handles=1)
    name = lean.single_tpm2b(out, "Load")
    expected = _public_name(public)
    if not sc.hmac_equal(name, expected):
        flush_object(conn, handles[0])
        raise RemoteProtocolError(
            "Load: the TPM's name for the object differs from its public area"
        )
    return LeanObject(handles[0], name, auth_value)


@functools.lru_cache(maxsize=256)
def _public_name(public: bytes) -> bytes:
    """The name of a marshalled TPM2B_PUBLIC: nameAlg ‖ H(TPMT_PUBLIC) (Part 1 §16), computed
    straight from the bytes for SHA-256, through tpm2-pytss otherwise; once per public area
    (a MID's three are loaded on every AKA)."""
    if len(public) > 6 and public[4:6] == sc.ALG_SHA256.to_bytes(2, "big"):
        return public[4:6] + sc.sha256(public[2:])
    obj, _ = TPM2B_PUBLIC.unmarshal(public)
    return bytes(obj.get_name().marshal())[2:]


def public_name(public: Any) -> bytes:
    """The name of a tpm2-pytss TPM2B_PUBLIC."""
    return _public_name(bytes(public.marshal()))


def import_object(
    conn: TpmConnection,
    parent: LeanObject,
    public: bytes,
    duplicate: bytes,
    seed: bytes,
    *,
    session: Session | None,
) -> bytes:
    """TPM2_Import (Part 3 §13.3) of a duplication blob without inner wrapper (symmetricAlg
    TPM_ALG_NULL, empty encryptionKey) under ``parent``; ``public``, ``duplicate`` and ``seed``
    are the marshalled TPM2B_PUBLIC, TPM2B_PRIVATE and TPM2B_ENCRYPTED_SECRET. Returns the
    marshalled TPM2B_PRIVATE to load."""
    params = lean.tpm2b(b"") + public + duplicate + seed + struct.pack(">H", lean.ALG_NULL)
    _, out = _run(
        conn, CC.IMPORT, [parent], params, [_auth(parent, session, decrypt=False, encrypt=False)]
    )
    lean.single_tpm2b(out, "Import")  # one TPM2B, nothing after it
    return out


def flush_object(conn: TpmConnection, handle: int) -> None:
    """TPM2_FlushContext of ``handle`` (best effort: a refusal means it is gone already)."""
    with contextlib.suppress(lean.TpmRefused, RemoteProtocolError):
        lean.unwrap_plain(CC.FLUSH_CONTEXT, conn.transport.execute(lean.wrap_flush_context(handle)))


def _policy(conn: TpmConnection, code: int, session: Session, params: bytes = b"") -> None:
    lean.unwrap_plain(code, execute(conn, lean.wrap_plain(code, [session.handle], params)))


def policy_restart(conn: TpmConnection, session: Session) -> None:
    _policy(conn, CC.POLICY_RESTART, session)
    session.auth_value_needed = False


@functools.lru_cache(maxsize=64)
def _pcr_selection(selection: str) -> bytes:
    """The marshalled TPML_PCR_SELECTION of ``selection``, built once per selection."""
    return bytes(TPML_PCR_SELECTION.parse(selection).marshal())


def policy_pcr(conn: TpmConnection, session: Session, pcr_digest: bytes, selection: str) -> None:
    """TPM2_PolicyPCR with a tpm2-tools style selection (``sha256:0,1``)."""
    pcrs = _pcr_selection(selection)
    _policy(conn, CC.POLICY_PCR, session, lean.policy_pcr_params(pcr_digest, pcrs))


def policy_command_code(conn: TpmConnection, session: Session, code: int) -> None:
    _policy(conn, CC.POLICY_COMMAND_CODE, session, code.to_bytes(4, "big"))


def policy_auth_value(conn: TpmConnection, session: Session) -> None:
    _policy(conn, CC.POLICY_AUTH_VALUE, session)
    session.policy_auth_value()


def policy_secret(conn: TpmConnection, session: Session, entity: LeanObject) -> None:
    """TPM2_PolicySecret on ``entity`` (authorised with its authValue as password: the
    entities trelab uses this on, the SRK and the endorsement hierarchy, have an empty one)."""
    _run(
        conn,
        CC.POLICY_SECRET,
        [entity],
        _NO_POLICY_SECRET_PARAMS,
        [Auth(None, entity.auth_value)],
        extra_handles=((session.handle, session.handle.to_bytes(4, "big")),),
    )


#: PolicySecret without nonceTPM, cpHashA, policyRef or expiration
_NO_POLICY_SECRET_PARAMS = lean.policy_secret_params()


def policy_nv(
    conn: TpmConnection, session: Session, index: int, operand: bytes, offset: int, operation: int
) -> None:
    """TPM2_PolicyNV (Part 3 §23.9) read-authorised by the index's own empty authValue."""
    _run(
        conn, CC.POLICY_NV, [LeanObject(index, b"")],
        lean.policy_nv_params(operand, offset, operation), [Auth(None)],
        extra_handles=((index, b""), (session.handle, session.handle.to_bytes(4, "big"))),
    )  # fmt: skip


#: the policy steps :func:`run_policy` sends (PolicyAuthorize: :func:`run_approved_policy`, or
#: the MID store's own runner with one ticket per load)
LEAN_STEPS = ("PolicyPcr", "PolicySecret", "PolicyAuthValue", "PolicyCommandCode", "PolicyNv")


def runs_lean(steps: list[Any]) -> bool:
    """Can :func:`run_policy` send every one of ``steps``?"""
    return all(type(step).__name__ in LEAN_STEPS for step in steps)


def policy_or(conn: TpmConnection, session: Session, digests: list[bytes]) -> None:
    """TPM2_PolicyOR (Part 3 §23.6): pHashList, a TPML_DIGEST."""
    params = len(digests).to_bytes(4, "big") + b"".join(lean.tpm2b(d) for d in digests)
    _policy(conn, CC.POLICY_OR, session, params)


def run_policy(
    conn: TpmConnection,
    session: Session,
    steps: list[Any],
    objects: dict[bytes, LeanObject],
) -> None:
    """Send the policy commands of ``steps`` (:mod:`tpm.policy`) in ``session``; PolicySecret
    finds its object by name in ``objects``.

    Raises:
        BadInput: a step this function does not send (PolicyAuthorize, …): the caller sends
            it (:func:`run_approved_policy`) or runs the policy through ESYS.
        TpmRefused: the TPM refused a step.
    """
    from tpm.policy import PolicyAuthValue, PolicyCommandCode, PolicyNv, PolicyPcr, PolicySecret

    for step in steps:
        if isinstance(step, PolicyPcr):
            policy_pcr(conn, session, step.digest, step.selection)
        elif isinstance(step, PolicySecret):
            entity = objects.get(step.auth_name)
            if entity is None or step.policy_ref:
                raise BadInput("PolicySecret: no object of that name for the lean layer")
            policy_secret(conn, session, entity)
        elif isinstance(step, PolicyAuthValue):
            policy_auth_value(conn, session)
        elif isinstance(step, PolicyCommandCode):
            policy_command_code(conn, session, step.code)
        elif isinstance(step, PolicyNv):
            policy_nv(conn, session, step.index, step.operand, step.offset, step.operation)
        else:
            raise BadInput(f"the lean layer does not send {type(step).__name__}")


_RH_OWNER = 0x40000001


def nv_read(
    conn: TpmConnection, index: int, size: int, offset: int = 0, *, by_owner: bool = False
) -> bytes:
    """TPM2_NV_Read of ``size`` bytes at ``offset``, authorised by the index's own empty
    authValue, or with ``by_owner`` by the owner hierarchy's (password session: no name
    enters an HMAC)."""
    target = LeanObject(_RH_OWNER if by_owner else index, b"")
    _, out = _run(
        conn, CC.NV_READ, [target], struct.pack(">HH", size, offset), [Auth(None)],
        extra_handles=((index, b""),),
    )  # fmt: skip
    return lean.single_tpm2b(out, "NV_Read")


def nv_increment(conn: TpmConnection, index: int) -> None:
    """TPM2_NV_Increment authorised by the owner hierarchy's empty authValue."""
    owner = LeanObject(_RH_OWNER, _RH_OWNER.to_bytes(4, "big"))
    _run(conn, CC.NV_INCREMENT, [owner], b"", [Auth(None)], extra_handles=((index, b""),))


def nv_write(conn: TpmConnection, index: int, data: bytes, offset: int) -> None:
    """TPM2_NV_Write (Part 3 §31.5) authorised by the owner hierarchy's empty authValue."""
    owner = LeanObject(_RH_OWNER, _RH_OWNER.to_bytes(4, "big"))
    _run(
        conn, CC.NV_WRITE, [owner], lean.nv_write_params(data, offset), [Auth(None)],
        extra_handles=((index, b""),),
    )  # fmt: skip


def nv_extend(conn: TpmConnection, index: int, data: bytes) -> None:
    """TPM2_NV_Extend (Part 3 §31.7) authorised by the owner hierarchy's empty authValue."""
    owner = LeanObject(_RH_OWNER, _RH_OWNER.to_bytes(4, "big"))
    _run(
        conn, CC.NV_EXTEND, [owner], lean.tpm2b(data), [Auth(None)],
        extra_handles=((index, b""),),
    )  # fmt: skip


def quote(
    conn: TpmConnection, signer: LeanObject, nonce: bytes, pcr_selection: bytes
) -> tuple[bytes, bytes]:
    """TPM2_Quote (Part 3 §18.4) with the signer's own scheme (inScheme TPM_ALG_NULL),
    authorised by its authValue as password (an AK's is empty): ``pcr_selection`` is a
    marshalled TPML_PCR_SELECTION. Returns (the TPMS_ATTEST as signed, the marshalled
    TPMT_SIGNATURE); checking them is the verifier's job (:mod:`tpm.verify`).

    Raises:
        TpmRefused: the TPM refuses (the caller maps parameter errors).
        RemoteProtocolError: the response is malformed.
    """
    params = lean.tpm2b(nonce) + struct.pack(">H", lean.ALG_NULL) + pcr_selection
    _, out = _run(conn, CC.QUOTE, [signer], params, [Auth(None, signer.auth_value)])
    message, end = lean.parse_tpm2b(out, 0)
    signature = out[end:]
    if len(signature) < 4:  # sigAlg, then the scheme's hash: every signature has both
        raise RemoteProtocolError("Quote response without a signature")
    return message, signature


# ---- provisioning: PolicyAuthorize, lifecycle writes, credential activation ------------------

_ST_VERIFIED = 0x8022  # TPM_ST_VERIFIED: the tag of a TPMT_TK_VERIFIED
_ALG_ECDSA = 0x0018


def load_external_public(
    conn: TpmConnection, public: bytes, *, hierarchy: int = _RH_OWNER
) -> LeanObject:
    """TPM2_LoadExternal (Part 3 §12.3) of a public area alone (``public`` a marshalled
    TPM2B_PUBLIC) in ``hierarchy``: the owner's by default, since a key loaded in TPM_RH_NULL
    earns a NULL ticket that PolicyAuthorize refuses. The TPM's name for it is checked
    against the public area's. The caller flushes it (:func:`flush_object`).

    Raises:
        TpmRefused: the TPM refuses the public area.
        RemoteProtocolError: the response is malformed or names another object.
    """
    params = lean.tpm2b(b"") + public + struct.pack(">I", hierarchy)
    command = lean.wrap_plain(CC.LOAD_EXTERNAL, [], params)
    handles, out = lean.unwrap_plain(CC.LOAD_EXTERNAL, execute(conn, command), 1)
    name = lean.single_tpm2b(out, "LoadExternal")
    if not sc.hmac_equal(name, _public_name(public)):
        flush_object(conn, handles[0])
        raise RemoteProtocolError("LoadExternal: the TPM's name differs from the public area's")
    return LeanObject(handles[0], name)


def ecdsa_signature(der: bytes) -> bytes:
    """A DER ECDSA P-256 signature over a SHA-256 digest as a marshalled TPMT_SIGNATURE.

    Raises:
        BadInput: not DER ECDSA, or a component longer than 32 bytes.
    """
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    try:
        r, s = decode_dss_signature(der)
    except ValueError:
        raise BadInput("approval signature is not DER ECDSA") from None
    if r.bit_length() > 256 or s.bit_length() > 256:
        raise BadInput("approval signature is not a P-256 signature")
    return struct.pack(">HH", _ALG_ECDSA, sc.ALG_SHA256) + b"".join(
        lean.tpm2b(v.to_bytes(32, "big")) for v in (r, s)
    )


def verify_signature(
    conn: TpmConnection, key: LeanObject, digest: bytes, signature: bytes
) -> bytes:
    """TPM2_VerifySignature (Part 3 §20.1) of ``digest`` under the loaded public ``key``
    (``signature`` a marshalled TPMT_SIGNATURE). Returns the marshalled TPMT_TK_VERIFIED the
    TPM issues, checked only for its shape: what it proves is the TPM's business, which
    PolicyAuthorize checks again.

    Raises:
        TpmRefused: the signature does not verify (TPM_RC_SIGNATURE) or the TPM refuses.
        RemoteProtocolError: the ticket is malformed.
    """
    params = lean.tpm2b(digest) + signature
    command = lean.wrap_plain(CC.VERIFY_SIGNATURE, [key.handle], params)
    _, out = lean.unwrap_plain(CC.VERIFY_SIGNATURE, execute(conn, command))
    if len(out) < 8 or struct.unpack_from(">H", out, 0)[0] != _ST_VERIFIED:
        raise RemoteProtocolError("VerifySignature: the response is not a verification ticket")
    _, end = lean.parse_tpm2b(out, 6)
    if end != len(out):
        raise RemoteProtocolError("VerifySignature response has trailing bytes")
    return out


def approval_ticket(
    conn: TpmConnection, operator_public: bytes, a_hash: bytes, signature_der: bytes
) -> bytes:
    """The TPM's ticket that the key ``operator_public`` (a marshalled TPM2B_PUBLIC) signed
    ``a_hash`` (an approval hash, :func:`tpm.policy.approval_hash`): LoadExternal in the
    owner hierarchy, VerifySignature, FlushContext.

    Raises:
        BadInput: the signature is not DER ECDSA P-256.
        TpmRefused: the TPM refuses the key or the signature.
    """
    signature = ecdsa_signature(signature_der)
    key = load_external_public(conn, operator_public)
    try:
        return verify_signature(conn, key, a_hash, signature)
    finally:
        flush_object(conn, key.handle)


def policy_authorize(
    conn: TpmConnection,
    session: Session,
    approved_policy: bytes,
    policy_ref: bytes,
    key_name: bytes,
    ticket: bytes,
) -> None:
    """TPM2_PolicyAuthorize (Part 3 §23.16): the session's digest, equal to
    ``approved_policy``, becomes the authorising key's policy — with the TPM's ``ticket``
    (:func:`approval_ticket`) that ``key_name``'s key signed H(approvedPolicy ‖ policyRef)."""
    params = lean.tpm2b(approved_policy) + lean.tpm2b(policy_ref) + lean.tpm2b(key_name) + ticket
    _policy(conn, CC.POLICY_AUTHORIZE, session, params)


def policy_cp_hash(conn: TpmConnection, session: Session, cp_hash: bytes) -> None:
    """TPM2_PolicyCpHash (Part 3 §23.13): the session authorises one command, these
    parameters on these names."""
    _policy(conn, CC.POLICY_CP_HASH, session, lean.tpm2b(cp_hash))


def policy_nv_written(conn: TpmConnection, session: Session, written: bool) -> None:
    """TPM2_PolicyNvWritten (Part 3 §23.22): the authorised index must (not) be written."""
    _policy(conn, CC.POLICY_NV_WRITTEN, session, bytes((1 if written else 0,)))


def run_approved_policy(
    conn: TpmConnection,
    session: Session,
    steps: list[Any],
    *,
    approval: Any,
    operator_public: bytes,
    objects: dict[bytes, LeanObject] | None = None,
) -> None:
    """:func:`run_policy` for policies with PolicyAuthorize (and the steps an approval may
    hold: PolicyCpHash, PolicyNvWritten, …): at a PolicyAuthorize step the ``approval``'s own
    steps run first, then the TPM checks its signature by ``operator_public`` (one ticket,
    :func:`approval_ticket`) and PolicyAuthorize replaces the digest.

    Raises:
        BadInput: a step the lean layer does not send; a signature that is not DER ECDSA.
        TpmRefused: the TPM refused a step (the caller names it from ``command_code``).
    """
    from tpm.policy import PolicyAuthorize, PolicyCpHash, PolicyNvWritten, approval_hash

    known = objects or {}
    for step in steps:
        if isinstance(step, PolicyAuthorize):
            if approval is None:
                raise BadInput("PolicyAuthorize without an approval")
            run_approved_policy(
                conn, session, approval.steps(), approval=None, operator_public=b"",
                objects=known,
            )  # fmt: skip
            approved = approval.approved_policy()
            ticket = approval_ticket(
                conn, operator_public, approval_hash(approved, approval.policy_ref),
                approval.signature,
            )  # fmt: skip
            policy_authorize(conn, session, approved, step.policy_ref, step.key_name, ticket)
        elif isinstance(step, PolicyCpHash):
            policy_cp_hash(conn, session, step.cp_hash)
        elif isinstance(step, PolicyNvWritten):
            policy_nv_written(conn, session, step.written)
        else:
            run_policy(conn, session, [step], known)


def nv_write_by_policy(
    conn: TpmConnection,
    index: int,
    name: bytes,
    data: bytes,
    offset: int,
    session: Session,
    *,
    last_use: bool = False,
) -> None:
    """TPM2_NV_Write (Part 3 §31.5) authorised by the index itself (authHandle = nvIndex,
    its POLICYWRITE role) in the policy ``session``; ``name`` is the index's name as it is
    now (without TPMA_NV_WRITTEN before the first write), which the command HMAC covers.
    ``last_use``: the TPM flushes the session on success."""
    auth = Auth(session, b"", last_use=last_use)
    _run(
        conn, CC.NV_WRITE, [LeanObject(index, name)], lean.nv_write_params(data, offset), [auth],
        extra_handles=((index, name),),
    )  # fmt: skip


def ek_session(conn: TpmConnection, branches: list[bytes] | None) -> Session:
    """A policy session satisfying a SHA-256 TCG EK policy: PolicySecret(TPM_RH_ENDORSEMENT,
    its empty authValue), then PolicyOR(``branches``) for a PolicyB EK
    (:func:`tpm.ek.ek_policy_or_list`). The caller flushes it unless its last use ended it.

    Raises:
        TpmRefused: the TPM refuses (endorsement auth set).
    """
    endorsement = LeanObject(_RH_ENDORSEMENT, _RH_ENDORSEMENT.to_bytes(4, "big"))
    s = start_session(conn, kind="policy", symmetric=False)
    try:
        policy_secret(conn, s, endorsement)
        if branches is not None:
            policy_or(conn, s, branches)
    except BaseException:
        flush_session(conn, s)
        raise
    return s


_RH_ENDORSEMENT = 0x4000000B


def activate_credential(
    conn: TpmConnection,
    activated: LeanObject,
    key: LeanObject,
    credential_blob: bytes,
    encrypted_secret: bytes,
    *,
    session: Session,
    last_use: bool = False,
) -> bytes:
    """TPM2_ActivateCredential (Part 3 §12.5): ``activated`` (the AK, ADMIN role by its
    authValue as password) and ``key`` (the EK, USER role in the policy ``session``);
    ``credential_blob`` and ``encrypted_secret`` are the marshalled TPM2B_ID_OBJECT and
    TPM2B_ENCRYPTED_SECRET. Returns certInfo, the verifier's secret.

    Raises:
        BadInput: a blob that is not exactly one TPM2B.
        TpmRefused: the TPM refuses (not made for this EK and this AK's name, altered).
    """
    for blob, what in ((credential_blob, "credential blob"), (encrypted_secret, "secret")):
        try:
            _, end = lean.parse_tpm2b(blob, 0)
        except RemoteProtocolError:
            end = -1
        if end != len(blob):
            raise BadInput(f"{what}: not one marshalled TPM2B")
    auths = [Auth(None, activated.auth_value), Auth(session, key.auth_value, last_use=last_use)]
    _, out = _run(
        conn, CC.ACTIVATE_CREDENTIAL, [activated, key], credential_blob + encrypted_secret, auths
    )
    return lean.single_tpm2b(out, "ActivateCredential")


# ---- look-ups and receipts without session cryptography ---------------------------------------

_CAP_HANDLES = 0x00000001  # TPM_CAP_HANDLES (Part 2 §6.12)
_CAP_TPM_PROPERTIES = 0x00000006


def _capability(conn: TpmConnection, capability: int, first: int, count: int) -> bytes:
    """TPM2_GetCapability (Part 3 §30.2): the TPMU_CAPABILITIES after the echoed capability."""
    command = lean.wrap_plain(CC.GET_CAPABILITY, [], struct.pack(">III", capability, first, count))
    _, out = lean.unwrap_plain(CC.GET_CAPABILITY, execute(conn, command))
    if len(out) < 5 or struct.unpack_from(">I", out, 1)[0] != capability:
        raise RemoteProtocolError("GetCapability answered another capability")
    return out[5:]


def handles(conn: TpmConnection, first: int, count: int) -> list[int]:
    """The TPM's handles from ``first`` on (at most ``count``; TPM_CAP_HANDLES), in order."""
    data = _capability(conn, _CAP_HANDLES, first, count)
    if len(data) < 4:
        raise RemoteProtocolError("GetCapability: handle list without a count")
    (n,) = struct.unpack_from(">I", data, 0)
    if len(data) != 4 + 4 * n:
        raise RemoteProtocolError("GetCapability: handle list of the wrong size")
    return list(struct.unpack_from(f">{n}I", data, 4))


def tpm_property(conn: TpmConnection, prop: int) -> int | None:
    """One fixed or variable TPM property (TPM_CAP_TPM_PROPERTIES), None if the TPM has none."""
    data = _capability(conn, _CAP_TPM_PROPERTIES, prop, 1)
    if len(data) < 4:
        raise RemoteProtocolError("GetCapability: property list without a count")
    (n,) = struct.unpack_from(">I", data, 0)
    if len(data) != 4 + 8 * n:
        raise RemoteProtocolError("GetCapability: property list of the wrong size")
    if n and struct.unpack_from(">I", data, 4)[0] == prop:
        return int(struct.unpack_from(">I", data, 8)[0])
    return None


class NvPublic:
    """An NV index's public area as TPM2_NV_ReadPublic gives it, and its name."""

    __slots__ = ("attributes", "auth_policy", "data_size", "index", "name", "name_alg")

    def __init__(
        self,
        index: int,
        name_alg: int,
        attributes: int,
        auth_policy: bytes,
        data_size: int,
        name: bytes,
    ) -> None:
        self.index, self.name_alg, self.attributes = index, name_alg, attributes
        self.auth_policy, self.data_size, self.name = auth_policy, data_size, name

    def __repr__(self) -> str:
        return f"NvPublic(0x{self.index:08x}, attributes=0x{self.attributes:08x})"


def nv_read_public(conn: TpmConnection, index: int) -> NvPublic:
    """TPM2_NV_ReadPublic (Part 3 §31.6): the index's public area and name; for a SHA-256
    nameAlg the name is checked against the area (nameAlg ‖ H(TPMS_NV_PUBLIC)).

    Raises:
        TpmRefused: no such index (TPM_RC_HANDLE).
        RemoteProtocolError: malformed, or a name that is not the area's.
    """
    command = lean.wrap_plain(CC.NV_READ_PUBLIC, [index])
    _, out = lean.unwrap_plain(CC.NV_READ_PUBLIC, execute(conn, command))
    area, end = lean.parse_tpm2b(out, 0)
    name, last = lean.parse_tpm2b(out, end)
    if last != len(out) or len(area) < 12:
        raise RemoteProtocolError("NV_ReadPublic response is malformed")
    nv_index, name_alg, attributes = struct.unpack_from(">IHI", area, 0)
    policy, cursor = lean.parse_tpm2b(area, 10)
    if cursor + 2 != len(area) or nv_index != index:
        raise RemoteProtocolError("NV_ReadPublic: not the public area of that index")
    (data_size,) = struct.unpack_from(">H", area, cursor)
    if name_alg == sc.ALG_SHA256 and not sc.hmac_equal(name, area[4:6] + sc.sha256(area)):
        raise RemoteProtocolError("NV_ReadPublic: the name is not the public area's")
    return NvPublic(index, name_alg, attributes, policy, data_size, name)


def nv_certify(
    conn: TpmConnection,
    signer: LeanObject,
    index: int,
    qualifying: bytes,
    size: int,
    offset: int,
) -> tuple[bytes, bytes]:
    """TPM2_NV_Certify (Part 3 §31.16) of ``size`` bytes at ``offset`` of NV ``index`` by
    ``signer`` with its own scheme; the signer's USER role by its authValue as password (an
    AK's is empty) and the index's read authorised by its own empty authValue. Returns (the
    TPMS_ATTEST as signed, the marshalled TPMT_SIGNATURE): what the receipt carries; checking
    them is the operator's job.

    Raises:
        TpmRefused: the TPM refuses.
        RemoteProtocolError: the response is malformed.
    """
    params = (
        lean.tpm2b(qualifying) + struct.pack(">H", lean.ALG_NULL) + struct.pack(">HH", size, offset)
    )
    target = LeanObject(index, b"")
    _, out = _run(
        conn, CC.NV_CERTIFY, [signer, target], params,
        [Auth(None, signer.auth_value), Auth(None)], extra_handles=((index, b""),),
    )  # fmt: skip
    attest, end = lean.parse_tpm2b(out, 0)
    signature = out[end:]
    if len(signature) < 4:
        raise RemoteProtocolError("NV_Certify response without a signature")
    return attest, signature


def read_public(conn: TpmConnection, handle: int) -> tuple[bytes, bytes]:
    """TPM2_ReadPublic (Part 3 §12.4) of a loaded or persistent object: (its marshalled
    TPM2B_PUBLIC, its name), the name checked against the public area.

    Raises:
        TpmRefused: no object at ``handle``.
        RemoteProtocolError: malformed, or a name that is not the area's.
    """
    command = lean.wrap_plain(CC.READ_PUBLIC, [handle])
    _, out = lean.unwrap_plain(CC.READ_PUBLIC, execute(conn, command))
    _, end = lean.parse_tpm2b(out, 0)
    public = out[:end]
    name, cursor = lean.parse_tpm2b(out, end)
    _, last = lean.parse_tpm2b(out, cursor)  # qualifiedName
    if last != len(out):
        raise RemoteProtocolError("ReadPublic response has trailing bytes")
    if not sc.hmac_equal(name, _public_name(public)):
        raise RemoteProtocolError("ReadPublic: the name is not the public area's")
    return public, name


def pcr_read_selected(
    conn: TpmConnection, selection: bytes
) -> tuple[int, PcrSelection, list[bytes]]:
    """TPM2_PCR_Read (Part 3 §22.4) of a marshalled TPML_PCR_SELECTION: (pcrUpdateCounter,
    the selection the digests are for, the digests in that order). A TPM returns at most 8
    digests per call; the caller asks again for the rest.

    Raises:
        TpmRefused: the TPM refuses the selection.
        BadInput: the TPM names a bank whose hash is unknown here.
        RemoteProtocolError: a malformed response (a digest count that does not fit the
            returned selection, trailing bytes).
    """
    command = lean.wrap_plain(CC.PCR_READ, [], selection)
    _, out = lean.unwrap_plain(CC.PCR_READ, execute(conn, command))
    if len(out) < 8:
        raise RemoteProtocolError("PCR_Read response is too short")
    counter, banks = struct.unpack_from(">II", out, 0)
    cursor = 8
    bitmaps: list[tuple[str, bytes]] = []
    for _ in range(banks):  # TPMS_PCR_SELECTION: hash, sizeofSelect, pcrSelect
        if cursor + 3 > len(out):
            raise RemoteProtocolError("PCR_Read response ends inside its selection")
        alg, size = struct.unpack_from(">HB", out, cursor)
        end = cursor + 3 + size
        if end > len(out):
            raise RemoteProtocolError("PCR_Read response ends inside its selection")
        bank = hash_name(alg)
        if bank.startswith("0x"):
            raise BadInput(f"PCR selection: unknown bank hash {bank}")
        bitmaps.append((bank, out[cursor + 3 : end]))
        cursor = end
    if cursor + 4 > len(out):
        raise RemoteProtocolError("PCR_Read response ends before its digests")
    (count,) = struct.unpack_from(">I", out, cursor)
    cursor += 4
    digests = []
    for _ in range(count):
        digest, cursor = lean.parse_tpm2b(out, cursor)
        digests.append(digest)
    if cursor != len(out):
        raise RemoteProtocolError("PCR_Read response has trailing bytes")
    returned = selection_from_bitmaps(bitmaps)
    if sum(len(pcrs) for _, pcrs in returned) != len(digests):
        raise RemoteProtocolError("PCR_Read returned a digest count unlike its selection")
    return counter, returned, digests


def pcr_read(conn: TpmConnection, selection: bytes) -> list[bytes]:
    """:func:`pcr_read_selected`'s digests only (the caller knows what it asked for and checks
    the count).

    Raises:
        as :func:`pcr_read_selected`.
    """
    return pcr_read_selected(conn, selection)[2]


def pcr_selection(selection: str) -> bytes:
    """The marshalled TPML_PCR_SELECTION of a tpm2-tools style selection (``sha256:0,1``)."""
    return _pcr_selection(selection)


def nv_define_space(conn: TpmConnection, public: bytes) -> None:
    """TPM2_NV_DefineSpace (Part 3 §31.3) in the owner hierarchy (its empty authValue as
    password) with an empty index authValue; ``public`` is the marshalled TPM2B_NV_PUBLIC.

    Raises:
        TpmRefused: the TPM refuses (index exists, NV full, owner auth set).
    """
    owner = LeanObject(_RH_OWNER, _RH_OWNER.to_bytes(4, "big"))
    _run(conn, CC.NV_DEFINE_SPACE, [owner], lean.tpm2b(b"") + public, [Auth(None)])
