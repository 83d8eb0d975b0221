"""Edge: TPM, filesystem, network. The device side of the MID lifecycle (TR 33.812 §7.1.2.1
threat 7 CM 1/10, threat 8 CM 1/6): INSTALLED → ACTIVE ⇄ SUSPENDED → DELETED, each transition
ordered by the SHO that owns the MID, fetched by the TRE, checked against the pinned owner key
(:class:`host.agent.LifecycleClient`), applied in the TPM and receipted with an AK-signed
TPM2_NV_Certify of the MID's MID_STATE byte.

Enforcement is in the TPM: MID_STATE is what a use-gated K's PolicyNV reads, so a SUSPENDED or
DELETED MID cannot run AKA whatever the host software does; DELETED is terminal (slots are
never reused). A repeat after a crash is harmless: the network re-delivers an unreceipted
command with the same number, and applying a transition twice changes nothing.

On a change of subscription the TRE may itself ask for the deletion of a MID while it holds an
ACTIVE MID of another SHO (:func:`apply_order` with ``request="delete"``); the owner still signs
the command, and the receipt is the TPM-signed proof of deletion.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from host.agent import (
    STATE_AFTER,
    AgentRefused,
    ApplyTransition,
    DeviceTrust,
    Finished,
    LifecycleClient,
    MidInfo,
)
from host.provision import AgentFiles, TpmDevice
from host.send import post, report
from protocol.client import Transport
from tpm.connection import TpmConnection
from tpm.registry import Registry
from trelab.errors import BadInput, CheckFailed

__all__ = ["ALLOWED", "LifecycleOutcome", "apply_order", "list_mids"]

#: Which owner commands each device verb accepts (``activate`` also resumes a suspended MID).
ALLOWED = {"activate": ("activate", "resume"), "suspend": ("suspend",), "delete": ("delete",)}


@dataclass(frozen=True)
class LifecycleOutcome:
    """What one lifecycle session did."""

    mid: MidInfo
    state: str
    applied: str | None
    sequence: int
    receipt: dict[str, bytes] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "mid": self.mid.mid_id,
            "sho": self.mid.sho,
            "imsi": self.mid.imsi,
            "state": self.state,
            "applied": self.applied,
            "command_seq": self.sequence,
            "receipt": sorted(
                k.removesuffix(".attest") for k in self.receipt if k.endswith(".attest")
            ),
        }


def apply_order(
    conn: TpmConnection,
    registry: Registry,
    transport: Transport,
    trust: DeviceTrust,
    *,
    mid_id: str,
    verb: str,
    request: str = "pending",
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> LifecycleOutcome:
    """Fetch the owner's order for ``mid_id`` and apply it if it is ``verb`` (a
    ``request="delete"`` asks for the deletion on a change of subscription).

    Raises:
        BadInput: unknown MID or verb.
        AgentRefused: no such order pending (``no-order``), an order not signed by the owner,
            for another MID, not the verb asked, or replayed (reported to the network).
        Refused: the network refused (e.g. a delete request without another ACTIVE MID).
    """
    if verb not in ALLOWED:
        raise BadInput(f"lifecycle verb {verb!r}: expected {', '.join(ALLOWED)}")
    files = AgentFiles(registry)
    device = TpmDevice(conn, registry)
    with files.locked():
        info = files.read().mid(mid_id)
        client, send = LifecycleClient.begin(
            trust, random_bytes(32), mid=info, allowed=ALLOWED[verb], request=request
        )
        evidence: dict[str, bytes] = {}
        applied: str | None = None
        try:
            event = client.receive(post(transport, send))
            if isinstance(event, ApplyTransition):
                try:
                    device.apply(event)
                    evidence = device.certify(_ak(conn), client.transitioned())
                except CheckFailed as exc:  # the TPM (or its registry) refused
                    if not isinstance(exc, AgentRefused):
                        exc = AgentRefused("tre-refused", str(exc))
                    raise exc from None
                applied = event.transition
                event = client.receive(post(transport, client.certified(evidence)))
        except AgentRefused as exc:
            report(transport, client.report(exc.code, str(exc)))
            raise
        if not isinstance(event, Finished):  # pragma: no cover - a second command cannot come
            raise AgentRefused("protocol", "the network sent a second command in one session")
        target = STATE_AFTER[ALLOWED[verb][0]]
        if applied is None and event.state != target:
            order = "resume" if verb == "activate" and event.state == "SUSPENDED" else verb
            raise AgentRefused(
                "no-order",
                f"SHO {info.sho} has ordered nothing for MID {mid_id} (it is {event.state}): "
                f"the owner must order {order} first (trelab operator order --mid {mid_id} "
                f"--transition {order} --sho {info.sho})",
            )
        updated = replace(info, state=event.state, command_seq=event.command_seq)
        files.write(files.read().with_mid(updated))
    return LifecycleOutcome(updated, event.state, applied, event.command_seq, evidence)


def _ak(conn: TpmConnection) -> Any:
    from tpm.identity import ensure_ak

    ak, _ = ensure_ak(conn, "ecc")
    return ak


def list_mids(conn: TpmConnection | None, registry: Registry) -> list[dict[str, Any]]:
    """Every MID the agent or the registry knows: owner, network state, TPM state byte."""
    files = AgentFiles(registry)
    state = files.read()
    data = registry.read()
    slots: bytes = b""
    if conn is not None:
        from tpm import nv

        if nv.counter_defined(conn, nv.MID_STATE):
            slots = nv.slot_states(conn)

    def tpm_state(slot: int) -> str | None:
        if not slots or not 0 <= slot < len(slots):
            return None
        from tpm import nv

        value = slots[slot]
        return nv.MidState(value).name if value in set(nv.MidState) else f"0x{value:02x}"

    rows: list[dict[str, Any]] = []
    for info in state.mids.values():
        rows.append(
            {
                **info.to_json(),
                "tpm_state": tpm_state(info.slot),
                "in_registry": info.mid_id in data.mids,
            }
        )
    pcid = state.pcid
    for mid_id, record in data.mids.items():
        if mid_id in state.mids:
            continue
        rows.append(
            {
                "mid": mid_id,
                "sho": "icf (PCID)" if pcid is not None and pcid.mid_id == mid_id else None,
                "imsi": record.imsi,
                "slot": record.slot,
                "sequence": record.seq,
                "network": None,
                "state": record.state.upper(),
                "command_seq": 0,
                "tpm_state": tpm_state(record.slot),
                "in_registry": True,
            }
        )
    return rows
