"""Edge: TPM, filesystem, network. Change of subscription on a TPM TRE (TR 33.812 §5.1.3.1,
§7.1.2.1; docs/provisioning.md §1.8): ``trelab subscription change --mid A --to SHO-B``.

Steps: (1) re-validation and MID-B from SHO-B — a full provisioning session with a fresh
quote (:func:`host.provision.provision`); (2) MID-B ACTIVE (SHO-B's activation, at once or as
an order); (3) an attach test with MID-B; (4) MID-A deleted, its deletion receipted with an
AK-signed TPM2_NV_Certify of MID-A's MID_STATE byte = DELETED, bound to SHO-A's session (the
TPM-signed proof of deletion, :func:`host.lifecycle.apply_order` with ``request="delete"``).

If any of (1)–(3) fails, the change rolls back (SGP.32 rollback semantics): MID-B is deleted —
through SHO-B when the network answers, else in the TPM alone — and MID-A, never touched, is
attach-tested again. A change interrupted by a crash is recorded in the agent state and the next
``subscription change`` of the same MID continues it (MID-B ACTIVE: on to the attach test) or
rolls it back.

Test hooks: ``TRELAB_TEST_CRASH_AT=change:<step>`` kills the agent, ``TRELAB_TEST_FAIL_AT=
change:<step>`` makes that step fail (steps ``provision``, ``activate``, ``attach``, ``delete``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from host.agent import AgentRefused, AttachDone, DeviceTrust, MidInfo
from host.attach import attach_tpm
from host.lifecycle import LifecycleOutcome, apply_order
from host.provision import AgentFiles, Hook, abandon, chain, crash_hook, provision
from protocol.client import Transport
from tpm.connection import TpmConnection
from tpm.registry import Registry
from trelab.errors import BadInput, CheckFailed, TrelabError, Unavailable

__all__ = ["FAIL_ENV", "STEPS", "ChangeResult", "change"]

FAIL_ENV = "TRELAB_TEST_FAIL_AT"
STEPS = ("provision", "activate", "attach", "delete")


def _fail_hook() -> Hook | None:
    target = os.environ.get(FAIL_ENV)
    if not target:
        return None

    def hook(point: str) -> None:
        if point == target:
            raise CheckFailed(f"simulated failure at {point} ({FAIL_ENV})")

    return hook


@dataclass
class ChangeResult:
    """What a change of subscription did (``rolled_back`` with the ``failure`` if it failed)."""

    old: MidInfo
    new_mid: str | None = None
    new_imsi: str | None = None
    to_sho: str = ""
    deleted: LifecycleOutcome | None = None
    attach: AttachDone | None = None
    rolled_back: bool = False
    failure: str | None = None
    old_still_works: bool | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        proof = None
        if self.deleted is not None:
            proof = {
                "state": self.deleted.state,
                "command_seq": self.deleted.sequence,
                "nv_certify": self.deleted.to_json()["receipt"],
                "signed_by": "the TPM's AK (TPM2_NV_Certify of MID_STATE, session-bound)",
            }
        return {
            "from": {"mid": self.old.mid_id, "sho": self.old.sho, "imsi": self.old.imsi},
            "to": {"mid": self.new_mid, "sho": self.to_sho, "imsi": self.new_imsi},
            "attach_test": None if self.attach is None else self.attach.accepted,
            "deletion_proof": proof,
            "rolled_back": self.rolled_back,
            "failure": self.failure,
            "old_still_works": self.old_still_works,
            "notes": list(self.notes),
        }


def _mark(files: AgentFiles, change: dict[str, Any] | None) -> None:
    with files.locked():
        files.write(replace(files.read(), change=change))


def change(
    conn: TpmConnection,
    registry: Registry,
    transport: Transport,
    trust: DeviceTrust,
    *,
    mid_id: str,
    to_sho: str,
    network: str,
    hook: Hook | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> ChangeResult:
    """Move the TRE from MID ``mid_id`` to a new MID of ``to_sho`` (module docstring).

    Raises:
        BadInput: unknown MID, or the MID already belongs to ``to_sho``.
        AgentRefused: MID-A is not ACTIVE.
        plus, after MID-B is ACTIVE and tested, what deleting MID-A raises (MID-B stays).
    """
    files = AgentFiles(registry)
    hooks = chain(crash_hook(), _fail_hook(), hook)
    state = files.read()
    old = state.mid(mid_id)
    if old.sho == to_sho:
        raise BadInput(f"MID {mid_id} already belongs to {to_sho}")
    result = ChangeResult(old=old, to_sho=to_sho)
    marker = state.change if state.change and state.change.get("from") == mid_id else None
    new_mid: str | None = None
    if marker is not None:
        new_mid = marker.get("new") or None
        result.notes.append(f"continuing the interrupted change at step {marker.get('step')}")
        if marker.get("step") == "delete":
            return _delete_old(conn, registry, transport, trust, files, result, str(new_mid), hooks)
    if old.state != "ACTIVE":
        raise AgentRefused("not-active", f"MID {mid_id} is {old.state}: only an ACTIVE MID moves")
    step = "provision"
    try:
        if new_mid is None:
            _mark(files, {"from": mid_id, "to": to_sho, "step": step, "new": None})
            hooks("change:provision")
            provisioned = provision(
                conn, registry, transport, trust, sho=to_sho, network=network, use_pcid=False
            )
            new_mid = provisioned.finished.mid_id
        step = "activate"
        _mark(files, {"from": mid_id, "to": to_sho, "step": step, "new": new_mid})
        hooks("change:activate")
        info = files.read().mid(new_mid)
        if info.state != "ACTIVE":
            apply_order(conn, registry, transport, trust, mid_id=new_mid, verb="activate")
            info = files.read().mid(new_mid)
        result.new_mid, result.new_imsi = new_mid, info.imsi
        step = "attach"
        _mark(files, {"from": mid_id, "to": to_sho, "step": step, "new": new_mid})
        hooks("change:attach")
        result.attach = attach_tpm(
            conn, registry, transport, mid_id=new_mid, random_bytes=random_bytes
        )
        if not result.attach.accepted:
            raise AgentRefused("attach-test", f"SHO {to_sho} refused MID-B: {result.attach.reason}")
    except Unavailable:
        # the network (or the TPM) is unreachable: it may have recorded MID-B already, and a
        # roll back it cannot hear would lose MID-B; keep the marker, the next run continues
        raise
    except TrelabError as exc:
        result.failure = f"{step}: {exc}"
        _roll_back(conn, registry, transport, trust, files, result, new_mid, random_bytes)
        return result
    _mark(files, {"from": mid_id, "to": to_sho, "step": "delete", "new": new_mid})
    return _delete_old(conn, registry, transport, trust, files, result, new_mid, hooks)


def _delete_old(
    conn: TpmConnection,
    registry: Registry,
    transport: Transport,
    trust: DeviceTrust,
    files: AgentFiles,
    result: ChangeResult,
    new_mid: str,
    hooks: Hook,
) -> ChangeResult:
    """Step 4: MID-A deleted with SHO-A's signed command, receipted by the TPM."""
    old = result.old
    hooks("change:delete")
    info = files.read().mids.get(new_mid)
    result.new_mid = new_mid
    result.new_imsi = info.imsi if info else None
    try:
        result.deleted = apply_order(
            conn, registry, transport, trust, mid_id=old.mid_id, verb="delete", request="delete"
        )
    except (CheckFailed, Unavailable) as exc:
        # After a crash the network may have the deletion already: ask it what it recorded.
        try:
            result.deleted = apply_order(
                conn, registry, transport, trust, mid_id=old.mid_id, verb="delete"
            )
        except TrelabError:
            raise exc from None
    _mark(files, None)
    return result


