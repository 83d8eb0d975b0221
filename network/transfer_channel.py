"""Pure. The channel between two operators for Alternative 3a's Ki transfer (TR 33.812
§7.1.2.3.1): what crosses between them and nothing else — no store, no card, no clock of its
own (``now`` is a parameter).

1. :class:`TransferRequest` (SHO-B → SHO-A), COSE_Sign1/ES256 by SHO-B (RFC 9052 §4.2):
   transfer id, old IMSI, ICCID, both names, expiry, and a fresh P-256 public key of SHO-B.
2. The package (SHO-A → SHO-B), COSE_Sign1/ES256 by SHO-A over {id, SHA-256(request), from,
   to, COSE_Encrypt}: the :class:`Subscription` (K, OPc/TOPc, AMF, SQN state, OTA key sets and
   their counters) as CBOR in a COSE_Encrypt (RFC 9052 §5.1) with A256GCM, the content key
   agreed by ECDH-ES+HKDF-256 (RFC 9053 §6.3.1) with SHO-B's ephemeral key, the request hash
   as external AAD. Only the holder of the ephemeral private key reads K; the package fits
   one request and no other.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aka.algorithm import AkaAlgorithm
from protocol.errors import RemoteProtocolError, SignatureInvalid
from protocol.messages import SigningKey
from trelab.errors import BadInput
from uicc.ota import Keyset

__all__ = [
    "REQUEST_LIFETIME",
    "CardKeys",
    "Subscription",
    "TransferRequest",
    "build_package",
    "build_request",
    "open_package",
    "open_request",
]

REQUEST_LIFETIME = 600  # seconds a transfer request stays valid
_ES256, _HDR_ALG, _HDR_KID = -7, 1, 4
_A256GCM = "A256GCM"
_ECDH = "ECDH-ES+HKDF-256"


@dataclass(frozen=True)
class CardKeys:
    """A card's OTA key sets as its operator keeps them, with the last counter used per version."""

    keysets: tuple[Keyset, ...] = field(repr=False)
    counters: Mapping[int, int] = field(default_factory=dict)

    def keyset(self, kvn: int) -> Keyset:
        for ks in self.keysets:
            if ks.kvn == kvn:
                return ks
        raise BadInput(f"no OTA key set {kvn} for this card")

    def to_plain(self) -> dict[str, Any]:
        return {
            "keysets": [
                {"kvn": k.kvn, "kic": k.kic, "kid": k.kid, "dek": k.dek} for k in self.keysets
            ],
            "counters": {str(k): v for k, v in sorted(self.counters.items())},
        }

    @classmethod
    def from_plain(cls, data: Any) -> CardKeys:
        keysets = tuple(
            Keyset(int(k["kvn"]), bytes(k["kic"]), bytes(k["kid"]), _opt_bytes(k.get("dek")))
            for k in data["keysets"]
        )
        counters = {int(k): int(v) for k, v in data["counters"].items()}
        return cls(keysets, counters)


def _opt_bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


@dataclass(frozen=True)
class Subscription:
    """One subscription as SHO-A exports it: the HSS record's content and the card's OTA keys."""

    imsi: str
    iccid: str
    algorithm: str
    params: Mapping[str, int]
    k: bytes = field(repr=False)
    opc: bytes = field(repr=False)
    amf: bytes = b"\x80\x00"
    sqn: Mapping[str, int] = field(default_factory=dict)
    ota: CardKeys = field(default_factory=lambda: CardKeys(()), repr=False)

    def to_cbor(self) -> bytes:
        return cbor2.dumps(
            {
                "imsi": self.imsi,
                "iccid": self.iccid,
                "algorithm": self.algorithm,
                "params": dict(self.params),
                "k": self.k,
                "opc": self.opc,
                "amf": self.amf,
                "sqn": dict(self.sqn),
                "ota": self.ota.to_plain(),
            },
            canonical=True,
        )

    @classmethod
    def from_cbor(cls, data: bytes) -> Subscription:
        """Raises: RemoteProtocolError: not a subscription."""
        try:
            raw = cbor2.loads(data)
            sub = cls(
                imsi=str(raw["imsi"]),
                iccid=str(raw["iccid"]),
                algorithm=str(raw["algorithm"]),
                params={str(k): int(v) for k, v in raw["params"].items()},
                k=bytes(raw["k"]),
                opc=bytes(raw["opc"]),
                amf=bytes(raw["amf"]),
                sqn={str(k): int(v) for k, v in raw["sqn"].items()},
                ota=CardKeys.from_plain(raw["ota"]),
            )
        except (cbor2.CBORError, KeyError, TypeError, ValueError) as exc:
            raise RemoteProtocolError(
                f"transfer package: subscription malformed ({type(exc).__name__})"
            ) from None
        _algorithm(sub.algorithm, sub.params, sub.k, sub.opc)  # refuse what cannot run
        return sub


