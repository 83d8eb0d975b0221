"""Edge: TPM. Threat 4 (§7.1.2.1): logical or physical attacks against a TRE to obtain a MID
or keys that clone it. Extra attack: an operator-signed policy that tries to duplicate K out
of the TPM (the PolicyAuthorize trap, docs/tpm.md).
"""

from __future__ import annotations

import os

from threats.checks import common
from threats.context import ThreatLab
from threats.result import Finding, Recorder

__all__ = ["run"]


def run(ctx: ThreatLab) -> list[Finding]:
    rec = Recorder("4", tre="tpm")

    with ctx.attack(
        rec,
        ("1",),
        "proven-protection",
        "logical extraction of K from a use-gated MID (Unseal, Duplicate, EncryptDecrypt2 past"
        " its policy); physical and side-channel attacks",
    ) as a:
        from threats.tpm_tools import local_mid

        with common.scratch_tpm(ctx) as (conn, registry):
            mid = local_mid(conn, registry, kind="use")
            refusals = common.k_extraction(conn, mid.record)
        a.note(**refusals)
        if None in refusals.values():
            a.not_blocked("the TPM gave K away")
        else:
            a.ffs(
                "TR 33.812 leaves the 'proven degree of protection' FFS; tested: every logical"
                " extraction refused ("
                + common.extraction_text(refusals)
                + "); physical/side-channel resistance needs a certified chip (swtpm has none)"
            )

    with ctx.attack(
        rec,
        ("2",),
        "k-outside-policy",
        "use K of a use-gated MID with the empty password, skipping PolicyPCR, PolicyNV and"
        " PolicyCommandCode",
    ) as a:
        from threats.tpm_tools import local_mid

        with common.scratch_tpm(ctx) as (conn, registry):
            mid = local_mid(conn, registry, kind="use")
            code = common.k_extraction(conn, mid.record)["encrypt_password"]
        if code is None:
            a.not_blocked("the TPM encrypted with K outside its policy")
        else:
            a.blocked(f"K's USER role needs its policy (userWithAuth clear): {code}", tpm_rc=code)

    with ctx.attack(
        rec,
        ("3",),
        "corrupt-blob",
        "load the MID's K private blob with one bit flipped, then use the MID",
    ) as a:
        from dataclasses import replace

        from threats.tpm_tools import load_refusal, local_aka, local_mid

        rand = os.urandom(16)
        with common.scratch_tpm(ctx) as (conn, registry):
            mid = local_mid(conn, registry, kind="use")
            blob = bytearray(mid.record.k.private)
            blob[len(blob) // 2] ^= 0x01
            bad = replace(mid.record.k, private=bytes(blob))
            code = load_refusal(conn, mid.record, bad)
            after = local_aka(conn, registry, mid, rand).result
        a.note(mid_after=after.to_json()["result"])
        if code is None:
            a.not_blocked("the TPM loaded a corrupted K")
        elif after.to_json()["result"] != "success":
            a.not_blocked(f"refused ({code}) but the MID no longer works")
        else:
            a.blocked(
                f"TPM2_Load integrity check → {code}; the MID still authenticates", tpm_rc=code
            )

    with ctx.attack(
        rec,
        ("4",),
        "signed-duplicate-policy",
        "the holder of the operator's policy-signing key signs PolicyCommandCode(Duplicate) and"
        " asks the TPM to export K in clear (new parent TPM_RH_NULL)",
        extra="signed-duplicate-policy",
    ) as a:
        from functools import partial

        from cryptography.hazmat.primitives.asymmetric import ec

        from threats.tpm_tools import (
            duplicate_with_signed_policy,
            local_mid,
            mid_objects,
            tpm_refusal,
            unlocked_k,
        )

        operator_key = ec.generate_private_key(ec.SECP256R1())
        codes: dict[str, str | None] = {}
        with common.scratch_tpm(ctx) as (conn, registry):
            mid = local_mid(conn, registry, kind="authorize", operator_key=operator_key)
            with mid_objects(conn, mid.record) as load:
                key = load(mid.record.k)
                for lock in (False, True):
                    codes["locked" if lock else "plain"] = tpm_refusal(
                        partial(duplicate_with_signed_policy, conn, key, operator_key, lock=lock)
                    )
            control_k = os.urandom(16)
            with unlocked_k(conn, operator_key, control_k) as control:
                _, exported, _ = duplicate_with_signed_policy(
                    conn, control, operator_key, lock=False
                )
            trap_real = control_k in bytes(exported.marshal())
        a.note(plain=codes["plain"], with_lock=codes["locked"], control_k_exported=trap_real)
        if None in codes.values():
            a.not_blocked("K left the TPM under an operator-signed Duplicate policy")
        elif not trap_real:
            a.error(
                "the control (K without the trailing PolicyCommandCode) was not exported:"
                " the attack did not work as staged"
            )
        else:
            a.blocked(
                f"K's policy ends in PolicyCommandCode(EncryptDecrypt2): Duplicate → "
                f"{codes['plain']}; appending the lock → {codes['locked']}. Control: the same"
                " signature exports a K without that step in clear",
                tpm_rc=codes["plain"],
            )

    common.pcid_filtering(ctx, rec, ("5",))
    return rec.findings
