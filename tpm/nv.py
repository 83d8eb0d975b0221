"""Edge: TPM. The NV indices of the MID store (docs/provisioning.md §1.0): MID_CTR, MID_STATE,
AUDIT and REG_CTR, defined on first use in the owner hierarchy (so TPM2_Clear removes them).

==========  =========================  ===================================================
index        type                       purpose
==========  =========================  ===================================================
MID_CTR     counter                    anti-replay of provisioning: a package's sequence
                                       number must be MID_CTR + 1 (SGP.32 counterValue)
MID_STATE   ordinary, 256 bytes        one lifecycle byte per MID slot; PolicyNV checks it
                                       (use-gated K is refused unless its byte is ACTIVE)
AUDIT       extend (SHA-256)           hash chain of lifecycle events, replayable from the
                                       host log
REG_CTR     counter                    version of the host registry file: a restored older
                                       copy (SQN rollback) has a lower number
==========  =========================  ===================================================

A MID provisioned through the network has, instead of its MID_STATE byte, a **lifecycle index
of its own** (:class:`LifecycleIndex`, handle ``STATE_BASE + slot``): 5 bytes, state ‖ u32
version, POLICYWRITE only, authPolicy = PolicyAuthorize(owner SHO's key, policyRef unique to
the MID). The owner signs one approval per transition — "from (state, version) to (state',
version + 1)": PolicyNV(index == old) ∧ PolicyCpHash(NV_Write of the new value) — so host
software (even with owner authorisation) cannot write it, another SHO's key cannot either,
and each approval works once (the version moves on). The first write (INSTALLED, 1) is
approved with PolicyNvWritten(NO) ∧ PolicyNV(MID_CTR == sequence − 1): it is written before
MID_CTR moves to the package's number, so it cannot be replayed into a re-created index
(counters never go back, not even when redefined). Threat 7 CM 1/10 (TR 33.812 §7.1.2.1).

The four shared indices: OWNERWRITE | OWNERREAD | AUTHREAD | NO_DA with an empty index authValue, so anyone
may read (PolicyNV reads MID_STATE with the index's own empty auth, a free password session)
and writes need owner authorisation (empty in the lab; a production device would gate writes
with PolicySigned by the DPF, see docs/provisioning.md §1.0). Slots are never reused: a DELETED
byte is terminal, so a surviving blob of a deleted use-gated MID can never pass PolicyNV again.
Counters are not ORDERLY: an orderly counter jumps after an unorderly shutdown, which would
look like a registry rollback. NV wear is discussed in :mod:`tpm.registry`.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tpm import lean_commands
from tpm.connection import TpmConnection
from tpm.lean import TpmRefused, tpm2b
from tpm.policy import (
    CC_NV_WRITE,
    PolicyAuthorize,
    PolicyCpHash,
    PolicyNv,
    PolicyNvWritten,
    PolicyStep,
    approval_hash,
    command_parameter_hash,
    policy_digest,
)
from trelab.errors import BadInput, Unavailable

__all__ = [
    "AUDIT",
    "INSTALLED_FIRST",
    "LIFECYCLE_SIZE",
    "MID_CTR",
    "MID_STATE",
    "REG_CTR",
    "STATE_BASE",
    "STATE_SLOTS",
    "Lifecycle",
    "LifecycleIndex",
    "MidState",
    "StateApproval",
    "audit_chain",
    "bump",
    "counter_defined",
    "define_lifecycle",
    "discard_lifecycle",
    "ensure_indices",
    "extend_audit",
    "forget_handles",
    "free_slots",
    "holds",
    "increment",
    "index_name",
    "lifecycle_handles",
    "name_changed",
    "nv_public",
    "read_audit",
    "read_counter",
    "read_lifecycle",
    "read_state",
    "read_states",
    "resource",
    "slot_states",
    "state_index_name",
    "state_location",
    "write_state",
]

MID_CTR = 0x01000110
MID_STATE = 0x01000111
AUDIT = 0x01000112
REG_CTR = 0x01000113
STATE_BASE = 0x01000200  # + slot: the per-MID lifecycle index
STATE_SLOTS = 256
LIFECYCLE_SIZE = 5
_AUDIT_INIT = b"trelab.audit.v1"


class MidState(enum.IntEnum):
    """Lifecycle byte of a slot in MID_STATE (TR 33.812 MID lifecycle, docs/provisioning.md §1.8)."""

    EMPTY = 0
    INSTALLED = 1
    ACTIVE = 2
    SUSPENDED = 3
    DELETED = 0xFF


_KINDS = {MID_CTR: "counter", MID_STATE: "ordinary", AUDIT: "extend", REG_CTR: "counter"}
_SIZES = {MID_CTR: 8, MID_STATE: STATE_SLOTS, AUDIT: 32, REG_CTR: 8}
_LABELS = {MID_CTR: "MID_CTR", MID_STATE: "MID_STATE", AUDIT: "AUDIT", REG_CTR: "REG_CTR"}


def nv_public(index: int, *, written: bool = True) -> Any:
    """The TPM2B_NV_PUBLIC of one of our indices, as defined (``written`` after first write)."""
    from tpm.tss import TPM2_ALG, TPM2_NT, TPM2B_NV_PUBLIC, TPMA_NV, TPMS_NV_PUBLIC

    if index not in _KINDS:
        raise BadInput(f"NV index 0x{index:08x} is not one of the MID store's")
    nt = {"counter": TPM2_NT.COUNTER, "ordinary": TPM2_NT.ORDINARY, "extend": TPM2_NT.EXTEND}
    attrs = int(TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHREAD | TPMA_NV.NO_DA)
    attrs |= int(nt[_KINDS[index]]) << int(TPMA_NV.TPM2_NT_SHIFT)
    if written:
        attrs |= int(TPMA_NV.WRITTEN)
    return TPM2B_NV_PUBLIC(
        nvPublic=TPMS_NV_PUBLIC(
            nvIndex=index, nameAlg=TPM2_ALG.SHA256, attributes=attrs, dataSize=_SIZES[index]
        )
    )


@functools.lru_cache(maxsize=8)
def index_name(index: int) -> bytes:
    """The name of an index once written: what PolicyNV hashes; computed without a TPM, so the
    operator can build a use-gated policy for any device of this profile."""
    return bytes(nv_public(index).get_name().marshal())[2:]  # drop the TPM2B size


def state_index_name() -> bytes:
    return index_name(MID_STATE)


def _fail(what: str, exc: Exception) -> Unavailable:
    return Unavailable(f"{what}: {exc}")


def resource(conn: TpmConnection, index: int) -> Any:
    """The connection's one ESYS object for NV ``index`` (TPM2_NV_ReadPublic once, then
    remembered; ESYS keeps its name current across writes). Never close it: it is shared;
    :func:`forget_handles` and :func:`_undefine` drop it."""
    facts = conn.facts
    tr = facts.nv_objects.get(index)
    if tr is None:
        tr = facts.nv_objects[index] = conn.esys.tr_from_tpmpublic(index)
    return tr


def _remember(conn: TpmConnection, index: int, tr: Any) -> None:
    """``index`` exists and ``tr`` is its ESYS object (just defined by this connection)."""
    conn.facts.remember_nv(index, tr)


def _forget(conn: TpmConnection, index: int) -> Any:
    """Drop what the connection remembers of ``index``; returns its ESYS object, if any."""
    return conn.facts.forget_nv(index)


def name_changed(conn: TpmConnection, index: int) -> None:
    """Index ``index`` was written outside ESYS (the lean layer): its first write set
    TPMA_NV_WRITTEN, so ESYS's object for it carries the name from before. Drop that object
    (local to ESYS, no TPM command); :func:`resource` reads the index afresh when next asked."""
    defined = index in conn.facts.nv_defined
    tr = _forget(conn, index)
    if defined:
        conn.facts.nv_defined.add(index)  # still defined: only the name moved
    if tr is not None:
        with contextlib.suppress(Exception):
            conn.esys.tr_close(tr)


@contextlib.contextmanager
def _handle(conn: TpmConnection, index: int) -> Iterator[Any]:
    yield resource(conn, index)


def forget_handles(
    conn: TpmConnection, handles: tuple[int, ...] = (MID_CTR, MID_STATE, AUDIT, REG_CTR)
) -> None:
    """Drop ESYS's cached resource objects for ``handles`` (before TPM2_Clear makes them stale)
    and what the connection remembers of them."""
    conn.facts.store_indices_checked = False
    if 0x81000001 in handles:  # the SRK (tpm.mid.SRK_HANDLE): its remembered object goes too
        conn.facts.srk = None
    for handle in handles:
        tr = _forget(conn, handle)
        with contextlib.suppress(Exception):
            if tr is None and _defined(conn, handle):
                tr = conn.esys.tr_from_tpmpublic(handle)
                _forget(conn, handle)
            if tr is not None:
                conn.esys.tr_close(tr)


def _defined(conn: TpmConnection, index: int) -> bool:
    """Is NV ``index`` defined? A yes is remembered for the connection (an index goes only
    through :func:`_undefine` or TPM2_Clear, which forget it)."""
    known = conn.facts.nv_defined
    if index in known:
        return True
    if index in lean_commands.handles(conn, index, 1):
        known.add(index)
        return True
    return False


_WRITTEN = 0x20000000  # TPMA_NV_WRITTEN (Part 2 §13.4)


def _public(conn: TpmConnection, handle: int) -> lean_commands.NvPublic:
    """TPM2_NV_ReadPublic of a defined index on the lean layer (no session: nothing for ESYS to
    compute).

    Raises:
        Unavailable: the TPM refuses (the index went meanwhile).
    """
    try:
        return lean_commands.nv_read_public(conn, handle)
    except TpmRefused as exc:
        raise _fail(f"cannot read the public area of NV index 0x{handle:08x}", exc) from None


def _undefine(conn: TpmConnection, handle: int) -> None:
    """TPM2_NV_UndefineSpace (owner auth); ESYS drops its object for the handle.

    Raises:
        tpm.tss.TSS2_Exception: the TPM refuses.
    """
    from tpm.tss import ESYS_TR

    tr = resource(conn, handle)
    _forget(conn, handle)
    conn.esys.nv_undefine_space(tr, ESYS_TR.OWNER)


def ensure_indices(conn: TpmConnection) -> list[str]:
    """Define whichever of the four indices is absent and initialise it (counters incremented
    once, MID_STATE zero-filled, AUDIT extended with a fixed marker) so every index is WRITTEN
    and its name stable. Returns the labels of the indices it defined.

    Raises:
        Unavailable: the TPM refuses (owner auth set, NV full), or an index exists with other
            attributes (someone else's index at our handle).
    """
    from tpm.tss import ESYS_TR, TSS2_Exception

    esys = conn.esys
    made: list[str] = []
    if conn.facts.store_indices_checked:
        return made
    for index in (MID_CTR, MID_STATE, AUDIT, REG_CTR):
        label = _LABELS[index]
        try:
            if _defined(conn, index):
                with _handle(conn, index) as tr:
                    _public, name = esys.nv_read_public(tr)
                if bytes(name.marshal())[2:] != index_name(index):
                    raise Unavailable(
                        f"NV index 0x{index:08x} ({label}) exists with other attributes",
                        fix="trelab tpm mid reset --yes (or free the index)",
                    )
                continue
            tr = esys.nv_define_space(None, nv_public(index, written=False), ESYS_TR.OWNER)
            _remember(conn, index, tr)
            kind = _KINDS[index]
            if kind == "counter":
                esys.nv_increment(tr, auth_handle=ESYS_TR.OWNER)
            elif kind == "ordinary":
                esys.nv_write(tr, bytes(_SIZES[index]), 0, auth_handle=ESYS_TR.OWNER)
            else:
                esys.nv_extend(tr, _AUDIT_INIT, auth_handle=ESYS_TR.OWNER)
            made.append(label)
        except TSS2_Exception as exc:
            raise _fail(f"cannot define NV index {label} (0x{index:08x})", exc) from None
    conn.facts.store_indices_checked = True
    return made


def _read(conn: TpmConnection, index: int, size: int, offset: int = 0) -> bytes:
    """NV_Read with the index's own empty authValue, through the lean layer (a password
    session: nothing to compute, so nothing for ESYS to do)."""
    try:
        return lean_commands.nv_read(conn, index, size, offset)
    except TpmRefused as exc:
        raise _fail(f"cannot read {_LABELS[index]}", exc) from None


def read_counter(conn: TpmConnection, index: int = MID_CTR) -> int:
    """Current value of counter ``index`` (MID_CTR or REG_CTR).

    Raises:
        Unavailable: index absent (e.g. after TPM2_Clear) or unreadable.
    """
    if _KINDS.get(index) != "counter":
        raise BadInput(f"NV index 0x{index:08x} is not a counter")
    if not _defined(conn, index):
        raise Unavailable(
            f"NV counter {_LABELS[index]} is not defined (TPM cleared?)",
            fix="trelab tpm mid reset --yes",
        )
    return int.from_bytes(_read(conn, index, 8), "big")


def counter_defined(conn: TpmConnection, index: int) -> bool:
    return _defined(conn, index)


def increment(conn: TpmConnection, index: int = MID_CTR) -> int:
    """TPM2_NV_Increment; returns the new value (one NV write, one read).

    Raises:
        Unavailable: the TPM refuses.
    """
    bump(conn, index)
    return read_counter(conn, index)


def bump(conn: TpmConnection, index: int) -> None:
    """TPM2_NV_Increment without reading the value back (the caller knows it).

    Raises:
        Unavailable: the TPM refuses.
    """
    try:
        lean_commands.nv_increment(conn, index)
    except TpmRefused as exc:
        raise _fail(f"cannot increment {_LABELS[index]}", exc) from None


def read_states(conn: TpmConnection) -> bytes:
    """All MID_STATE bytes (one per slot)."""
    return _read(conn, MID_STATE, STATE_SLOTS)


def state_location(conn: TpmConnection, slot: int) -> tuple[int, int, int]:
    """(NV handle, size, offset) of what holds ``slot``'s state — what a receipt certifies:
    its written lifecycle index (state ‖ version), else its MID_STATE byte."""
    if read_lifecycle(conn, slot) is not None:
        return STATE_BASE + slot, LIFECYCLE_SIZE, 0
    return MID_STATE, 1, slot


def slot_states(conn: TpmConnection) -> bytes:
    """Every slot's state byte as :func:`read_state` gives it: MID_STATE, overlaid by the
    lifecycle index of each slot that has a written one."""
    states = bytearray(read_states(conn))
    for handle in lifecycle_handles(conn):
        value = read_lifecycle(conn, handle - STATE_BASE)
        if value is not None:
            states[handle - STATE_BASE] = int(value.state)
    return bytes(states)


def read_state(conn: TpmConnection, slot: int) -> MidState:
    """A slot's lifecycle state: its own lifecycle index once written, else its MID_STATE byte."""
    _check_slot(slot)
    own = read_lifecycle(conn, slot)
    if own is not None:
        return own.state
    value = _read(conn, MID_STATE, 1, slot)[0]
    try:
        return MidState(value)
    except ValueError:
        raise Unavailable(f"MID_STATE slot {slot} holds an unknown value {value}") from None


