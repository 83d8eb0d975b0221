"""Pure. The provisioning messages of TR 33.812 §7.1.2.1 (threat 2 counter-measure 4: mutual
authentication, integrity, freshness, binding to the TRE), as versioned CBOR (RFC 8949) and, for
the network's signed statements, COSE_Sign1 with ES256 (RFC 9052 §4.2, RFC 9053 §2.1).

Every message is a frozen, slotted, self-validating dataclass (h11-style events): constructing
one with a bad field raises :class:`LocalProtocolError`; :func:`decode` turns anything malformed
into :class:`RemoteProtocolError`, never a traceback.

Wire form. Unsigned messages are the deterministically encoded CBOR map (RFC 8949 §4.2; short keys, so
length-first and bytewise key order agree) ``{"v": version, "t": type, "sid": session id, "th": transcript, "b": {body}}``.
Signed ones (:data:`SIGNED_TYPES`) are ``COSE_Sign1 = 18([protected {1: -7 (ES256), 4: kid},
{}, that map, signature])``: the signer's name is the protected ``kid``.

Transcript binding. ``th`` is the running hash of every earlier message of the session
(:func:`extend_transcript` over the exact wire bytes), so it is inside what the DPF, PVA and
SHO sign, what the CredentialProof MACs and what the TPM quotes (:func:`quote_qualifying_data`):
a message lifted from session A does not fit session B, and a message that was altered or
dropped in transit breaks every later one (cf. the TLS 1.3 transcript, RFC 8446 §4.4.1).
:class:`Error` is the one message outside the transcript: it changes no state on either side.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from protocol import canonical_cbor
from protocol.errors import LocalProtocolError, RemoteProtocolError, SignatureInvalid
from tpm.pcrsel import format_selection, parse_selection
from trelab.errors import BadInput

__all__ = [
    "CBOR",
    "COSE_SIGN1_TAG",
    "DIGEST_SIZE",
    "ES256",
    "INITIAL_TRANSCRIPT",
    "LIFECYCLE_STATES",
    "MAX_MESSAGE",
    "MESSAGE_TYPES",
    "REPORT_ENDPOINT",
    "RO_ROLES",
    "SESSION_ID_SIZE",
    "SIGNED_TYPES",
    "STATES_BEFORE",
    "STATE_AFTER",
    "TRANSITIONS",
    "VERSION",
    "Ack",
    "AttachRequest",
    "AttachResult",
    "AuthChallenge",
    "AuthResponse",
    "CredentialChallenge",
    "CredentialProof",
    "Error",
    "Evidence",
    "LifecycleCommand",
    "LifecycleOrder",
    "LifecycleRequest",
    "Message",
    "MidPackage",
    "PackageRequest",
    "Receipt",
    "RegisterRequest",
    "Sender",
    "SignedMessage",
    "SigningKey",
    "ValidationChallenge",
    "Verdict",
    "credential_proof",
    "decode",
    "derive_session_id",
    "encode",
    "extend_transcript",
    "pairs",
    "quote_qualifying_data",
    "receipt_qualifying_data",
    "sign",
    "verify_signature",
]

VERSION = 1
#: The media type of every request and reply body (RFC 8949 §9.5).
CBOR = "application/cbor"
SESSION_ID_SIZE = 32
DIGEST_SIZE = 32
MAX_MESSAGE = 64 * 1024  # the largest MID package is a few KiB; anything bigger is refused
COSE_SIGN1_TAG = 18  # RFC 9052 §2
ES256 = -7  # RFC 9053 §2.1
_HDR_ALG, _HDR_KID = 1, 4  # RFC 9052 §3.1
INITIAL_TRANSCRIPT = hashlib.sha256(b"trelab/transcript/v1").digest()

Sender = Literal["device", "network"]
#: What the SHO may order for a MID, and the lifecycle states of TR 33.812 §7.1.2.1 threat 7.
TRANSITIONS = ("activate", "suspend", "resume", "delete")
LIFECYCLE_STATES = ("PENDING", "INSTALLED", "ACTIVE", "SUSPENDED", "DELETED")
#: The state each transition may start from, and the state it leaves the MID in.
STATES_BEFORE: dict[str, tuple[str, ...]] = {
    "activate": ("INSTALLED",),
    "suspend": ("ACTIVE",),
    "resume": ("SUSPENDED",),
    "delete": ("INSTALLED", "ACTIVE", "SUSPENDED"),
}
STATE_AFTER: dict[str, str] = {
    "activate": "ACTIVE",
    "suspend": "SUSPENDED",
    "resume": "ACTIVE",
    "delete": "DELETED",
}
#: Where a TRE reports what *it* refused (a package for another TRE, a changed platform, a
#: network that failed AKA): an Error bound to a known session, for the audit trail.
REPORT_ENDPOINT = "drf/report"
#: The registration operator's roles: the only endpoints a PCID grant reaches (ICF).
RO_ROLES = frozenset({"drf", "pva", "dpf"})
_RECEIPT_EVENTS = ("install", *TRANSITIONS)
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_IMSI = re.compile(r"[0-9]{6,15}")
_RATS = ("3g", "eps", "5g")
_MAP = {"map": True}
_MAX_FIELD = 48 * 1024


# ---- transcript and derived values ----------------------------------------------------------


def extend_transcript(transcript: bytes, wire: bytes) -> bytes:
    """th' = SHA-256("trelab/th" ‖ th ‖ SHA-256(wire)): the transcript after one more message."""
    return hashlib.sha256(b"trelab/th" + transcript + hashlib.sha256(wire).digest()).digest()


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def derive_session_id(ek_cert: bytes, ak_public: bytes, device_nonce: bytes) -> bytes:
    """sessionId = H(EK ‖ AK ‖ nonceD) (docs/provisioning.md §1.4), length-prefixed, so the DRF,
    PVA and DPF all bind to the same EK, AK and device freshness."""
    return hashlib.sha256(
        b"trelab/session/v1" + _lp(ek_cert) + _lp(ak_public) + _lp(device_nonce)
    ).digest()


