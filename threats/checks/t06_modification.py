"""Edge: TPM. Threat 6 (§7.1.2.1): modifying the functions of a TRE — to deny service, or to
control the TRE's behaviour to the attacker's advantage.
"""

from __future__ import annotations

import os

from threats.checks import common
from threats.context import MEASURED_PCR, NETWORK_PCRS, ThreatLab
from threats.result import Finding, Recorder

__all__ = ["run"]


def run(ctx: ThreatLab) -> list[Finding]:
    rec = Recorder("6", tre="tpm")

    with ctx.attack(
        rec,
        ("1",),
        "change-k-auth",
        "take control of a MID's K by giving it an authValue of the attacker's choosing"
        " (TPM2_ObjectChangeAuth with K's parent)",
    ) as a:
        from threats.tpm_tools import change_k_auth, local_mid

        with common.scratch_tpm(ctx) as (conn, registry):
            mid = local_mid(conn, registry, kind="use")
            code = change_k_auth(conn, mid, b"attacker")
        if code is None:
            a.not_blocked("the TPM changed K's authorisation")
        else:
            a.blocked(
                f"K's ADMIN role needs a policy (adminWithPolicy) that names no"
                f" ObjectChangeAuth: {code}",
                tpm_rc=code,
            )

    with ctx.attack(
        rec,
        ("2",),
        "counter-reset",
        "undefine and re-create MID_CTR (owner authorisation is empty in the lab) to make an"
        " already-used package sequence number acceptable again",
    ) as a:
        from threats.tpm_tools import local_mid
        from tpm import nv
        from tpm.mid import import_package, wrap_for_device
        from tpm.mid_errors import PackageRejected
        from tpm.package import AlgorithmSpec, MidSecrets
        from tpm.tss import ESYS_TR

        with common.scratch_tpm(ctx) as (conn, registry):
            local_mid(conn, registry, kind="use")
            before = nv.read_counter(conn, nv.MID_CTR)
            handle = conn.esys.tr_from_tpmpublic(nv.MID_CTR)
            conn.esys.nv_undefine_space(handle, auth_handle=ESYS_TR.OWNER)
            nv.forget_handles(conn, (nv.MID_CTR,))
            nv.ensure_indices(conn)
            after = nv.read_counter(conn, nv.MID_CTR)
            replay = wrap_for_device(
                conn,
                MidSecrets(os.urandom(16), os.urandom(16)),
                imsi="001019990000004",
                algorithm=AlgorithmSpec(),
                amf=b"\x80\x00",
                sqn_ms=bytes(6),
                seq=before,
            )
            error = common.refusal(lambda: import_package(conn, registry, replay), PackageRejected)
        a.note(mid_ctr_before=before, mid_ctr_after_recreate=after, undefine="allowed")
        if error is None or after < before:
            a.not_blocked(f"the re-created counter restarted at {after} (< {before})")
        else:
            a.blocked(
                f"TPM NV counters never go back: the re-created MID_CTR starts at {after} ≥"
                f" {before} (TPM 2.0 Part 1 §37: highest value of any counter); sequence"
                f" {before} refused: {error}"
            )

    with ctx.attack(
        rec,
        ("3", "4"),
        "attacker-signed-approval",
        "for an operator-updatable MID, approve the current (modified) platform state with a"
        " policy signed by the attacker's key instead of the operator's",
    ) as a:
        from dataclasses import replace

        from cryptography.hazmat.primitives.asymmetric import ec

        from threats.tpm_tools import load_mid, local_aka, local_mid
        from tpm.mid import pcr_values
        from tpm.mid_errors import MidRefused
        from tpm.package import operator_public, sign_approval
        from tpm.policy import pcr_digest

        operator_key = ec.generate_private_key(ec.SECP256R1())
        attacker_key = ec.generate_private_key(ec.SECP256R1())
        rand = os.urandom(16)
        with common.scratch_tpm(ctx) as (conn, registry):
            mid = local_mid(
                conn,
                registry,
                kind="authorize",
                operator_key=operator_key,
                selection=NETWORK_PCRS,
            )
            with common.measured_pcr_changed(conn, MEASURED_PCR):
                policy = mid.record.policy
                digest = pcr_digest(pcr_values(conn, policy.selection))
                forged = replace(
                    mid.record,
                    policy=replace(
                        policy,
                        operator_key=operator_public(attacker_key),
                        approval=sign_approval(
                            attacker_key, policy.selection, digest, mid.record.slot
                        ),
                    ),
                )
                error = common.refusal(lambda: load_mid(conn, forged, use_k=True), MidRefused)
            ok = local_aka(conn, registry, mid, rand).result
        a.note(after_reset=ok.to_json()["result"])
        if error is None:
            a.not_blocked("K worked under an approval signed by another key")
        else:
            a.blocked(f"PolicyAuthorize in K's policy names the operator's key: {error}")

    with ctx.attack(
        rec,
        ("4",),
        "field-upgrade",
        "replace the TRE's firmware (TPM2_FieldUpgradeStart without the vendor's signature)",
    ) as a:
        from threats.tpm_tools import tpm_refusal
        from tpm.tss import ESYS_TR, TPM2_ALG, TPMT_SIGNATURE

        with common.scratch_tpm(ctx) as (conn, _):
            code = tpm_refusal(
                lambda: conn.esys.field_upgrade_start(
                    ESYS_TR.NULL, bytes(32), TPMT_SIGNATURE(sigAlg=TPM2_ALG.NULL), ESYS_TR.PLATFORM
                )
            )
        a.note(tpm_rc=code)
        a.not_run(
            f"swtpm has no firmware upgrade ({code}): the vendor-signed field upgrade of a"
            " TPM chip cannot be exercised here",
            missing="hardware",
        )

    with ctx.attack(
        rec,
        ("5",),
        "tamper-detected",
        f"tamper with the MID manager (PCR {MEASURED_PCR} extended) and keep using a load-gated"
        " and a use-gated MID",
    ) as a:
        refusals = common.tampered_aka(ctx, ("load", "use"))
        a.note(**{f"{k}_gated": v is not None for k, v in refusals.items()})
        if None in refusals.values():
            a.not_blocked(f"a MID still worked after tampering: {refusals}")
        else:
            a.blocked(
                "the TRE detects it through its own PCR policy: the MIDs enter an untrusted"
                " state (K refused) until the operator approves or re-provisions: "
                + " | ".join(f"{k}-gated: {v}" for k, v in refusals.items())
            )

    return rec.findings
