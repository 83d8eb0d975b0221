"""Edge: TPM, network. Threat 5 (§7.1.2.1): replacing the TRE of an M2ME by another TRE or an
emulation. Extra attack: an AK from a different TPM presented with a genuine EK certificate.
"""

from __future__ import annotations

import dataclasses
import os

from threats.checks import common
from threats.context import ThreatLab
from threats.result import Finding, Recorder

__all__ = ["run"]


def run(ctx: ThreatLab) -> list[Finding]:
    from tpm.connection import TpmConnection

    rec = Recorder("5", tre="tpm")

    with ctx.attack(
        rec,
        ("1",),
        "out-of-band-manufacture",
        "check what out-of-band pre-provisioning left in the TRE: EK certificates signed at"
        " manufacture (swtpm_setup + swtpm_localca) chaining to the manufacturer CA",
    ) as a:
        from tpm.ek import load_ca_bundle, read_ek_certificates, verify_ek_chain

        with TpmConnection(ctx.tcti) as conn:
            certs = read_ek_certificates(conn)
        cas = load_ca_bundle(ctx.lab.ca.bundle)
        for cert in certs.values():
            verify_ek_chain(cert, cas)
        a.organisational(
            "a secure manufacturing facility is a procedure; tested: the TRE carries"
            f" {len(certs)} EK certificate(s) ({', '.join(sorted(certs))}) made at manufacture"
            " that chain to the manufacturer CA",
            certificates=sorted(certs),
        )

    with ctx.attack(
        rec,
        ("2",),
        "foreign-ak-genuine-ek",
        "a replacement TRE (another real TPM) presents the original TRE's genuine EK"
        " certificate with its own AK, and tries TPM2_ActivateCredential on the challenge",
        extra="foreign-ak-genuine-ek",
    ) as a:
        from tpm.errors import CredentialRejected

        with TpmConnection(ctx.tcti) as conn:
            genuine = common.ek_certificate(conn)
        with common.agent(ctx, scratch=True, ek_cert=genuine) as agent:
            tpm_said = common.refusal(agent.activate, CredentialRejected)
        agent.activate(secret=os.urandom(32))  # no secret from the TPM: a guess in its place
        refusal = common.refused(agent.send)
        a.note(activate_credential=tpm_said)
        if tpm_said is None or refusal is None:
            a.not_blocked("the replacement TRE got its AK accepted under another TRE's EK")
        else:
            a.blocked(
                f"the replacement TPM refused the challenge ({tpm_said}); DRF refused"
                f" {refusal.code}",
                refused=refusal.code,
            )

    with ctx.attack(
        rec,
        ("3",),
        "swapped-tre-mids",
        "swap the TRE under the M2ME: the host's MID registry and blobs now talk to another TPM",
    ) as a:
        error = common.victim_on_other_tpm(ctx)
        if error is None:
            a.not_blocked("the MIDs worked in the replacement TRE")
        else:
            a.blocked(f"MIDs are bound to the TRE's EK: {error}")

    with ctx.attack(
        rec,
        ("4",),
        "package-to-replacement",
        "after the original TRE was validated, a replacement TRE takes over the session (it saw"
        " the session id and transcript) and asks for the MID package with its own SRK",
    ) as a:
        from host.agent import AgentRefused
        from host.provision import TpmDevice
        from protocol.messages import MidPackage, decode

        with common.agent(ctx) as agent:
            agent.prove()
            agent.attest()
        with common.scratch_tpm(ctx) as (conn, registry):
            agent.target(TpmDevice(conn, registry))  # the replacement's SRK, slot and MID_CTR
            agent_said = common.refusal(agent.send, AgentRefused)
            manifest = decode(agent.replies[-1])  # what the DPF sent, whatever the agent says
            assert isinstance(manifest, MidPackage)
            host_check, code = common.import_refusals(conn, registry, common.unpack(manifest))
        a.note(agent=agent_said or "accepted the package")
        a.note(host_check=host_check, tpm_rc=code)
        if host_check is None or code is None:
            a.not_blocked("the replacement TRE opened the package")
        else:
            a.blocked(
                "the DPF wraps to the EK registered in the session, not to who asks:"
                f" MID store → {host_check}; TPM2_Import → {code}"
            )

    with ctx.attack(
        rec,
        ("5", "6"),
        "emulated-quote",
        "an emulation answers the PVA in the original TRE's validated session with a quote"
        " structure it signed in software",
    ) as a:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        from cryptography.hazmat.primitives.hashes import SHA256

        from protocol.messages import Evidence, Message
        from tpm.tss import TPM2_ALG, TPMT_SIGNATURE

        emulator = ec.generate_private_key(ec.SECP256R1())

        def software_signed(imitated: Message) -> Message:
            """The agent's evidence with the quote structure signed by the emulator's key."""
            assert isinstance(imitated, Evidence)
            r, s = decode_dss_signature(emulator.sign(imitated.quote_msg, ec.ECDSA(SHA256())))
            sig = TPMT_SIGNATURE(sigAlg=TPM2_ALG.ECDSA)
            sig.signature.ecdsa.hash = TPM2_ALG.SHA256
            sig.signature.ecdsa.signatureR = r.to_bytes(32, "big")
            sig.signature.ecdsa.signatureS = s.to_bytes(32, "big")
            return dataclasses.replace(imitated, quote_sig=bytes(sig.marshal()))

        with common.agent(ctx) as agent:
            agent.prove()
            agent.quote()  # the structure to imitate
        refusal = common.refused(lambda: agent.send(tamper=software_signed))
        if refusal is None:
            a.not_blocked("the PVA accepted a software-signed quote")
        else:
            a.blocked(
                f"PVA refused {refusal.code}: the quote must verify under the AK"
                " activated for this TRE's EK",
                refused=refusal.code,
            )

    return rec.findings