@dataclass(frozen=True)
class TransferRequest:
    """SHO-B's signed request for one subscription; ``wire`` is its COSE_Sign1."""

    transfer_id: str
    requester: str  # SHO-B
    holder: str  # SHO-A
    imsi: str
    iccid: str
    not_after: int
    ephemeral: bytes  # SHO-B's ephemeral P-256 public key, X9.62 uncompressed
    wire: bytes = field(repr=False)

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.wire).digest()


def _sign(payload: bytes, key: SigningKey) -> bytes:
    from cwt import COSE

    wire = COSE.new().encode_and_sign(
        payload,
        key.cose_key(),
        protected={_HDR_ALG: _ES256, _HDR_KID: key.name.encode("ascii")},
        unprotected={},
    )
    assert isinstance(wire, bytes)
    return wire


def _kid(wire: bytes) -> str:
    try:
        tag = cbor2.loads(wire)
        protected = cbor2.loads(tag.value[0])
        return str(protected[_HDR_KID].decode("ascii"))
    except Exception:  # cbor2 evaluates semantic tags, each failing its own way
        raise RemoteProtocolError("transfer message: not a COSE_Sign1 with a kid") from None


def _verified(wire: bytes, signer: str, public_key: ec.EllipticCurvePublicKey) -> Any:
    """The CBOR payload of a COSE_Sign1 by ``signer``.

    Raises: SignatureInvalid: the signature does not verify with ``public_key``.
    """
    from cwt import COSE, COSEKey
    from cwt.exceptions import CWTError

    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        payload = COSE.new().decode(wire, COSEKey.from_pem(pem, alg="ES256", kid=signer))
        return cbor2.loads(payload)
    except (
        CWTError,
        ValueError,
        TypeError,
        LookupError,
        ArithmeticError,
        RuntimeError,  # RecursionError, a CBORTag holding itself
        cbor2.CBORError,
    ) as exc:
        raise SignatureInvalid(f"transfer message signed by {signer!r} does not verify") from exc


def build_request(
    key: SigningKey,
    *,
    holder: str,
    imsi: str,
    iccid: str,
    now: int,
    transfer_id: str | None = None,
) -> tuple[TransferRequest, ec.EllipticCurvePrivateKey]:
    """SHO-B's request and the ephemeral private key that alone will open the package."""
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    point = ephemeral.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    tid = transfer_id or secrets.token_hex(8)
    body = {
        "t": "ki-transfer-request",
        "v": 1,
        "id": tid,
        "from": holder,
        "to": key.name,
        "imsi": imsi,
        "iccid": iccid,
        "not_after": now + REQUEST_LIFETIME,
        "epk": point,
    }
    wire = _sign(cbor2.dumps(body, canonical=True), key)
    request = TransferRequest(
        tid, key.name, holder, imsi, iccid, now + REQUEST_LIFETIME, point, wire
    )
    return request, ephemeral


