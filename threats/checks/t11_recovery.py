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
        from host.attach import attach_tpm
        from host.provision import provision
        from threats.tpm_tools import load_mid
        from tpm.mid import factory_reset
        from tpm.mid_errors import MidRefused

        net = ctx.network()
        app = net.app()
        transport = net.transport(app)
        trust = common.device_trust(ctx)

        def provisioned() -> tuple[str, str]:
            done = provision(
                conn, registry, transport, trust, sho="sho-a", network="threats-t11", use_pcid=False
            ).finished
            return done.mid_id, done.imsi

        with common.scratch_tpm(ctx) as (conn, registry):
            first, imsi = provisioned()
            before = attach_tpm(conn, registry, transport, mid_id=first, imsi=imsi)
            old = registry.read().get(first)
            reset = factory_reset(conn, registry)
            old_mid = (
                "still loads"
                if common.refusal(lambda: load_mid(conn, old), MidRefused) is None
                else "dead"
            )
            second, imsi = provisioned()
            after = attach_tpm(conn, registry, transport, mid_id=second, imsi=imsi)
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
