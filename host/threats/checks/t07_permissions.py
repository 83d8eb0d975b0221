"""Edge: TPM, network. Threat 7 (§7.1.2.1): modifying or defeating the permissions of an
installed MID — to get service, to reach its data, or to deny service (disable, de-select).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from host.threats.checks import common
from host.threats.context import MissingPart, ThreatLab
from host.threats.result import Finding, Recorder
from network.errors import SignatureInvalid
from trelab.errors import Unavailable

__all__ = ["run"]


def run(ctx: ThreatLab) -> list[Finding]:
    from tpm.connection import TpmConnection

    rec = Recorder("7", tre="tpm")

    with ctx.attack(
        rec,
        ("1",),
        "self-ordered-transition",
        "the device (or its user) asks the network to resume/activate its own MID without the"
        " SHO's order",
        tre="network",
    ) as a:
        from network.messages import LifecycleRequest
        from network.protocol import Session, SessionState

        v = common.victim(ctx)
        session = Session("device", SessionState(os.urandom(32)))
        msg = session.make(LifecycleRequest, mid_id=v.mid_id, transition="resume")
        wire = session.send(msg)
        transport = ctx.network().transport(v.app)
        refusal = common.refused(lambda: transport.post("sho/lifecycle", wire))
        if refusal is None:
            a.not_blocked("the network ran a transition the TRE ordered itself")
        else:
            a.blocked(
                f"SHO refused {refusal.reason}: only the owning SHO orders transitions",
                refused=refusal.reason,
            )

    # One MID of SHO-A on the second TPM, provisioned and then suspended by its SHO.
    state: dict[str, Any] = {}
    with ctx.attack(
        rec,
        ("1",),
        "state-byte-rewrite",
        "the SHO suspended a MID; host software rewrites the TPM's lifecycle byte MID_STATE"
        " back to ACTIVE (owner authorisation, empty in the lab) and uses K",
    ) as a:
        from host.threats.device import follow_orders, order, provision
        from tpm import nv
        from tpm.aka import authenticate
        from tpm.mid_errors import MidRefused

        net = ctx.network()
        app = net.app()
        transport = net.transport(app)
        with common.scratch_tpm(ctx) as (conn, registry):
            mid = provision(conn, registry, transport, net.pins, "sho-a")
            order(transport, net.config.shos["sho-a"].key, mid.mid_id, "suspend")
            ack = follow_orders(conn, registry, transport, mid, net.pins)
            rand = os.urandom(16)
            try:
                authenticate(conn, registry, mid.mid_id, rand, bytes(16), check_state=False)
                suspended_refused = "no"
            except MidRefused as exc:
                suspended_refused = str(exc)
            try:
                nv.write_state(conn, mid.slot, nv.MidState.ACTIVE)
                code = None
            except Unavailable as exc:
                code = str(exc)
            rewritten = nv.read_state(conn, mid.slot) == nv.MidState.ACTIVE
        state.update(app=app, transport=transport, mid=mid, rewritten=rewritten)
        a.note(sho_state=ack.state, suspended_use=suspended_refused, nv_write=code or "accepted")
        if rewritten:
            a.not_blocked(
                "MID_STATE is written with owner authorisation, which is empty in the lab"
                " (tpm/nv.py): host software re-enabled K of a suspended MID (and could disable"
                " any MID: DoS). provisioning.md §1.0's PolicySigned(DPF) write policy is not"
                " implemented; the SHO still refuses service (next finding)",
            )
        else:
            a.blocked(f"the TPM refused the NV write: {code}")

    with ctx.attack(
        rec,
        ("1", "3"),
        "rewritten-mid-attach",
        "attach to the network with the MID whose lifecycle byte was rewritten to ACTIVE",
        tre="network",
    ) as a:
        from host.threats.device import attach

        if "mid" not in state:
            a.not_run("the previous step (a suspended MID) did not complete", missing="environment")
        else:
            mid = state["mid"]
            with common.scratch_tpm(ctx) as (conn, registry):
                refusal = common.refused(
                    lambda: attach(conn, registry, state["transport"], mid.mid_id, mid.imsi)
                )
            if refusal is None:
                a.not_blocked("the SHO authenticated a MID it had suspended")
            else:
                a.blocked(
                    f"SHO refused {refusal.reason}: the HSS record is authoritative; a"
                    " rewritten TRE byte gets no vectors",
                    refused=refusal.reason,
                )

    with ctx.attack(
        rec,
        ("2", "3", "4"),
        "wrong-pin",
        "use a PIN-protected MID with a guessed PIN",
    ) as a:
        error = common.wrong_pin(ctx, b"2468", b"1357")
        if error is None:
            a.not_blocked("K worked with a wrong PIN")
        else:
            a.blocked(f"K's authValue, checked by the TPM (PolicyAuthValue): {error}")

    with ctx.attack(
        rec,
        ("5",),
        "forged-receipt",
        "report a MID as installed with an install receipt whose NV_Certify was altered",
        tre="network",
    ) as a:
        from host.threats.device import (
            attest,
            make_receipt,
            prove,
            request_package,
            start,
            unpack,
        )
        from tpm.mid import import_package

        net = ctx.network()
        app = net.app()
        with common.scratch_tpm(ctx) as (conn, registry):
            flow, challenge = start(conn, net.transport(app), "sho-a")
            vc = prove(conn, flow, challenge)
            attest(conn, flow, vc, net.pins)
            manifest = request_package(conn, flow, vc, net.pins)
            record = import_package(conn, registry, unpack(manifest))
            receipt = make_receipt(
                conn, flow, manifest.mid_id, "install", record.slot, manifest.sequence
            )
        evidence = dict(receipt.evidence)
        blob = bytearray(evidence["state.attest"])
        blob[-1] ^= 0x01  # the MID_STATE byte the TPM certified
        evidence["state.attest"] = bytes(blob)
        forged = dataclasses.replace(receipt, evidence=tuple(sorted(evidence.items())))
        refusal = common.refused(lambda: flow.post("dpf/receipt", forged))
        if refusal is None:
            a.not_blocked("the DPF accepted an altered receipt")
        else:
            a.blocked(
                f"DPF refused {refusal.reason}: receipts are AK-signed TPM2_NV_Certify",
                refused=refusal.reason,
            )

    with ctx.attack(
        rec,
        ("6",),
        "discovery",
        "discover the identifiers and lifecycle status of a TRE's MIDs through a secure service",
    ) as a:
        a.not_run(
            "no discovery service in trelab: MID ids and states reach the DRF only as AK-signed"
            " NV_Certify receipts (see forged-receipt)",
            missing="part",
        )

    with ctx.attack(
        rec,
        ("7",),
        "unauthorised-order",
        "order a transition of SHO-A's MID with a key that is not SHO-A's (signed under the"
        " name 'sho-a'), and as SHO-B",
        tre="network",
    ) as a:
        from cryptography.hazmat.primitives.asymmetric import ec

        from host.threats.device import order
        from network.messages import SigningKey

        v = common.victim(ctx)
        transport = ctx.network().transport(v.app)
        impostor = SigningKey("sho-a", ec.generate_private_key(ec.SECP256R1()))
        try:
            order(transport, impostor, v.mid_id, "delete")
            impostor_order = "accepted"
        except SignatureInvalid as exc:
            impostor_order = f"signature: {exc}"
        foreign = common.refused(
            lambda: order(transport, ctx.network().config.shos["sho-b"].key, v.mid_id, "suspend")
        )
        a.note(impostor=impostor_order, other_sho=foreign.reason if foreign else "accepted")
        if impostor_order == "accepted" or foreign is None:
            a.not_blocked("the RO took an order not signed by the owning SHO")
        else:
            a.blocked(f"RO: {impostor_order}; SHO-B → {foreign.reason}")

    with ctx.attack(
        rec,
        ("8",),
        "k-outside-tre",
        "host software asks the TPM for the MID's K (Unseal, Duplicate, policy bypass)",
    ) as a:
        v = common.victim(ctx)
        with TpmConnection(ctx.tcti) as conn:
            refusals = common.k_extraction(conn, v.record)
        a.note(**refusals)
        if None in refusals.values():
            a.not_blocked("K left the TRE")
        else:
            a.blocked("only the TRE uses K: " + common.extraction_text(refusals))

    with ctx.attack(
        rec,
        ("9",),
        "deleted-mid-revived",
        "keep a copy of a MID's blobs, let the SHO's process delete it, load the copy again",
    ) as a:
        from host.threats.tpm_tools import load_mid, local_mid
        from tpm.mid import delete_mid
        from tpm.mid_errors import MidRefused

        with common.scratch_tpm(ctx) as (conn, registry):
            local = local_mid(conn, registry, kind="use")
            delete_mid(conn, registry, local.record.mid)
            error = common.refusal(lambda: load_mid(conn, local.record, use_k=True), MidRefused)
        if error is None:
            a.not_blocked("a deleted MID's surviving copy still works")
        else:
            a.blocked(f"MID_STATE DELETED is terminal (PolicyNV): {error}")

    with ctx.attack(
        rec,
        ("10",),
        "forged-command",
        "send the TRE a lifecycle command (delete) signed by a key that is not the owning SHO's",
    ) as a:
        from cryptography.hazmat.primitives.asymmetric import ec

        from network.messages import LifecycleCommand, SigningKey, sign, verify_signature
        from network.protocol import Session, SessionState

        v = common.victim(ctx)
        s = Session("device", SessionState(os.urandom(32)))
        command = sign(
            s.make(LifecycleCommand, mid_id=v.mid_id, transition="delete", sequence=99),
            SigningKey("sho-a", ec.generate_private_key(ec.SECP256R1())),
        )
        try:
            verify_signature(command, ctx.network().pins[command.signer])
            a.not_blocked("the TRE accepted a command not signed by its SHO")
        except SignatureInvalid as exc:
            a.blocked(f"the TRE pins each SHO's key: {exc}")

    with ctx.attack(
        rec,
        ("10",),
        "forged-command-agent",
        "a man in the middle answers the host agent's lifecycle request with a delete command"
        " bound to the session but signed by a key that is not SHO-A's",
    ) as a:
        lifecycle = ctx.require("host.lifecycle", "the host agent's lifecycle runner")
        from cryptography.hazmat.primitives.asymmetric import ec

        from host.agent import AgentRefused
        from host.threats.context import MitmTransport
        from network.messages import (
            LifecycleCommand,
            SigningKey,
            decode,
            encode,
            extend_transcript,
            sign,
        )
        from tpm import nv

        v = common.victim(ctx)
        if not v.agent:
            raise MissingPart("the victim was not provisioned by the host agent")
        impostor = SigningKey("sho-a", ec.generate_private_key(ec.SECP256R1()))

        def forge(request: bytes, reply: bytes) -> bytes:
            asked = decode(request)
            command = LifecycleCommand(
                session_id=asked.session_id,
                transcript=extend_transcript(asked.transcript, request),
                mid_id=v.mid_id,
                transition="delete",
                sequence=10_000,
            )
            return encode(sign(command, impostor))

        mitm = MitmTransport(ctx.network().transport(v.app), "sho/lifecycle", forge)
        with TpmConnection(ctx.tcti) as conn:
            try:
                lifecycle.apply_order(
                    conn,
                    ctx.registry(),
                    mitm,
                    common.device_trust(ctx),
                    mid_id=v.mid_id,
                    verb="delete",
                )
                code = None
            except AgentRefused as exc:
                code = exc.code
            mid_state = nv.read_state(conn, v.slot).name
        a.note(rewritten=mitm.rewritten, agent_refused=code, mid_state=mid_state)
        if code is None or mid_state != "ACTIVE":
            a.not_blocked(f"the host agent applied a forged command (MID is {mid_state})")
        else:
            a.blocked(
                f"the host agent refused ({code}): not signed by the pinned key of the"
                " SHO that owns the MID; MID_STATE still ACTIVE"
            )

    with ctx.attack(
        rec,
        ("11",),
        "standard-protocols",
        "manage a TPM MID over OMA DM or OTA RFM/RAM",
    ) as a:
        a.not_run(
            "TPM MIDs are managed over trelab's CBOR/COSE protocol (network/messages.py);"
            " no OMA DM client exists; OTA RFM/RAM serve the UICC alternative (threat 3a)",
            missing="part",
        )

    return rec.findings
