"""Edge: TPM, network. Threat 11 (§7.1.2.1): users lose network access through a malfunction or
erasure of MIDs or of the TRE — and whether an authorised reset re-establishes it.
"""

from __future__ import annotations

from threats.checks import common
from threats.context import ThreatLab
from threats.result import Finding, Recorder

__all__ = ["run"]


def run(ctx: ThreatLab) -> list[Finding]:
    rec = Recorder("11", tre="tpm")

    with ctx.attack(
        rec,
        ("1",),
        "reset-and-recover",
        "a provisioned M2ME loses its MIDs (TPM2_Clear: factory reset of MID management), then"
        " asks the same operator again for service",
    ) as a:
        from threats.device import attach, provision
        from threats.tpm_tools import load_mid
        from tpm.mid import factory_reset
        from tpm.mid_errors import MidRefused

        net = ctx.network()
        app = net.app()
        transport = net.transport(app)
        with common.scratch_tpm(ctx) as (conn, registry):
            first = provision(conn, registry, transport, net.pins, "sho-a")
            before = attach(conn, registry, transport, first.mid_id, first.imsi)
            old = registry.read().get(first.mid_id)
            reset = factory_reset(conn, registry)
            old_mid = (
                "still loads"
                if common.refusal(lambda: load_mid(conn, old), MidRefused) is None
                else "dead"
            )
            second = provision(conn, registry, transport, net.pins, "sho-a")
            after = attach(conn, registry, transport, second.mid_id, second.imsi)
        a.note(
            attach_before=before.reason,
            ek_unchanged=reset["ek_unchanged"],
            old_mid=old_mid,
            attach_after=after.reason,
            lab_note="the lab's platform and lockout authorisations are empty: any process"
            " with TPM access may reset",
        )
        if not (reset["ek_unchanged"] and old_mid == "dead" and after.accepted):
            a.not_blocked(
                f"reset: EK unchanged {reset['ek_unchanged']}, old MID {old_mid},"
                f" re-attach {after.reason}"
            )
        else:
            a.blocked(
                "factory reset kept the TRE's identity (EK unchanged), killed every MID, and a"
                " new provisioning re-established access (attach: authenticated). K is never"
                " backed up (TR 33.812: a Ki backup is impractical) — recovery is re-provisioning"
            )

    return rec.findings
