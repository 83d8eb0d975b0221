"""Shared by the robustness tests (issue 5; test_agent_robustness, test_server_robustness): a
lab of a module's own for destructive work, and the invariants every retry after a kill -9 must
leave — TPM, MID registry, network store and HSS agree."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from lab.lab import LabStatus
from tpm.connection import TpmConnection
from tpm.registry import Registry

if TYPE_CHECKING:
    from tests.integration.test_agent_provision import Network

__all__ = ["check_consistent", "live_handles", "own_lab"]


@contextmanager
def own_lab(lab_factory: Callable[..., Any], name: str) -> Iterator[LabStatus]:
    """A lab for one module (``lab_factory``), downed when the module is done: its card would
    otherwise queue on the host-wide vpcd reader for the rest of the session."""
    instance = lab_factory(name)
    status: LabStatus = instance.up()
    try:
        yield status
    finally:
        instance.down()


def live_handles(tcti: str) -> list[int]:
    """Transient and session handles the TPM still holds (a killed agent's leftovers)."""
    from tpm2_pytss.constants import TPM2_CAP

    with TpmConnection(tcti) as conn:
        found = []
        for first in (0x80000000, 0x02000000):
            _, caps = conn.esys.get_capability(TPM2_CAP.HANDLES, first, 64)
            found += [int(h) for h in caps.data.handles]
        return found


def check_consistent(net: Network, lab: LabStatus, registry: Registry) -> dict[str, Any]:
    """The invariants of a retry: TPM, registry, network and HSS agree."""
    from tpm import nv
    from tpm.mid import ek_name

    with TpmConnection(lab.tcti) as conn:
        nv.ensure_indices(conn)  # a fresh lab's TPM has none yet
        states = nv.slot_states(conn)
        device_id = ek_name(conn).hex()
        counter = nv.read_counter(conn, nv.MID_CTR)
    data = registry.read()
    in_registry = {r.slot: r for r in data.mids.values()}
    # no half-installed MID: every slot in use belongs to a MID the registry can load
    for slot, state in enumerate(states):
        if state in (nv.MidState.INSTALLED, nv.MidState.ACTIVE, nv.MidState.SUSPENDED):
            assert slot in in_registry, f"slot {slot} is {state} with no MID in the registry"
    with net.store.transaction() as tx:
        mids = tx.mids(device_id=device_id)
        hss = {m.imsi: tx.hss(m.imsi) for m in mids}
        device = tx.device(device_id)
    active = {m.mid_id for m in mids if m.state == "ACTIVE"}
    known = {m.mid_id for m in mids}  # the TPM's one registry also holds other tests' networks
    # no lost MID: what the network activated is in the TPM, and the other way round
    assert active == {m for m, r in data.mids.items() if r.state == "active" and m in known}
    assert not [m for m in mids if m.state in ("PENDING", "INSTALLED")], "a package left half-done"
    # no duplicated HSS record: one live record per ACTIVE MID, the rest deleted with K gone
    live = {imsi for imsi, r in hss.items() if r is not None and r.state == "active"}
    assert live == {m.imsi for m in mids if m.state == "ACTIVE"}
    for m in mids:
        record = hss[m.imsi]
        assert record is not None
        if m.state == "DELETED":
            assert record.state == "deleted" and record.k == b""
    assert device is None or device.sequence <= counter
    assert net.store.verify_audit() == len(net.store.audit_events())
    with TpmConnection(lab.tcti) as conn:  # the host's event log replays to the TPM's AUDIT
        from tpm.mid import audit_state

        assert audit_state(conn, data) == "matches"
    assert live_handles(lab.tcti) == []
    return {"active": active, "counter": counter}
