"""Edge: TPM. Apply an owner-approved write to a MID's lifecycle index (:mod:`tpm.nv`) under a
PolicyAuthorize session (:mod:`tpm.policy_session`) — kept apart from both so that the NV
layer does not depend on the session runner that depends on it."""

from __future__ import annotations

from tpm.connection import TpmConnection
from tpm.nv import StateApproval, resource
from tpm.policy import PolicyAuthorize

__all__ = ["write_lifecycle"]


def write_lifecycle(conn: TpmConnection, approval: StateApproval, authority_public: bytes) -> None:
    """Apply one owner-approved write: PolicyAuthorize session (the approval's steps, the
    signature checked by the TPM against ``authority_public``, a marshaled TPM2B_PUBLIC),
    then TPM2_NV_Write. The TPM refuses unless the index holds ``approval.old`` (or, for the
    first write, is unwritten while MID_CTR has the approved value).

    Raises:
        MidRefused: the TPM refused (wrong current value, not this owner's approval…).
    """
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
        raise MidRefused(
            f"lifecycle write of slot {index.slot} refused: the approval is not the owner's, or"
            f" not for the current state (replayed or out of order): {exc}"
        ) from None
    except TSS2_Exception as exc:
        raise MidRefused(
            f"the TPM refused the lifecycle write of slot {index.slot}"
            f" ({approval.new.state.name} v{approval.new.version}): {exc}"
        ) from None
