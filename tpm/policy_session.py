"""Edge: TPM. Run policy steps (:mod:`tpm.policy`) in a real policy session (TPM 2.0 Part 3 §23).

One :class:`PolicyRunner` owns one session for its lifetime. The TPM resets a policy session
after every successful authorisation (continueSession set), so each use re-runs the steps
in the same session instead of paying for a new TPM2_StartAuthSession: that is the
amortisation measured in ``bench/tpm_bench.py``. After a failed use the runner sends
TPM2_PolicyRestart before the next one. The PolicyAuthorize ticket (TPM2_VerifySignature over
the operator's approval) is kept for the runner's lifetime.

``salt_key`` (a loaded TPM key whose public part the caller has verified, e.g. the MID
parent) makes a salted session: the session key is not derivable from the bus traffic, so a
PIN (PolicyAuthValue → HMAC key) cannot be brute-forced offline from one captured command;
``encrypt=True`` encrypts the first response parameter (unsealed OPc/TOPc/K, E_K's outData)
and ``decrypt=True`` the first command parameter (E_K's inData), AES-128-CFB keyed from the
session key (TPM 2.0 Part 1 §21.3). One session can serve commands of different shapes:
:func:`set_session_attributes` switches ``decrypt`` off for TPM2_Unseal (no command parameter).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from tpm.connection import TpmConnection
from tpm.mid_errors import MidRefused
from tpm.policy import (
    PolicyAuthorize,
    PolicyAuthValue,
    PolicyCommandCode,
    PolicyCpHash,
    PolicyNv,
    PolicyNvWritten,
    PolicyPcr,
    PolicySecret,
    PolicyStep,
)
from trelab.errors import BadInput, LocalProtocolError

__all__ = [
    "PolicyRunner",
    "SignedPolicy",
    "set_session_attributes",
    "start_session",
    "trial_digest",
]


class SignedPolicy(Protocol):
    """An approved policy and its signature, for PolicyAuthorize: an operator's PCR approval
    (:class:`tpm.package.Approval`) or an owner's lifecycle write (:class:`tpm.nv.StateApproval`)."""

    @property
    def signature(self) -> bytes: ...

    @property
    def policy_ref(self) -> bytes: ...

    def steps(self) -> list[PolicyStep]: ...

    def approved_policy(self) -> bytes: ...


def start_session(
    conn: TpmConnection,
    *,
    kind: str = "policy",
    salt_key: Any = None,
    encrypt: bool = False,
    decrypt: bool = False,
) -> Any:
    """TPM2_StartAuthSession (SHA-256): ``kind`` policy, trial or hmac; salted with
    ``salt_key`` if given; AES-128-CFB parameter encryption of responses if ``encrypt``, of
    commands if ``decrypt`` (TPM 2.0 Part 1 §19.6.5, §21).

    Raises:
        tpm.tss.TSS2_Exception: the TPM refuses (callers translate).
    """
    from tpm.tss import ESYS_TR, TPM2_ALG, TPM2_SE, TPMT_SYM_DEF, TPMU_SYM_KEY_BITS, TPMU_SYM_MODE

    types = {"policy": TPM2_SE.POLICY, "trial": TPM2_SE.TRIAL, "hmac": TPM2_SE.HMAC}
    if kind not in types:
        raise BadInput(f"session kind {kind!r}")
    symmetric = (
        TPMT_SYM_DEF(
            algorithm=TPM2_ALG.AES,
            keyBits=TPMU_SYM_KEY_BITS(aes=128),
            mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB),
        )
        if encrypt or decrypt or salt_key is not None
        else TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL)
    )
    session = conn.esys.start_auth_session(
        tpm_key=salt_key if salt_key is not None else ESYS_TR.NONE,
        bind=ESYS_TR.NONE,
        session_type=types[kind],
        symmetric=symmetric,
        auth_hash=TPM2_ALG.SHA256,
    )
    set_session_attributes(conn, session, encrypt=encrypt, decrypt=decrypt)
    return session


