"""Pure. The operator-side roles of TR 33.812 — DRF, PVA, DPF, SHO (AuC/HSS) and ICF — as one
:class:`Operator` that maps a device's message to the reply, reading and writing state only
through a :class:`~protocol.records.Ledger` (one store transaction) and doing TPM-format work
through a :class:`Trust` (:class:`network.trust.TpmTrust`). Clock (``now``, Unix seconds) and
randomness (``random_bytes``) are parameters.

Counter-measures of §7.1.2.1 each role enforces:

- DRF (threats 1, 5, 12): the EK certificate chains to a trusted manufacturer CA; revoked TREs
  are refused; the AK is bound to that EK by credential activation (MakeCredential → HMAC
  proof over the transcript, compared in constant time); the AK becomes the device's only
  after the proof.
- PVA (threats 1, 3, 5): a fresh nonce per session; the quote must carry
  H(nonce ‖ session ‖ transcript), cover exactly the requested PCRs, match every reference
  value, be signed by the activated AK and not run the TPM clock backwards; the verdict is
  signed and short-lived.
- DPF (threats 2, 5): no package without a live verdict of the same AK; the package is
  wrapped to this TRE (builder), numbered MID_CTR + 1, and its manifest signed; the receipt
  must be AK-signed NV_Certify evidence of the new state, bound to the session.
- SHO (threats 7, 8): HSS records per SHO, K/OPc generated once per request id; vectors only
  for ACTIVE MIDs; RES compared in constant time; AUTS resynchronises; lifecycle orders must
  be signed by the SHO that owns the MID, and commands are always signed with the owner's key.
  The one transition a TRE may ask for itself is the deletion of a MID while it holds an
  ACTIVE MID of another SHO (change of subscription and its rollback); the receipt of that
  deletion is the TPM-signed proof the old SHO keeps.
- ICF: a PCID is valid only in its period, binds to the first TRE that uses it, and its
  grant reaches only the RO endpoints (DRF, PVA, DPF); it is released once a MID is ACTIVE.

What a TRE itself refuses (a package for another TRE, a platform changed since validation, a
network failing AKA) it reports as an :class:`~protocol.messages.Error` of the session to
``drf/report``: the audit trail records it (``device-refused``) and nothing else changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from aka.access import (
    ABBA_DEFAULT,
    Expected,
    Rat,
    anchor_name,
    home_expects,
    key_proof,
    parse_rat,
    serving_network_for,
)
from aka.algorithm import AkaAlgorithm
from aka.hss import Hss, Subscriber
from aka.kdf import Plmn
from aka.sets import software_algorithm
from aka.sqn import SqnGenerator
from protocol.errors import Refused, RemoteProtocolError, Unavailable
from protocol.messages import (
    INITIAL_TRANSCRIPT,
    REPORT_ENDPOINT,
    RO_ROLES,
    STATE_AFTER,
    STATES_BEFORE,
    Ack,
    AttachRequest,
    AttachResult,
    AuthChallenge,
    AuthResponse,
    CredentialChallenge,
    CredentialProof,
    Error,
    Evidence,
    LifecycleCommand,
    LifecycleOrder,
    LifecycleRequest,
    Message,
    MidPackage,
    PackageRequest,
    Receipt,
    RegisterRequest,
    ValidationChallenge,
    Verdict,
    credential_proof,
    decode,
    encode,
    extend_transcript,
    pairs,
    quote_qualifying_data,
    receipt_qualifying_data,
    sign,
    verify_signature,
)
from protocol.records import (
    DeviceRecord,
    HomeNetworkKey,
    HssRecord,
    Ledger,
    MidRecord,
    OrderRecord,
    PcidRecord,
    SessionRecord,
    VerdictRecord,
    evolve,
)
from protocol.transitions import Phase, Session, SessionState
from tpm.pcrsel import parse_selection
from trelab.errors import BadInput, MacMismatch

if TYPE_CHECKING:
    from network.config import NetworkConfig, ShoConfig

__all__ = [
    "ENDPOINTS",
    "REPORT_ENDPOINT",
    "RO_ROLES",
    "BuiltPackage",
    "EkIdentity",
    "LifecycleFacts",
    "Operator",
    "PackageBuilder",
    "PackageInputs",
    "QuoteOutcome",
    "Trust",
]

RandomBytes = Callable[[int], bytes]

#: POST /v1/<role>/<name> → the message type it takes.
ENDPOINTS: dict[str, type[Message]] = {
    "drf/register": RegisterRequest,
    "drf/proof": CredentialProof,
    "pva/evidence": Evidence,
    "dpf/package": PackageRequest,
    "dpf/receipt": Receipt,
    "sho/lifecycle": LifecycleRequest,
    "sho/order": LifecycleOrder,
    "sho/attach": AttachRequest,
    "sho/auth": AuthResponse,
    "drf/report": Error,
}
_STARTERS: dict[type[Message], str] = {
    RegisterRequest: "provision",
    LifecycleRequest: "lifecycle",
    AttachRequest: "attach",
}
_FROM = STATES_BEFORE
_TO = STATE_AFTER
_HSS_STATE = {
    "PENDING": "pending",
    "INSTALLED": "installed",
    "ACTIVE": "active",
    "SUSPENDED": "suspended",
    "DELETED": "deleted",
}


# ---- what the roles need from the TPM layer ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class EkIdentity:
    """A verified TRE identity: ``device_id`` = hex EK name, the EK's TPM2B_PUBLIC."""

    device_id: str
    ek_public: bytes = field(repr=False)
    ek_name: bytes


@dataclass(frozen=True, slots=True)
class QuoteOutcome:
    """What a verified quote established."""

    pcr_digest: bytes
    pcrs: Mapping[str, Mapping[int, bytes]] = field(repr=False)


@dataclass(frozen=True, slots=True)
class PackageInputs:
    """Everything a MID package builder may bind the package to (docs/provisioning.md §1.6)."""

    ek_public: bytes = field(repr=False)
    ak_public: bytes = field(repr=False)
    srk_public: bytes = field(repr=False)
    certify_info: bytes = field(repr=False)
    certify_sig: bytes = field(repr=False)
    slot: int
    sequence: int
    imsi: str
    algorithm: str
    params: Mapping[str, int]
    amf: bytes
    k: bytes = field(repr=False)
    opc: bytes = field(repr=False)
    pcr_selection: str
    pcr_digest: bytes
    policy_kind: str
    owner_key: Any = field(default=None, repr=False)  # the SHO's EC private key (lifecycle)


