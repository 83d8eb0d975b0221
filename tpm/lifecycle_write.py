"""Edge: TPM. Apply an owner-approved write to a MID's lifecycle index (:mod:`tpm.nv`) under a
PolicyAuthorize session — on the lean layer (:mod:`tpm.lean_commands`, the default) or through
ESYS (:mod:`tpm.policy_session`, the reference) — kept apart from :mod:`tpm.nv` so that the NV
layer does not depend on the session runners that depend on it."""

from __future__ import annotations

from typing import Literal

from tpm.connection import TpmConnection
from tpm.nv import StateApproval, name_changed, resource
from tpm.policy import PolicyAuthorize

__all__ = ["write_lifecycle"]


def write_lifecycle(
    conn: TpmConnection,
    approval: StateApproval,
    authority_public: bytes,
    *,
    layer: Literal["lean", "esys"] = "lean",
) -> None:
    """Apply one owner-approved write: PolicyAuthorize session (the approval's steps, the
    signature checked by the TPM against ``authority_public``, a marshaled TPM2B_PUBLIC),
    then TPM2_NV_Write. The TPM refuses unless the index holds ``approval.old`` (or, for the
    first write, is unwritten while MID_CTR has the approved value).

    Raises:
        MidRefused: the TPM refused (wrong current value, not this owner's approval…).
    """
    if layer == "lean":
        _write_lean(conn, approval, authority_public)
    else:
        _write_esys(conn, approval, authority_public)


def _refused(approval: StateApproval, exc: Exception) -> Exception:
    from tpm.mid_errors import MidRefused

    return MidRefused(
        f"lifecycle write of slot {approval.index.slot} refused: the approval is not the"
        f" owner's, or not for the current state (replayed or out of order): {exc}"
    )


def _write_refused(approval: StateApproval, exc: Exception) -> Exception:
    from tpm.mid_errors import MidRefused

    return MidRefused(
        f"the TPM refused the lifecycle write of slot {approval.index.slot}"
        f" ({approval.new.state.name} v{approval.new.version}): {exc}"
    )


def _write_lean(conn: TpmConnection, approval: StateApproval, authority_public: bytes) -> None:
    """The lean layer's write: its own unsalted policy session (nothing of the command is
    secret; PolicyCpHash binds the session to exactly this write), ended by the write."""
    from tpm import lean_commands
    from tpm.lean import CC, TpmRefused

    index = approval.index
    name = index.name(written=approval.old is not None)
    session = lean_commands.start_session(conn, kind="policy", symmetric=False)
    try:
        try:
            lean_commands.run_approved_policy(
                conn,
                session,
                [PolicyAuthorize(index.authority_name, index.ref)],
                approval=approval,
                operator_public=authority_public,
            )
        except TpmRefused as exc:
            raise _refused(approval, exc) from None
        try:
            lean_commands.nv_write_by_policy(
                conn, index.handle, name, approval.new.encode(), 0, session, last_use=True
            )
        except TpmRefused as exc:
            if exc.command_code == CC.NV_WRITE:
                raise _write_refused(approval, exc) from None
            raise
    finally:
        lean_commands.flush_session(conn, session)
        name_changed(conn, index.handle)


def _write_esys(conn: TpmConnection, approval: StateApproval, authority_public: bytes) -> None:
    """The reference: the same session and write through ESYS."""
    from tpm.mid_errors import MidRefused
    from tpm.policy_session import PolicyRunner
    from tpm.tss import TSS2_Exception

    index = approval.index
    try:
        with (
            PolicyRunner(
                conn,
                [PolicyAuthorize(index.authority_name, index.ref)],
                approval=approval,
                operator_public=authority_public,
            ) as runner,
            runner.use() as session,
        ):
            tr = resource(conn, index.handle)
            conn.esys.nv_write(tr, approval.new.encode(), 0, auth_handle=tr, session1=session)
    except MidRefused as exc:
        raise _refused(approval, exc) from None
    except TSS2_Exception as exc:
        raise _write_refused(approval, exc) from None
