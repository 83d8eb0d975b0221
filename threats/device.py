"""Edge: TPM, network transport. The device's side of provisioning (docs/provisioning.md §1.1
M2–M8) and attach, step by step, so a threat check can stage an attack between any two steps
(swap the AK, replay a message, hijack a session, tamper a package).

Each step is the honest device: TPM work with :mod:`tpm`, messages with :mod:`network`, every
network statement checked against the keys the TRE pins (device-trust: PVA, DPF, SHOs). The
host agent runs the same protocol end to end; these steps exist because an
attack needs to stop half-way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from protocol.errors import RemoteProtocolError
from protocol.messages import (
    Ack,
    AttachRequest,
    AttachResult,
    AuthChallenge,
    AuthResponse,
    CredentialChallenge,
    CredentialProof,
    Evidence,
    LifecycleCommand,
    LifecycleRequest,
    Message,
    MidPackage,
    PackageRequest,
    Receipt,
    RegisterRequest,
    ValidationChallenge,
    Verdict,
    credential_proof,
    derive_session_id,
    quote_qualifying_data,
    receipt_qualifying_data,
    verify_signature,
)
from protocol.transitions import Session, SessionState
from trelab.jsontext import load_json

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from protocol.client import Transport
    from protocol.messages import SigningKey
    from tpm.connection import TpmConnection
    from tpm.identity import AttestationKey
    from tpm.package import Package
    from tpm.registry import MidRecord, Registry

__all__ = [
    "Flow",
    "Provisioned",
    "activate",
    "attach",
    "attest",
    "ek_certificate",
    "follow_orders",
    "install",
    "make_receipt",
    "order",
    "prove",
    "provision",
    "quote_evidence",
    "request_package",
    "start",
    "unpack",
]

Pins = Mapping[str, "ec.EllipticCurvePublicKey"]


@dataclass
class Flow:
    """One device session with the operator: the protocol state, the AK it registered and
    the EK certificate it presented."""

    transport: Transport
    session: Session
    ak: AttestationKey
    ek_cert: bytes
    grant: bytes | None = None

    def post(self, endpoint: str, msg: Message) -> Message:
        """Send ``msg`` (bound to this session) and return the network's checked reply.

        Raises:
            Refused, SignatureInvalid, RemoteProtocolError, Unavailable: the network said no.
        """
        wire = self.session.send(msg)
        return self.session.receive(self.transport.post(endpoint, wire, grant=self.grant))


@dataclass(frozen=True)
class Provisioned:
    mid_id: str
    imsi: str
    sho: str
    slot: int
    flow: Flow
    activation: LifecycleCommand | None = None  # what a host that keeps everything has


M = TypeVar("M", bound=Message)


def _expect(msg: Message, cls: type[M], step: str) -> M:
    if not isinstance(msg, cls):
        raise RemoteProtocolError(f"{step}: expected {cls.__name__}, got {type(msg).__name__}")
    return msg


def ek_certificate(conn: TpmConnection) -> bytes:
    """The TPM's RSA EK certificate, DER (read from NV)."""
    from cryptography.hazmat.primitives import serialization

    from tpm.ek import read_ek_certificates

    return read_ek_certificates(conn)["rsa2048"].public_bytes(serialization.Encoding.DER)


def start(
    conn: TpmConnection,
    transport: Transport,
    sho: str,
    *,
    ek_cert: bytes | None = None,
    ak: AttestationKey | None = None,
    grant: bytes | None = None,
) -> tuple[Flow, CredentialChallenge]:
    """M2: RegisterRequest {EK certificate, AK public, nonce} → the DRF's credential challenge."""
    from tpm.identity import ensure_ak

    if ak is None:
        ak, _ = ensure_ak(conn, "ecc")
    cert = ek_certificate(conn) if ek_cert is None else ek_cert
    nonce = os.urandom(16)
    session = Session("device", SessionState(derive_session_id(cert, ak.public_blob, nonce)))
    flow = Flow(transport, session, ak, cert, grant)
    request = session.make(
        RegisterRequest, ek_cert=cert, ak_public=ak.public_blob, device_nonce=nonce, sho=sho
    )
    challenge = _expect(flow.post("drf/register", request), CredentialChallenge, "register")
    return flow, challenge


def prove(conn: TpmConnection, flow: Flow, challenge: CredentialChallenge) -> ValidationChallenge:
    """M3: TPM2_ActivateCredential → HMAC proof over the transcript → validation challenge.

    Raises:
        CredentialRejected: the TPM refuses the challenge (not for this EK and AK).
    """
    from tpm.identity import activate_credential

    secret = activate_credential(
        conn, flow.ak, challenge.credential_blob, challenge.encrypted_secret
    )
    proof = flow.session.make(
        CredentialProof, proof=credential_proof(secret, flow.session.transcript)
    )
    return _expect(flow.post("drf/proof", proof), ValidationChallenge, "proof")