def lifecycle_handles(conn: TpmConnection) -> tuple[int, ...]:
    """The per-MID lifecycle indices defined in this TPM."""
    found = lean_commands.handles(conn, STATE_BASE, STATE_SLOTS)
    return tuple(h for h in found if STATE_BASE <= h < STATE_BASE + STATE_SLOTS)


def free_slots(conn: TpmConnection) -> list[int]:
    """Slots whose MID_STATE byte is EMPTY and whose lifecycle index is absent or was never
    written (left by an import that did not finish; :func:`define_lifecycle` reclaims it)."""
    states = read_states(conn)
    taken = set()
    for handle in lifecycle_handles(conn):
        if _public(conn, handle).attributes & _WRITTEN:
            taken.add(handle - STATE_BASE)
    return [i for i, b in enumerate(states) if b == MidState.EMPTY and i not in taken]


def _check_slot(slot: int) -> None:
    if not 0 <= slot < STATE_SLOTS:
        raise BadInput(f"MID slot {slot}: expected 0…{STATE_SLOTS - 1}")


def write_state(conn: TpmConnection, slot: int, state: MidState) -> None:
    """Set one slot's lifecycle byte (one NV write, owner auth).

    Raises:
        BadInput: slot out of range.
        Unavailable: the TPM refuses.
    """
    _check_slot(slot)
    try:
        lean_commands.nv_write(conn, MID_STATE, bytes((int(state),)), slot)
    except TpmRefused as exc:
        raise _fail(f"cannot write MID_STATE slot {slot}", exc) from None


