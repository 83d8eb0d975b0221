"""Edge: the operator's SQLite store (:mod:`network.store`) and its OTA key file. Alternative 3a
of TR 33.812 (Ki transfer, §7.1.2.3.1): SHO-A hands a subscription to SHO-B, SHO-B imports
it into its HSS and rewrites the card over the air; the card itself is reached through a
``send(apdu) -> response`` callable (PC/SC or a modem's AT+CSIM), never from here.

The channel between the operators (message functions, no I/O):

1. :class:`TransferRequest` (SHO-B → SHO-A), COSE_Sign1/ES256 by SHO-B (RFC 9052 §4.2):
   transfer id, old IMSI, ICCID, both names, expiry, and a fresh P-256 public key of SHO-B.
2. The package (SHO-A → SHO-B), COSE_Sign1/ES256 by SHO-A over {id, SHA-256(request), from,
   to, COSE_Encrypt}: the subscription (K, OPc/TOPc, AMF, SQN state, OTA key sets and their
   counters) as CBOR in a COSE_Encrypt (RFC 9052 §5.1) with A256GCM, the content key agreed by
   ECDH-ES+HKDF-256 (RFC 9053 §6.3.1) with SHO-B's ephemeral key, the request hash as external
   AAD. Both operators are authenticated by the SHO keys of :mod:`network.config`; only the
   holder of the ephemeral private key (dropped after import: forward secrecy) reads K; the
   package fits one request and no other.

What SHO-B then does, one secured packet each (:mod:`uicc.ota`), resumable after a crash at any
point (every step is journaled before and after; counters are reserved before sending):

- ``keys-add``: RAM PUT KEY of a new key set (under the transferred one);
- ``keys-delete``: RAM DELETE of the transferred key sets (under the new one) — SHO-A's OTA
  keys stop working (design threat 3);
- ``imsi``: RFM USIM: EF.IMSI ← an IMSI of SHO-B; EF.LOCI, EF.PSLOCI, EF.EPSLOCI invalidated
  (TMSI/P-TMSI/GUTI deleted, LAC/TAC FFFE, status "not updated"); EF.FPLMN cleared;
- ``k-rotation`` (optional): the card's proprietary credential command with a new K/OPc; the
  HSS record follows only once the PoR confirms. Threat 2 of §7.1.2.3.1 (the old operator keeps K and can
  masquerade as the subscriber or decrypt its traffic) is open until this step, and closed
  after — :meth:`KiTransfer.threat_check` shows both;
- ``activate``: the SHO-B HSS record becomes active.

Test hook: ``TRELAB_TEST_CRASH_AT=ota:<step>:<reserved|sent|done>`` or
``ota:import:exported`` (:mod:`trelab.crash`, read when a :class:`KiTransfer` is made) SIGKILLs
the process running the transfer with a packet's counter reserved but nothing sent, with its PoR
received but not yet acted on, after a step but before the journal records it, or after SHO-A's
export but before SHO-B's import.

Limits said plainly: SHO-A keeps its copy of K — nothing here can prove it deleted it
(TR 33.812's counter-measure is contractual); the K rotation needs a card that accepts a new K (this
project's emulated USIM does; standard USIMs do not, per TR 33.812's editor's note) and it is
only as confidential as the OTA channel: an old operator who recorded the SMS of ``keys-add``
(ciphered under keys it knows) can follow the new keys. Both operators live in one store and
one configuration here (the lab); the messages are built to travel between two.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aka.algorithm import F2345, AkaAlgorithm
from aka.hss import Hss, Subscriber
from aka.keyholder import SoftwareAes
from aka.milenage import Milenage
from aka.sqn import SqnGenerator
from aka.tuak import SoftwareKeccak, Tuak
from aka.usim import AkaMacFailure, AkaResult, AkaSuccess, AkaSyncFailure
from network.config import NetworkConfig
from network.store import Sealer, Store, StoreTransaction
from protocol.errors import Refused, RemoteProtocolError, SignatureInvalid
from protocol.messages import SigningKey
from protocol.records import HssRecord
from trelab.atomic import atomic_write_text, file_lock
from trelab.crash import TRANSFER_CRASH_ENV, crash_hook, no_crash
from trelab.errors import BadInput, CheckFailed
from uicc import fs
from uicc.ota import (
    DEFAULT_SPI,
    RAM_OUTGOING_INS,
    RFM_OUTGOING_INS,
    TAR_RAM_ISD,
    TAR_RFM_USIM,
    Keyset,
    OtaRejected,
    PorStatus,
    RemoteResult,
    ResponsePacket,
    build_command_packet,
    build_delete_keyset,
    build_envelope_sms_pp,
    build_put_key,
    build_set_credentials,
    build_sms_deliver,
    encode_compact,
    encode_scts,
    parse_remote_response,
    parse_response_packet,
)

__all__ = [
    "STEPS",
    "CardKeys",
    "KiTransfer",
    "OtaKeyring",
    "OtaStep",
    "Subscription",
    "TransferRequest",
    "build_package",
    "build_request",
    "deliver",
    "imsi_update_script",
    "open_package",
    "open_request",
]

STEPS = ("import", "keys-add", "keys-delete", "imsi", "k-rotation", "activate")
REQUEST_LIFETIME = 600  # seconds a transfer request stays valid
_ES256, _HDR_ALG, _HDR_KID = -7, 1, 4
_A256GCM = "A256GCM"
_ECDH = "ECDH-ES+HKDF-256"
_KEYRING_VERSION = 1
_SW_OK = 0x9000
_SW_NOT_FOUND = 0x6A88

Send = Callable[[bytes], bytes]
Authenticate = Callable[[bytes, bytes], AkaResult]
Progress = Callable[[str], None]


# ---- what crosses between the operators ---------------------------------------------------------


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
    except (cbor2.CBORError, AttributeError, IndexError, KeyError, TypeError, ValueError):
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
    except (CWTError, ValueError, TypeError, KeyError, cbor2.CBORError) as exc:
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
    wire: bytes, keys: Mapping[str, ec.EllipticCurvePublicKey], *, holder: str, now: int
) -> TransferRequest:
    """SHO-A's check of a request: signed by a known SHO, addressed to ``holder``, not expired.

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
    if request.holder != holder:
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