def quote_evidence(conn: TpmConnection, flow: Flow, vc: ValidationChallenge) -> Evidence:
    """M4: TPM2_Quote over H(nonce ‖ session ‖ transcript) and the PVA's PCR selection."""
    from tpm.pcrsel import parse_selection
    from tpm.quote import quote

    files = quote(
        conn,
        flow.ak,
        quote_qualifying_data(vc.nonce, flow.session.session_id, flow.session.transcript),
        parse_selection(vc.pcr_selection),
    )
    return flow.session.make(
        Evidence,
        quote_msg=files.message,
        quote_sig=files.signature,
        pcrs=files.pcrs,
        pcrlist=files.pcrlist,
    )


def attest(conn: TpmConnection, flow: Flow, vc: ValidationChallenge, pins: Pins) -> Verdict:
    """M4: quote → the PVA's signed verdict (signature checked against the pinned PVA key)."""
    verdict = _expect(
        flow.post("pva/evidence", quote_evidence(conn, flow, vc)), Verdict, "evidence"
    )
    verify_signature(verdict, pins["pva"])
    return verdict


def request_package(
    conn: TpmConnection, flow: Flow, vc: ValidationChallenge, pins: Pins
) -> MidPackage:
    """M5/M6: the TRE's storage key, a free slot and MID_CTR → the DPF-signed MID package.

    Raises:
        SignatureInvalid: the manifest is not signed by the pinned DPF key.
    """
    from tpm.mid import device_info, ensure_srk

    info = device_info(conn, vc.pcr_selection)
    srk, srk_public = ensure_srk(conn)
    conn.esys.tr_close(srk)
    request = flow.session.make(
        PackageRequest,
        srk_public=bytes(srk_public.marshal()),
        slot=info.free_slot,
        counter=info.next_seq - 1,
    )
    manifest = _expect(flow.post("dpf/package", request), MidPackage, "package")
    verify_signature(manifest, pins["dpf"])
    return manifest


def unpack(manifest: MidPackage) -> Package:
    """The TPM package inside a verified manifest; its id, IMSI and sequence must agree.

    Raises:
        RemoteProtocolError: the package does not match the signed manifest.
    """
    from tpm.package import Package

    try:
        package = Package.from_json(load_json(manifest.package, "MID package"))
    except ValueError as exc:
        raise RemoteProtocolError(f"MID package: {exc}") from None
    if (package.mid_id, package.imsi, package.seq) != (
        manifest.mid_id,
        manifest.imsi,
        manifest.sequence,
    ):
        raise RemoteProtocolError("MID package differs from its signed manifest")
    return package


def make_receipt(
    conn: TpmConnection, flow: Flow, mid_id: str, event: str, slot: int, sequence: int
) -> Receipt:
    """M7: AK-signed TPM2_NV_Certify of the slot's state (:func:`tpm.nv.state_location`) and
    MID_CTR, bound to the session."""
    from tpm import nv
    from tpm.identity import open_ak
    from tpm.tss import TPM2_ALG, TPMT_SIG_SCHEME

    qualifying = receipt_qualifying_data(flow.session.session_id, flow.session.transcript, event)
    evidence: dict[str, bytes] = {}
    with open_ak(conn, flow.ak) as ak_tr:
        for label, index, size, offset in (
            ("state", *nv.state_location(conn, slot)),
            ("counter", nv.MID_CTR, 8, 0),
        ):
            handle = nv.resource(conn, index)  # shared: not closed
            attest_blob, sig = conn.esys.nv_certify(
                ak_tr,
                handle,
                qualifying,
                TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL),
                size,
                offset,
                auth_handle=handle,
            )
            evidence[f"{label}.attest"] = bytes(attest_blob)
            evidence[f"{label}.sig"] = bytes(sig.marshal())
    return flow.session.make(
        Receipt,
        mid_id=mid_id,
        sequence=sequence,
        event=event,
        evidence=tuple(sorted(evidence.items())),
    )


def install(
    conn: TpmConnection, registry: Registry, flow: Flow, manifest: MidPackage
) -> tuple[MidRecord, Message]:
    """M6/M7: import the package into the TPM, then the install receipt → the SHO's answer
    (a LifecycleCommand to activate, or an Ack)."""
    from tpm.mid import import_package

    record = import_package(conn, registry, unpack(manifest))
    receipt = make_receipt(conn, flow, manifest.mid_id, "install", record.slot, manifest.sequence)
    return record, flow.post("dpf/receipt", receipt)


