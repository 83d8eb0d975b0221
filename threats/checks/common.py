"""Edge: TPM, network. Attacks several threats share: the victim M2ME with an ACTIVE MID
provisioned through the operator, the attacker's self-made manufacturer CA, a software "AK"
for an emulated M2ME, the PCID reaching beyond the registration operator, and the K
extraction attempts against a provisioned MID.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from protocol.errors import Refused
from threats.context import MEASURED_PCR, NETWORK_PCRS, ThreatLab
from threats.result import Recorder
from trelab.errors import RemoteProtocolError

if TYPE_CHECKING:
    from host.agent import DeviceTrust
    from network.server import NetworkApp
    from protocol.client import Transport
    from protocol.messages import Ack, MidPackage, SigningKey
    from threats.stepped_agent import SteppedAgent
    from tpm.connection import TpmConnection
    from tpm.package import Package
    from tpm.registry import MidRecord, Registry

__all__ = [
    "Victim",
    "agent",
    "attacker_ek_certificate",
    "device_trust",
    "ek_certificate",
    "emulated_ak_public",
    "extraction_text",
    "import_refusals",
    "k_extraction",
    "lab_tpm",
    "measured_pcr_changed",
    "pcid_filtering",
    "pcid_grant",
    "refusal",
    "refused",
    "register",
    "register_pcid",
    "scratch_tpm",
    "sho_order",
    "tampered_aka",
    "unpack",
    "victim",
    "victim_manifest",
    "victim_on_other_tpm",
    "victim_package",
    "wrong_pin",
]


@dataclass(frozen=True)
class Victim:
    """The lab M2ME with one MID of SHO-A, provisioned by the host agent
    (:func:`host.provision.provision`) and ACTIVE, and the operator that provisioned it.
    ``exchanges`` is every request and reply of the provisioning (HTTP bodies); ``k``/``opc``
    are the HSS's copy (the test oracle)."""

    app: NetworkApp
    mid_id: str
    imsi: str
    slot: int
    record: MidRecord
    exchanges: tuple[tuple[str, bytes, bytes], ...] = field(repr=False)
    k: bytes = field(repr=False)
    opc: bytes = field(repr=False)

    @property
    def manifest_wire(self) -> bytes:
        return next(reply for endpoint, _, reply in self.exchanges if endpoint == "dpf/package")

    @property
    def capture(self) -> bytes:
        return b"".join(request + reply for _, request, reply in self.exchanges)


def device_trust(ctx: ThreatLab) -> DeviceTrust:
    """What the host agent pins for this run's operator (device-trust.json)."""
    from host.agent import parse_device_trust
    from network.config import device_trust as trust_doc

    return parse_device_trust(trust_doc(ctx.network().config))


def victim(ctx: ThreatLab) -> Victim:
    """Provisioned once per run by the host agent (:func:`host.provision.provision`), with the
    operator served over HTTP on loopback behind a wire tap (what an eavesdropper records)."""

    def make() -> Victim:
        from host.provision import provision
        from threats.context import RecordingTransport
        from tpm.connection import TpmConnection

        net = ctx.network()
        app = net.app()
        registry = ctx.registry()
        with net.http(app) as http, TpmConnection(ctx.tcti) as conn:
            tap = RecordingTransport(http)
            done = provision(
                conn,
                registry,
                tap,
                device_trust(ctx),
                sho="sho-a",
                network="threats",
                use_pcid=False,
            ).finished
        record = registry.read().get(done.mid_id)
        with app.store.transaction() as tx:
            hss = tx.hss(done.imsi)
        if hss is None:
            raise RuntimeError("the SHO has no HSS record for the MID it provisioned")
        return Victim(
            app, done.mid_id, done.imsi, done.slot, record, tuple(tap.exchanges), hss.k, hss.opc
        )

    return ctx.once("victim", make)


def victim_manifest(ctx: ThreatLab) -> MidPackage:
    """The DPF-signed MidPackage the eavesdropper recorded."""
    from protocol.messages import MidPackage, decode

    msg = decode(victim(ctx).manifest_wire)
    if not isinstance(msg, MidPackage):
        raise RuntimeError("the recorded dpf/package reply is not a MidPackage")
    return msg


def unpack(manifest: MidPackage) -> Package:
    """The TPM package inside a MidPackage manifest, as anyone who has the manifest reads it
    (no signature check: what an attacker holding a recorded or re-targeted package has).

    Raises:
        RemoteProtocolError: the package does not parse or differs from its manifest.
    """
    from tpm.package import Package
    from trelab.errors import RemoteProtocolError
    from trelab.jsontext import load_json

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


