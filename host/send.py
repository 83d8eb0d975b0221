"""Edge: network. How the agent puts one of its client's messages on a :class:`Transport`: a
request (with the ICF's grant only for the RO's endpoints) or a best-effort refusal report."""

from __future__ import annotations

from host.agent import Send
from protocol.client import Transport
from protocol.messages import RO_ROLES
from trelab.errors import TrelabError

__all__ = ["post", "report"]


def post(transport: Transport, send: Send, grant: bytes | None = None) -> bytes:
    """One request; an ICF grant goes only to the RO's endpoints (DRF, PVA, DPF)."""
    role = send.endpoint.split("/", 1)[0]
    use = grant if role in RO_ROLES else None
    return transport.post(send.endpoint, send.wire, grant=use)


def report(transport: Transport, send: Send) -> bool:
    """Best effort: a refusal report for the network's audit trail. Returns whether it landed."""
    try:
        transport.post(send.endpoint, send.wire)
    except TrelabError:
        return False
    return True
