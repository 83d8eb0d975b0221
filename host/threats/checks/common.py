"""Edge: TPM, network. Attacks several threats share: the victim M2ME with an ACTIVE MID
provisioned through the operator, the attacker's self-made manufacturer CA, a software "AK"
for an emulated M2ME, the PCID reaching beyond the registration operator, and the K
extraction attempts against a provisioned MID.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from host.threats.context import ThreatLab
from host.threats.device import provision
from host.threats.result import Recorder
from network.errors import Refused

if TYPE_CHECKING:
    from host.agent import DeviceTrust
    from network.messages import MidPackage
    from network.server import NetworkApp
    from tpm.connection import TpmConnection
    from tpm.package import Package
    from tpm.registry import MidRecord

__all__ = [
    "Victim",
    "attacker_ek_certificate",
    "device_trust",
    "emulated_ak_public",
    "k_extraction",
    "measured_pcr_changed",
    "pcid_filtering",
    "refused",
    "victim",
    "victim_manifest",
    "victim_package",
]


@dataclass(frozen=True)
class Victim:
    """The lab M2ME with one MID of SHO-A, provisioned and ACTIVE, and the operator that
    provisioned it. ``exchanges`` is every request and reply of the provisioning (HTTP bodies);
    ``k``/``opc`` are the HSS's copy (the test oracle). ``agent`` says whether the host agent
    (:mod:`host.provision`) provisioned it, or this package's step-by-step device."""

    app: NetworkApp
    mid_id: str
    imsi: str
    slot: int
    record: MidRecord
    exchanges: tuple[tuple[str, bytes, bytes], ...] = field(repr=False)
    k: bytes = field(repr=False)
    opc: bytes = field(repr=False)
    agent: bool = False

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
    """Provisioned once per run by the host agent (:func:`host.provision.provision`; this
    package's step-by-step device if the agent is not in the checkout), with the operator
    served over HTTP on loopback behind a wire tap (what an eavesdropper records)."""

    def make() -> Victim:
        from host.threats.context import RecordingTransport, module_present
        from tpm.connection import TpmConnection

        net = ctx.network()
        app = net.app()
        registry = ctx.registry()
        agent = module_present("host.provision")
        with net.http(app) as http, TpmConnection(ctx.tcti) as conn:
            tap = RecordingTransport(http)
            if agent:
                from host.provision import provision as agent_provision

                done = agent_provision(
                    conn,
                    registry,
                    tap,
                    device_trust(ctx),
                    sho="sho-a",
                    network="threats",
                    use_pcid=False,
                ).finished
                mid_id, imsi, slot = done.mid_id, done.imsi, done.slot
            else:
                mid = provision(conn, registry, tap, net.pins, "sho-a")
                mid_id, imsi, slot = mid.mid_id, mid.imsi, mid.slot
        record = registry.read().get(mid_id)
        with app.store.transaction() as tx:
            hss = tx.hss(imsi)
        if hss is None:
            raise RuntimeError("the SHO has no HSS record for the MID it provisioned")
        return Victim(app, mid_id, imsi, slot, record, tuple(tap.exchanges), hss.k, hss.opc, agent)

    return ctx.once("victim", make)


def victim_manifest(ctx: ThreatLab) -> MidPackage:
    """The DPF-signed MidPackage the eavesdropper recorded."""
    from network.messages import MidPackage, decode

    msg = decode(victim(ctx).manifest_wire)
    if not isinstance(msg, MidPackage):
        raise RuntimeError("the recorded dpf/package reply is not a MidPackage")
    return msg


def victim_package(ctx: ThreatLab) -> Package:
    """The TPM package inside the recorded manifest."""
    from host.threats.device import unpack

    return unpack(victim_manifest(ctx))


def refused(call: Any) -> Refused | None:
    """Run a network request; the role's refusal, or None if it was accepted."""
    try:
        call()
    except Refused as exc:
        return exc
    return None


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
    from tpm2_pytss import TPM2B_PUBLIC

    from tpm.identity import AK_ATTRIBUTES

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return bytes(TPM2B_PUBLIC.from_pem(pem, objectAttributes=AK_ATTRIBUTES).marshal())


def pcid_filtering(ctx: ThreatLab, rec: Recorder, measures: tuple[str, ...]) -> None:
    """Network filtering (the seed's "only one APN with restricted IP connectivity"): a device
    authenticates with a PCID, gets the ICF's grant, and uses it beyond the registration
    operator (the SHO's attach endpoint) — the ICF refuses ``ro-only``."""
    from aka.keyholder import SoftwareAes
    from aka.milenage import Milenage
    from aka.sqn import SqnState
    from aka.usim import AkaSuccess, usim_authenticate
    from network.messages import AttachRequest, AttachResult, AuthChallenge, AuthResponse
    from network.protocol import Session, SessionState

    attempted = (
        "a device holding only a provisional identity (PCID) uses its ICF grant for a service"
        " beyond the registration operator (SHO attach)"
    )
    with ctx.attack(rec, measures, "pcid-beyond-ro", attempted, tre="network") as a:
        net = ctx.network()
        app = net.app()
        transport = net.transport(app)
        imsi = f"0010188{int.from_bytes(os.urandom(4), 'big') % 10**8:08d}"
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
        session = Session("device", SessionState(os.urandom(32)))
        reply = session.receive(
            transport.post("sho/attach", session.send(session.make(AttachRequest, imsi=imsi)))
        )
        assert isinstance(reply, AuthChallenge)
        result, _ = usim_authenticate(
            Milenage(SoftwareAes(k), opc), SqnState(), reply.rand, reply.autn
        )
        assert isinstance(result, AkaSuccess)
        done = session.receive(
            transport.post("sho/auth", session.send(session.make(AuthResponse, res=result.res)))
        )
        assert isinstance(done, AttachResult) and done.accepted and done.grant
        beyond = Session("device", SessionState(os.urandom(32)))
        wire = beyond.send(beyond.make(AttachRequest, imsi=imsi))
        refusal = refused(lambda: transport.post("sho/attach", wire, grant=done.grant))
        a.note(pcid_attach="accepted", grant_issued=True)
        if refusal is None:
            a.not_blocked("the ICF let a PCID grant reach the SHO's attach endpoint")
        else:
            a.blocked(
                f"ICF refused {refusal.reason}: a PCID grant reaches only DRF/PVA/DPF",
                refused=refusal.reason,
            )


def k_extraction(conn: TpmConnection, record: MidRecord) -> dict[str, str | None]:
    """Ask the TPM for K the ways host software could: TPM2_Unseal, TPM2_Duplicate (password
    session), TPM2_Duplicate (a policy session with no policy satisfied), and EncryptDecrypt2
    with the empty password (bypassing K's policy). Each entry: the response code, or None
    if the TPM complied."""
    from tpm2_pytss import TPM2B_IV, TPMT_SYM_DEF_OBJECT
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG

    from host.threats.tpm_tools import mid_objects, tpm_refusal
    from tpm.policy_session import start_session

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


@contextmanager
def measured_pcr_changed(conn: TpmConnection, index: int) -> Iterator[None]:
    """The MID manager's measurement changes (PCR ``index`` extended) for the block, then the
    PCR is reset to its boot value."""
    from host.threats.tpm_tools import extend_pcr, reset_pcr

    extend_pcr(conn, index, os.urandom(32))
    try:
        yield
    finally:
        reset_pcr(conn, index)