def victim_package(ctx: ThreatLab) -> Package:
    """The TPM package inside the recorded manifest."""
    return unpack(victim_manifest(ctx))


def ek_certificate(conn: TpmConnection) -> bytes:
    """The TPM's RSA-2048 EK certificate, DER (read from NV: public, anyone may copy it)."""
    from cryptography.hazmat.primitives import serialization

    from tpm.ek import read_ek_certificates

    return read_ek_certificates(conn)["rsa2048"].public_bytes(serialization.Encoding.DER)


def sho_order(transport: Transport, signer: SigningKey, mid_id: str, transition: str) -> Ack:
    """An SHO orders ``transition`` of ``mid_id`` at the RO (a LifecycleOrder signed with
    ``signer``; the operator's side, not the device's).

    Raises:
        Refused, SignatureInvalid: the RO did not take the order.
    """
    from protocol.messages import INITIAL_TRANSCRIPT, Ack, LifecycleOrder, decode, encode, sign

    msg = sign(
        LifecycleOrder(
            session_id=os.urandom(32),
            transcript=INITIAL_TRANSCRIPT,
            mid_id=mid_id,
            transition=transition,
        ),
        signer,
    )
    reply = decode(transport.post("sho/order", encode(msg)))
    if not isinstance(reply, Ack):
        raise RemoteProtocolError(f"order: expected Ack, got {type(reply).__name__}")
    return reply


def refused(call: Any) -> Refused | None:
    """Run a network request; the role's refusal, or None if it was accepted."""
    try:
        call()
    except Refused as exc:
        return exc
    return None


def refusal(call: Callable[[], object], *errors: type[Exception]) -> str | None:
    """Run one step of an attack: None if it went through, else the text of the refusal it
    met (one of ``errors``; anything else propagates and the attack is an error)."""
    try:
        call()
    except errors as exc:
        return str(exc)
    return None


@contextmanager
def lab_tpm(ctx: ThreatLab) -> Iterator[tuple[TpmConnection, Registry]]:
    """The lab's TPM (the victim M2ME's) and its MID registry, for the block."""
    from tpm.connection import TpmConnection

    with TpmConnection(ctx.tcti) as conn:
        yield conn, ctx.registry()


def register(
    ctx: ThreatLab,
    conn: TpmConnection,
    registry: Registry,
    *,
    app: NetworkApp | None = None,
    **attacker: Any,
) -> SteppedAgent:
    """The host agent on ``conn`` registered with ``app`` (default: a fresh operator), the
    DRF's challenge received; ``attacker`` goes to :meth:`SteppedAgent.register` (``ek_cert``,
    ``grant``, ``clock``).

    Raises:
        Refused: the DRF refused the registration.
    """
    from threats.stepped_agent import SteppedAgent

    net = ctx.network()
    transport = net.transport(app if app is not None else net.app())
    return SteppedAgent.register(conn, registry, transport, device_trust(ctx), **attacker)


@contextmanager
def agent(
    ctx: ThreatLab, *, scratch: bool = False, app: NetworkApp | None = None, **attacker: Any
) -> Iterator[SteppedAgent]:
    """:func:`register` on the lab's TPM (the scratch TPM with ``scratch``), which stays open
    for the block; the agent's requests may still be sent after it."""
    with scratch_tpm(ctx) if scratch else lab_tpm(ctx) as (conn, registry):
        yield register(ctx, conn, registry, app=app, **attacker)


@contextmanager
def scratch_tpm(ctx: ThreatLab) -> Iterator[tuple[TpmConnection, Registry]]:
    """The scratch lab's TPM (the attacker's equipment, the replacement TRE, the TPM a
    destructive attack may break) and its MID registry, for the block.

    Raises:
        Unavailable: no scratch lab can run here.
    """
    from tpm.connection import TpmConnection

    other = ctx.scratch()
    registry = ctx.registry(other)
    with TpmConnection(other.tcti) as conn:
        yield conn, registry


def victim_on_other_tpm(ctx: ThreatLab) -> str | None:
    """The victim's MID (registry record and blobs) taken to the scratch TPM and loaded
    through the MID store: None if it loaded, else the store's refusal."""
    from threats.tpm_tools import load_mid
    from tpm.mid_errors import MidRefused

    v = victim(ctx)
    with scratch_tpm(ctx) as (conn, _):
        return refusal(lambda: load_mid(conn, v.record), MidRefused)