def activate(
    conn: TpmConnection,
    registry: Registry,
    flow: Flow,
    command: LifecycleCommand,
    slot: int,
    pins: Pins,
) -> Ack:
    """M8: check the SHO's signed command, MID_STATE = ACTIVE, receipt → Ack.

    Raises:
        SignatureInvalid: the command is not signed by the pinned key of its SHO.
    """
    from tpm import nv
    from tpm.mid import set_state

    verify_signature(command, pins[command.signer])
    if command.transition != "activate":
        raise RemoteProtocolError(f"expected an activate command, got {command.transition}")
    set_state(conn, registry, command.mid_id, nv.MidState.ACTIVE, approval=command.state_approval)
    receipt = make_receipt(conn, flow, command.mid_id, "activate", slot, command.sequence)
    return _expect(flow.post("dpf/receipt", receipt), Ack, "activate receipt")


def provision(
    conn: TpmConnection,
    registry: Registry,
    transport: Transport,
    pins: Pins,
    sho: str = "sho-a",
    *,
    grant: bytes | None = None,
) -> Provisioned:
    """M2–M8 end to end: a MID of ``sho`` imported and ACTIVE on this TPM and at the SHO."""
    flow, challenge = start(conn, transport, sho, grant=grant)
    vc = prove(conn, flow, challenge)
    attest(conn, flow, vc, pins)
    manifest = request_package(conn, flow, vc, pins)
    record, reply = install(conn, registry, flow, manifest)
    command = _expect(reply, LifecycleCommand, "install receipt")
    activate(conn, registry, flow, command, record.slot, pins)
    return Provisioned(manifest.mid_id, manifest.imsi, manifest.sho, record.slot, flow, command)


def order(transport: Transport, signer: SigningKey, mid_id: str, transition: str) -> Ack:
    """The SHO orders ``transition`` of ``mid_id`` (a LifecycleOrder signed with ``signer``).

    Raises:
        Refused, SignatureInvalid: the RO did not take the order.
    """
    from protocol.messages import INITIAL_TRANSCRIPT, LifecycleOrder, decode, encode, sign

    msg = sign(
        LifecycleOrder(
            session_id=os.urandom(32),
            transcript=INITIAL_TRANSCRIPT,
            mid_id=mid_id,
            transition=transition,
        ),
        signer,
    )
    return _expect(decode(transport.post("sho/order", encode(msg))), Ack, "order")


def follow_orders(
    conn: TpmConnection,
    registry: Registry,
    transport: Transport,
    mid: Provisioned,
    pins: Pins,
) -> Ack:
    """The TRE asks for pending orders (LifecycleRequest "pending"), checks the SHO's signed
    command, applies it to MID_STATE and receipts it (AK-signed NV_Certify)."""
    from tpm import nv
    from tpm.mid import delete_mid, set_state

    session = Session("device", SessionState(os.urandom(32)))
    flow = Flow(transport, session, mid.flow.ak, mid.flow.ek_cert)
    reply = flow.post(
        "sho/lifecycle", session.make(LifecycleRequest, mid_id=mid.mid_id, transition="pending")
    )
    if isinstance(reply, Ack):
        return reply
    command = _expect(reply, LifecycleCommand, "lifecycle")
    verify_signature(command, pins[command.signer])
    if command.transition == "delete":
        delete_mid(conn, registry, mid.mid_id, approval=command.state_approval)
    else:
        state = nv.MidState.SUSPENDED if command.transition == "suspend" else nv.MidState.ACTIVE
        set_state(conn, registry, mid.mid_id, state, approval=command.state_approval)
    receipt = make_receipt(conn, flow, mid.mid_id, command.transition, mid.slot, command.sequence)
    return _expect(flow.post("dpf/receipt", receipt), Ack, "lifecycle receipt")


def attach(
    conn: TpmConnection,
    registry: Registry,
    transport: Transport,
    mid_id: str,
    imsi: str,
    *,
    pin: bytes | None = None,
) -> AttachResult:
    """AKA with the SHO (TS 33.102 §6.3) with K inside the TPM; one AUTS resynchronisation."""
    from tpm.aka import authenticate

    session = Session("device", SessionState(os.urandom(32)))

    def post(endpoint: str, msg: Message) -> Message:
        return session.receive(transport.post(endpoint, session.send(msg)))

    reply = post("sho/attach", session.make(AttachRequest, imsi=imsi))
    for _ in range(2):
        challenge = _expect(reply, AuthChallenge, "attach")
        outcome = authenticate(conn, registry, mid_id, challenge.rand, challenge.autn, pin=pin)
        answer = outcome.result.to_json()
        if answer["result"] == "success":
            response = session.make(AuthResponse, res=bytes.fromhex(answer["res"]))
        elif answer["result"] == "sync_failure":
            response = session.make(AuthResponse, auts=bytes.fromhex(answer["auts"]))
        else:
            raise RemoteProtocolError("the network's AUTN did not verify (MAC failure)")
        reply = post("sho/auth", response)
        if isinstance(reply, AttachResult):
            return reply
    return _expect(reply, AttachResult, "attach")