def set_session_attributes(
    conn: TpmConnection, session: Any, *, encrypt: bool, decrypt: bool
) -> None:
    """continueSession, plus ``encrypt`` / ``decrypt`` for the next commands (ESYS-local, no
    TPM command). A TPM refuses ``decrypt`` on a command without a TPM2B first parameter
    (TPM2_Unseal; TPM_RC_ATTRIBUTES), so a session shared by Unseal and EncryptDecrypt2
    switches between them."""
    from tpm.tss import TPMA_SESSION

    attrs = int(TPMA_SESSION.CONTINUESESSION)
    if encrypt:
        attrs |= int(TPMA_SESSION.ENCRYPT)
    if decrypt:
        attrs |= int(TPMA_SESSION.DECRYPT)
    conn.esys.trsess_set_attributes(session, attrs)


def _signature(der: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    from tpm.tss import TPM2_ALG, TPMT_SIGNATURE

    try:
        r, s = decode_dss_signature(der)
    except ValueError:
        raise BadInput("approval signature is not DER ECDSA") from None
    sig = TPMT_SIGNATURE(sigAlg=TPM2_ALG.ECDSA)
    sig.signature.ecdsa.hash = TPM2_ALG.SHA256
    sig.signature.ecdsa.signatureR = r.to_bytes(32, "big")
    sig.signature.ecdsa.signatureS = s.to_bytes(32, "big")
    return sig


class PolicyRunner:
    """Re-runs ``steps`` in one session for each authorisation (see module docstring).

    ``handles`` maps an object name (PolicySecret's authObject) to its ESYS handle;
    ``approval`` and ``operator_public`` (marshaled TPM2B_PUBLIC) serve PolicyAuthorize;
    ``salt_key``, ``encrypt`` and ``decrypt`` as for :func:`start_session`. A use may run
    other steps than ``steps`` (one salted session serving OPc's Unseal and K's commands).
    Close it (or use it as a context manager) so the session is flushed.
    """

    def __init__(
        self,
        conn: TpmConnection,
        steps: Sequence[PolicyStep],
        *,
        handles: Mapping[bytes, Any] | None = None,
        approval: SignedPolicy | None = None,
        operator_public: bytes | None = None,
        salt_key: Any = None,
        encrypt: bool = False,
        decrypt: bool = False,
        trial: bool = False,
    ) -> None:
        self._conn = conn
        self._steps = tuple(steps)
        self._handles = dict(handles or {})
        self._approval = approval
        self._operator_public = operator_public
        self._ticket: Any = None
        self._dirty = False
        self.uses = 0
        self.session = start_session(
            conn,
            kind="trial" if trial else "policy",
            salt_key=salt_key,
            encrypt=encrypt,
            decrypt=decrypt,
        )

    def __enter__(self) -> PolicyRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.session is not None:
            self._conn.flush(self.session)
            self.session = None

    def run_steps(self, steps: Sequence[PolicyStep] | None = None) -> None:
        """Send the policy commands for every step of ``steps`` (default: the runner's),
        after PolicyRestart if needed."""
        esys = self._conn.esys
        if self.session is None:
            raise LocalProtocolError("policy session already closed")
        if self._dirty:
            esys.policy_restart(self.session)
        self._dirty = True
        for step in self._steps if steps is None else steps:
            self._run(step)

    @contextlib.contextmanager
    def use(self, steps: Sequence[PolicyStep] | None = None) -> Iterator[Any]:
        """``with runner.use() as session:`` run the steps, yield the session for one command.
        A clean exit means the TPM consumed (and reset) the policy; an exception marks the
        session for PolicyRestart."""
        self.run_steps(steps)
        yield self.session
        self._dirty = False
        self.uses += 1

    def digest(self) -> bytes:
        return bytes(self._conn.esys.policy_get_digest(self.session))

    # -- one step ---------------------------------------------------------------------------------
    def _run(self, step: PolicyStep) -> None:
        from tpm.tss import TPM2_RC, TSS2_Exception

        try:
            self._send(step)
        except TSS2_Exception as exc:
            error = int(exc.error)
            if isinstance(step, PolicyPcr) and error in (
                int(TPM2_RC.VALUE),
                int(TPM2_RC.PCR_CHANGED),
            ):
                raise MidRefused(
                    "PolicyPCR: the PCR values differ from the authorised ones"
                ) from None
            if isinstance(step, PolicyNv) and error == int(TPM2_RC.POLICY):
                raise MidRefused(
                    "PolicyNV: the MID's lifecycle state (MID_STATE byte or its own index) is not ACTIVE"
                ) from None
            if isinstance(step, PolicyAuthorize) or error == int(TPM2_RC.SIGNATURE):
                raise MidRefused(
                    f"PolicyAuthorize: the operator approval is not accepted ({exc})"
                ) from None
            raise

    def _send(self, step: PolicyStep) -> None:
        from tpm.tss import TPM2B_OPERAND, TPML_PCR_SELECTION

        esys = self._conn.esys
        session = self.session
        if isinstance(step, PolicyPcr):
            esys.policy_pcr(session, step.digest, TPML_PCR_SELECTION.parse(step.selection))
        elif isinstance(step, PolicyNv):
            from tpm.nv import resource

            nv = resource(self._conn, step.index)  # shared ESYS object: never closed here
            esys.policy_nv(
                nv, nv, session, TPM2B_OPERAND(step.operand), step.operation, step.offset
            )
        elif isinstance(step, PolicyAuthValue):
            esys.policy_auth_value(session)
        elif isinstance(step, PolicyCommandCode):
            esys.policy_command_code(session, step.code)
        elif isinstance(step, PolicySecret):
            handle = self._handles.get(step.auth_name)
            if handle is None:
                raise LocalProtocolError("PolicySecret: no handle for the authorising object")
            esys.policy_secret(handle, session, policy_ref=step.policy_ref, expiration=0)
        elif isinstance(step, PolicyAuthorize):
            self._authorize(step)
        elif isinstance(step, PolicyCpHash):
            esys.policy_cp_hash(session, step.cp_hash)
        elif isinstance(step, PolicyNvWritten):
            esys.policy_nv_written(session, step.written)
        else:  # pragma: no cover - the union is closed
            raise LocalProtocolError(f"unknown policy step {step!r}")

    def _authorize(self, step: PolicyAuthorize) -> None:
        from tpm.policy import approval_hash
        from tpm.tss import ESYS_TR, TPM2B_PUBLIC

        approval = self._approval
        if approval is None or self._operator_public is None:
            raise LocalProtocolError("PolicyAuthorize without an approval")
        esys = self._conn.esys
        for inner in approval.steps():
            self._run(inner)
        approved = approval.approved_policy()
        if self._ticket is None:
            public, _ = TPM2B_PUBLIC.unmarshal(self._operator_public)
            key = esys.load_external(public, None, ESYS_TR.OWNER)  # OWNER: NULL gives no ticket
            try:
                self._ticket = esys.verify_signature(
                    key,
                    approval_hash(approved, approval.policy_ref),
                    _signature(approval.signature),
                )
            finally:
                self._conn.flush(key)
        esys.policy_authorize(
            self.session, approved, step.key_name, self._ticket, policy_ref=step.policy_ref
        )


def trial_digest(
    conn: TpmConnection,
    steps: Sequence[PolicyStep],
    *,
    handles: Mapping[bytes, Any] | None = None,
    approval: SignedPolicy | None = None,
    operator_public: bytes | None = None,
) -> bytes:
    """The digest a TPM trial session computes for ``steps`` (to cross-check
    :func:`tpm.policy.policy_digest`)."""
    with PolicyRunner(
        conn,
        steps,
        handles=handles,
        approval=approval,
        operator_public=operator_public,
        trial=True,
    ) as runner:
        runner.run_steps()
        return runner.digest()