def _roll_back(
    conn: TpmConnection,
    registry: Registry,
    transport: Transport,
    trust: DeviceTrust,
    files: AgentFiles,
    result: ChangeResult,
    new_mid: str | None,
    random_bytes: Callable[[int], bytes],
) -> None:
    """Undo MID-B (through SHO-B if it answers, else in the TPM) and test MID-A again."""
    result.rolled_back = True
    result.notes += abandon(conn, registry, transport, trust)
    if new_mid is not None and new_mid in files.read().mids:
        try:
            apply_order(
                conn, registry, transport, trust, mid_id=new_mid, verb="delete", request="delete"
            )
            result.notes.append(f"MID-B {new_mid} deleted, receipted to {result.to_sho}")
        except TrelabError as exc:
            from tpm.mid import delete_mid

            with files.locked():
                if new_mid in registry.read().mids:
                    delete_mid(conn, registry, new_mid)
                state = files.read()
                files.write(state.with_mid(replace(state.mid(new_mid), state="DELETED")))
            result.notes.append(
                f"MID-B {new_mid} deleted in the TPM only ({result.to_sho} not told: {exc})"
            )
    _mark(files, None)
    try:
        done = attach_tpm(
            conn, registry, transport, mid_id=result.old.mid_id, random_bytes=random_bytes
        )
        result.old_still_works = done.accepted
    except TrelabError as exc:
        result.old_still_works = False
        result.notes.append(f"MID-A attach test after rollback failed: {exc}")
