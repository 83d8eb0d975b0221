"""Edge: TPM, network. Threat 1 (§7.1.2.1): emulating a legitimate M2ME — extracting its
credentials and MIDs, replicating them elsewhere, and using them to obtain MID downloads.
Also the extra attack "a quote whose signed PCR selection differs from the claimed one"
(CVE-2024-29038), staged against the PVA.
"""

from __future__ import annotations

import os

from threats.checks import common
from threats.context import MEASURED_PCR, NETWORK_PCRS, ThreatLab, hardware_tpm
from threats.result import Finding, Recorder

__all__ = ["run"]


def run(ctx: ThreatLab) -> list[Finding]:
    from tpm.connection import TpmConnection

    rec = Recorder("1", tre="tpm")

    with ctx.attack(
        rec,
        ("1",),
        "extract-k",
        "host software looks for K/OPc in the device's files (registry, package) and asks the"
        " TPM for K: TPM2_Unseal, TPM2_Duplicate, EncryptDecrypt2 outside K's policy",
    ) as a:
        v = common.victim(ctx)
        files = ctx.registry().path.read_bytes() + v.manifest_wire
        leaked = [
            name
            for name, secret in (("K", v.k), ("OPc", v.opc))
            if secret in files or secret.hex().encode() in files
        ]
        with TpmConnection(ctx.tcti) as conn:
            refusals = common.k_extraction(conn, v.record)
        a.note(bytes_searched=len(files), **refusals)
        complied = [name for name, code in refusals.items() if code is None]
        if leaked or complied:
            a.not_blocked(f"K exposed: in files {leaked}, TPM complied with {complied}")
        else:
            a.blocked(
                "K exists only inside the TPM: files hold the TPM2_Import blob only; "
                + common.extraction_text(refusals)
            )

    with ctx.attack(
        rec,
        ("1",),
        "clone-mid",
        "replicate the MID on other equipment: load the victim's MID blobs (from its registry)"
        " into another TPM",
    ) as a:
        from threats.tpm_tools import load_refusal

        v = common.victim(ctx)
        with common.scratch_tpm(ctx) as (conn, _):
            code = load_refusal(conn, v.record)
        if code is None:
            a.not_blocked("another TPM loaded the victim's MID")
        else:
            a.blocked(
                f"the other TPM refused the MID parent blob: {code} (wrapped to the victim's EK)",
                tpm_rc=code,
            )

    with ctx.attack(
        rec,
        ("2",),
        "hardware-separation",
        "show that the TRE is a separate area with hardware support",
    ) as a:
        where = "a /dev/tpmrm0 is present but" if hardware_tpm() else "no hardware TPM here;"
        a.not_run(
            f"{where} separation is a property of the silicon (swtpm is a host process):"
            " a certification matter, not something a lab attack can show",
            missing="hardware",
        )

    with ctx.attack(
        rec,
        ("3",),
        "ek-self-made-ca",
        "an emulated M2ME registers with an EK certificate issued by a CA the attacker made"
        " (named like the manufacturer CA)",
    ) as a:
        with common.lab_tpm(ctx) as (conn, registry):
            refusal = common.refused(
                lambda: common.register(
                    ctx, conn, registry, ek_cert=common.attacker_ek_certificate()
                )
            )
        if refusal is None:
            a.not_blocked("the DRF accepted an EK certificate of an unknown CA")
        else:
            a.blocked(
                f"DRF refused {refusal.code}: the EK certificate does not chain to a"
                " trusted manufacturer CA",
                refused=refusal.code,
            )

    with ctx.attack(
        rec,
        ("3",),
        "copied-ek-certificate",
        "an emulator presents the victim's genuine EK certificate (public data, copied) with an"
        " AK of its own and answers the credential challenge without the EK's private key",
    ) as a:
        from protocol.messages import (
            CredentialProof,
            RegisterRequest,
            credential_proof,
            derive_session_id,
        )
        from protocol.transitions import Session, SessionState

        net = ctx.network()
        app = net.app()
        transport = net.transport(app)
        with TpmConnection(ctx.tcti) as conn:
            cert = common.ek_certificate(conn)
        ak_public = common.emulated_ak_public()
        nonce = os.urandom(16)
        session = Session("device", SessionState(derive_session_id(cert, ak_public, nonce)))
        session.receive(
            transport.post(
                "drf/register",
                session.send(
                    session.make(
                        RegisterRequest,
                        ek_cert=cert,
                        ak_public=ak_public,
                        device_nonce=nonce,
                        sho="sho-a",
                    )
                ),
            )
        )
        guess = session.make(
            CredentialProof, proof=credential_proof(os.urandom(32), session.transcript)
        )
        wire = session.send(guess)
        refusal = common.refused(lambda: transport.post("drf/proof", wire))
        a.note(challenge_issued=True)
        if refusal is None:
            a.not_blocked("the DRF accepted a credential proof the emulator guessed")
        else:
            a.blocked(
                f"DRF refused {refusal.code}: TPM2_MakeCredential bound the secret to the EK,"
                " which only the genuine TPM can use (ActivateCredential)",
                refused=refusal.code,
            )

    with ctx.attack(
        rec,
        ("3",),
        "revoked-tre",
        "a TRE the operator revoked registers again to obtain MIDs",
    ) as a:
        app = ctx.network().app()
        with common.lab_tpm(ctx) as (conn, registry):
            common.register(ctx, conn, registry, app=app).prove()
            ek_cert = common.ek_certificate(conn)
            device_id = app.operator.trust.verify_ek(ek_cert, app.now()).device_id
            with app.store.transaction() as tx:
                app.operator.revoke(tx, device_id, app.now())
            refusal = common.refused(lambda: common.register(ctx, conn, registry, app=app))
        if refusal is None:
            a.not_blocked("the DRF let a revoked TRE register")
        else:
            a.blocked(
                f"DRF refused {refusal.code}: the identity is revocable", refused=refusal.code
            )

    with ctx.attack(
        rec,
        ("4",),
        "unvalidated-state",
        "an M2ME whose measured MID manager changed (PCR 16 extended) asks for a MID",
    ) as a:
        with (
            common.agent(ctx, scratch=True) as agent,
            common.measured_pcr_changed(agent.device.conn, MEASURED_PCR),
        ):
            agent.prove()
            refusal = common.refused(agent.attest)
        if refusal is None:
            a.not_blocked("the PVA validated an M2ME whose measurements differ from reference")
        else:
            a.blocked(
                f"PVA refused {refusal.code}: the quote's PCR {MEASURED_PCR} differs from the"
                " reference value (remote validation before provisioning)",
                refused=refusal.code,
            )

    with ctx.attack(
        rec,
        ("4",),
        "pcr-selection-relabel",
        f"with PCR {MEASURED_PCR} changed, quote PCR 23 (still at its reset value) instead and"
        f" claim the selection {NETWORK_PCRS}: the signed digest matches the values sent, only"
        " the label lies (CVE-2024-29038)",
        extra="pcr-selection-relabel",
    ) as a:
        relabelled = NETWORK_PCRS.replace(f",{MEASURED_PCR}", ",23")
        with (
            common.agent(ctx, scratch=True) as agent,
            common.measured_pcr_changed(agent.device.conn, MEASURED_PCR),
        ):
            claimed = agent.prove().selection
            # malware on the host has the TPM quote another selection under the claimed label
            agent.quote(selection=relabelled)
            refusal = common.refused(agent.send)
        a.note(signed_selection=relabelled, claimed=claimed)
        if refusal is None:
            a.not_blocked("the PVA took the PCR selection from the unsigned claim")
        else:
            a.blocked(
                f"PVA refused {refusal.code}: the selection is taken from the signed TPMS_ATTEST",
                refused=refusal.code,
            )

    common.pcid_filtering(ctx, rec, ("5",))
    return rec.findings