# ---- the operators' OTA key file ----------------------------------------------------------------


class OtaKeyring:
    """Per operator and card (ICCID): OTA key sets (sealed with the store key, AES-GCM, the
    associated data naming operator, card and version) and the last counter used; plus the
    journal of transfers in progress. One JSON file, rewritten atomically on every change —
    a counter is on disk before the packet that uses it leaves; read-modify-write under an
    exclusive lock (``<file>.lock``), so two runs never hand out the same counter."""

    def __init__(self, path: str | os.PathLike[str], store_key: bytes) -> None:
        self.path = Path(path)
        self._sealer = Sealer(store_key)

    def __repr__(self) -> str:
        return f"OtaKeyring({str(self.path)!r})"

    def _load(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"version": _KEYRING_VERSION, "cards": {}, "transfers": {}}
        except (OSError, ValueError) as exc:
            raise BadInput(f"OTA key file {self.path}: unreadable ({type(exc).__name__})") from None
        if doc.get("version") != _KEYRING_VERSION:
            raise BadInput(f"OTA key file {self.path}: unsupported version")
        return doc

    def _save(self, doc: dict[str, Any]) -> None:
        atomic_write_text(self.path, json.dumps(doc, indent=1, sort_keys=True) + "\n")

    @contextlib.contextmanager
    def _update(self) -> Iterator[dict[str, Any]]:
        """The document, locked for one read-modify-write; saved if the block completes."""
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            doc = self._load()
            yield doc
            self._save(doc)

    def _where(self, sho: str, iccid: str, what: str) -> str:
        return f"ota/{sho}/{iccid}/{what}"

    def card(self, sho: str, iccid: str) -> tuple[CardKeys, dict[str, Any]] | None:
        """(keys, entry) of a card this operator manages, or None."""
        entry = self._load()["cards"].get(f"{sho}/{iccid}")
        if entry is None:
            return None
        keysets = tuple(
            _keyset_from(self._sealer.open(self._where(sho, iccid, f"kvn{kvn}"), bytes.fromhex(s)))
            for kvn, s in sorted(entry["keysets"].items(), key=lambda i: int(i[0]))
        )
        counters = {int(k): int(v) for k, v in entry["counters"].items()}
        return CardKeys(keysets, counters), entry

    def put_card(self, sho: str, iccid: str, keys: CardKeys, **meta: Any) -> None:
        with self._update() as doc:
            self._put_card(doc, sho, iccid, keys, meta)

    def _put_card(
        self, doc: dict[str, Any], sho: str, iccid: str, keys: CardKeys, meta: Mapping[str, Any]
    ) -> None:
        old = doc["cards"].get(f"{sho}/{iccid}", {})
        counters = {str(k): v for k, v in keys.counters.items()}
        for kvn, value in old.get("counters", {}).items():  # counters never go back
            counters[kvn] = max(int(value), int(counters.get(kvn, 0)))
        doc["cards"][f"{sho}/{iccid}"] = {
            **{k: v for k, v in old.items() if k not in ("keysets", "counters")},
            **meta,
            "keysets": {
                str(ks.kvn): self._sealer.seal(
                    self._where(sho, iccid, f"kvn{ks.kvn}"), _keyset_bytes(ks)
                ).hex()
                for ks in keys.keysets
            },
            "counters": counters,
        }

    def reserve_counter(self, sho: str, iccid: str, kvn: int) -> int:
        """The next counter for key version ``kvn`` — on disk before it is returned."""
        with self._update() as doc:
            entry = doc["cards"].get(f"{sho}/{iccid}")
            if entry is None:
                raise BadInput(f"{sho} holds no OTA keys for card {iccid}")
            value = int(entry["counters"].get(str(kvn), 0)) + 1
            entry["counters"][str(kvn)] = value
        return value

    def set_state(self, sho: str, iccid: str, state: str, **meta: Any) -> None:
        with self._update() as doc:
            doc["cards"][f"{sho}/{iccid}"].update(meta, state=state)

    # -- transfer journal --

    def journal(self, transfer_id: str) -> dict[str, Any]:
        entry: dict[str, Any] = self._load()["transfers"][transfer_id]
        return entry

    def find_transfer(self, iccid: str, holder: str, requester: str) -> str | None:
        """The id of the latest transfer of this card between these operators, if any."""
        found = [
            (entry["started"], str(tid))
            for tid, entry in self._load()["transfers"].items()
            if (entry["iccid"], entry["from"], entry["to"]) == (iccid, holder, requester)
        ]
        return max(found)[1] if found else None

    def put_journal(self, transfer_id: str, entry: Mapping[str, Any]) -> None:
        with self._update() as doc:
            doc["transfers"][transfer_id] = dict(entry)

    def seal(self, where: str, data: bytes) -> str:
        return self._sealer.seal(where, data).hex()

    def unseal(self, where: str, sealed: str) -> bytes:
        return self._sealer.open(where, bytes.fromhex(sealed))