def import_refusals(
    conn: TpmConnection, registry: Registry, package: Package
) -> tuple[str | None, str | None]:
    """Open ``package`` on this TPM both ways: (the MID store's refusal, TPM2_Import of its
    parent under this TPM's EK with none of the store's checks — the response code); None
    where it went through."""
    from threats.tpm_tools import import_parent
    from tpm.mid import import_package
    from tpm.mid_errors import PackageRejected

    host_check = refusal(lambda: import_package(conn, registry, package), PackageRejected)
    return host_check, import_parent(conn, package)


def wrong_pin(ctx: ThreatLab, pin: bytes, guess: bytes) -> str | None:
    """A MID protected by ``pin`` on the scratch TPM, used with ``guess`` (the DA lockout is
    reset before and after): None if K worked, else the TPM's PinRejected text."""
    from threats.tpm_tools import local_aka, local_mid
    from tpm.mid_errors import PinRejected

    rand = os.urandom(16)
    with scratch_tpm(ctx) as (conn, registry):
        conn.esys.dictionary_attack_lock_reset()
        mid = local_mid(conn, registry, kind="use", pin=pin)
        try:
            return refusal(lambda: local_aka(conn, registry, mid, rand, pin=guess), PinRejected)
        finally:
            conn.esys.dictionary_attack_lock_reset()


def tampered_aka(ctx: ThreatLab, kinds: tuple[str, ...]) -> dict[str, str | None]:
    """One MID of each policy kind in ``kinds`` bound to :data:`NETWORK_PCRS` on the scratch
    TPM; the MID manager's measurement then changes (PCR :data:`MEASURED_PCR` extended) and
    each runs AKA: kind → None if K still worked, else the MidRefused text."""
    from threats.tpm_tools import LocalMid, local_aka, local_mid
    from tpm.mid_errors import MidRefused

    rand = os.urandom(16)
    with scratch_tpm(ctx) as (conn, registry):
        mids = {
            kind: local_mid(conn, registry, kind=kind, selection=NETWORK_PCRS) for kind in kinds
        }

        def use(mid: LocalMid) -> str | None:
            return refusal(lambda: local_aka(conn, registry, mid, rand), MidRefused)

        with measured_pcr_changed(conn, MEASURED_PCR):
            return {kind: use(mid) for kind, mid in mids.items()}


def attacker_ek_certificate(public_key: Any = None) -> bytes:
    """An "EK certificate" issued by a CA the attacker made himself, named like the lab's
    manufacturer CA (key = ``public_key`` or a new P-256 key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_public = public_key or ec.generate_private_key(ec.SECP256R1()).public_key()
    now = datetime.datetime.now(datetime.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "M2MES CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_name)
        .public_key(leaf_public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def emulated_ak_public() -> bytes:
    """An emulator's "AK": a software P-256 key dressed in a TPM2B_PUBLIC with every AK
    attribute set (fixedTPM, restricted …) — attributes a verifier cannot check."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from tpm.identity import AK_ATTRIBUTES
    from tpm.tss import TPM2B_PUBLIC

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return bytes(TPM2B_PUBLIC.from_pem(pem, objectAttributes=AK_ATTRIBUTES).marshal())


def pcid_filtering(ctx: ThreatLab, rec: Recorder, measures: tuple[str, ...]) -> None:
    """Network filtering (TR 33.812's "only one APN with restricted IP connectivity"): a device
    authenticates with a PCID, gets the ICF's grant, and uses it beyond the registration
    operator (the SHO's attach endpoint) — the ICF refuses ``ro-only``."""
    from protocol.messages import AttachRequest
    from protocol.transitions import Session, SessionState

    attempted = (
        "a device holding only a provisional identity (PCID) uses its ICF grant for a service"
        " beyond the registration operator (SHO attach)"
    )
    with ctx.attack(rec, measures, "pcid-beyond-ro", attempted, tre="network") as a:
        net = ctx.network()
        app = net.app()
        transport = net.transport(app)
        imsi, k, opc = register_pcid(app, "0010188")
        grant = pcid_grant(transport, imsi, k, opc)
        assert grant
        beyond = Session("device", SessionState(os.urandom(32)))
        wire = beyond.send(beyond.make(AttachRequest, imsi=imsi))
        refusal = refused(lambda: transport.post("sho/attach", wire, grant=grant))
        a.note(pcid_attach="accepted", grant_issued=True)
        if refusal is None:
            a.not_blocked("the ICF let a PCID grant reach the SHO's attach endpoint")
        else:
            a.blocked(
                f"ICF refused {refusal.code}: a PCID grant reaches only DRF/PVA/DPF",
                refused=refusal.code,
            )


