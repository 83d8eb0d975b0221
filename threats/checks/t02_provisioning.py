"""Edge: TPM, network. Threat 2 (§7.1.2.1): attacking the MID provisioning process —
eavesdropping, corrupting, replaying, MITM, spoofing the DPF, hijacking a session, skipping
registration. Extra attacks: a replayed MID package, a package re-targeted to another TPM.
"""

from __future__ import annotations

import dataclasses
import os

from protocol.errors import RemoteProtocolError, SignatureInvalid
from threats.checks import common
from threats.context import ThreatLab
from threats.result import Finding, Recorder

__all__ = ["run"]


def run(ctx: ThreatLab) -> list[Finding]:
    from tpm.connection import TpmConnection

    rec = Recorder("2", tre="tpm")

    with ctx.attack(
        rec,
        ("1", "2", "3"),
        "eavesdrop",
        "record every byte of a provisioning run (HTTP on loopback, both directions) and look"
        " for K and OPc in it",
        tre="network",
    ) as a:
        v = common.victim(ctx)
        capture = v.capture
        found = [
            name
            for name, secret in (("K", v.k), ("OPc", v.opc))
            if secret in capture or secret.hex().encode() in capture
        ]
        a.note(bytes_recorded=len(capture), messages=2 * len(v.exchanges))
        if found:
            a.not_blocked(f"{', '.join(found)} readable on the provisioning channel")
        else:
            a.blocked(
                "confidentiality: K and OPc travel only inside the TPM2_Duplicate outer wrap"
                " (seed encrypted to the TRE's EK, HMAC over the name)"
            )

    with ctx.attack(
        rec,
        ("4",),
        "retargeted-package",
        "import the recorded MID package into the eavesdropper's own TPM (through the MID"
        " store, and directly with TPM2_Import under its EK, skipping the host's checks)",
        extra="retargeted-package",
    ) as a:
        package = common.victim_package(ctx)
        with common.scratch_tpm(ctx) as (conn, registry):
            host_check, code = common.import_refusals(conn, registry, package)
            alive = len(bytes(conn.esys.get_random(4))) == 4  # libtpms answers FAILURE here
        a.note(host_check=host_check, tpm_rc=code, tpm_operational_after=alive)
        if host_check is None or code is None:
            a.not_blocked(f"another TPM accepted the package (host: {host_check}, TPM: {code})")
        else:
            a.blocked(
                f"bound to the victim's EK: MID store refused ({host_check}); TPM2_Import"
                f" under the other EK → {code}"
            )

    with ctx.attack(
        rec,
        ("4",),
        "replayed-package",
        "replay the recorded MID package to the victim's TPM (its sequence number is used)",
        extra="replayed-package",
    ) as a:
        from tpm import nv
        from tpm.mid import import_package
        from tpm.mid_errors import PackageRejected

        package = common.victim_package(ctx)
        with TpmConnection(ctx.tcti) as conn:
            before = nv.read_counter(conn, nv.MID_CTR)
            error = common.refusal(
                lambda: import_package(conn, ctx.registry(), package), PackageRejected
            )
            after = nv.read_counter(conn, nv.MID_CTR)
        a.note(package_seq=package.seq, mid_ctr_before=before, mid_ctr_after=after)
        if error is None:
            a.not_blocked("the TPM imported the same package twice")
        else:
            a.blocked(f"MID_CTR (TPM NV counter = {after}) refused sequence {package.seq}: {error}")

    with ctx.attack(
        rec,
        ("4", "5"),
        "replayed-package-session",
        "replay the recorded (validly signed) MidPackage message into a new provisioning"
        " session of the same device",
        extra="replayed-package",
    ) as a:
        v = common.victim(ctx)
        with common.agent(ctx, app=v.app) as agent:
            agent.activate()
            try:  # a man in the middle answers the agent's next request with the recording
                agent.send(answer=lambda _reply: v.manifest_wire)
                a.not_blocked("a MidPackage of another session was accepted")
            except RemoteProtocolError as exc:
                a.blocked(f"session binding: {exc}")

    with ctx.attack(
        rec,
        ("4",),
        "mitm-alter-manifest",
        "a man in the middle changes the IMSI in the DPF-signed MID manifest",
    ) as a:
        from protocol.messages import verify_signature

        manifest = common.victim_manifest(ctx)
        altered = dataclasses.replace(manifest, imsi="001019999999999")
        try:
            verify_signature(altered, ctx.network().pins["dpf"])
            a.not_blocked("the device accepted an altered manifest")
        except SignatureInvalid as exc:
            a.blocked(f"integrity (COSE_Sign1 by the pinned DPF key): {exc}")

    with ctx.attack(
        rec,
        ("4", "5"),
        "mitm-package-agent",
        "a man in the middle on the provisioning channel rewrites the IMSI inside the"
        " DPF-signed MID package on its way to the host agent (another M2ME, its own TPM)",
    ) as a:
        from host.agent import AgentRefused
        from host.provision import provision
        from threats.context import MitmTransport
        from tpm import nv

        net = ctx.network()
        app = net.app()
        mitm = MitmTransport(net.transport(app), "dpf/package", _alter_manifest_imsi)
        with common.scratch_tpm(ctx) as (conn, registry):
            nv.ensure_indices(conn)
            before = nv.read_counter(conn, nv.MID_CTR)
            try:
                provision(
                    conn,
                    registry,
                    mitm,
                    common.device_trust(ctx),
                    sho="sho-a",
                    network="threats-mitm",
                    use_pcid=False,
                )
                code = None
            except AgentRefused as exc:
                code = exc.code
            after = nv.read_counter(conn, nv.MID_CTR)
        a.note(rewritten=mitm.rewritten, agent_refused=code, mid_ctr_unchanged=before == after)
        if code is None:
            a.not_blocked("the host agent installed a package altered in transit")
        else:
            a.blocked(
                f"the host agent refused ({code}): the manifest's COSE signature by the"
                " pinned DPF key no longer verifies; nothing was imported"
            )

    with ctx.attack(
        rec,
        ("4",),
        "spoofed-dpf",
        "an impostor DPF signs a MID manifest with its own key under the name 'dpf'",
    ) as a:
        from cryptography.hazmat.primitives.asymmetric import ec

        from protocol.messages import SigningKey, sign, verify_signature

        manifest = common.victim_manifest(ctx)
        forged = sign(
            dataclasses.replace(manifest, cose=b""),
            SigningKey("dpf", ec.generate_private_key(ec.SECP256R1())),
        )
        try:
            verify_signature(forged, ctx.network().pins["dpf"])
            a.not_blocked("the device accepted a manifest signed by an impostor DPF")
        except SignatureInvalid as exc:
            a.blocked(f"DPF authentication (pinned key): {exc}")

    with ctx.attack(
        rec,
        ("4",),
        "corrupted-duplicate",
        "flip one bit in a package's wrapped K (TPM2_Duplicate blob) on its way to the TPM",
    ) as a:
        from threats.tpm_tools import import_parent
        from tpm import nv
        from tpm.mid import import_package, wrap_for_device
        from tpm.mid_errors import PackageRejected
        from tpm.package import AlgorithmSpec, MidSecrets

        with TpmConnection(ctx.tcti) as conn:
            package = wrap_for_device(
                conn,
                MidSecrets(os.urandom(16), os.urandom(16)),
                imsi="001019990000002",
                algorithm=AlgorithmSpec(),
                amf=b"\x80\x00",
                sqn_ms=bytes(6),
                kind="use",
            )
            blob = bytearray(package.parent.duplicate)
            blob[len(blob) // 2] ^= 0x01
            bad = dataclasses.replace(
                package, parent=dataclasses.replace(package.parent, duplicate=bytes(blob))
            )
            before = nv.read_counter(conn, nv.MID_CTR)
            error = common.refusal(
                lambda: import_package(conn, ctx.registry(), bad), PackageRejected
            )
            after = nv.read_counter(conn, nv.MID_CTR)
            code = import_parent(conn, bad)
        a.note(mid_ctr_unchanged=before == after, tpm_rc=code)
        if error is None or code is None:
            a.not_blocked("the TPM imported a corrupted blob")
        elif before != after:
            a.not_blocked("refused, but MID_CTR moved: the replay guard was spent")
        else:
            a.blocked(
                f"TPM integrity check of the outer wrap (HMAC): {code}; MID store changed nothing"
            )

    with ctx.attack(
        rec,
        ("4",),
        "stale-quote",
        "answer the PVA's challenge with a quote made for an earlier nonce (freshness)",
    ) as a:
        from protocol.messages import quote_qualifying_data

        with common.agent(ctx) as agent:
            agent.prove()
            s = agent.client.session
            earlier = quote_qualifying_data(os.urandom(32), s.session_id, s.transcript)
            agent.quote(qualifying=earlier)
        refusal = common.refused(agent.send)
        if refusal is None:
            a.not_blocked("the PVA accepted a quote over another nonce")
        else:
            a.blocked(
                f"PVA refused {refusal.code}: extraData is not this session's nonce",
                refused=refusal.code,
            )

    with ctx.attack(
        rec,
        ("5",),
        "hijack-session",
        "after the victim proved its AK, an attacker who saw the session id and transcript"
        " sends evidence from its own TPM and AK into the victim's session",
    ) as a:
        from host.provision import TpmDevice
        from tpm.identity import ensure_ak

        with common.agent(ctx) as agent:
            agent.prove()
        with common.scratch_tpm(ctx) as (conn, registry):
            attacker_ak, _ = ensure_ak(conn, "ecc")
            agent.quote(device=TpmDevice(conn, registry), ak=attacker_ak)
        refusal = common.refused(agent.send)
        if refusal is None:
            a.not_blocked("the PVA accepted another TPM's quote in the victim's session")
        else:
            a.blocked(
                f"PVA refused {refusal.code}: only the AK activated in this session"
                " may sign its evidence",
                refused=refusal.code,
            )

    with ctx.attack(
        rec,
        ("6",),
        "skip-registration",
        "ask the DPF for a MID package without registering (new session), and right after"
        " the AK proof without platform validation",
    ) as a:
        from protocol.messages import PackageRequest, encode
        from tpm.mid import ensure_srk

        app = ctx.network().app()
        transport = ctx.network().transport(app)
        with common.lab_tpm(ctx) as (conn, registry):
            _, srk_public = ensure_srk(conn)
            srk = bytes(srk_public.marshal())
            agent = common.register(ctx, conn, registry, app=app)
            agent.prove()
        session = agent.client.session
        answers = []
        for session_id, transcript in (
            (os.urandom(32), os.urandom(32)),
            (session.session_id, session.transcript),
        ):
            wire = encode(
                PackageRequest(
                    session_id=session_id,
                    transcript=transcript,
                    srk_public=srk,
                    slot=0,
                    counter=0,
                )
            )
            try:
                transport.post("dpf/package", wire)
                answers.append("accepted")
            except RemoteProtocolError as exc:
                answers.append(str(exc))
        a.note(unregistered=answers[0], unvalidated=answers[1])
        if "accepted" in answers:
            a.not_blocked("the DPF answered a package request outside a validated session")
        else:
            a.blocked("protocol state machine: " + " | ".join(answers))

    common.pcid_filtering(ctx, rec, ("7",))
    return rec.findings


def _alter_manifest_imsi(request: bytes, reply: bytes) -> bytes:
    """The MITM's edit: another IMSI in the signed payload, the DPF's signature kept."""
    import cbor2

    tag = cbor2.loads(reply)
    protected, unprotected, payload, signature = tag.value
    envelope = cbor2.loads(payload)
    envelope["b"]["imsi"] = "001019999999999"
    payload = cbor2.dumps(envelope, canonical=True)
    return bytes(
        cbor2.dumps(
            cbor2.CBORTag(tag.tag, [protected, unprotected, payload, signature]), canonical=True
        )
    )