def extend_audit(conn: TpmConnection, event: bytes) -> None:
    """TPM2_NV_Extend: AUDIT ← H(AUDIT ‖ event) (Part 3 §31.7); events are short canonical JSON.

    Raises:
        Unavailable: the TPM refuses.
    """
    if not 0 < len(event) <= 1024:
        raise BadInput("audit event: 1…1024 bytes")
    try:
        lean_commands.nv_extend(conn, AUDIT, event)
    except TpmRefused as exc:
        raise _fail("cannot extend AUDIT", exc) from None


def read_audit(conn: TpmConnection) -> bytes:
    return _read(conn, AUDIT, 32)


def audit_chain(events: list[bytes]) -> bytes:
    """The AUDIT value a log of ``events`` should produce, from the index's definition on
    (H(0³² ‖ marker), then H(prev ‖ event) per event)."""
    value = bytes(32)
    for event in [_AUDIT_INIT, *events]:
        value = hashlib.sha256(value + event).digest()
    return value


# ---- per-MID lifecycle index, written only with the owner's approval ----------------------------


@dataclass(frozen=True)
class Lifecycle:
    """The value of a lifecycle index: state byte ‖ u32 version (one more per transition)."""

    state: MidState
    version: int

    def encode(self) -> bytes:
        return bytes((int(self.state),)) + self.version.to_bytes(4, "big")

    @classmethod
    def decode(cls, data: bytes) -> Lifecycle:
        """Raises:
        BadInput: not 5 bytes, or an unknown state byte.
        """
        if len(data) != LIFECYCLE_SIZE:
            raise BadInput(f"lifecycle value: {len(data)} bytes, expected {LIFECYCLE_SIZE}")
        try:
            state = MidState(data[0])
        except ValueError:
            raise BadInput(f"lifecycle value: unknown state byte {data[0]}") from None
        return cls(state, int.from_bytes(data[1:], "big"))

    def then(self, state: MidState) -> Lifecycle:
        return Lifecycle(state, self.version + 1)