@dataclass(frozen=True, slots=True)
class BuiltPackage:
    """A builder's result: the opaque TPM package, the object names for the manifest, the
    policy summary, and the MID id if the package format fixes one."""

    package: bytes = field(repr=False)
    names: Mapping[str, bytes]
    policy: Mapping[str, Any]
    mid_id: str | None = None


PackageBuilder = Callable[[PackageInputs], BuiltPackage]


class Trust(Protocol):
    """TPM-format verification the roles delegate (see :class:`network.trust.TpmTrust`)."""

    def verify_ek(self, ek_cert: bytes, now: int) -> EkIdentity: ...
    def ak_name(self, ak_public: bytes) -> bytes: ...
    def make_credential(
        self, ek_public: bytes, ak_public: bytes, secret: bytes
    ) -> tuple[bytes, bytes]: ...
    def verify_quote(
        self,
        *,
        ak_public: bytes,
        ak_name: bytes,
        quote_msg: bytes,
        quote_sig: bytes,
        pcrs: bytes,
        pcrlist: str,
        qualifying: bytes,
        reference: Mapping[str, Mapping[int, bytes]],
        previous: tuple[bytes, bytes] | None,
    ) -> QuoteOutcome: ...
    def verify_receipt(
        self,
        *,
        ak_public: bytes,
        evidence: Mapping[str, bytes],
        qualifying: bytes,
        expect_nv: Mapping[bytes, tuple[int, bytes]],
    ) -> None: ...
    def receipt_expectations(
        self,
        state: str,
        slot: int,
        counter: int | None,
        lifecycle: LifecycleFacts | None = None,
    ) -> dict[bytes, tuple[int, bytes]]: ...
    def approve_state(
        self, owner_key: Any, lifecycle: LifecycleFacts, old_state: str, new_state: str
    ) -> bytes: ...


@dataclass(frozen=True, slots=True)
class LifecycleFacts:
    """What the network knows of a MID's own lifecycle index in the TPM (:mod:`tpm.nv`): its
    owner's public key, policyRef and the version the TPM holds now (1 after install, one more
    per receipted transition). Kept in the MID record's ``names`` map."""

    owner_public: Any = field(repr=False)
    slot: int
    ref: bytes
    version: int


_REF, _VERSION = "lifecycle.ref", "lifecycle.version"


def _algorithm(record: HssRecord) -> AkaAlgorithm:
    return software_algorithm(record.algorithm, record.params, record.k, record.opc)


def _sqn_generator(sqn: Mapping[str, int] | None) -> SqnGenerator:
    """SQN_HE from its JSON form; a malformed one is BadInput (nothing stored)."""
    fields = ("seq_he", "ind", "ind_bits", "delta")
    if sqn is None:
        return SqnGenerator()
    if set(sqn) - set(fields) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in sqn.values()
    ):
        raise BadInput(f"sqn: expected non-negative integers {', '.join(fields)}")
    return SqnGenerator(**sqn)


Handler = Callable[..., tuple[Message, SessionRecord]]