def credential_proof(secret: bytes, transcript: bytes) -> bytes:
    """CredProof = HMAC-SHA256(S, transcript): proves that the TPM released S (so the AK lives
    next to the certified EK) in *this* session (docs/provisioning.md §1.4)."""
    return hmac.new(secret, b"trelab/credential-proof/v1" + transcript, hashlib.sha256).digest()


def quote_qualifying_data(nonce: bytes, session_id: bytes, transcript: bytes) -> bytes:
    """extraData for TPM2_Quote = H(nonceP ‖ sessionId ‖ th) (docs/provisioning.md §1.5), so the
    quote is fresh, of this session and of this transcript."""
    return hashlib.sha256(b"trelab/quote/v1" + _lp(nonce) + session_id + transcript).digest()


def receipt_qualifying_data(session_id: bytes, transcript: bytes, event: str) -> bytes:
    """extraData for the TPM-signed receipts (Certify / NV_Certify, docs/provisioning.md §1.7)."""
    return hashlib.sha256(
        b"trelab/receipt/v1" + session_id + transcript + event.encode("ascii")
    ).digest()


# ---- field checks (raise LocalProtocolError: building a bad message is the caller's bug) ------


def _fail(msg: Message, name: str, why: str) -> LocalProtocolError:
    return LocalProtocolError(f"{type(msg).__name__}.{name}: {why}")


def _bytes(
    msg: Message, name: str, *, size: int | None = None, lo: int = 0, hi: int = _MAX_FIELD
) -> None:
    value = getattr(msg, name)
    if not isinstance(value, bytes):
        raise _fail(msg, name, "expected bytes")
    if size is not None and len(value) != size:
        raise _fail(msg, name, f"{len(value)} bytes, expected {size}")
    if not lo <= len(value) <= hi:
        raise _fail(msg, name, f"{len(value)} bytes, expected {lo}..{hi}")