INSTALLED_FIRST = Lifecycle(MidState.INSTALLED, 1)


@functools.lru_cache(maxsize=256)
def _lifecycle_name(index: LifecycleIndex, written: bool) -> bytes:
    # a pure function of the (frozen) index, on the operator's hot path: plain bytes
    from tpm.marshal import ALG_SHA256, nv_name

    return nv_name(
        index.handle, ALG_SHA256, index.attributes(written=written), index.policy(), LIFECYCLE_SIZE
    )


@dataclass(frozen=True)
class LifecycleIndex:
    """One MID's lifecycle index (module docstring): slot, the owner's policy-signing key name
    (``authority_name``, TPM name of its TPM2B_PUBLIC) and the MID's ``ref`` (policyRef)."""

    slot: int
    authority_name: bytes
    ref: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.slot < STATE_SLOTS:
            raise BadInput(f"MID slot {self.slot}: expected 0…{STATE_SLOTS - 1}")
        if not 1 <= len(self.ref) <= 32:
            raise BadInput("lifecycle policyRef: 1…32 bytes")

    @property
    def handle(self) -> int:
        return STATE_BASE + self.slot

    @staticmethod
    def attributes(*, written: bool = True) -> int:
        from tpm.tss import TPM2_NT, TPMA_NV

        attrs = int(
            TPMA_NV.POLICYWRITE
            | TPMA_NV.WRITEALL
            | TPMA_NV.AUTHREAD
            | TPMA_NV.OWNERREAD
            | TPMA_NV.NO_DA
        )
        attrs |= int(TPM2_NT.ORDINARY) << int(TPMA_NV.TPM2_NT_SHIFT)
        if written:
            attrs |= int(TPMA_NV.WRITTEN)
        return attrs

    def policy(self) -> bytes:
        """Its authPolicy: PolicyAuthorize(owner key, ref)."""
        return policy_digest([PolicyAuthorize(self.authority_name, self.ref)])

    def public(self, *, written: bool = True) -> Any:
        from tpm.tss import TPM2_ALG, TPM2B_NV_PUBLIC, TPMS_NV_PUBLIC

        return TPM2B_NV_PUBLIC(
            nvPublic=TPMS_NV_PUBLIC(
                nvIndex=self.handle,
                nameAlg=TPM2_ALG.SHA256,
                attributes=self.attributes(written=written),
                authPolicy=self.policy(),
                dataSize=LIFECYCLE_SIZE,
            )
        )

    def name(self, *, written: bool = True) -> bytes:
        return _lifecycle_name(self, written)

    def active(self) -> PolicyNv:
        """The step a use-gated K's policy runs: this index's state byte == ACTIVE."""
        return PolicyNv(self.handle, self.name(), bytes((MidState.ACTIVE,)), 0)

    def write_cp_hash(self, value: Lifecycle, *, written: bool) -> bytes:
        """cpHash of TPM2_NV_Write(authHandle = nvIndex = this index, ``value``, offset 0)."""
        name = self.name(written=written)
        params = tpm2b(value.encode()) + (0).to_bytes(2, "big")
        return command_parameter_hash(CC_NV_WRITE, (name, name), params)

    def approval_steps(
        self, old: Lifecycle | None, new: Lifecycle, *, counter: int | None = None
    ) -> list[PolicyStep]:
        """What the owner approves for one write: from ``old`` (None: the first write, while
        MID_CTR == ``counter``) to ``new``."""
        if old is None:
            if counter is None:
                raise BadInput("the first lifecycle write is bound to MID_CTR: counter needed")
            return [
                PolicyNvWritten(False),
                PolicyNv(MID_CTR, index_name(MID_CTR), counter.to_bytes(8, "big"), 0),
                PolicyCpHash(self.write_cp_hash(new, written=False)),
            ]
        return [
            PolicyNv(self.handle, self.name(), old.encode(), 0),
            PolicyCpHash(self.write_cp_hash(new, written=True)),
        ]