def register_pcid(app: NetworkApp, prefix: str) -> tuple[str, bytes, bytes]:
    """A provisional identity (PCID) registered at the ICF, valid from a minute ago for an
    hour: (IMSI = ``prefix`` + 8 random digits, K, OPc)."""
    imsi = f"{prefix}{int.from_bytes(os.urandom(4), 'big') % 10**8:08d}"
    k, opc = os.urandom(16), os.urandom(16)
    now = app.now()
    with app.store.transaction() as tx:
        app.operator.register_pcid(
            tx,
            imsi=imsi,
            k=k,
            opc=opc,
            not_before=now - 60,
            not_after=now + 3600,
            request_id=f"pcid-{imsi}",
            now=now,
        )
    return imsi, k, opc


def pcid_grant(transport: Transport, imsi: str, k: bytes, opc: bytes) -> bytes:
    """Attach with a PCID (a software USIM holding its K/OPc) and return the ICF's grant."""
    from aka.keyholder import SoftwareAes
    from aka.milenage import Milenage
    from aka.sqn import SqnState
    from aka.usim import AkaSuccess, usim_authenticate
    from protocol.messages import AttachRequest, AttachResult, AuthChallenge, AuthResponse
    from protocol.transitions import Session, SessionState

    session = Session("device", SessionState(os.urandom(32)))
    challenge = session.receive(
        transport.post("sho/attach", session.send(session.make(AttachRequest, imsi=imsi)))
    )
    assert isinstance(challenge, AuthChallenge)
    result, _ = usim_authenticate(
        Milenage(SoftwareAes(k), opc), SqnState(), challenge.rand, challenge.autn
    )
    assert isinstance(result, AkaSuccess)
    done = session.receive(
        transport.post("sho/auth", session.send(session.make(AuthResponse, res=result.res)))
    )
    assert isinstance(done, AttachResult) and done.accepted
    return done.grant


def k_extraction(conn: TpmConnection, record: MidRecord) -> dict[str, str | None]:
    """Ask the TPM for K the ways host software could: TPM2_Unseal, TPM2_Duplicate (password
    session), TPM2_Duplicate (a policy session with no policy satisfied), and EncryptDecrypt2
    with the empty password (bypassing K's policy). Each entry: the response code, or None
    if the TPM complied."""
    from threats.tpm_tools import mid_objects, tpm_refusal
    from tpm.policy_session import start_session
    from tpm.tss import ESYS_TR, TPM2_ALG, TPM2B_IV, TPMT_SYM_DEF_OBJECT

    esys = conn.esys
    null = TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL)
    out: dict[str, str | None] = {}
    with mid_objects(conn, record) as load:
        key = load(record.k)
        out["unseal"] = tpm_refusal(lambda: esys.unseal(key))
        out["duplicate"] = tpm_refusal(
            lambda: esys.duplicate(key, ESYS_TR.NULL, b"", null, session1=ESYS_TR.PASSWORD)
        )
        session = start_session(conn)
        try:
            out["duplicate_policy"] = tpm_refusal(
                lambda: esys.duplicate(key, ESYS_TR.NULL, b"", null, session1=session)
            )
        finally:
            conn.flush(session)
        if record.policy.kind != "load":
            out["encrypt_password"] = tpm_refusal(
                lambda: esys.encrypt_decrypt_2(
                    key, False, TPM2_ALG.ECB, TPM2B_IV(), bytes(16), session1=ESYS_TR.PASSWORD
                )
            )
    return out


def extraction_text(refusals: Mapping[str, str | None]) -> str:
    """``unseal → TPM_RC_…; duplicate → …``: what each of :func:`k_extraction`'s attempts met."""
    return "; ".join(f"{name} → {code}" for name, code in refusals.items())


@contextmanager
def measured_pcr_changed(conn: TpmConnection, index: int) -> Iterator[None]:
    """The MID manager's measurement changes (PCR ``index`` extended) for the block, then the
    PCR is reset to its boot value."""
    from threats.tpm_tools import extend_pcr, reset_pcr

    extend_pcr(conn, index, os.urandom(32))
    try:
        yield
    finally:
        reset_pcr(conn, index)
