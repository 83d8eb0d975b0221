"""Edge: TPM, network. Threat 7 (§7.1.2.1): modifying or defeating the permissions of an
installed MID — to get service, to reach its data, or to deny service (disable, de-select).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from protocol.errors import SignatureInvalid
from threats.checks import common
from threats.context import ThreatLab
from threats.result import Finding, Recorder

__all__ = ["run"]


def _owner_write(conn: Any, slot: int, state: Any) -> str | None:
    """Write ``slot``'s state in the TPM with owner authorisation, as host software can; the
    TPM's refusal, or None if it took it."""
    from tpm import nv
    from tpm.tss import ESYS_TR, TSS2_Exception

    handle, size, offset = nv.state_location(conn, slot)
    data = bytearray(size)
    data[0] = int(state)
    try:
        tr = nv.resource(conn, handle)
        conn.esys.nv_write(tr, bytes(data), offset, auth_handle=ESYS_TR.OWNER)
    except TSS2_Exception as exc:
        return str(exc)
    return None


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
        from protocol.messages import LifecycleRequest
        from protocol.transitions import Session, SessionState

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
                f"SHO refused {refusal.code}: only the owning SHO orders transitions",
                refused=refusal.code,
            )

    # One MID of SHO-A on the second TPM, provisioned and then suspended by its SHO.
    state: dict[str, Any] = {}
    with ctx.attack(
        rec,
        ("1",),
        "state-byte-rewrite",
        "the SHO suspended a MID; host software writes its lifecycle state in the TPM back to"
        " ACTIVE — with owner authorisation (empty in the lab), then by replaying the SHO's"
        " earlier activation approval — and uses K",
    ) as a:
        from host.lifecycle import apply_order
        from host.provision import provision
        from protocol.messages import LifecycleCommand, decode
        from threats.context import RecordingTransport
        from tpm import nv
        from tpm.aka import authenticate
        from tpm.mid import set_state
        from tpm.mid_errors import MidRefused

        net = ctx.network()
        app = net.app()
        transport = net.transport(app)
        trust = common.device_trust(ctx)
        with common.scratch_tpm(ctx) as (conn, registry):
            # host software sees everything the agent exchanges, the SHO's activation included
            tap = RecordingTransport(transport)
            mid = provision(
                conn, registry, tap, trust, sho="sho-a", network="threats-t7", use_pcid=False
            ).finished
            activation = next(
                command
                for endpoint, _, reply in tap.exchanges
                if endpoint == "dpf/receipt"
                and isinstance(command := decode(reply), LifecycleCommand)
            )
            common.sho_order(transport, net.config.shos["sho-a"].key, mid.mid_id, "suspend")
            # the agent checks the order's owner, MID, transition and sequence, then applies it
            ack = apply_order(conn, registry, transport, trust, mid_id=mid.mid_id, verb="suspend")
            rand = os.urandom(16)
            try:
                authenticate(conn, registry, mid.mid_id, rand, bytes(16), check_state=False)
                suspended_refused = "no"
            except MidRefused as exc:
                suspended_refused = str(exc)
            code = _owner_write(conn, mid.slot, nv.MidState.ACTIVE)
            replayed = common.refusal(
                lambda: set_state(
                    conn,
                    registry,
                    mid.mid_id,
                    nv.MidState.ACTIVE,
                    approval=activation.state_approval,
                ),
                MidRefused,
            )
            rewritten = nv.read_state(conn, mid.slot) == nv.MidState.ACTIVE
            used = common.refusal(
                lambda: authenticate(
                    conn, registry, mid.mid_id, os.urandom(16), bytes(16), check_state=False
                ),
                MidRefused,
            )
        state.update(app=app, transport=transport, mid=mid, rewritten=rewritten)
        a.note(
            sho_state=ack.state,
            suspended_use=suspended_refused,
            owner_write=code or "accepted",
            replayed_approval=replayed or "accepted",
            use_after=used or "K ran",
        )
        if rewritten or used is None:
            a.not_blocked(
                "host software re-enabled K of a suspended MID: its lifecycle state is writable"
                " without the owning SHO (the SHO still refuses service: next finding)"
            )
        else:
            a.blocked(
                "the MID's lifecycle index is POLICYWRITE only — PolicyAuthorize(owning SHO's"
                " key) over PolicyNV(current state ‖ version) ∧ PolicyCpHash(the write): owner"
                f" write → {code}; replayed approval → {replayed}; K → {used}"
            )

    with ctx.attack(
        rec,
        ("1", "3"),
        "rewritten-mid-attach",
        "attach to the network with the MID whose lifecycle byte was rewritten to ACTIVE",
        tre="network",
    ) as a:
        from host.attach import attach_tpm

        if "mid" not in state:
            a.not_run("the previous step (a suspended MID) did not complete", missing="environment")
        else:
            mid = state["mid"]
            with common.scratch_tpm(ctx) as (conn, registry):
                refusal = common.refused(
                    lambda: attach_tpm(
                        conn, registry, state["transport"], mid_id=mid.mid_id, imsi=mid.imsi
                    )
                )
            if refusal is None:
                a.not_blocked("the SHO authenticated a MID it had suspended")
            else:
                a.blocked(
                    f"SHO refused {refusal.code}: the HSS record is authoritative; a"
                    " rewritten TRE byte gets no vectors",
                    refused=refusal.code,
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
        from protocol.messages import Message, Receipt

        def altered(receipt: Message) -> Message:
            """The agent's install receipt with the MID_STATE byte the TPM certified flipped."""
            assert isinstance(receipt, Receipt)
            evidence = dict(receipt.evidence)
            blob = bytearray(evidence["state.attest"])
            blob[-1] ^= 0x01
            evidence["state.attest"] = bytes(blob)
            return dataclasses.replace(receipt, evidence=tuple(sorted(evidence.items())))

        with common.agent(ctx, scratch=True) as agent:
            agent.prove()
            agent.attest()
            agent.request_package()
            agent.install()
        refusal = common.refused(lambda: agent.send(tamper=altered))
        if refusal is None:
            a.not_blocked("the DPF accepted an altered receipt")
        else:
            a.blocked(
                f"DPF refused {refusal.code}: receipts are AK-signed TPM2_NV_Certify",
                refused=refusal.code,
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

        from protocol.messages import SigningKey

        v = common.victim(ctx)
        transport = ctx.network().transport(v.app)
        impostor = SigningKey("sho-a", ec.generate_private_key(ec.SECP256R1()))
        try:
            common.sho_order(transport, impostor, v.mid_id, "delete")
            impostor_order = "accepted"
        except SignatureInvalid as exc:
            impostor_order = f"signature: {exc}"
        foreign = common.refused(
            lambda: common.sho_order(
                transport, ctx.network().config.shos["sho-b"].key, v.mid_id, "suspend"
            )
        )
        a.note(impostor=impostor_order, other_sho=foreign.code if foreign else "accepted")
        if impostor_order == "accepted" or foreign is None:
            a.not_blocked("the RO took an order not signed by the owning SHO")
        else:
            a.blocked(f"RO: {impostor_order}; SHO-B → {foreign.code}")

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
        from threats.tpm_tools import load_mid, local_mid
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

        from protocol.messages import LifecycleCommand, SigningKey, sign, verify_signature
        from protocol.transitions import Session, SessionState

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
        from cryptography.hazmat.primitives.asymmetric import ec

        from host.agent import AgentRefused
        from host.lifecycle import apply_order
        from protocol.messages import (
            LifecycleCommand,
            SigningKey,
            decode,
            encode,
            extend_transcript,
            sign,
        )
        from threats.context import MitmTransport
        from tpm import nv

        v = common.victim(ctx)
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
                apply_order(
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
            "TPM MIDs are managed over trelab's CBOR/COSE protocol (protocol/messages.py);"
            " no OMA DM client exists; OTA RFM/RAM serve the UICC alternative (threat 3a)",
            missing="part",
        )

    return rec.findings