def _keyset_bytes(ks: Keyset) -> bytes:
    return cbor2.dumps([ks.kvn, ks.kic, ks.kid, ks.dek], canonical=True)


def _keyset_from(data: bytes) -> Keyset:
    kvn, kic, kid, dek = cbor2.loads(data)
    return Keyset(int(kvn), bytes(kic), bytes(kid), _opt_bytes(dek))


# ---- card scripts ---------------------------------------------------------------------------------


def _plmn_bytes(imsi: str, mnc_length: int) -> bytes:
    """MCC/MNC of ``imsi`` as 3 bytes (TS 24.008 §10.5.1.3; MNC digit 3 F when 2 digits)."""
    mcc, mnc = imsi[:3], imsi[3 : 3 + mnc_length]
    d = mcc + (mnc if len(mnc) == 3 else mnc + "F")
    # byte 1: MCC2 MCC1, byte 2: MNC3 MCC3, byte 3: MNC2 MNC1
    return bytes.fromhex(d[1] + d[0] + d[5] + d[2] + d[4] + d[3])


def imsi_update_script(imsi: str, mnc_length: int = 2) -> list[bytes]:
    """RFM USIM commands (UPDATE BINARY by SFI) for a new IMSI: EF.IMSI; EF.LOCI, EF.PSLOCI and
    EF.EPSLOCI invalidated — TMSI/P-TMSI/GUTI all FF, the PLMN of the new IMSI with the deleted
    LAC/TAC FFFE, status 01 "not updated" (TS 31.102 §4.2.17, §4.2.23, §4.2.91); EF.FPLMN
    emptied (the new operator's forbidden list starts empty)."""
    plmn = _plmn_bytes(imsi, mnc_length)

    def update(ef: fs.TransparentEF, content: bytes) -> bytes:
        assert ef.sfid is not None and len(content) == ef.size
        return bytes([0x00, 0xD6, 0x80 | ef.sfid, 0x00, len(content)]) + content

    return [
        update(fs.EF_IMSI, fs.EF_IMSI.codec.encode(imsi, fs.EF_IMSI.size)),
        update(fs.EF_LOCI, b"\xff" * 4 + plmn + b"\xff\xfe" + b"\xff" + b"\x01"),
        update(fs.EF_PSLOCI, b"\xff" * 7 + plmn + b"\xff\xfe\xff" + b"\x01"),
        update(fs.EF_EPSLOCI, b"\xff" * 12 + plmn + b"\xff\xfe" + b"\x01"),
        update(fs.EF_FPLMN, b"\xff" * fs.EF_FPLMN.size),
    ]