class Operator:
    """All roles behind one entry point, :meth:`handle`; management calls (orders, PCIDs,
    subscribers, revocation) beside it. Stateless itself: everything lives in the ledger."""

    def __init__(
        self,
        config: NetworkConfig,
        trust: Trust,
        *,
        random_bytes: RandomBytes,
        builder: PackageBuilder | None = None,
        policy_kind: str = "use",
    ) -> None:
        self.config = config
        self.trust = trust
        self._random = random_bytes
        self.builder = builder
        self.policy_kind = policy_kind
        self._handlers: dict[type[Message], Handler] = {
            RegisterRequest: self._register,
            CredentialProof: self._proof,
            Evidence: self._evidence,
            PackageRequest: self._package,
            Receipt: self._receipt,
            LifecycleRequest: self._lifecycle,
            AttachRequest: self._attach,
            AuthResponse: self._auth,
        }

    # ---- dispatch -----------------------------------------------------------------------------

    def handle(
        self, tx: Ledger, endpoint: str, wire: bytes, now: int, *, pcid: str | None = None
    ) -> tuple[bytes, bytes]:
        """(session id, reply wire bytes) for one request at ``endpoint`` (``"drf/register"``…); every
        effect goes through ``tx``. ``pcid`` is the PCID of the ICF grant the request came
        with, if any.

        Raises:
            RemoteProtocolError: malformed, wrong endpoint, unknown or expired session, out of
                order, replayed or bound to another transcript.
            Refused: a role refused (its short code in ``.code``).
            SignatureInvalid: a signed order does not verify.
            Unavailable: no package builder is configured.
        """
        expected = ENDPOINTS.get(endpoint)
        if expected is None:
            raise RemoteProtocolError(f"no endpoint {endpoint!r}")
        msg = decode(wire)
        if type(msg) is not expected:
            raise RemoteProtocolError(
                f"{endpoint} takes {expected.__name__}, not {type(msg).__name__}"
            )
        if isinstance(msg, LifecycleOrder):
            return msg.session_id, self._order(tx, msg, wire, now)
        if isinstance(msg, Error):
            return msg.session_id, self._report(tx, msg, now)
        record = tx.session(msg.session_id)
        if record is None:
            kind = _STARTERS.get(type(msg))
            if kind is None:
                raise RemoteProtocolError(f"{type(msg).__name__} for an unknown session")
            record = SessionRecord(
                session_id=msg.session_id,
                kind=kind,
                phase="start",
                transcript=INITIAL_TRANSCRIPT,
                created=now,
                expires=now + self.config.session_lifetime,
            )
        elif record.expires <= now:
            raise RemoteProtocolError("session expired: start a new one")
        session = Session(
            "network", SessionState(record.session_id, cast(Phase, record.phase), record.transcript)
        )
        before = session.phase
        session.accept(msg, wire)
        reply, record = self._handlers[type(msg)](tx, record, msg, session, before, now, pcid)
        out = session.send(reply)
        tx.put_session(evolve(record, phase=session.phase, transcript=session.transcript))
        return record.session_id, out

    def _audit(
        self, tx: Ledger, now: int, actor: str, event: str, subject: str, **detail: Any
    ) -> None:
        tx.audit(now, actor, event, subject, detail)

    def _report(self, tx: Ledger, msg: Error, now: int) -> bytes:
        """A TRE's own refusal, for the audit trail (TR 33.812 §7.1.2.1 threat 8 CM 9). It
        changes no session (an Error never does); the session must exist."""
        record = tx.session(msg.session_id)
        if record is None:
            raise RemoteProtocolError("a report must name a session the network knows")
        self._audit(
            tx,
            now,
            "device",
            "device-refused",
            record.device_id or record.imsi or record.session_id.hex(),
            code=msg.code,
            reason=msg.reason,
            session=record.session_id.hex(),
            kind=record.kind,
            phase=record.phase,
        )
        return encode(
            Error(
                session_id=msg.session_id,
                transcript=record.transcript,
                code="reported",
                reason="recorded in the audit trail",
            )
        )

    def _device(self, tx: Ledger, device_id: str) -> DeviceRecord:
        device = tx.device(device_id)
        if device is None:
            raise Refused("unknown-device", "no such TRE is registered")
        if device.revoked or device_id in self.config.revoked_devices:
            raise Refused("revoked", "this TRE is revoked")
        return device

    # ---- DRF ----------------------------------------------------------------------------------

    def _register(
        self,
        tx: Ledger,
        rec: SessionRecord,
        msg: RegisterRequest,
        session: Session,
        before: Phase,
        now: int,
        pcid: str | None,
    ) -> tuple[Message, SessionRecord]:
        if msg.sho not in self.config.shos:
            raise Refused("unknown-sho", f"no SHO named {msg.sho!r} here")
        ek = self.trust.verify_ek(msg.ek_cert, now)
        known = tx.device(ek.device_id)
        if ek.device_id in self.config.revoked_devices or (known is not None and known.revoked):
            raise Refused("revoked", "this TRE is revoked")
        ak_name = self.trust.ak_name(msg.ak_public)
        if pcid is not None:
            self._bind_pcid(tx, pcid, ek.device_id)
        secret = self._random(32)
        blob, encrypted = self.trust.make_credential(ek.ek_public, msg.ak_public, secret)
        if known is None:
            tx.put_device(DeviceRecord(ek.device_id, msg.ek_cert, b"", b""))
        self._audit(
            tx, now, "drf", "register", ek.device_id, sho=msg.sho, session=rec.session_id.hex()
        )
        rec = evolve(
            rec,
            device_id=ek.device_id,
            sho=msg.sho,
            data={
                "ek_public": ek.ek_public,
                "ak_public": msg.ak_public,
                "ak_name": ak_name,
                "pcid": pcid or "",
            },
            secrets={"credential": secret},
        )
        return session.make(
            CredentialChallenge, credential_blob=blob, encrypted_secret=encrypted
        ), rec

    def _proof(
        self,
        tx: Ledger,
        rec: SessionRecord,
        msg: CredentialProof,
        session: Session,
        before: Phase,
        now: int,
        pcid: str | None,
    ) -> tuple[Message, SessionRecord]:
        expected = credential_proof(rec.secrets["credential"], msg.transcript)
        if not hmac.compare_digest(expected, msg.proof):
            raise Refused(
                "credential",
                "credential proof does not verify: the AK is not in the TPM that owns this EK",
            )
        device = self._device(tx, rec.device_id)
        ak_public, ak_name = rec.data["ak_public"], rec.data["ak_name"]
        if device.ak_name != ak_name:  # a new AK: its clock history starts again
            device = evolve(
                device, ak_public=ak_public, ak_name=ak_name, last_quote=b"", last_quote_sig=b""
            )
        tx.put_device(evolve(device, state="activated"))
        nonce = self._random(32)
        self._audit(tx, now, "drf", "activated", rec.device_id, ak_name=ak_name.hex())
        rec = evolve(rec, data={**rec.data, "nonce": nonce}, secrets={})
        reply = session.make(
            ValidationChallenge, nonce=nonce, pcr_selection=self.config.pcr_selection
        )
        return reply, rec

    # ---- PVA ----------------------------------------------------------------------------------

    def _reference(self) -> dict[str, dict[int, bytes]]:
        wanted: dict[str, dict[int, bytes]] = {}
        for bank, indices in parse_selection(self.config.pcr_selection):
            for index in indices:
                value = self.config.reference.get(bank, {}).get(index)
                if value is not None:
                    wanted.setdefault(bank, {})[index] = value
                elif not self.config.accept_unreferenced:
                    raise Refused(
                        "no-reference", f"no reference value for {bank}:{index} is configured"
                    )
        return wanted

    def _evidence(
        self,
        tx: Ledger,
        rec: SessionRecord,
        msg: Evidence,
        session: Session,
        before: Phase,
        now: int,
        pcid: str | None,
    ) -> tuple[Message, SessionRecord]:
        if msg.pcrlist != self.config.pcr_selection:
            raise Refused(
                "quote-pcr-selection",
                f"quote covers {msg.pcrlist}, the PVA asked for {self.config.pcr_selection}",
            )
        device = self._device(tx, rec.device_id)
        ak_public, ak_name = rec.data["ak_public"], rec.data["ak_name"]
        previous = (device.last_quote, device.last_quote_sig) if device.last_quote else None
        outcome = self.trust.verify_quote(
            ak_public=ak_public,
            ak_name=ak_name,
            quote_msg=msg.quote_msg,
            quote_sig=msg.quote_sig,
            pcrs=msg.pcrs,
            pcrlist=msg.pcrlist,
            qualifying=quote_qualifying_data(rec.data["nonce"], rec.session_id, msg.transcript),
            reference=self._reference(),
            previous=previous,
        )
        tx.put_device(evolve(device, last_quote=msg.quote_msg, last_quote_sig=msg.quote_sig))
        not_after = now + self.config.verdict_lifetime
        verdict = sign(
            session.make(
                Verdict,
                ak_name=ak_name,
                pcr_digest=outcome.pcr_digest,
                pcr_selection=msg.pcrlist,
                not_after=not_after,
            ),
            self.config.pva_key,
        )
        tx.put_verdict(
            VerdictRecord(
                rec.session_id, rec.device_id, ak_name, outcome.pcr_digest, not_after, verdict.cose
            )
        )
        self._audit(
            tx,
            now,
            "pva",
            "verdict",
            rec.device_id,
            pcr_digest=outcome.pcr_digest.hex(),
            not_after=not_after,
        )
        return verdict, rec

    # ---- DPF ----------------------------------------------------------------------------------

    def _package(
        self,
        tx: Ledger,
        rec: SessionRecord,
        msg: PackageRequest,
        session: Session,
        before: Phase,
        now: int,
        pcid: str | None,
    ) -> tuple[Message, SessionRecord]:
        verdict = tx.verdict(rec.session_id)
        if verdict is None or now >= verdict.not_after:
            raise Refused("stale-verdict", "the platform verdict has expired: validate again")
        device = self._device(tx, rec.device_id)
        if not hmac.compare_digest(verdict.ak_name, device.ak_name):
            raise Refused("stale-verdict", "the verdict is for another AK of this TRE")
        sequence = msg.counter + 1
        if sequence < device.sequence:
            raise Refused(
                "counter-rollback",
                f"the TPM says MID_CTR = {msg.counter}, but package {device.sequence} was already issued",
            )
        if self.builder is None:
            raise Unavailable("no MID package builder is configured")
        # A package never imported is dead once the TPM's MID_CTR reached its number (an
        # agent killed mid-import spends the number without installing): supersede it.
        for old in tx.mids(device_id=device.device_id):
            if old.state == "PENDING" and old.sequence <= sequence:
                self._set_state(tx, old, "DELETED", now, "superseded")
        sho = self.config.shos[rec.sho]
        hss = self._allocate(tx, sho, f"mid:{rec.session_id.hex()}", now)
        built = self.builder(
            PackageInputs(
                ek_public=rec.data["ek_public"],
                ak_public=rec.data["ak_public"],
                srk_public=msg.srk_public,
                certify_info=msg.certify_info,
                certify_sig=msg.certify_sig,
                slot=msg.slot,
                sequence=sequence,
                imsi=hss.imsi,
                algorithm=hss.algorithm,
                params=hss.params,
                amf=hss.amf,
                k=hss.k,
                opc=hss.opc,
                pcr_selection=self.config.pcr_selection,
                pcr_digest=verdict.pcr_digest,
                policy_kind=self.policy_kind,
                owner_key=sho.key.private_key,
            )
        )
        mid_id = built.mid_id or hashlib.sha256(b"trelab/mid" + rec.session_id).hexdigest()[:12]
        tx.put_hss(evolve(hss, mid_id=mid_id))
        tx.put_device(evolve(device, sequence=max(device.sequence, sequence)))
        tx.put_mid(
            MidRecord(
                mid_id=mid_id,
                device_id=device.device_id,
                sho=sho.name,
                imsi=hss.imsi,
                state="PENDING",
                sequence=sequence,
                session_id=rec.session_id,
                slot=msg.slot,
                names={
                    **built.names,
                    **(
                        {_REF: bytes(built.policy["lifecycle_ref"]), _VERSION: bytes(4)}
                        if built.policy.get("lifecycle_ref")
                        else {}
                    ),
                },
                updated=now,
            )
        )
        manifest = sign(
            session.make(
                MidPackage,
                mid_id=mid_id,
                imsi=hss.imsi,
                sho=sho.name,
                sequence=sequence,
                amf=hss.amf,
                algorithm=hss.algorithm,
                policy=pairs(built.policy),
                names=pairs(built.names),
                not_after=now + self.config.package_lifetime,
                package=built.package,
            ),
            self.config.dpf_key,
        )
        self._audit(
            tx, now, "dpf", "package", device.device_id, mid=mid_id, sho=sho.name, sequence=sequence
        )
        return manifest, evolve(rec, mid_id=mid_id, imsi=hss.imsi)

    def _lifecycle_facts(self, mid: MidRecord) -> LifecycleFacts | None:
        ref = mid.names.get(_REF)
        if not ref:
            return None
        version = int.from_bytes(mid.names.get(_VERSION, b""), "big")
        owner = self.config.shos[mid.sho].key.public_key
        return LifecycleFacts(owner, mid.slot, bytes(ref), version)

    @staticmethod
    def _with_version(mid: MidRecord, version: int) -> MidRecord:
        if not mid.names.get(_REF):
            return mid
        return evolve(mid, names={**mid.names, _VERSION: version.to_bytes(4, "big")})

    def _verify_receipt(
        self, rec: SessionRecord, mid: MidRecord, msg: Receipt, state: str, counter: int | None
    ) -> MidRecord:
        """Check the TPM's proof of ``state``; returns ``mid`` with the lifecycle version the
        proof shows (install: 1, a transition: one more)."""
        facts = self._lifecycle_facts(mid)
        if facts is not None:
            facts = evolve(facts, version=1 if counter is not None else facts.version + 1)
        self.trust.verify_receipt(
            ak_public=rec.data["ak_public"],
            evidence=dict(msg.evidence),
            qualifying=receipt_qualifying_data(rec.session_id, msg.transcript, msg.event),
            expect_nv=self.trust.receipt_expectations(state, mid.slot, counter, facts),
        )
        return mid if facts is None else self._with_version(mid, facts.version)

    def _receipt(
        self,
        tx: Ledger,
        rec: SessionRecord,
        msg: Receipt,
        session: Session,
        before: Phase,
        now: int,
        pcid: str | None,
    ) -> tuple[Message, SessionRecord]:
        mid = tx.mid(rec.mid_id)
        if mid is None or msg.mid_id != mid.mid_id:
            raise Refused("wrong-mid", "the receipt names another MID than this session's")
        if before == "delivered":
            if msg.event != "install" or msg.sequence != mid.sequence:
                raise Refused(
                    "wrong-receipt", "expected the install receipt for the delivered package"
                )
            if mid.state != "PENDING":
                raise Refused(
                    "superseded", f"MID {mid.mid_id} is {mid.state}, not awaiting installation"
                )
            mid = self._verify_receipt(rec, mid, msg, "INSTALLED", mid.sequence)
            if not self.config.shos[mid.sho].auto_activate:
                mid = self._set_state(tx, mid, "INSTALLED", now, "installed")
                return session.make(Ack, mid_id=mid.mid_id, state=mid.state), rec
            # the activation's command number is drawn with the state change: one write
            mid = evolve(mid, command_seq=mid.command_seq + 1)
            mid = self._set_state(tx, mid, "INSTALLED", now, "installed")
            return self._command(tx, rec, session, mid, "activate", now, mid.command_seq)
        transition = rec.data["transition"]
        if msg.event != transition or msg.sequence != rec.data["command_seq"]:
            raise Refused(
                "wrong-receipt", f"expected the receipt of {transition} #{rec.data['command_seq']}"
            )
        if mid.state not in _FROM[transition]:
            raise Refused(
                "illegal-transition", f"MID {mid.mid_id} is {mid.state}: cannot {transition}"
            )
        mid = self._verify_receipt(rec, mid, msg, _TO[transition], None)
        mid = self._set_state(tx, mid, _TO[transition], now, transition)
        order = tx.order(mid.mid_id)
        if (
            order is not None
            and order.state in ("pending", "delivered")
            and order.transition == transition
        ):
            tx.put_order(evolve(order, state="done"))
        if mid.state == "ACTIVE" and rec.data.get("pcid"):
            self._release_pcid(tx, str(rec.data["pcid"]), now)
        return session.make(Ack, mid_id=mid.mid_id, state=mid.state), rec

    def _set_state(self, tx: Ledger, mid: MidRecord, state: str, now: int, why: str) -> MidRecord:
        mid = evolve(mid, state=state, updated=now)
        tx.put_mid(mid)
        if state == "DELETED":  # K leaves the HSS with the MID (the TRE's copy is dead too)
            hss = tx.hss(mid.imsi)
            if hss is not None:
                tx.put_hss(evolve(hss, k=b"", opc=b"", state=_HSS_STATE[state]))
        else:  # only the state changes: K and OPc stay sealed as they are
            tx.set_hss_state(mid.imsi, _HSS_STATE[state])
        self._audit(
            tx,
            now,
            "dpf" if why in ("installed", "superseded") else mid.sho,
            why,
            mid.mid_id,
            state=state,
        )
        return mid

    # ---- SHO: lifecycle -----------------------------------------------------------------------

    def _command(
        self,
        tx: Ledger,
        rec: SessionRecord,
        session: Session,
        mid: MidRecord,
        transition: str,
        now: int,
        sequence: int = 0,
    ) -> tuple[LifecycleCommand, SessionRecord]:
        if mid.state not in _FROM[transition]:
            raise Refused(
                "illegal-transition", f"MID {mid.mid_id} is {mid.state}: cannot {transition}"
            )
        if not sequence:
            sequence = mid.command_seq + 1
            tx.put_mid(evolve(mid, command_seq=sequence))
        owner = self.config.shos[mid.sho]  # always the owner's key: SHO isolation
        facts = self._lifecycle_facts(mid)
        approval = b""
        if facts is not None:  # the TPM itself will take nothing less than this approval
            approval = self.trust.approve_state(
                owner.key.private_key, facts, mid.state, _TO[transition]
            )
        command = sign(
            session.make(
                LifecycleCommand,
                mid_id=mid.mid_id,
                transition=transition,
                sequence=sequence,
                state_version=0 if facts is None else facts.version,
                state_approval=approval,
            ),
            owner.key,
        )
        self._audit(
            tx, now, owner.name, "command", mid.mid_id, transition=transition, sequence=sequence
        )
        return command, evolve(
            rec, data={**rec.data, "transition": transition, "command_seq": sequence}
        )

    def _lifecycle(
        self,
        tx: Ledger,
        rec: SessionRecord,
        msg: LifecycleRequest,
        session: Session,
        before: Phase,
        now: int,
        pcid: str | None,
    ) -> tuple[Message, SessionRecord]:
        mid = tx.mid(msg.mid_id)
        if mid is None:
            raise Refused("unknown-mid", f"no MID {msg.mid_id}")
        device = self._device(tx, mid.device_id)
        rec = evolve(
            rec,
            device_id=mid.device_id,
            sho=mid.sho,
            mid_id=mid.mid_id,
            imsi=mid.imsi,
            data={"ak_public": device.ak_public},
        )
        if msg.transition == "delete" and self._leaving(tx, mid):
            # Change of subscription (or its rollback): the subscriber ends this MID while the
            # TRE holds an ACTIVE MID of another SHO; the owner still signs the command.
            self._audit(tx, now, mid.sho, "release", mid.mid_id, device=mid.device_id)
            return self._command(tx, rec, session, mid, "delete", now)
        if msg.transition != "pending":
            raise Refused(
                "not-authorised",
                "a TRE cannot order its own transitions: the owning SHO orders them (sho/order)",
            )
        order = tx.order(mid.mid_id)
        if order is None or order.state == "done":
            return session.make(Ack, mid_id=mid.mid_id, state=mid.state), rec
        command, rec = self._command(tx, rec, session, mid, order.transition, now, order.sequence)
        if not order.sequence:
            tx.put_order(evolve(order, state="delivered", sequence=command.sequence))
        return command, rec

    @staticmethod
    def _leaving(tx: Ledger, mid: MidRecord) -> bool:
        """May the TRE ask to delete ``mid``? Only while it holds an ACTIVE MID of another SHO
        (TR 33.812 change of subscription: the subscriber leaves, never loses connectivity)."""
        return mid.state in _FROM["delete"] and any(
            other.mid_id != mid.mid_id and other.sho != mid.sho and other.state == "ACTIVE"
            for other in tx.mids(device_id=mid.device_id)
        )

    def _order(self, tx: Ledger, msg: LifecycleOrder, wire: bytes, now: int) -> bytes:
        sho = self.config.shos.get(msg.signer)
        if sho is None:
            raise Refused("unknown-signer", f"{msg.signer!r} is not an SHO here")
        verify_signature(msg, sho.key.public_key)
        if msg.transcript != INITIAL_TRANSCRIPT:
            raise RemoteProtocolError("an order opens its own session")
        if tx.session(msg.session_id) is not None:
            raise RemoteProtocolError("order replayed (its session is used)")
        mid = tx.mid(msg.mid_id)
        if mid is None:
            raise Refused("unknown-mid", f"no MID {msg.mid_id}")
        if mid.sho != sho.name:
            raise Refused("foreign-mid", f"SHO {sho.name} does not own MID {mid.mid_id}: refused")
        if mid.state not in _FROM[msg.transition]:
            raise Refused(
                "illegal-transition", f"MID {mid.mid_id} is {mid.state}: cannot {msg.transition}"
            )
        if msg.transition in ("activate", "resume") and self._revoked(tx, mid.device_id):
            raise Refused(
                "revoked", f"MID {mid.mid_id} is on a revoked TRE: it cannot {msg.transition}"
            )
        pending = tx.order(mid.mid_id)
        if pending is not None and pending.state == "delivered":
            raise Refused(
                "order-pending", f"MID {mid.mid_id} has a delivered order not yet receipted"
            )
        tx.put_order(OrderRecord(mid.mid_id, msg.transition, sho.name))
        transcript = extend_transcript(INITIAL_TRANSCRIPT, wire)
        tx.put_session(
            SessionRecord(
                msg.session_id,
                "order",
                "done",
                transcript,
                now,
                now,
                mid.device_id,
                sho.name,
                mid.mid_id,
                mid.imsi,
            )
        )
        self._audit(tx, now, sho.name, "order", mid.mid_id, transition=msg.transition)
        return encode(
            Ack(
                session_id=msg.session_id, transcript=transcript, mid_id=mid.mid_id, state=mid.state
            )
        )

    # ---- SHO: AuC -----------------------------------------------------------------------------

    def _allocate(self, tx: Ledger, sho: ShoConfig, request_id: str, now: int) -> HssRecord:
        """A new subscriber of ``sho`` with fresh K, OPc/TOPc — or the one this request made.
        The caller stores it, once, with the MID it goes to (same transaction)."""
        existing = tx.hss_by_request(request_id)
        if existing is not None:
            return existing
        msin = tx.next_msin(sho.name)
        width = 15 - len(sho.plmn)
        if msin >= 10**width:
            raise Refused("imsi-exhausted", f"SHO {sho.name} has no IMSI left")
        imsi = sho.plmn + str(msin).zfill(width)
        k = self._random(sho.params.get("key_bits", 128) // 8)
        opc = self._random(16 if sho.algorithm == "milenage" else 32)
        record = HssRecord(
            imsi=imsi,
            sho=sho.name,
            algorithm=sho.algorithm,
            params=dict(sho.params),
            k=k,
            opc=opc,
            amf=sho.amf,
            sqn=SqnGenerator().to_json(),
            state="pending",
            request_id=request_id,
        )
        self._audit(tx, now, sho.name, "hss-record", imsi, request=request_id)
        return record

    def add_subscriber(
        self,
        tx: Ledger,
        *,
        sho: str,
        imsi: str,
        k: bytes,
        opc: bytes,
        request_id: str,
        now: int,
        algorithm: str = "milenage",
        params: Mapping[str, int] | None = None,
        amf: bytes = b"\x80\x00",
        state: str = "active",
        sqn: Mapping[str, int] | None = None,
    ) -> HssRecord:
        """Register an existing subscription (Alternative 2: a pre-personalised card); idempotent
        by ``request_id``. ``sqn`` is SQN_HE as :meth:`aka.sqn.SqnGenerator.to_json` (the card
        vendor's hand-over; default: a fresh generator, and the first attach resynchronises).

        Raises:
            Refused: unknown SHO, or the IMSI belongs to another record.
        """
        if sho not in self.config.shos and sho != self.config.icf_operator:
            raise Refused("unknown-sho", f"no SHO named {sho!r} here")
        existing = tx.hss_by_request(request_id)
        if existing is not None:
            return existing
        if tx.hss(imsi) is not None:
            raise Refused("imsi-taken", f"IMSI {imsi} already has an HSS record")
        record = HssRecord(
            imsi,
            sho,
            algorithm,
            dict(params or {}),
            k,
            opc,
            amf,
            _sqn_generator(sqn).to_json(),
            state,
            request_id,
        )
        _algorithm(record)  # refuse what cannot run before storing it
        tx.put_hss(record)
        self._audit(tx, now, sho, "hss-record", imsi, request=request_id)
        return record

    def _serving_plmn(self, hss_record: HssRecord) -> Plmn:
        """The lab's serving network is the subscriber's home network (its SHO's PLMN)."""
        sho = self.config.shos.get(hss_record.sho)
        return Plmn.parse(sho.plmn if sho is not None else hss_record.imsi[:5])

    def _vector(
        self, tx: Ledger, hss_record: HssRecord, rat: Rat = "3g"
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        """One vector and what the home and serving network keep of it for ``rat``; SQN_HE
        moves in the same transaction that releases it."""
        hss = Hss(self._random)
        hss.add(
            Subscriber(
                hss_record.imsi,
                _algorithm(hss_record),
                hss_record.amf,
                SqnGenerator(**hss_record.sqn),
            )
        )
        vector = hss.generate_vectors(hss_record.imsi, 1)[0]
        updated = evolve(hss_record, sqn=hss.subscriber(hss_record.imsi).sqn.to_json())
        tx.put_hss(updated)
        serving = serving_network_for(rat, self._serving_plmn(hss_record))
        expected = home_expects(
            rat,
            xres=vector.xres,
            ck=vector.ck,
            ik=vector.ik,
            rand=vector.rand,
            autn=vector.autn,
            serving_network=serving,
            supi=f"imsi-{hss_record.imsi}",
        )
        data = {
            "rand": vector.rand,
            "autn": vector.autn,
            "rat": rat,
            "serving_network": serving,
            "abba": ABBA_DEFAULT if rat == "5g" else b"",
        }
        secrets = {"xres": expected.xres, "hxres": expected.hxres, "anchor": expected.anchor}
        return data, secrets

    def _challenge(self, session: Session, data: Mapping[str, Any]) -> Message:
        return session.make(
            AuthChallenge,
            rand=data["rand"],
            autn=data["autn"],
            serving_network=data["serving_network"],
            abba=data["abba"],
        )

    def _attach(
        self,
        tx: Ledger,
        rec: SessionRecord,
        msg: AttachRequest,
        session: Session,
        before: Phase,
        now: int,
        pcid: str | None,
    ) -> tuple[Message, SessionRecord]:
        imsi = msg.imsi or self._deconceal(tx, msg.suci, now)
        record = tx.hss(imsi)
        if record is None:
            raise Refused("unknown-subscriber", f"no subscriber {imsi}")
        mid = tx.mid(record.mid_id) if record.mid_id else None
        if mid is not None and self._revoked(tx, mid.device_id):
            raise Refused("revoked", f"subscriber {imsi} is a MID of a revoked TRE: no vectors")
        if record.sho == self.config.icf_operator:
            self._check_pcid(tx, imsi, now)
        elif record.state != "active":
            raise Refused("not-active", f"subscriber {imsi} is {record.state}, not active")
        rat = parse_rat(msg.rat)
        data, secrets = self._vector(tx, record, rat)
        self._audit(tx, now, record.sho, "vector", imsi, session=rec.session_id.hex(), rat=rat)
        rec = evolve(rec, sho=record.sho, imsi=imsi, data={**data, "resyncs": 0}, secrets=secrets)
        return self._challenge(session, data), rec

    def _auth(
        self,
        tx: Ledger,
        rec: SessionRecord,
        msg: AuthResponse,
        session: Session,
        before: Phase,
        now: int,
        pcid: str | None,
    ) -> tuple[Message, SessionRecord]:
        record = tx.hss(rec.imsi)
        if record is None:
            raise Refused("unknown-subscriber", f"subscriber {rec.imsi} is gone")
        if msg.res:
            return self._verdict(tx, rec, msg, session, record, now)
        if rec.data["resyncs"] >= 1:
            self._audit(tx, now, record.sho, "attach-refused", rec.imsi, reason="second AUTS")
            return session.make(
                AttachResult, accepted=False, reason="resynchronisation failed"
            ), evolve(rec, secrets={})
        hss = Hss(self._random)
        hss.add(Subscriber(record.imsi, _algorithm(record), record.amf, SqnGenerator(**record.sqn)))
        try:
            hss.resynchronise(record.imsi, rec.data["rand"], msg.auts)
        except MacMismatch:
            self._audit(tx, now, record.sho, "attach-refused", rec.imsi, reason="AUTS MAC-S")
            return session.make(
                AttachResult, accepted=False, reason="AUTS does not verify"
            ), evolve(rec, secrets={})
        record = evolve(record, sqn=hss.subscriber(record.imsi).sqn.to_json())
        tx.put_hss(record)
        data, secrets = self._vector(tx, record, parse_rat(rec.data.get("rat", "3g")))
        self._audit(tx, now, record.sho, "resync", rec.imsi)
        rec = evolve(rec, data={**data, "resyncs": 1}, secrets=secrets)
        return self._challenge(session, data), rec

    def _verdict(
        self,
        tx: Ledger,
        rec: SessionRecord,
        msg: AuthResponse,
        session: Session,
        record: HssRecord,
        now: int,
    ) -> tuple[Message, SessionRecord]:
        """RES (3G, EPS) or RES* (5G: HRES* at the serving network, then RES* at the home
        network), then the ME's proof of the anchor key against ours."""
        rat = parse_rat(rec.data.get("rat", "3g"))
        secrets = rec.secrets
        expected = Expected(rat, secrets["xres"], secrets.get("hxres", b""), secrets["anchor"])
        proof = key_proof(expected.anchor, rec.data["rand"])
        if not expected.serving_accepts(rec.data["rand"], msg.res):
            ok, reason = (
                False,
                "HRES* does not match HXRES*" if rat == "5g" else "RES does not match",
            )
        elif not expected.home_accepts(msg.res):
            ok, reason = False, "RES* does not match XRES*"
        elif rat == "3g" and not msg.key_proof:  # 3G: RES alone, as TS 33.102 §6.3
            ok, reason = True, "authenticated"
        elif not hmac.compare_digest(msg.key_proof, proof):
            ok, reason = False, f"the ME derived another {anchor_name(rat)}"
        elif rat == "3g":
            ok, reason = True, "authenticated"
        else:
            ok, reason = True, f"authenticated ({rat}, {anchor_name(rat)} confirmed)"
        grant = b""
        if ok and record.sho == self.config.icf_operator:
            grant = self._grant(tx, rec.imsi, now)
        self._audit(
            tx, now, record.sho, "attach" if ok else "attach-refused", rec.imsi, rat=rat,
            **({} if ok else {"reason": reason}),
        )  # fmt: skip
        result = session.make(
            AttachResult,
            accepted=ok,
            reason=reason,
            grant=grant,
            key_proof=proof if ok else b"",
        )
        return result, evolve(rec, secrets={})

    # ---- SIDF (TS 33.501 §6.12.2: de-concealing the SUPI at the home network) ---------------

    def rotate_hn_key(self, tx: Ledger, *, sho: str, profile: str, now: int) -> HomeNetworkKey:
        """A new SUCI key pair of ``profile`` (A or B) for ``sho`` under the next free key id;
        the key it replaces stays usable for SUCIs made before the rotation ("previous")."""
        from aka.suci import Profile, new_home_key

        if sho not in self.config.shos:
            raise Refused("unknown-sho", f"no SHO {sho!r}")
        prof = {"A": Profile.A, "B": Profile.B}.get(profile.upper())
        if prof is None:
            raise Refused("bad-profile", "home network keys are for Profile A or B")
        keys = tx.hn_keys(sho)
        used = {k.key_id for k in keys}
        last = max(used, default=0)
        free = [i for i in range(last + 1, 256)] + [i for i in range(1, last + 1)]
        free = [i for i in free if i not in used]
        if not free:
            raise Refused("hn-keys-exhausted", f"SHO {sho} has 255 home network keys")
        for old in keys:
            if old.profile == int(prof) and old.state == "current":
                tx.put_hn_key(evolve(old, state="previous"))
        private, public = new_home_key(prof)
        record = HomeNetworkKey(sho, free[0], int(prof), private, public, "current", now)
        tx.put_hn_key(record)
        self._audit(tx, now, sho, "hn-key", sho, key_id=record.key_id, profile=profile.upper())
        return record

    def retire_hn_key(self, tx: Ledger, *, sho: str, key_id: int, now: int) -> None:
        """SUCIs under ``key_id`` are refused from now on."""
        for key in tx.hn_keys(sho):
            if key.key_id == key_id:
                tx.put_hn_key(evolve(key, state="retired"))
                self._audit(tx, now, sho, "hn-key-retired", sho, key_id=key_id)
                return
        raise Refused("unknown-hn-key", f"SHO {sho} has no home network key {key_id}")

    def _deconceal(self, tx: Ledger, text: str, now: int) -> str:
        """SUCI → IMSI with the key its PLMN's SHO holds under the SUCI's key id."""
        from aka.suci import Profile, Suci, deconceal

        try:
            suci = Suci.parse(text)
        except BadInput as exc:
            raise Refused("bad-suci", str(exc)) from None
        plmn = suci.mcc + suci.mnc
        owners = [c.name for c in self.config.shos.values() if c.plmn == plmn]
        if not owners:
            raise Refused("unknown-subscriber", f"no SHO serves PLMN {plmn}")
        sho = owners[0]

        def lookup(profile: Profile, key_id: int) -> bytes:
            for key in tx.hn_keys(sho):
                if key.key_id == key_id and key.profile == int(profile):
                    if key.state == "retired":
                        break
                    return key.private
            raise Refused("unknown-hn-key", f"SHO {sho} has no usable key {key_id} for it")

        try:
            supi = deconceal(suci, lookup)
        except MacMismatch:  # the refusal is audited with its code where it is answered
            raise Refused("suci-mac", "SUCI MAC tag does not verify") from None
        except BadInput as exc:
            raise Refused("bad-suci", str(exc)) from None
        self._audit(
            tx, now, sho, "suci", supi.removeprefix("imsi-"), key_id=suci.key_id,
            profile=int(suci.profile),
        )  # fmt: skip
        return supi.removeprefix("imsi-")

    # ---- ICF ----------------------------------------------------------------------------------

    def register_pcid(
        self,
        tx: Ledger,
        *,
        imsi: str,
        k: bytes,
        opc: bytes,
        not_before: int,
        not_after: int,
        request_id: str,
        now: int,
    ) -> PcidRecord:
        """A provisional connectivity identity (made at manufacturing, M0) valid in
        [not_before, not_after): an HSS record under the ICF operator plus its PCID record."""
        if not_after <= not_before:
            raise Refused("bad-pcid", "PCID validity period is empty")
        self.add_subscriber(
            tx,
            sho=self.config.icf_operator,
            imsi=imsi,
            k=k,
            opc=opc,
            request_id=request_id,
            now=now,
        )
        existing = tx.pcid(imsi)
        if existing is not None:
            return existing
        record = PcidRecord(imsi, not_before, not_after)
        tx.put_pcid(record)
        self._audit(tx, now, "icf", "pcid", imsi, not_before=not_before, not_after=not_after)
        return record

    def _check_pcid(self, tx: Ledger, imsi: str, now: int) -> PcidRecord:
        pcid = tx.pcid(imsi)
        if pcid is None:
            raise Refused("unknown-pcid", f"{imsi} is not a PCID")
        if pcid.state == "released":
            raise Refused("pcid-released", f"PCID {imsi} was released after provisioning")
        if not pcid.not_before <= now < pcid.not_after:
            raise Refused("pcid-expired", f"PCID {imsi} is outside its validity period")
        return pcid

    def _grant(self, tx: Ledger, imsi: str, now: int) -> bytes:
        pcid = self._check_pcid(tx, imsi, now)
        token = self._random(32)
        not_after = min(pcid.not_after, now + self.config.grant_lifetime)
        tx.put_grant(hashlib.sha256(token).digest(), imsi, not_after)
        self._audit(tx, now, "icf", "grant", imsi, not_after=not_after)
        return token

    def admit(self, tx: Ledger, token: bytes | None, endpoint: str, now: int) -> str | None:
        """The ICF gate in front of every endpoint: a PCID grant reaches only the RO (DRF, PVA,
        DPF); with ``require_pcid`` the RO needs one. Returns the grant's PCID, if any.

        Raises:
            Refused: no, expired or released grant; a grant used beyond the RO.
        """
        role = endpoint.split("/", 1)[0]
        if token is None and endpoint == REPORT_ENDPOINT:
            return None  # a refusal report is always heard (it only adds to the audit trail)
        if token is None:
            if self.config.require_pcid and role in RO_ROLES:
                raise Refused("no-grant", "the RO needs an ICF grant (attach with the PCID first)")
            return None
        found = tx.grant(hashlib.sha256(token).digest())
        if found is None:
            raise Refused("no-grant", "unknown ICF grant")
        imsi, not_after = found
        if now >= not_after:
            raise Refused("grant-expired", "the ICF grant has expired")
        if role not in RO_ROLES:
            raise Refused("ro-only", "a PCID grant reaches only the registration operator")
        self._check_pcid(tx, imsi, now)
        return imsi

    def _bind_pcid(self, tx: Ledger, imsi: str, device_id: str) -> None:
        pcid = tx.pcid(imsi)
        if pcid is None:
            raise Refused("unknown-pcid", f"{imsi} is not a PCID")
        if pcid.device_id and pcid.device_id != device_id:
            raise Refused("pcid-in-use", f"PCID {imsi} is in use by another TRE")
        if not pcid.device_id:
            tx.put_pcid(evolve(pcid, device_id=device_id, state="bound"))

    def _release_pcid(self, tx: Ledger, imsi: str, now: int) -> None:
        pcid = tx.pcid(imsi)
        if pcid is not None and pcid.state != "released":
            tx.put_pcid(evolve(pcid, state="released"))
            self._audit(tx, now, "icf", "pcid-released", imsi)

    # ---- management ---------------------------------------------------------------------------

    def revoke(self, tx: Ledger, device_id: str, now: int) -> list[MidRecord]:
        """Revoke a TRE: it can neither register nor receive packages any more, and every MID
        already issued to it stops working — a revoked TRE is no longer trusted to keep K, so
        each owning SHO suspends the MID in the same transaction (its AuC then refuses
        authentication vectors: TR 33.812 §7.1.2.1 threat 7's suspension, decided by the
        network). PENDING packages are superseded (never installable, K gone from the HSS).
        Suspension is final while the TRE stays revoked: ``resume`` is refused; ``delete``
        remains for the owner. Returns the MIDs changed."""
        device = tx.device(device_id)
        if device is None:
            raise Refused("unknown-device", "no such TRE is registered")
        tx.put_device(dataclasses.replace(device, revoked=True))
        self._audit(tx, now, "drf", "revoked", device_id)
        changed = []
        for mid in tx.mids(device_id=device_id):
            if mid.state == "PENDING":
                changed.append(self._set_state(tx, mid, "DELETED", now, "superseded"))
            elif mid.state in ("INSTALLED", "ACTIVE"):
                changed.append(self._set_state(tx, mid, "SUSPENDED", now, "revoked-tre"))
        return changed

    def _revoked(self, tx: Ledger, device_id: str) -> bool:
        """Is this TRE revoked (by ``operator revoke`` or in the configuration's list)?"""
        if device_id in self.config.revoked_devices:
            return True
        device = tx.device(device_id)
        return device is not None and device.revoked
