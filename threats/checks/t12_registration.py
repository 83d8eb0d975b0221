"""Edge: TPM, network. Threat 12 (§7.1.2.1): registering with a stolen or not-yet-registered
identity to obtain MIDs.
"""

from __future__ import annotations

from threats.checks import common
from threats.context import ThreatLab
from threats.result import Finding, Recorder
from trelab.errors import CheckFailed

__all__ = ["run"]


def run(ctx: ThreatLab) -> list[Finding]:

    rec = Recorder("12", tre="network")

    with ctx.attack(
        rec,
        ("1",),
        "trustworthy-registration",
        "make registration trust-worthy (TR 33.812: how is out of scope)",
    ) as a:
        a.organisational(
            "out of scope in TR 33.812; tested instead: identities chain to the manufacturer CA"
            " and prove possession (threats 1, 5), a PCID binds to one TRE (next finding)"
        )

    with ctx.attack(
        rec,
        ("1",),
        "stolen-pcid",
        "a second M2ME with a stolen provisional identity (PCID K/OPc copied) attaches, gets an"
        " ICF grant, and registers its own TRE under the PCID another TRE already uses",
    ) as a:
        app = ctx.network().app()
        transport = ctx.network().transport(app)
        imsi, k, opc = common.register_pcid(app, "0010177")
        grant = common.pcid_grant(transport, imsi, k, opc)
        with common.agent(ctx, app=app, grant=grant):  # the legitimate M2ME binds the PCID
            pass
        stolen = common.pcid_grant(transport, imsi, k, opc)
        with common.scratch_tpm(ctx) as (conn, registry):
            refusal = common.refused(
                lambda: common.register(ctx, conn, registry, app=app, grant=stolen)
            )
        if refusal is None:
            a.not_blocked("a second TRE registered under a PCID bound to another")
        else:
            a.blocked(
                f"DRF refused {refusal.code}: a PCID binds to the first TRE that uses it",
                refused=refusal.code,
            )

    with ctx.attack(
        rec,
        ("2",),
        "verdict-of-another-session",
        "register and validate one TRE, then ask for the MID package in a second, merely"
        " registered session of the same TRE (no validation of its own)",
    ) as a:
        from protocol.messages import PackageRequest, encode
        from tpm.mid import ensure_srk

        app = ctx.network().app()
        transport = ctx.network().transport(app)
        with common.lab_tpm(ctx) as (conn, registry):
            first = common.register(ctx, conn, registry, app=app)
            first.prove()
            first.attest()
            second = common.register(ctx, conn, registry, app=app)
            second.prove()
            _, srk_public = ensure_srk(conn)
        s = second.client.session
        wire = encode(
            PackageRequest(
                session_id=s.session_id,
                transcript=s.transcript,
                srk_public=bytes(srk_public.marshal()),
                slot=0,
                counter=0,
            )
        )
        try:
            transport.post("dpf/package", wire)
            answer = "accepted"
        except CheckFailed as exc:  # a refusal, in whichever form the network gives it
            answer = f"{type(exc).__name__}: {exc}"
        a.note(answer=answer)
        if answer == "accepted":
            a.not_blocked("the DPF delivered into a session with no verdict of its own")
        else:
            a.blocked(f"provisioning is bound to its own registration session: {answer}")

    return rec.findings