def _algorithm(algorithm: str, params: Mapping[str, int], k: bytes, opc: bytes) -> AkaAlgorithm:
    """Raises: BadInput: an algorithm or parameters that cannot run."""
    if algorithm == "milenage":
        return Milenage(SoftwareAes(k), opc)
    if algorithm == "tuak":
        extra = {key: v for key, v in params.items() if key != "key_bits"}
        return Tuak(SoftwareKeccak(k), opc, **extra)
    raise BadInput(f"algorithm {algorithm!r} is not milenage or tuak")


def _record_algorithm(record: HssRecord) -> AkaAlgorithm:
    return _algorithm(record.algorithm, record.params, record.k, record.opc)


# ---- the orchestration (SHO-B side; SHO-A's export is one call) ----------------------------------


@dataclass(frozen=True, slots=True)
class OtaStep:
    """One OTA packet sent and what its PoR said."""

    step: str
    tar: bytes
    kvn: int
    counter: int
    packet_bytes: int
    status: PorStatus
    result: RemoteResult

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "tar": self.tar.hex(),
            "kvn": self.kvn,
            "counter": self.counter,
            "packet_bytes": self.packet_bytes,
            "por": self.status.text,
            **self.result.to_json(),
        }


class KiTransfer:
    """Alternative 3a between two SHOs of one configuration and store (the lab)."""

    def __init__(
        self,
        config: NetworkConfig,
        store: Store,
        keyring: OtaKeyring,
        *,
        now: Callable[[], int],
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.config = config
        self.store = store
        self.keyring = keyring
        self._now = now
        self._random = random_bytes
        self._crash = crash_hook(TRANSFER_CRASH_ENV) or no_crash  # test hook (module doc)

    def _sho(self, name: str) -> Any:
        sho = self.config.shos.get(name)
        if sho is None:
            raise BadInput(f"no SHO named {name!r} in the network configuration")
        return sho

    # -- SHO-A: the card it personalised (Alternative 2 data) --

    def register_card(self, sho: str, subscription: Subscription) -> bool:
        """Make ``sho`` the operator of a card: HSS record (active) and OTA keys. Idempotent;
        returns False if it was known already (its SQN and counters are then kept).

        Raises: Refused: the IMSI belongs to another SHO's record.
        """
        self._sho(sho)
        _algorithm(subscription.algorithm, subscription.params, subscription.k, subscription.opc)
        created = False
        with self.store.transaction() as tx:
            existing = tx.hss(subscription.imsi)
            if existing is not None and existing.sho != sho:
                raise Refused("imsi-taken", f"IMSI {subscription.imsi} is {existing.sho}'s")
            if existing is None:
                tx.put_hss(
                    HssRecord(
                        subscription.imsi,
                        sho,
                        subscription.algorithm,
                        dict(subscription.params),
                        subscription.k,
                        subscription.opc,
                        subscription.amf,
                        dict(subscription.sqn),
                        "active",
                        f"card:{subscription.iccid}:{sho}",
                    )
                )
                tx.audit(
                    self._now(), sho, "hss-record", subscription.imsi, {"card": subscription.iccid}
                )
                created = True
        if self.keyring.card(sho, subscription.iccid) is None:
            self.keyring.put_card(
                sho, subscription.iccid, subscription.ota, imsi=subscription.imsi, state="active"
            )
            created = True
        return created

    # -- SHO-A: export --

    def export(self, holder: str, wire_request: bytes) -> bytes:
        """SHO-A answers a request: checks it, marks its record "transferred" (K is kept: that
        is threat 2 of §7.1.2.3.1) and stops using the card's OTA keys; returns the signed package.

        Raises:
            SignatureInvalid, RemoteProtocolError: a bad request.
            Refused: SHO-A has no such subscription or card.
        """
        keys = {name: sho.key.public_key for name, sho in self.config.shos.items()}
        request = open_request(wire_request, keys, holder=holder, now=self._now())
        sho_a = self._sho(request.holder)
        card = self.keyring.card(request.holder, request.iccid)
        if card is not None and card[1].get("transferred_to", request.transfer_id) != (
            request.transfer_id
        ):
            raise Refused("already-transferred", f"card {request.iccid} was handed over already")
        with self.store.transaction() as tx:
            record = tx.hss(request.imsi)
            if record is None or record.sho != request.holder:
                raise Refused("unknown-subscriber", f"{request.holder} has no IMSI {request.imsi}")
            if card is None:
                raise Refused("unknown-card", f"{request.holder} holds no OTA keys for the card")
            subscription = Subscription(
                record.imsi,
                request.iccid,
                record.algorithm,
                dict(record.params),
                record.k,
                record.opc,
                record.amf,
                dict(record.sqn),
                card[0],
            )
            if record.state != "transferred":
                tx.put_hss(replace(record, state="transferred"))
            tx.audit(
                self._now(),
                request.holder,
                "ki-export",
                record.imsi,
                {"to": request.requester, "transfer": request.transfer_id},
            )
        self.keyring.set_state(
            request.holder, request.iccid, "transferred", transferred_to=request.transfer_id
        )
        return build_package(sho_a.key, request, subscription)

    # -- SHO-B: the whole transfer, resumable --

    def run(
        self,
        *,
        holder: str,
        requester: str,
        imsi: str,
        iccid: str,
        send: Send,
        rotate_k: bool,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Transfer ``imsi`` (card ``iccid``) from ``holder`` to ``requester`` and update the
        card through ``send``. Resumes the transfer of the same card if there is one: its
        missing steps run (after a crash; or the K rotation asked for later), done ones are
        skipped. Returns the report (transfer id, new IMSI, steps done now and before, OTA
        packets).

        Raises:
            OtaRejected: a PoR that is not "PoR OK".
            CheckFailed: a remote command failed, a PoR does not verify, or the card refused
                the ENVELOPE.
            Refused / SignatureInvalid / RemoteProtocolError: the operators' exchange failed.
        """
        say = progress or (lambda _line: None)
        self._sho(holder)
        self._sho(requester)
        if holder == requester:
            raise BadInput("a subscription cannot be transferred to the SHO that holds it")
        tid = self.keyring.find_transfer(iccid, holder, requester)
        resumed = tid is not None
        if tid is not None and self.keyring.journal(tid)["old_imsi"] != imsi:
            raise BadInput(
                f"card {iccid} was transferred for IMSI {self.keyring.journal(tid)['old_imsi']}"
            )
        if tid is None:
            self._check_holder(holder, imsi, iccid)
            tid = secrets.token_hex(8)
            self.keyring.put_journal(
                tid,
                {
                    "from": holder,
                    "to": requester,
                    "old_imsi": imsi,
                    "iccid": iccid,
                    "new_imsi": None,
                    "rotate_k": rotate_k,
                    "steps": {},
                    "started": self._now(),
                },
            )
        journal = self.keyring.journal(tid)
        if rotate_k and not journal["rotate_k"]:
            journal["rotate_k"] = True
            self.keyring.put_journal(tid, journal)
        done_before = [s for s in STEPS if journal["steps"].get(s)]
        packets: list[OtaStep] = []
        for step in STEPS:
            journal = self.keyring.journal(tid)
            if journal["steps"].get(step) or (step == "k-rotation" and not journal["rotate_k"]):
                continue
            say(f"{step} …")
            packets.extend(self._step(tid, step, send))
            self._crash(f"ota:{step}:done")
            journal = self.keyring.journal(tid)
            journal["steps"][step] = True
            self.keyring.put_journal(tid, journal)
        journal = self.keyring.journal(tid)
        return {
            "transfer_id": tid,
            "resumed": resumed,
            "from": holder,
            "to": requester,
            "iccid": iccid,
            "old_imsi": journal["old_imsi"],
            "new_imsi": journal["new_imsi"],
            "k_rotated": bool(journal["steps"].get("k-rotation")),
            "steps_done_before": done_before,
            "packets": [p.to_json() for p in packets],
        }

    def _check_holder(self, holder: str, imsi: str, iccid: str) -> None:
        """Before anything is journaled: the holder has this subscriber and this card.

        Raises: Refused: it has not (nothing is written).
        """
        with self.store.transaction() as tx:
            record = tx.hss(imsi)
        if record is None or record.sho != holder:
            raise Refused("unknown-subscriber", f"{holder} has no subscriber {imsi}")
        if record.state != "active":
            raise Refused("not-active", f"{holder}'s subscriber {imsi} is {record.state}")
        if self.keyring.card(holder, iccid) is None:
            raise Refused("unknown-card", f"{holder} holds no OTA keys for card {iccid}")

    def _step(self, tid: str, step: str, send: Send) -> list[OtaStep]:
        journal = self.keyring.journal(tid)
        requester, iccid = journal["to"], journal["iccid"]
        if step == "import":
            self._import(tid)
            return []
        if step == "activate":
            with self.store.transaction() as tx:
                record = tx.hss(journal["new_imsi"])
                assert record is not None
                tx.put_hss(replace(record, state="active"))
                tx.audit(self._now(), requester, "ki-activate", record.imsi, {"transfer": tid})
            return []
        card = self.keyring.card(requester, iccid)
        assert card is not None
        keys = card[0]
        if step == "keys-add":
            new = self._new_keyset(tid, keys)
            # signed with the transferred key set, which stays on the card until keys-delete
            # (on a retry after a lost PoR the card takes the same PUT KEY again)
            old = max(_others(keys, new.kvn), key=lambda k: k.kvn)
            out = self._packet(
                step, requester, iccid, old, TAR_RAM_ISD, [build_put_key(new, kek=old.kek)], send
            )
            self._expect_ok(out, step)
            self.keyring.put_card(requester, iccid, CardKeys((*_others(keys, new.kvn), new)))
            return [out]
        if step == "keys-delete":
            new = self._new_keyset(tid, keys)
            olds = [k.kvn for k in keys.keysets if k.kvn != new.kvn]
            if not olds:
                return []
            out = self._packet(
                step,
                requester,
                iccid,
                new,
                TAR_RAM_ISD,
                [build_delete_keyset(kvn) for kvn in olds],
                send,
            )
            # 6A88: already deleted (a retry after a lost PoR)
            self._expect_ok(out, step, also=(_SW_NOT_FOUND,))
            self.keyring.put_card(requester, iccid, CardKeys((new,), keys.counters))
            return [out]
        current = self._new_keyset(tid, keys)
        if step == "imsi":
            mnc_length = 3 if len(self._sho(requester).plmn) == 6 else 2
            script = imsi_update_script(journal["new_imsi"], mnc_length)
            out = self._packet(step, requester, iccid, current, TAR_RFM_USIM, script, send)
            self._expect_ok(out, step)
            with self.store.transaction() as tx:
                tx.audit(self._now(), requester, "ota-imsi", journal["new_imsi"], {"transfer": tid})
            return [out]
        if step == "k-rotation":
            k, opc = self._new_credentials(tid)
            script = [
                bytes([0x00, 0xA4, 0x04, 0x0C, 0x07]) + fs.USIM_AID[:7],  # SELECT ADF.USIM
                build_set_credentials(k, opc),
            ]
            out = self._packet(step, requester, iccid, current, TAR_RFM_USIM, script, send)
            self._expect_ok(out, step)
            with self.store.transaction() as tx:
                record = tx.hss(journal["new_imsi"])
                assert record is not None
                tx.put_hss(replace(record, k=k, opc=opc))
                tx.audit(self._now(), requester, "k-rotation", record.imsi, {"transfer": tid})
            return [out]
        raise BadInput(f"unknown transfer step {step!r}")

    def _import(self, tid: str) -> None:
        """Request, export (SHO-A) and import (SHO-B): new IMSI, HSS record "pending",
        the card's OTA keys on SHO-B's side. Idempotent by the transfer id."""
        journal = self.keyring.journal(tid)
        holder, requester = journal["from"], journal["to"]
        sho_b = self._sho(requester)
        request, ephemeral = build_request(
            sho_b.key,
            holder=holder,
            imsi=journal["old_imsi"],
            iccid=journal["iccid"],
            now=self._now(),
            transfer_id=tid,
        )
        package = self.export(holder, request.wire)
        self._crash("ota:import:exported")
        subscription = open_package(package, request, ephemeral, self._sho(holder).key.public_key)
        del ephemeral  # forward secrecy: nothing can open the package again
        request_id = f"ki-transfer:{tid}"
        with self.store.transaction() as tx:
            record = tx.hss_by_request(request_id)
            if record is None:
                new_imsi = self._allocate_imsi(tx, sho_b)
                record = HssRecord(
                    new_imsi,
                    requester,
                    subscription.algorithm,
                    dict(subscription.params),
                    subscription.k,
                    subscription.opc,
                    subscription.amf,
                    dict(subscription.sqn),
                    "pending",
                    request_id,
                )
                tx.put_hss(record)
                tx.audit(
                    self._now(),
                    requester,
                    "ki-import",
                    new_imsi,
                    {"old_imsi": subscription.imsi, "transfer": tid},
                )
        self.keyring.put_card(
            requester, subscription.iccid, subscription.ota, imsi=record.imsi, state="active"
        )
        journal["new_imsi"] = record.imsi
        self.keyring.put_journal(tid, journal)

    @staticmethod
    def _allocate_imsi(tx: StoreTransaction, sho: Any) -> str:
        width = 15 - len(sho.plmn)
        while True:
            msin = tx.next_msin(sho.name)
            if msin >= 10**width:
                raise Refused("imsi-exhausted", f"SHO {sho.name} has no IMSI left")
            imsi = str(sho.plmn) + str(msin).zfill(width)
            if tx.hss(imsi) is None:
                return imsi

    def _new_keyset(self, tid: str, keys: CardKeys) -> Keyset:
        """The key set this transfer rotates to: drawn once, journaled (sealed) before use."""
        journal = self.keyring.journal(tid)
        where = f"transfer/{tid}/keyset"
        if journal.get("new_keyset"):
            return _keyset_from(self.keyring.unseal(where, journal["new_keyset"]))
        used = _kvns(keys)
        free = [v for v in range(1, 16) if v not in used]
        if not free:
            raise BadInput("the card has 15 key sets: no version left to rotate to")
        new = Keyset(free[0], self._random(16), self._random(16), self._random(16))
        journal["new_keyset"] = self.keyring.seal(where, _keyset_bytes(new))
        self.keyring.put_journal(tid, journal)
        return new

    def _new_credentials(self, tid: str) -> tuple[bytes, bytes]:
        journal = self.keyring.journal(tid)
        where = f"transfer/{tid}/credentials"
        if journal.get("new_credentials"):
            k, opc = cbor2.loads(self.keyring.unseal(where, journal["new_credentials"]))
            return bytes(k), bytes(opc)
        with self.store.transaction() as tx:
            record = tx.hss(journal["new_imsi"])
            assert record is not None
        k, opc = self._random(len(record.k)), self._random(len(record.opc))
        journal["new_credentials"] = self.keyring.seal(where, cbor2.dumps([k, opc]))
        self.keyring.put_journal(tid, journal)
        return k, opc

    def _packet(
        self,
        step: str,
        sho: str,
        iccid: str,
        keyset: Keyset,
        tar: bytes,
        apdus: Sequence[bytes],
        send: Send,
    ) -> OtaStep:
        """Reserve a counter (on disk), send one secured packet, read and check its PoR."""
        counter = self.keyring.reserve_counter(sho, iccid, keyset.kvn)
        self._crash(f"ota:{step}:reserved")
        outgoing = RAM_OUTGOING_INS if tar == TAR_RAM_ISD else RFM_OUTGOING_INS
        script = encode_compact(apdus, outgoing=outgoing)
        packet = build_command_packet(keyset, tar=tar, counter=counter, data=script)
        tpdu = build_sms_deliver(packet, timestamp=encode_scts(self._now()))
        por = deliver(send, build_envelope_sms_pp(tpdu), keyset)
        self._crash(f"ota:{step}:sent")
        if por.status is not PorStatus.OK:
            raise OtaRejected(por.status, f"{step}: counter {counter}, key set {keyset.kvn}")
        if por.tar != tar or por.counter != counter:
            raise RemoteProtocolError(f"{step}: the PoR answers another packet")
        result = parse_remote_response(por.data, expanded=False)
        return OtaStep(step, tar, keyset.kvn, counter, len(packet), por.status, result)

    @staticmethod
    def _expect_ok(out: OtaStep, step: str, also: tuple[int, ...] = ()) -> None:
        sw = out.result.last_sw
        if sw is None:
            raise CheckFailed(f"{step}: no remote command ran")
        if sw != _SW_OK and sw not in also:
            raise CheckFailed(f"{step}: remote command {out.result.executed} answered {sw:04X}")

    # -- AKA with the HSS records: the attach test and the threat demonstration --

    def vector(self, imsi: str) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        """(RAND, AUTN, XRES, CK, IK) from the HSS record of ``imsi``; SQN_HE moves in the
        same transaction (as the SHO's attach does)."""
        with self.store.transaction() as tx:
            record = tx.hss(imsi)
            if record is None:
                raise Refused("unknown-subscriber", f"no HSS record for {imsi}")
            hss = Hss(self._random)
            hss.add(
                Subscriber(imsi, _record_algorithm(record), record.amf, SqnGenerator(**record.sqn))
            )
            v = hss.generate_vectors(imsi, 1)[0]
            tx.put_hss(replace(record, sqn=hss.subscriber(imsi).sqn.to_json()))
        return v.rand, v.autn, v.xres, v.ck, v.ik

    def _resynchronise(self, imsi: str, rand: bytes, auts: bytes) -> None:
        with self.store.transaction() as tx:
            record = tx.hss(imsi)
            assert record is not None
            hss = Hss(self._random)
            hss.add(
                Subscriber(imsi, _record_algorithm(record), record.amf, SqnGenerator(**record.sqn))
            )
            hss.resynchronise(imsi, rand, auts)
            tx.put_hss(replace(record, sqn=hss.subscriber(imsi).sqn.to_json()))

    def attach(self, imsi: str, authenticate: Authenticate) -> dict[str, Any]:
        """AKA between the HSS record of ``imsi`` and the card, as an attach does: one vector,
        on AUTS one resynchronisation and a second vector; accepted if RES = XRES.

        Raises: MacMismatch: AUTS whose MAC-S does not verify.
        """
        resyncs = 0
        while True:
            rand, autn, xres, _ck, _ik = self.vector(imsi)
            result = authenticate(rand, autn)
            if isinstance(result, AkaSyncFailure) and resyncs == 0:
                self._resynchronise(imsi, rand, result.auts)
                resyncs += 1
                continue
            break
        accepted = isinstance(result, AkaSuccess) and hmac.compare_digest(result.res, xres)
        return {"imsi": imsi, "result": result.to_json()["result"], "accepted": accepted,
                "resyncs": resyncs}  # fmt: skip

    def old_operator_view(self, old_imsi: str) -> HssRecord:
        """SHO-A's retained record of a transferred subscriber (threat 2: it still has K)."""
        with self.store.transaction() as tx:
            record = tx.hss(old_imsi)
        if record is None:
            raise Refused("unknown-subscriber", f"no record of {old_imsi}")
        return record

    def threat_check(
        self, old_imsi: str, new_imsi: str, authenticate: Authenticate
    ) -> dict[str, Any]:
        """TR 33.812 §7.1.2.3.1 threat 2 with SHO-A's retained K:

        - ``impersonation``: SHO-B challenges the subscriber (a vector of SHO-B's HSS); SHO-A
          computes RES, CK, IK from RAND with its copy of K — equal to XRES/CK/IK means SHO-A
          can pass as the subscriber and read its traffic;
        - ``false_network``: SHO-A makes an AUTN with its copy of K and the card checks it —
          success or a sync failure (the MAC verified) means the card trusts SHO-A's network.
        """
        old = self.old_operator_view(old_imsi)
        algorithm = _record_algorithm(old)
        rand, _autn, xres, ck, ik = self.vector(new_imsi)
        guess: F2345 = algorithm.f2345(rand)
        impersonation = (
            hmac.compare_digest(guess.res, xres)
            and hmac.compare_digest(guess.ck, ck)
            and hmac.compare_digest(guess.ik, ik)
        )
        rogue = Hss(self._random)
        rogue.add(Subscriber(old.imsi, algorithm, old.amf, SqnGenerator(**old.sqn)))
        vector = rogue.generate_vectors(old.imsi, 1)[0]
        result = authenticate(vector.rand, vector.autn)
        return {
            "impersonation": impersonation,
            "false_network": not isinstance(result, AkaMacFailure),
            "card_answer_to_old_operator": result.to_json()["result"],
        }

    def old_operator_packet(self, holder: str, iccid: str, apdus: Sequence[bytes]) -> bytes:
        """An ENVELOPE SHO-A could still build with the OTA keys it kept (threat 3 of the design
        note): RFM USIM under its key set, its next counter. For demonstrations and tests."""
        card = self.keyring.card(holder, iccid)
        if card is None:
            raise Refused("unknown-card", f"{holder} never held OTA keys for {iccid}")
        keyset = max(card[0].keysets, key=lambda k: k.kvn)
        counter = max(card[0].counters.values(), default=0) + 1
        packet = build_command_packet(
            keyset, tar=TAR_RFM_USIM, counter=counter, data=encode_compact(apdus)
        )
        return build_envelope_sms_pp(build_sms_deliver(packet, timestamp=encode_scts(self._now())))


def _kvns(keys: CardKeys) -> set[int]:
    return {k.kvn for k in keys.keysets}


def _others(keys: CardKeys, kvn: int) -> tuple[Keyset, ...]:
    return tuple(k for k in keys.keysets if k.kvn != kvn)


def deliver(send: Send, envelope: bytes, keyset: Keyset) -> ResponsePacket:
    """Send an SMS-PP download ENVELOPE and read the PoR in its response.

    Raises:
        CheckFailed: the card refused the ENVELOPE (status word) or sent no PoR.
        MacMismatch / RemoteProtocolError: a PoR that does not verify or parse.
    """
    response = send(envelope)
    sw = int.from_bytes(response[-2:], "big")
    if sw != _SW_OK:
        raise CheckFailed(f"ENVELOPE (SMS-PP download): card answered {sw:04X}")
    if len(response) == 2:
        raise CheckFailed("ENVELOPE (SMS-PP download): no proof of receipt")
    return parse_response_packet(response[:-2], spi=DEFAULT_SPI, keyset=keyset)
