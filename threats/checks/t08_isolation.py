"""Edge: TPM, network. Threat 8 (§7.1.2.1): another MID or malicious software extracts
sensitive information from a MID, or corrupts it.
"""

from __future__ import annotations

import os
from dataclasses import replace

from threats.checks import common
from threats.context import MEASURED_PCR, ThreatLab
from threats.result import Finding, Recorder
from trelab.errors import CheckFailed, Unavailable

__all__ = ["run"]


def run(ctx: ThreatLab) -> list[Finding]:
    rec = Recorder("8", tre="tpm")

    with ctx.attack(
        rec,
        ("1",),
        "cross-mid-load",
        "with MID B's parent loaded (its policy satisfied), load MID A's K under it",
    ) as a:
        from threats.tpm_tools import local_mid, mid_objects, tpm_refusal

        with common.scratch_tpm(ctx) as (conn, registry):
            mid_a = local_mid(conn, registry, kind="use", imsi="001019990000011")
            mid_b = local_mid(conn, registry, kind="use", imsi="001029990000012")
            with mid_objects(conn, mid_b.record) as objects:
                objects(mid_b.record.k)  # B's own K loads: the parent session works
                code = tpm_refusal(lambda: objects(mid_a.record.k))
        if code is None:
            a.not_blocked("MID A's K loaded under MID B's parent")
        else:
            a.blocked(f"one parent per MID, blobs bound to it: {code}", tpm_rc=code)

    with ctx.attack(
        rec,
        ("1",),
        "other-sho-orders",
        "SHO-B (another stakeholder on the same operator side) orders the deletion of SHO-A's MID",
        tre="network",
    ) as a:
        v = common.victim(ctx)
        net = ctx.network()
        refusal = common.refused(
            lambda: common.sho_order(
                net.transport(v.app), net.config.shos["sho-b"].key, v.mid_id, "delete"
            )
        )
        if refusal is None:
            a.not_blocked("SHO-B's order for SHO-A's MID was taken")
        else:
            a.blocked(f"RO refused {refusal.code}", refused=refusal.code)

    with ctx.attack(
        rec,
        ("2",),
        "shared-functions",
        "have one MID call another MID's functions",
    ) as a:
        a.not_run(
            "trelab offers no interface between MIDs (nothing to share, nothing to abuse):"
            " each MID is a separate key tree under its own parent",
            missing="part",
        )

    with ctx.attack(
        rec,
        ("3", "4"),
        "loaded-then-suspended",
        "keep K loaded while the MID is ACTIVE, let it be suspended, keep encrypting with it",
    ) as a:
        from threats.tpm_tools import local_mid
        from tpm import nv
        from tpm.mid import LoadedMid, set_state
        from tpm.mid_errors import MidRefused

        with common.scratch_tpm(ctx) as (conn, registry):
            mid = local_mid(conn, registry, kind="use")
            with LoadedMid(conn, registry.read().get(mid.record.mid)) as loaded:
                loaded.holder.encrypt_blocks(bytes(16))
                set_state(conn, registry, mid.record.mid, nv.MidState.SUSPENDED)
                error = common.refusal(lambda: loaded.holder.encrypt_blocks(bytes(16)), MidRefused)
        if error is None:
            a.not_blocked("a loaded K outlived its MID's suspension")
        else:
            a.blocked(f"K's policy is evaluated on every use (PolicyNV): {error}")

    with ctx.attack(
        rec,
        ("5",),
        "unseal-opc",
        "another MID's software unseals this MID's OPc outside its policy (empty password)",
    ) as a:
        from threats.tpm_tools import local_mid, mid_objects, tpm_refusal

        with common.scratch_tpm(ctx) as (conn, registry):
            mid = local_mid(conn, registry, kind="use")
            with mid_objects(conn, mid.record) as objects:
                sealed = objects(mid.record.secret)
                code = tpm_refusal(lambda: conn.esys.unseal(sealed))
        if code is None:
            a.not_blocked("OPc unsealed outside its policy")
        else:
            a.blocked(
                f"OPc's policy (PolicyPCR ∧ PolicyNV ∧ CommandCode(Unseal)): {code}", tpm_rc=code
            )

    with ctx.attack(
        rec,
        ("6",),
        "suspended-mid-aka",
        "run AKA with a SUSPENDED MID, skipping the host's state check",
    ) as a:
        from threats.tpm_tools import local_aka, local_mid
        from tpm import nv
        from tpm.mid import set_state
        from tpm.mid_errors import MidRefused

        rand = os.urandom(16)
        with common.scratch_tpm(ctx) as (conn, registry):
            mid = local_mid(conn, registry, kind="use")
            set_state(conn, registry, mid.record.mid, nv.MidState.SUSPENDED)
            error = common.refusal(
                lambda: local_aka(conn, registry, mid, rand, check_state=False), MidRefused
            )
        if error is None:
            a.not_blocked("a suspended MID authenticated")
        else:
            a.blocked(f"the TRE enforces the lifecycle stage: {error}")

    with ctx.attack(
        rec,
        ("7",),
        "registry-rollback",
        "restore an older copy of the MID registry (SQN state from before an AKA) to replay"
        " that AKA",
    ) as a:
        from threats.tpm_tools import fresh_autn, local_mid
        from tpm.aka import authenticate
        from tpm.mid_errors import RegistryRollback

        rand = os.urandom(16)
        with common.scratch_tpm(ctx) as (conn, registry):
            mid = local_mid(conn, registry, kind="load")
            autn = fresh_autn(mid.k, mid.opc, rand, 5)
            with registry.locked():
                backup = registry.path.read_bytes()
            authenticate(conn, registry, mid.record.mid, rand, autn)
            with registry.locked():
                latest = registry.path.read_bytes()
                registry.path.write_bytes(backup)
            try:
                authenticate(conn, registry, mid.record.mid, rand, autn)
                error = None
            except RegistryRollback as exc:
                error = str(exc)
            finally:
                with registry.locked():
                    registry.path.write_bytes(latest)
        if error is None:
            a.not_blocked("the restored registry let the AKA run again")
        else:
            a.blocked(f"REG_CTR (TPM NV counter) dates the registry: {error}")

    with ctx.attack(
        rec,
        ("8",),
        "mid-code-modified",
        f"modify the MID manager's code (PCR {MEASURED_PCR} changes) and use a MID bound to"
        " the measured state",
    ) as a:
        error = common.tampered_aka(ctx, ("use",))["use"]
        if error is None:
            a.not_blocked("K worked with modified MID code")
        else:
            a.blocked(
                f"integrity-checked by the TRE on every use: {error}. A use-gated MID stays"
                " blocked until re-provisioned (re-establishing its service is FFS in TR 33.812)"
            )

    with ctx.attack(
        rec,
        ("9",),
        "audit-tampered",
        "reorder and truncate the host's lifecycle log against the TPM's AUDIT index, and alter"
        " one entry of the operator's audit trail",
    ) as a:
        from threats.tpm_tools import local_mid
        from tpm.mid import verify_audit

        with common.scratch_tpm(ctx) as (conn, registry):
            local_mid(conn, registry, kind="use")
            data = registry.read()
            events = list(data.audit)
            control = verify_audit(conn, data)
            reordered = verify_audit(conn, replace(data, audit=(events[1], events[0], *events[2:])))
            truncated = verify_audit(conn, replace(data, audit=tuple(events[:-1])))
        app = ctx.network().app()
        with app.store.transaction() as tx:  # some operator history: a PCID registration
            app.operator.register_pcid(
                tx,
                imsi="001019990000013",
                k=os.urandom(16),
                opc=os.urandom(16),
                not_before=0,
                not_after=1,
                request_id="audit-history",
                now=app.now(),
            )
        import sqlite3

        if app.store.path is None:  # the threat context's operators keep SQLite files
            raise Unavailable("threat 8 edits the operator's SQLite file; this store is not one")
        attacker = sqlite3.connect(app.store.path)  # the attacker edits the database file
        try:
            try:
                attacker.execute("UPDATE audit SET actor = 'nobody' WHERE seq = 1")
                attacker.commit()
                trigger = "accepted"
            except sqlite3.DatabaseError as exc:
                trigger = str(exc)
            attacker.execute("DROP TRIGGER audit_no_update")
            attacker.execute("UPDATE audit SET actor = 'nobody' WHERE seq = 1")
            attacker.commit()
        finally:
            attacker.close()
        try:
            app.store.verify_audit()
            network = "not detected"
        except CheckFailed as exc:
            network = str(exc)
        a.note(host_log_events=len(events), control=control, sql_trigger=trigger, network=network)
        if not control:
            a.error("the untouched host log does not replay to the TPM's AUDIT index")
        elif reordered or truncated or network == "not detected":
            a.not_blocked("a tampered audit record verified")
        else:
            a.blocked(
                "host log: replay to TPM NV AUDIT (extend-only) fails when reordered or"
                f" truncated; operator trail: UPDATE refused ({trigger}), and with the trigger"
                f" dropped the hash chain → {network}"
            )

    return rec.findings
