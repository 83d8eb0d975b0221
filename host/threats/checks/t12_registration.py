"""Edge: TPM, network. Threat 12 (§7.1.2.1): registering with a stolen or not-yet-registered
identity to obtain MIDs.
"""

from __future__ import annotations

import os

from host.threats.checks import common
from host.threats.context import ThreatLab
from host.threats.result import Finding, Recorder
from trelab.errors import CheckFailed

__all__ = ["run"]


def _pcid_grant(app: object, transport: object, imsi: str, k: bytes, opc: bytes) -> bytes:
    """Attach with a PCID (software USIM holding its K/OPc) and return the ICF's grant."""
    from aka.keyholder import SoftwareAes
    from aka.milenage import Milenage
    from aka.sqn import SqnState
    from aka.usim import AkaSuccess, usim_authenticate
    from network.messages import AttachRequest, AttachResult, AuthChallenge, AuthResponse
    from network.protocol import Session, SessionState

    post = transport.post  # type: ignore[attr-defined]
    session = Session("device", SessionState(os.urandom(32)))
    challenge = session.receive(
        post("sho/attach", session.send(session.make(AttachRequest, imsi=imsi)))
    )
    assert isinstance(challenge, AuthChallenge)
    result, _ = usim_authenticate(
        Milenage(SoftwareAes(k), opc), SqnState(), challenge.rand, challenge.autn
    )
    assert isinstance(result, AkaSuccess)
    done = session.receive(
        post("sho/auth", session.send(session.make(AuthResponse, res=result.res)))
    )
    assert isinstance(done, AttachResult) and done.accepted
    return done.grant


def run(ctx: ThreatLab) -> list[Finding]:
    from tpm.connection import TpmConnection

    rec = Recorder("12", tre="network")

    with ctx.attack(
        rec,
        ("1",),
        "trustworthy-registration",
        "make registration trust-worthy (the seed: how is out of scope)",
    ) as a:
        a.organisational(
            "out of scope in the seed; tested instead: identities chain to the manufacturer CA"
            " and prove possession (threats 1, 5), a PCID binds to one TRE (next finding)"
        )

    with ctx.attack(
        rec,
        ("1",),
        "stolen-pcid",
        "a second M2ME with a stolen provisional identity (PCID K/OPc copied) attaches, gets an"
        " ICF grant, and registers its own TRE under the PCID another TRE already uses",
    ) as a:
        from host.threats.device import start

        net = ctx.network()
        app = net.app()
        transport = net.transport(app)
        imsi = f"0010177{int.from_bytes(os.urandom(4), 'big') % 10**8:08d}"
        k, opc = os.urandom(16), os.urandom(16)
        now = app.now()
        with app.store.transaction() as tx:
            app.operator.register_pcid(
                tx,
                imsi=imsi,
                k=k,
                opc=opc,
                not_before=now - 60,
                not_after=now + 3600,
                request_id=f"pcid-{imsi}",
                now=now,
            )
        with TpmConnection(ctx.tcti) as conn:  # the legitimate M2ME binds the PCID
            start(conn, transport, "sho-a", grant=_pcid_grant(app, transport, imsi, k, opc))
        stolen = _pcid_grant(app, transport, imsi, k, opc)
        other = ctx.scratch()
        with TpmConnection(other.tcti) as conn:
            refusal = common.refused(lambda: start(conn, transport, "sho-a", grant=stolen))
        if refusal is None:
            a.not_blocked("a second TRE registered under a PCID bound to another")
        else:
            a.blocked(
                f"DRF refused {refusal.reason}: a PCID binds to the first TRE that uses it",
                refused=refusal.reason,
            )

    with ctx.attack(
        rec,
        ("2",),
        "verdict-of-another-session",
        "register and validate one TRE, then ask for the MID package in a second, merely"
        " registered session of the same TRE (no validation of its own)",
    ) as a:
        from host.threats.device import attest, prove, start
        from network.messages import PackageRequest, encode
        from tpm.mid import ensure_srk

        net = ctx.network()
        app = net.app()
        transport = net.transport(app)
        with TpmConnection(ctx.tcti) as conn:
            first, challenge = start(conn, transport, "sho-a")
            vc = prove(conn, first, challenge)
            attest(conn, first, vc, net.pins)
            second, challenge2 = start(conn, transport, "sho-a")
            prove(conn, second, challenge2)
            _, srk_public = ensure_srk(conn)
        s = second.session
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