@dataclass(frozen=True)
class StateApproval:
    """The owner's signature approving one lifecycle write (TPM2_PolicyAuthorize, §23.16):
    ECDSA P-256 over aHash = H(approvedPolicy ‖ ref). ``old`` None = the first write,
    bound to MID_CTR == ``counter``."""

    index: LifecycleIndex
    old: Lifecycle | None
    new: Lifecycle
    signature: bytes
    counter: int | None = None

    def steps(self) -> list[PolicyStep]:
        return self.index.approval_steps(self.old, self.new, counter=self.counter)

    def approved_policy(self) -> bytes:
        return policy_digest(self.steps())

    @property
    def policy_ref(self) -> bytes:
        return self.index.ref

    @classmethod
    def sign(
        cls,
        key: Any,
        index: LifecycleIndex,
        old: Lifecycle | None,
        new: Lifecycle,
        *,
        counter: int | None = None,
    ) -> StateApproval:
        """The owner side: sign the approval with ``key`` (an EC P-256 private key)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, utils

        unsigned = cls(index, old, new, b"", counter)
        a_hash = approval_hash(unsigned.approved_policy(), index.ref)
        return cls(
            index, old, new, key.sign(a_hash, ec.ECDSA(utils.Prehashed(hashes.SHA256()))), counter
        )


def _lifecycle_public(conn: TpmConnection, handle: int) -> lean_commands.NvPublic | None:
    if not _defined(conn, handle):
        return None
    return _public(conn, handle)


@functools.lru_cache(maxsize=256)
def _defined_public(index: LifecycleIndex) -> bytes:
    """The marshalled TPM2B_NV_PUBLIC ``index`` is defined with (a pure function of it)."""
    return bytes(index.public(written=False).marshal())


def define_lifecycle(conn: TpmConnection, index: LifecycleIndex) -> None:
    """TPM2_NV_DefineSpace of ``index`` (owner auth) unless it exists, unwritten or written,
    with exactly this definition.

    Raises:
        Unavailable: the handle holds another index (another MID's, or a foreign one).
    """
    from tpm.tss import TSS2_Exception

    found = _lifecycle_public(conn, index.handle)
    if found is not None:
        if found.name in (index.name(written=False), index.name()):
            return
        if not found.attributes & _WRITTEN:
            # left by an import that never wrote its first state: it guards nothing
            try:
                _undefine(conn, index.handle)
            except TSS2_Exception as exc:
                raise _fail(
                    f"cannot reclaim the lifecycle index of slot {index.slot}", exc
                ) from None
            found = None
    if found is not None:
        raise Unavailable(
            f"MID slot {index.slot}: its lifecycle index 0x{index.handle:08x} belongs to"
            " another MID",
            fix="choose another slot (trelab tpm mid list)",
        )
    try:  # owner password, no session: on the lean layer (ESYS makes its object when asked)
        lean_commands.nv_define_space(conn, _defined_public(index))
    except TpmRefused as exc:
        raise _fail(f"cannot define the lifecycle index of slot {index.slot}", exc) from None
    conn.facts.nv_defined.add(index.handle)


def discard_lifecycle(conn: TpmConnection, slot: int) -> bool:
    """Undefine a slot's lifecycle index (owner auth), if there is one: the MID's K can never
    pass PolicyNV again (the index cannot be re-created written: its first write is bound to
    a MID_CTR value that has passed). Returns whether an index went.

    Raises:
        Unavailable: the TPM refuses.
    """
    from tpm.tss import TSS2_Exception

    _check_slot(slot)
    if not _defined(conn, STATE_BASE + slot):
        return False
    try:
        _undefine(conn, STATE_BASE + slot)
    except TSS2_Exception as exc:
        raise _fail(f"cannot discard the lifecycle index of slot {slot}", exc) from None
    return True


def holds(conn: TpmConnection, index: LifecycleIndex, value: Lifecycle) -> bool:
    """Is ``index`` itself (not another MID's index at its handle) written with ``value``?
    (An interrupted import of the same package may have written its first state.)"""
    if read_lifecycle(conn, index.slot) != value:
        return False
    found = _lifecycle_public(conn, index.handle)
    return found is not None and found.name == index.name()


def read_lifecycle(conn: TpmConnection, slot: int) -> Lifecycle | None:
    """A slot's lifecycle index value; None when the index is absent or not written yet.

    Raises:
        Unavailable: unreadable, or an index at that handle that is not a lifecycle index.
    """
    _check_slot(slot)
    found = _lifecycle_public(conn, STATE_BASE + slot)
    if found is None:
        return None
    if found.data_size != LIFECYCLE_SIZE:
        raise Unavailable(f"NV index 0x{STATE_BASE + slot:08x} is not a MID lifecycle index")
    if not found.attributes & _WRITTEN:
        return None
    try:
        data = lean_commands.nv_read(conn, STATE_BASE + slot, LIFECYCLE_SIZE)
    except TpmRefused as exc:
        raise _fail(f"cannot read the lifecycle index of slot {slot}", exc) from None
    try:
        return Lifecycle.decode(data)
    except BadInput as exc:
        raise Unavailable(f"lifecycle index of slot {slot}: {exc}") from None
