"""Edge: TPM, PC/SC or serial, network. ``trelab attach``: AKA over the network with the SHO
over 3G (TS 33.102 §6.3), EPS (TS 33.401 §6.1) or 5G (TS 33.501 §6.1.3.2) — the SHO makes a
vector, the TRE answers, the ME derives RES* and its anchor key (K_ASME, K_SEAF) as the access
needs, the SHO checks RES or RES* and both ends confirm the same anchor; after a
synchronisation failure the TRE's AUTS resynchronises the SHO and a second vector follows.

The TRE is a TPM MID (K inside the TPM, :func:`tpm.aka.authenticate`, which commits the new
SQN state before RES leaves: no SQN rollback) or a UICC (Alternative 2: a pre-personalised
card through PC/SC or a modem's AT+CSIM, :class:`uicc.usim.UsimClient`). A network that fails
AKA (MAC failure) or a TRE that refuses K (platform changed, MID not ACTIVE) is reported to the
network's audit trail before the error is raised.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aka.access import Rat
from aka.usim import AkaResult
from host.agent import AgentRefused, AttachClient, AttachDone, Authenticate
from host.send import report
from protocol.client import Transport
from tpm.connection import TpmConnection
from tpm.registry import Registry
from trelab.errors import CheckFailed

__all__ = ["attach", "attach_card", "attach_tpm"]

Aka = Callable[[bytes, bytes], AkaResult]
Concealer = Callable[[str], str]  # IMSI → SUCI string


def attach(
    transport: Transport,
    *,
    imsi: str,
    aka: Aka,
    random_bytes: Callable[[int], bytes] = os.urandom,
    grant: bytes | None = None,
    rat: Rat = "3g",
    suci: str = "",
) -> AttachDone:
    """One attach of ``imsi`` over ``rat`` whose AKA runs in ``aka(rand, autn)``; over 5G the
    identity on the wire is ``suci`` when given.

    Raises:
        AgentRefused: the network failed AKA (``network-auth``) or asked a second resync.
        CheckFailed: the TRE refused (e.g. MidRefused); both are reported to the network.
        Refused, RemoteProtocolError: the network refused the attach.
    """
    client, send = AttachClient.begin(random_bytes(32), imsi, rat, suci)
    while True:
        event = client.receive(transport.post(send.endpoint, send.wire, grant=grant))
        if isinstance(event, AttachDone):
            if event.accepted and event.keys_match is False:
                why = "the network's key proof does not match the ME's anchor key"
                _report(transport, client.report("key-mismatch", why))
                raise CheckFailed(why)
            return event
        if not isinstance(event, Authenticate):  # pragma: no cover - the client yields only these
            raise TypeError(type(event).__name__)
        try:
            send = client.answered(aka(event.rand, event.autn))
        except AgentRefused as exc:
            _report(transport, client.report(exc.code, str(exc)))
            raise
        except CheckFailed as exc:
            _report(transport, client.report("tre-refused", str(exc)))
            raise


def _report(transport: Transport, send: Any) -> None:
    report(transport, send)


def attach_tpm(
    conn: TpmConnection,
    registry: Registry,
    transport: Transport,
    *,
    mid_id: str,
    imsi: str | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
    grant: bytes | None = None,
    rat: Rat = "3g",
    conceal: Concealer | None = None,
) -> AttachDone:
    """Attach with a MID whose K is in the TPM (IMSI from the registry unless given) over
    ``rat``; ``conceal(imsi)`` makes the SUCI a 5G attach sends.

    Raises:
        UnknownMid: no such MID in the registry.
        MidRefused: the TPM refused K (PCRs changed, not ACTIVE): reported, then raised.
        plus what :func:`attach` raises.
    """
    from tpm.aka import authenticate
    from tpm.mid import ek_name

    if imsi is None:
        with registry.locked():
            data = registry.read_checked(conn, ek_name(conn))
        imsi = data.get(mid_id).imsi

    def aka(rand: bytes, autn: bytes) -> AkaResult:
        return authenticate(conn, registry, mid_id, rand, autn).result

    suci = conceal(imsi) if conceal is not None and rat == "5g" else ""
    return attach(
        transport,
        imsi=imsi,
        aka=aka,
        random_bytes=random_bytes,
        grant=grant,
        rat=rat,
        suci=suci,
    )


def attach_card(
    client: Any,
    transport: Transport,
    *,
    imsi: str | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
    rat: Rat = "3g",
    conceal: Concealer | None = None,
) -> tuple[str, AttachDone]:
    """Attach with a UICC (Alternative 2) through a :class:`uicc.usim.UsimClient` over
    ``rat``; the IMSI is read from EF.IMSI unless given. Returns (IMSI, result).

    Raises:
        CardRefused: the card refused (PIN not verified, …).
        plus what :func:`attach` raises.
    """
    if imsi is None:
        imsi = str(client.read_imsi())
    suci = conceal(imsi) if conceal is not None and rat == "5g" else ""
    done = attach(
        transport,
        imsi=imsi,
        aka=client.authenticate,
        random_bytes=random_bytes,
        rat=rat,
        suci=suci,
    )
    return imsi, done