def open_request(
    wire: bytes, keys: Mapping[str, ec.EllipticCurvePublicKey], *, holder: str | None, now: int
) -> TransferRequest:
    """SHO-A's check of a request: signed by a known SHO, addressed to ``holder`` (None: to
    whichever SHO it names — the caller checks it is one of its own), not expired.

    Raises:
        SignatureInvalid: unknown signer or a bad signature.
        RemoteProtocolError: malformed, for another holder, or expired.
    """
    signer = _kid(wire)
    if signer not in keys:
        raise SignatureInvalid(f"transfer request from unknown SHO {signer!r}")
    body = _verified(wire, signer, keys[signer])
    try:
        if body["t"] != "ki-transfer-request" or body["v"] != 1 or body["to"] != signer:
            raise RemoteProtocolError("transfer request: wrong type or requester")
        request = TransferRequest(
            str(body["id"]),
            signer,
            str(body["from"]),
            str(body["imsi"]),
            str(body["iccid"]),
            int(body["not_after"]),
            bytes(body["epk"]),
            wire,
        )
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), request.ephemeral)
    except (KeyError, TypeError, ValueError) as exc:
        raise RemoteProtocolError(f"transfer request malformed ({type(exc).__name__})") from None
    if holder is not None and request.holder != holder:
        raise RemoteProtocolError(f"transfer request is for {request.holder!r}, not {holder!r}")
    if request.not_after <= now:
        raise RemoteProtocolError("transfer request expired")
    return request


def _cose_key(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> Any:
    from cwt import COSEKey

    if isinstance(key, ec.EllipticCurvePrivateKey):
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    else:
        pem = key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return COSEKey.from_pem(pem, alg=_ECDH, kid="sho-b-ephemeral")


def build_package(key: SigningKey, request: TransferRequest, subscription: Subscription) -> bytes:
    """SHO-A's answer: the subscription encrypted to the request's ephemeral key, signed."""
    from cwt import COSE, Recipient

    if key.name != request.holder:
        raise BadInput(f"the request is for {request.holder!r}, not {key.name!r}")
    recipient_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), request.ephemeral)
    recipient = Recipient.new(
        unprotected={"alg": _ECDH, "kid": b"sho-b-ephemeral"},
        recipient_key=_cose_key(recipient_key),
        context={"alg": _A256GCM},
    )
    encrypted = COSE.new().encode_and_encrypt(
        subscription.to_cbor(),
        protected={"alg": _A256GCM},
        recipients=[recipient],
        external_aad=request.digest,
    )
    body = {
        "t": "ki-transfer-package",
        "v": 1,
        "id": request.transfer_id,
        "req": request.digest,
        "from": key.name,
        "to": request.requester,
        "enc": encrypted,
    }
    return _sign(cbor2.dumps(body, canonical=True), key)


def open_package(
    wire: bytes,
    request: TransferRequest,
    ephemeral: ec.EllipticCurvePrivateKey,
    holder_key: ec.EllipticCurvePublicKey,
) -> Subscription:
    """SHO-B's check of the package: signed by the holder, bound to this very request,
    decrypted with the ephemeral key; the subscription is the one asked for.

    Raises:
        SignatureInvalid: not signed by the holder.
        RemoteProtocolError: bound to another request, does not decrypt, or another IMSI/ICCID.
    """
    from cwt import COSE
    from cwt.exceptions import CWTError

    if _kid(wire) != request.holder:
        raise SignatureInvalid(f"transfer package not signed by {request.holder!r}")
    body = _verified(wire, request.holder, holder_key)
    try:
        bound = (
            body["t"] == "ki-transfer-package"
            and body["id"] == request.transfer_id
            and hmac.compare_digest(bytes(body["req"]), request.digest)
            and body["to"] == request.requester
        )
        encrypted = bytes(body["enc"])
    except (KeyError, TypeError) as exc:
        raise RemoteProtocolError(f"transfer package malformed ({type(exc).__name__})") from None
    if not bound:
        raise RemoteProtocolError("transfer package answers another request")
    try:
        plain = COSE.new().decode(
            encrypted, _cose_key(ephemeral), context={"alg": _A256GCM}, external_aad=request.digest
        )
    except (CWTError, ValueError, TypeError, KeyError) as exc:
        raise RemoteProtocolError("transfer package does not decrypt") from exc
    subscription = Subscription.from_cbor(plain)
    if (subscription.imsi, subscription.iccid) != (request.imsi, request.iccid):
        raise RemoteProtocolError("transfer package carries another subscription")
    return subscription


def _algorithm(algorithm: str, params: Mapping[str, int], k: bytes, opc: bytes) -> AkaAlgorithm:
    """Raises: BadInput: an algorithm or parameters that cannot run."""
    from aka.sets import software_algorithm

    return software_algorithm(algorithm, params, k, opc)