def _int(msg: Message, name: str, *, lo: int = 0, hi: int = (1 << 63) - 1) -> None:
    value = getattr(msg, name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(msg, name, "expected an integer")
    if not lo <= value <= hi:
        raise _fail(msg, name, f"{value} out of range {lo}..{hi}")


def _text(
    msg: Message, name: str, *, pattern: re.Pattern[str] | None = None, hi: int = 256
) -> None:
    value = getattr(msg, name)
    if not isinstance(value, str):
        raise _fail(msg, name, "expected text")
    if len(value) > hi or not value.isprintable():
        raise _fail(msg, name, f"text longer than {hi} or not printable")
    if pattern is not None and not pattern.fullmatch(value):
        raise _fail(msg, name, f"{value!r} does not match {pattern.pattern}")


def _choice(msg: Message, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(msg, name)
    if value not in allowed:
        raise _fail(msg, name, f"{value!r} is not one of {', '.join(allowed)}")


def _pairs(msg: Message, name: str, *, values: tuple[type, ...]) -> None:
    value = getattr(msg, name)
    if not isinstance(value, tuple):
        raise _fail(msg, name, "expected a tuple of (key, value) pairs")
    keys = []
    for item in value:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise _fail(msg, name, "expected (text, value) pairs")
        if not _NAME.fullmatch(item[0]):
            raise _fail(msg, name, f"key {item[0]!r} is not a name")
        if not isinstance(item[1], values) or (isinstance(item[1], bool) and bool not in values):
            raise _fail(msg, name, f"value of {item[0]!r} has a type not allowed here")
        if isinstance(item[1], (bytes, str)) and len(item[1]) > _MAX_FIELD:
            raise _fail(msg, name, f"value of {item[0]!r} too long")
        keys.append(item[0])
    if keys != sorted(set(keys)):
        raise _fail(msg, name, "keys must be unique and sorted")


def _pcr_selection(msg: Message, name: str) -> None:
    _text(msg, name)
    value = getattr(msg, name)
    try:
        canonical = _canonical_selection(value, name)
    except BadInput as exc:
        raise _fail(msg, name, str(exc)) from None
    if canonical != value:
        raise _fail(msg, name, f"write it as {canonical!r}")


@functools.lru_cache(maxsize=256)
def _canonical_selection(value: str, name: str) -> str:
    # a pure function of the text; every message of a session repeats the same selection
    return format_selection(parse_selection(value, what=name))


# ---- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Header shared by every message: protocol version, session and transcript binding."""

    SENDER: ClassVar[Sender | None] = None  # None: either side (Error)
    SIGNED: ClassVar[bool] = False
    version: int = VERSION
    session_id: bytes
    transcript: bytes

    def __post_init__(self) -> None:
        if self.version != VERSION:
            raise _fail(self, "version", f"{self.version!r}: only version {VERSION} is spoken")
        _bytes(self, "session_id", size=SESSION_ID_SIZE)
        _bytes(self, "transcript", size=DIGEST_SIZE)
        self._check()

    def _check(self) -> None:
        """Per-type field checks; raise LocalProtocolError."""

    @classmethod
    def body_fields(cls) -> tuple[dataclasses.Field[Any], ...]:
        """The fields carried in the envelope's body (not the header, not the signature);
        a class's fields never change, so they are listed once per class."""
        found = _BODY_FIELDS.get(cls)
        if found is None:
            found = tuple(f for f in dataclasses.fields(cls) if f.name not in _HEADER_FIELDS)
            _BODY_FIELDS[cls] = found
        return found


_HEADER_FIELDS = frozenset({"version", "session_id", "transcript", "signer", "cose"})
_BODY_FIELDS: dict[type[Message], tuple[dataclasses.Field[Any], ...]] = {}


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedMessage(Message):
    """A message the network signs (COSE_Sign1, ES256); ``signer`` is the key's name (kid),
    ``cose`` the signed wire form once :func:`sign` or :func:`decode` made it."""

    SIGNED: ClassVar[bool] = True
    signer: str = ""
    cose: bytes = field(default=b"", repr=False, compare=False)


# -- registration and credential activation (TR 33.812 §7.1.2.1 threat 1 CM 3, threat 12) --


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterRequest(Message):
    """M2: the TRE's certified identity (EK certificate, DER), its AK (TPM2B_PUBLIC), a device
    nonce, and the SHO asked for; session_id must be :func:`derive_session_id` of them."""

    SENDER: ClassVar[Sender | None] = "device"
    ek_cert: bytes
    ak_public: bytes
    device_nonce: bytes
    sho: str

    def _check(self) -> None:
        _bytes(self, "ek_cert", lo=1, hi=8192)
        _bytes(self, "ak_public", lo=1, hi=1024)
        _bytes(self, "device_nonce", lo=16, hi=64)
        _text(self, "sho", pattern=_NAME)
        expected = derive_session_id(self.ek_cert, self.ak_public, self.device_nonce)
        if not hmac.compare_digest(expected, self.session_id):
            raise _fail(self, "session_id", "is not H(EK ‖ AK ‖ device nonce)")


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialChallenge(Message):
    """M3: TPM2_MakeCredential(EK, S, AK name) output (TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET)."""

    SENDER: ClassVar[Sender | None] = "network"
    credential_blob: bytes
    encrypted_secret: bytes

    def _check(self) -> None:
        _bytes(self, "credential_blob", lo=1, hi=1024)
        _bytes(self, "encrypted_secret", lo=1, hi=1024)


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialProof(Message):
    """M3 answer: :func:`credential_proof` (HMAC of the transcript under the released S)."""

    SENDER: ClassVar[Sender | None] = "device"
    proof: bytes

    def _check(self) -> None:
        _bytes(self, "proof", size=32)


# -- remote validation (threat 1 CM 4, threat 3 CM 7, threat 5 CM 5/6) ---------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationChallenge(Message):
    """M4: the PVA's nonce and the PCR selection to quote (tpm2-tools text, canonical)."""

    SENDER: ClassVar[Sender | None] = "network"
    nonce: bytes
    pcr_selection: str

    def _check(self) -> None:
        _bytes(self, "nonce", lo=16, hi=64)
        _pcr_selection(self, "pcr_selection")


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence(Message):
    """M4 answer: TPM2_Quote output (marshaled TPMS_ATTEST and TPMT_SIGNATURE) with the PCR
    values and their selection, extraData = :func:`quote_qualifying_data`."""

    SENDER: ClassVar[Sender | None] = "device"
    quote_msg: bytes
    quote_sig: bytes
    pcrs: bytes
    pcrlist: str

    def _check(self) -> None:
        _bytes(self, "quote_msg", lo=1, hi=4096)
        _bytes(self, "quote_sig", lo=1, hi=1024)
        _bytes(self, "pcrs", hi=4096)
        _pcr_selection(self, "pcrlist")


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict(SignedMessage):
    """The PVA's signed, short-lived statement: this AK's TPM was in state ``pcr_digest``."""

    SENDER: ClassVar[Sender | None] = "network"
    ak_name: bytes
    pcr_digest: bytes
    pcr_selection: str
    not_after: int

    def _check(self) -> None:
        _bytes(self, "ak_name", lo=2, hi=66)
        _bytes(self, "pcr_digest", lo=20, hi=64)
        _pcr_selection(self, "pcr_selection")
        _int(self, "not_after")


# -- MID delivery (threat 2 CM 2/4, threat 5 CM 3/4) --------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageRequest(Message):
    """M5: ask for the MID package, with what the DPF needs to bind it to this TRE: the
    storage root key (SRK, TPM2B_PUBLIC) the MID parent's policy names, a free MID_STATE
    ``slot``, the TPM's MID_CTR ``counter`` (the package gets counter + 1), and optionally an
    AK-signed TPM2_Certify of the SRK (marshaled TPMS_ATTEST + TPMT_SIGNATURE)."""

    SENDER: ClassVar[Sender | None] = "device"
    srk_public: bytes
    slot: int
    counter: int
    certify_info: bytes = b""
    certify_sig: bytes = b""

    def _check(self) -> None:
        _bytes(self, "srk_public", lo=1, hi=1024)
        _int(self, "slot", hi=255)
        _int(self, "counter", hi=(1 << 63) - 2)
        _bytes(self, "certify_info", hi=4096)
        _bytes(self, "certify_sig", hi=1024)
        if bool(self.certify_info) != bool(self.certify_sig):
            raise _fail(self, "certify_info", "certify_info and certify_sig go together")


@dataclass(frozen=True, slots=True, kw_only=True)
class MidPackage(SignedMessage):
    """M6: the DPF-signed manifest (MID id, IMSI, SHO, sequence, AMF, algorithm, policies,
    TPM object names) and the opaque TPM package (K, OPc wrapped to this TRE)."""

    SENDER: ClassVar[Sender | None] = "network"
    mid_id: str
    imsi: str
    sho: str
    sequence: int
    amf: bytes
    algorithm: str
    policy: tuple[tuple[str, Any], ...] = field(default=(), metadata=_MAP)
    names: tuple[tuple[str, Any], ...] = field(default=(), metadata=_MAP)
    not_after: int
    package: bytes = field(repr=False)

    def _check(self) -> None:
        _text(self, "mid_id", pattern=_NAME)
        _text(self, "imsi", pattern=_IMSI)
        _text(self, "sho", pattern=_NAME)
        _int(self, "sequence", lo=1)
        _bytes(self, "amf", size=2)
        _choice(self, "algorithm", ("milenage", "tuak", "hmac-sha256"))
        _pairs(self, "policy", values=(bytes, str, int, bool))
        _pairs(self, "names", values=(bytes,))
        _int(self, "not_after")
        _bytes(self, "package", lo=1, hi=_MAX_FIELD)


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt(Message):
    """M7/M8 answer: the TPM's proof that ``event`` happened to ``mid_id`` (``sequence`` = the
    package's or the command's number): AK-signed attestations as ``<label>.attest`` (marshaled
    TPMS_ATTEST) + ``<label>.sig`` (TPMT_SIGNATURE) pairs — NV_Certify of MID_STATE[slot]
    (and MID_CTR), extraData = :func:`receipt_qualifying_data`."""

    SENDER: ClassVar[Sender | None] = "device"
    mid_id: str
    sequence: int
    event: str
    evidence: tuple[tuple[str, Any], ...] = field(default=(), metadata=_MAP)

    def _check(self) -> None:
        _text(self, "mid_id", pattern=_NAME)
        _int(self, "sequence", lo=1)
        _choice(self, "event", _RECEIPT_EVENTS)
        _pairs(self, "evidence", values=(bytes,))


# -- lifecycle (threat 7 CM 1/10, threat 8 CM 1) -------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleRequest(Message):
    """The device (or its user) asks the owning SHO for a transition of ``mid_id``; ``pending``
    fetches whatever the SHO ordered on its own."""

    SENDER: ClassVar[Sender | None] = "device"
    mid_id: str
    transition: str

    def _check(self) -> None:
        _text(self, "mid_id", pattern=_NAME)
        _choice(self, "transition", (*TRANSITIONS, "pending"))


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleCommand(SignedMessage):
    """M8: a transition of ``mid_id`` signed by the SHO that owns it, numbered by a per-MID
    monotonic ``sequence`` (the TRE refuses a number it has seen: replay protection).
    ``state_approval``: the owner's TPM-format approval (DER ECDSA) of the lifecycle-index
    write from (current state, ``state_version``) to the next (:class:`tpm.nv.StateApproval`);
    empty for a MID kept in a MID_STATE byte."""

    SENDER: ClassVar[Sender | None] = "network"
    mid_id: str
    transition: str
    sequence: int
    state_version: int = 0
    state_approval: bytes = field(default=b"", repr=False)

    def _check(self) -> None:
        _text(self, "mid_id", pattern=_NAME)
        _choice(self, "transition", TRANSITIONS)
        _int(self, "sequence", lo=1)
        _int(self, "state_version", hi=(1 << 32) - 1)
        _bytes(self, "state_approval", hi=80)


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleOrder(SignedMessage):
    """The owning SHO orders a transition of ``mid_id`` (operator → RO, signed with the SHO's
    key; its own one-message session, transcript = the initial one). Delivered to the TRE as
    a :class:`LifecycleCommand` when it next asks (``LifecycleRequest(pending)``)."""

    SENDER: ClassVar[Sender | None] = "network"
    mid_id: str
    transition: str

    def _check(self) -> None:
        _text(self, "mid_id", pattern=_NAME)
        _choice(self, "transition", TRANSITIONS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack(Message):
    """The network's last word in a session: the MID's state as the network now records it."""

    SENDER: ClassVar[Sender | None] = "network"
    mid_id: str
    state: str

    def _check(self) -> None:
        _text(self, "mid_id", pattern=_NAME)
        _choice(self, "state", LIFECYCLE_STATES)


# -- AKA over the network (TS 33.102 §6.3) -------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachRequest(Message):
    """Attach over ``rat`` (3G, EPS or 5G) with ``imsi`` (a MID's or a PCID's) or, for 5G, a
    ``suci`` the SHO's SIDF de-conceals: the SHO answers with a vector's RAND, AUTN."""

    SENDER: ClassVar[Sender | None] = "device"
    imsi: str = ""
    rat: str = "3g"
    suci: str = ""

    def _check(self) -> None:
        _choice(self, "rat", _RATS)
        _text(self, "suci", hi=3100)
        if bool(self.imsi) == bool(self.suci):
            raise _fail(self, "imsi", "exactly one of imsi and suci")
        if self.imsi:
            _text(self, "imsi", pattern=_IMSI)
        elif self.rat != "5g" or not self.suci.startswith("suci-"):
            raise _fail(self, "suci", "a suci-… string, over 5G only")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthChallenge(Message):
    """RAND and AUTN of one authentication vector (TS 33.102 §6.3.3), with what the serving
    network announces: its PLMN (3G, EPS) or 5G serving network name, and ABBA (5G)."""

    SENDER: ClassVar[Sender | None] = "network"
    rand: bytes
    autn: bytes
    serving_network: str = ""
    abba: bytes = b""

    def _check(self) -> None:
        _bytes(self, "rand", size=16)
        _bytes(self, "autn", size=16)
        _text(self, "serving_network", hi=255)
        _bytes(self, "abba", hi=16)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthResponse(Message):
    """The TRE's answer: RES (RES* over 5G) with the ME's proof of its anchor key, or AUTS
    after a synchronisation failure (exactly one of res and auts is set)."""

    SENDER: ClassVar[Sender | None] = "device"
    res: bytes = field(default=b"", repr=False)
    auts: bytes = b""
    key_proof: bytes = field(default=b"", repr=False)

    def _check(self) -> None:
        _bytes(self, "res", hi=32)
        _bytes(self, "auts", hi=14)
        _bytes(self, "key_proof", hi=32)
        if bool(self.res) == bool(self.auts):
            raise _fail(self, "res", "exactly one of res and auts")
        if self.res and len(self.res) < 4:
            raise _fail(self, "res", "RES is 4..32 bytes")
        if self.auts and len(self.auts) != 14:
            raise _fail(self, "auts", "AUTS is 14 bytes")
        if self.auts and self.key_proof:
            raise _fail(self, "key_proof", "no key proof with AUTS")


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachResult(Message):
    """Attach accepted or not, with the network's proof of the anchor key when accepted; a
    PCID attach gets an ICF ``grant`` for the RO endpoints."""

    SENDER: ClassVar[Sender | None] = "network"
    accepted: bool
    reason: str
    grant: bytes = field(default=b"", repr=False)
    key_proof: bytes = field(default=b"", repr=False)

    def _check(self) -> None:
        if not isinstance(self.accepted, bool):
            raise _fail(self, "accepted", "expected a boolean")
        _text(self, "reason", hi=200)
        _bytes(self, "grant", hi=32)
        _bytes(self, "key_proof", hi=32)


@dataclass(frozen=True, slots=True, kw_only=True)
class Error(Message):
    """Refusal or malformed input: a short ``code`` and a one-line ``reason`` (no secrets).
    Outside the transcript: neither side changes state on it."""

    code: str
    reason: str

    def _check(self) -> None:
        _text(self, "code", pattern=_NAME)
        _text(self, "reason", hi=300)


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.__name__: cls
    for cls in (
        RegisterRequest,
        CredentialChallenge,
        CredentialProof,
        ValidationChallenge,
        Evidence,
        Verdict,
        PackageRequest,
        MidPackage,
        Receipt,
        LifecycleRequest,
        LifecycleCommand,
        LifecycleOrder,
        Ack,
        AttachRequest,
        AuthChallenge,
        AuthResponse,
        AttachResult,
        Error,
    )
}
SIGNED_TYPES = frozenset(name for name, cls in MESSAGE_TYPES.items() if cls.SIGNED)

M = TypeVar("M", bound=Message)


# ---- encoding -----------------------------------------------------------------------------------


def _body(msg: Message) -> dict[str, Any]:
    return {
        name: dict(getattr(msg, name)) if is_map else getattr(msg, name)
        for name, is_map in _layout(type(msg)).body
    }


@dataclasses.dataclass(frozen=True, slots=True)
class _Layout:
    """A message class's body as encoding and decoding need it, worked out once per class."""

    body: tuple[tuple[str, bool], ...]  # (field name, carried as a map) in declaration order
    names: frozenset[str]


def _layout(cls: type[Message]) -> _Layout:
    found = _LAYOUTS.get(cls)
    if found is None:
        body = tuple((f.name, bool(f.metadata.get("map"))) for f in cls.body_fields())
        found = _LAYOUTS[cls] = _Layout(body, frozenset(name for name, _ in body))
    return found


_LAYOUTS: dict[type[Message], _Layout] = {}
_ENVELOPE_KEYS = frozenset({"v", "t", "sid", "th", "b"})


def _envelope(msg: Message) -> bytes:
    return canonical_cbor.dumps(
        {
            "v": msg.version,
            "t": type(msg).__name__,
            "sid": msg.session_id,
            "th": msg.transcript,
            "b": _body(msg),
        }
    )


@functools.lru_cache(maxsize=64)
def _protected(kid: str) -> bytes:
    # a pure function of the key's name; each key signs many messages
    return canonical_cbor.dumps({_HDR_ALG: ES256, _HDR_KID: kid.encode("ascii")})


def _with_signature(msg: M, signer: str, cose: bytes) -> M:
    """A copy of ``msg`` with ``signer`` and ``cose`` set. Made without running the field
    checks again: they passed when ``msg`` was made and cover neither field (the signer is
    checked where it is read, :func:`_kid_of_protected`)."""
    copy = object.__new__(type(msg))
    for f in _all_fields(type(msg)):
        object.__setattr__(copy, f, getattr(msg, f))
    object.__setattr__(copy, "signer", signer)
    object.__setattr__(copy, "cose", cose)
    return copy


def _all_fields(cls: type[Message]) -> tuple[str, ...]:
    found = _ALL_FIELDS.get(cls)
    if found is None:
        found = _ALL_FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return found


_ALL_FIELDS: dict[type[Message], tuple[str, ...]] = {}


def encode(msg: Message) -> bytes:
    """The wire bytes of ``msg``; signed types must have been through :func:`sign`.

    Raises:
        LocalProtocolError: a signed type that is not signed, or changed since it was signed.
    """
    if not isinstance(msg, SignedMessage):
        return _envelope(msg)
    if not msg.cose:
        raise LocalProtocolError(f"{type(msg).__name__} must be signed before it is sent")
    # the COSE_Sign1 this message's fields and signer make with the signature it carries
    # (its last 64 bytes) must be the one it carries: anything changed since, it differs
    signer = msg.signer
    named = isinstance(signer, str) and _NAME.fullmatch(signer) is not None
    if not named or _cose_sign1(_protected(signer), _envelope(msg), msg.cose[-64:]) != msg.cose:
        raise LocalProtocolError(f"{type(msg).__name__} was changed after it was signed")
    return msg.cose


class SigningKey:
    """An ES256 private key with its name (the COSE ``kid``): the PVA, DPF or one SHO."""

    __slots__ = ("_cose", "_public", "name", "private_key", "protected")

    def __init__(self, name: str, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not _NAME.fullmatch(name):
            raise BadInput(f"signing key name {name!r}: expected a short lower-case name")
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise BadInput(f"signing key {name}: ES256 needs a P-256 key")
        self.name = name
        self.private_key = private_key
        self.protected = _protected(name)  # the COSE protected header of all it signs
        self._cose: Any = None
        self._public = private_key.public_key()  # derived once: read for every lifecycle step

    def __repr__(self) -> str:
        return f"SigningKey({self.name!r}, <P-256 private key hidden>)"

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def cose_key(self) -> Any:
        """This key as a cwt COSE key (for COSE structures other than :func:`sign`'s)."""
        if self._cose is None:
            from cwt import COSEKey

            pem = self.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            self._cose = COSEKey.from_pem(pem, alg="ES256", kid=self.name)
        return self._cose


def _sign1(payload: bytes, key: SigningKey) -> bytes:
    """COSE_Sign1 over ``payload`` (RFC 9052 §4.2, §4.4): ES256 over the Sig_structure
    ["Signature1", protected, external_aad = b"", payload], the signature as r ‖ s (RFC 9053
    §2.1). Built directly: the operator signs several messages per provisioning, and a
    general COSE library spent more on its key and encoding objects than ECDSA took."""
    to_be_signed = canonical_cbor.dumps(["Signature1", key.protected, b"", payload])
    der = key.private_key.sign(to_be_signed, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return _cose_sign1(key.protected, payload, r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def _cose_sign1(protected: bytes, payload: bytes, signature: bytes) -> bytes:
    return canonical_cbor.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


def sign(msg: M, key: SigningKey) -> M:
    """``msg`` signed by ``key`` as COSE_Sign1/ES256 (RFC 9052 §4.4): the returned copy carries
    ``signer`` = key name and ``cose`` = its wire form.

    Raises:
        LocalProtocolError: ``msg`` is not a signed type.
    """
    if not isinstance(msg, SignedMessage):
        raise LocalProtocolError(f"{type(msg).__name__} is not a signed message")
    return _with_signature(msg, key.name, _sign1(_envelope(msg), key))


def verify_signature(msg: SignedMessage, public_key: ec.EllipticCurvePublicKey) -> None:
    """Check ``msg``'s COSE_Sign1 signature with ``public_key`` (the key of ``msg.signer``):
    the structure and protected header as :func:`decode` checks them (ES256, the kid is
    ``msg.signer``), then ES256 over the Sig_structure ["Signature1", protected,
    external_aad = b"", payload] (RFC 9052 §4.4) with r ‖ s (RFC 9053 §2.1), and the payload
    is ``msg``'s own envelope. Built directly, like :func:`_sign1`: a general COSE library
    spent more on its key objects than the ECDSA verification takes.

    Raises:
        SignatureInvalid: not signed, or the ES256 signature does not verify.
    """
    what = f"{type(msg).__name__} signature by {msg.signer!r}"
    if not msg.cose:
        raise SignatureInvalid(f"{type(msg).__name__} carries no signature")
    try:
        protected, payload, signature = _split_cose(msg.cose)
        signer = _kid_of_protected(protected)
    except RemoteProtocolError as exc:
        raise SignatureInvalid(f"{what} does not verify: {exc}") from None
    if signer != msg.signer or not isinstance(public_key.curve, ec.SECP256R1):
        raise SignatureInvalid(f"{what} does not verify")
    to_be_signed = canonical_cbor.dumps(["Signature1", protected, b"", payload])
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        public_key.verify(der, to_be_signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureInvalid(f"{what} does not verify") from None
    if payload != _envelope(msg):  # the envelope carries neither signer nor cose
        raise SignatureInvalid(f"{type(msg).__name__} signed content differs from the message")


# ---- decoding (every failure → RemoteProtocolError) ---------------------------------------------


def _loads_canonical(data: bytes, what: str) -> Any:
    # Text that is not UTF-8 decodes with replacement characters, so it does not re-encode to
    # the bytes received and is refused below: cbor2's C decoder leaks the exception (and the
    # frames of its traceback) it raises for such text in strict mode, which let any client
    # grow the server's memory without bound. cbor2 also evaluates the semantic tags it knows
    # (decimal fractions through the decimal module, shared references that can make a value
    # contain itself, regular expressions, MIME …), each failing with its own exception type:
    # at this boundary, whatever decoding hostile bytes raises means "not a message".
    try:
        value = cbor2.loads(data, str_errors="replace")
        again = canonical_cbor.dumps(value)
    except Exception:  # see above: every failure of the decoder is bad input
        raise RemoteProtocolError(f"{what}: not well-formed CBOR") from None
    if again != data:  # also catches trailing bytes, duplicate keys, indefinite lengths
        raise RemoteProtocolError(f"{what}: not deterministically encoded CBOR (RFC 8949 §4.2)")
    return value


def _split_cose(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(protected, payload, signature) of a COSE_Sign1, structure checked."""
    value = _loads_canonical(data, "COSE_Sign1")
    if not (isinstance(value, cbor2.CBORTag) and value.tag == COSE_SIGN1_TAG):
        raise RemoteProtocolError("COSE_Sign1: missing tag 18")
    items = value.value
    if not (isinstance(items, list) and len(items) == 4):
        raise RemoteProtocolError("COSE_Sign1: expected [protected, unprotected, payload, sig]")
    protected, unprotected, payload, signature = items
    if not isinstance(protected, bytes) or unprotected != {}:
        raise RemoteProtocolError("COSE_Sign1: headers must be protected only")
    if not isinstance(payload, bytes) or not isinstance(signature, bytes) or len(signature) != 64:
        raise RemoteProtocolError("COSE_Sign1: payload or ES256 signature malformed")
    return protected, payload, signature


def _kid_of_protected(protected: bytes) -> str:
    headers = _loads_canonical(protected, "COSE protected header")
    if not (isinstance(headers, dict) and set(headers) == {_HDR_ALG, _HDR_KID}):
        raise RemoteProtocolError("COSE protected header: expected exactly alg and kid")
    if headers[_HDR_ALG] != ES256:
        raise RemoteProtocolError("COSE protected header: only ES256 is accepted")
    kid = headers[_HDR_KID]
    if not isinstance(kid, bytes):
        raise RemoteProtocolError("COSE protected header: kid must be bytes")
    try:
        name = kid.decode("ascii")
    except UnicodeDecodeError:
        raise RemoteProtocolError("COSE protected header: kid is not a name") from None
    if not _NAME.fullmatch(name):
        raise RemoteProtocolError("COSE protected header: kid is not a name")
    return name


def _from_envelope(data: bytes, *, signed: bool) -> Message:
    env = _loads_canonical(data, "message")
    if not (isinstance(env, dict) and env.keys() == _ENVELOPE_KEYS):
        raise RemoteProtocolError("message: expected the keys v, t, sid, th, b")
    if env["v"] != VERSION or isinstance(env["v"], bool):
        raise RemoteProtocolError(f"message: version {env['v']!r} is not spoken here")
    cls = MESSAGE_TYPES.get(env["t"]) if isinstance(env["t"], str) else None
    if cls is None:
        raise RemoteProtocolError(f"message: unknown type {str(env['t'])[:40]!r}")
    if signed != cls.SIGNED:
        raise RemoteProtocolError(
            f"{cls.__name__}: must {'' if cls.SIGNED else 'not '}be a COSE_Sign1"
        )
    body = env["b"]
    layout = _layout(cls)
    if not isinstance(body, dict) or body.keys() != layout.names:
        names = ", ".join(name for name, _ in layout.body)
        raise RemoteProtocolError(f"{cls.__name__}: body must hold exactly {names}")
    values: dict[str, Any] = {}
    for name, is_map in layout.body:
        value = body[name]
        if is_map:
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise RemoteProtocolError(f"{cls.__name__}.{name}: expected a map of names")
            value = tuple(sorted(value.items()))
        values[name] = value
    try:
        return cls(version=env["v"], session_id=env["sid"], transcript=env["th"], **values)
    except LocalProtocolError as exc:
        raise RemoteProtocolError(str(exc)) from None


def decode(data: bytes) -> Message:
    """Parse wire bytes into a message (a signed one keeps its ``cose`` for
    :func:`verify_signature`; decoding does not verify, it has no keys).

    Raises:
        RemoteProtocolError: anything malformed, oversized, unknown, or of another version.
    """
    if not isinstance(data, bytes):
        raise RemoteProtocolError("message: expected bytes")
    if len(data) > MAX_MESSAGE:
        raise RemoteProtocolError(f"message: {len(data)} bytes, at most {MAX_MESSAGE}")
    if data[:1] == b"\xd2":  # tag 18: COSE_Sign1
        protected, payload, _ = _split_cose(data)
        kid = _kid_of_protected(protected)
        msg = _from_envelope(payload, signed=True)
        if not isinstance(msg, SignedMessage):  # signed=True only yields these
            raise RemoteProtocolError("COSE_Sign1 around an unsigned message type")
        return _with_signature(msg, kid, data)
    return _from_envelope(data, signed=False)


def pairs(mapping: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A mapping as the sorted (name, value) pairs message map fields hold."""
    return tuple(sorted(mapping.items()))
