"""Edge: TPM. The NV indices of the MID store (provisioning.md §1.0): MID_CTR, MID_STATE,
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

All four: OWNERWRITE | OWNERREAD | AUTHREAD | NO_DA with an empty index authValue, so anyone
may read (PolicyNV reads MID_STATE with the index's own empty auth, a free password session)
and writes need owner authorisation (empty in the lab; a production device would gate writes
with PolicySigned by the DPF, see provisioning.md §1.0). Slots are never reused: a DELETED
byte is terminal, so a surviving blob of a deleted use-gated MID can never pass PolicyNV again.
Counters are not ORDERLY: an orderly counter jumps after an unorderly shutdown, which would
look like a registry rollback. NV wear is discussed in :mod:`tpm.registry`.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
from collections.abc import Iterator
from typing import Any

from tpm.connection import TpmConnection
from trelab.errors import BadInput, Unavailable

__all__ = [
    "AUDIT",
    "MID_CTR",
    "MID_STATE",
    "REG_CTR",
    "STATE_SLOTS",
    "MidState",
    "audit_chain",
    "counter_defined",
    "ensure_indices",
    "extend_audit",
    "forget_handles",
    "increment",
    "index_name",
    "nv_public",
    "read_audit",
    "read_counter",
    "read_state",
    "read_states",
    "state_index_name",
    "write_state",
]

MID_CTR = 0x01000110
MID_STATE = 0x01000111
AUDIT = 0x01000112
REG_CTR = 0x01000113
STATE_SLOTS = 256
_AUDIT_INIT = b"trelab.audit.v1"


class MidState(enum.IntEnum):
    """Lifecycle byte of a slot in MID_STATE (TR 33.812 MID lifecycle, provisioning.md §1.8)."""

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
    from tpm2_pytss import TPM2B_NV_PUBLIC, TPMS_NV_PUBLIC
    from tpm2_pytss.constants import TPM2_ALG, TPM2_NT, TPMA_NV

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


def index_name(index: int) -> bytes:
    """The name of an index once written: what PolicyNV hashes; computed without a TPM, so the
    operator can build a use-gated policy for any device of this profile."""
    return bytes(nv_public(index).get_name().marshal())[2:]  # drop the TPM2B size


def state_index_name() -> bytes:
    return index_name(MID_STATE)


def _fail(what: str, exc: Exception) -> Unavailable:
    return Unavailable(f"{what}: {exc}")


@contextlib.contextmanager
def _handle(conn: TpmConnection, index: int) -> Iterator[Any]:
    # ESYS keeps one resource object per TPM handle and tr_from_tpmpublic hands out that same
    # object to every caller, so closing it would pull it from under anyone else holding it:
    # NV and persistent handles stay open for the connection's life (see forget_handles).
    yield conn.esys.tr_from_tpmpublic(index)


def forget_handles(
    conn: TpmConnection, handles: tuple[int, ...] = (MID_CTR, MID_STATE, AUDIT, REG_CTR)
) -> None:
    """Drop ESYS's cached resource objects for ``handles`` (before TPM2_Clear makes them stale)."""
    for handle in handles:
        with contextlib.suppress(Exception):
            if _defined(conn, handle):
                conn.esys.tr_close(conn.esys.tr_from_tpmpublic(handle))


def _defined(conn: TpmConnection, index: int) -> bool:
    from tpm2_pytss.constants import TPM2_CAP

    _, caps = conn.esys.get_capability(TPM2_CAP.HANDLES, index, 1)
    return any(int(h) == index for h in caps.data.handles)


def ensure_indices(conn: TpmConnection) -> list[str]:
    """Define whichever of the four indices is absent and initialise it (counters incremented
    once, MID_STATE zero-filled, AUDIT extended with a fixed marker) so every index is WRITTEN
    and its name stable. Returns the labels of the indices it defined.

    Raises:
        Unavailable: the TPM refuses (owner auth set, NV full), or an index exists with other
            attributes (someone else's index at our handle).
    """
    from tpm2_pytss import TSS2_Exception
    from tpm2_pytss.constants import ESYS_TR

    esys = conn.esys
    made: list[str] = []
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
    return made


def _read(conn: TpmConnection, index: int, size: int, offset: int = 0) -> bytes:
    from tpm2_pytss import TSS2_Exception

    try:
        with _handle(conn, index) as tr:
            return bytes(conn.esys.nv_read(tr, size, offset, auth_handle=tr))
    except TSS2_Exception as exc:
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
    """TPM2_NV_Increment; returns the new value (one NV write).

    Raises:
        Unavailable: the TPM refuses.
    """
    from tpm2_pytss import TSS2_Exception
    from tpm2_pytss.constants import ESYS_TR

    try:
        with _handle(conn, index) as tr:
            conn.esys.nv_increment(tr, auth_handle=ESYS_TR.OWNER)
    except TSS2_Exception as exc:
        raise _fail(f"cannot increment {_LABELS[index]}", exc) from None
    return read_counter(conn, index)


def read_states(conn: TpmConnection) -> bytes:
    """All MID_STATE bytes (one per slot)."""
    return _read(conn, MID_STATE, STATE_SLOTS)


def read_state(conn: TpmConnection, slot: int) -> MidState:
    _check_slot(slot)
    value = _read(conn, MID_STATE, 1, slot)[0]
    try:
        return MidState(value)
    except ValueError:
        raise Unavailable(f"MID_STATE slot {slot} holds an unknown value {value}") from None


def _check_slot(slot: int) -> None:
    if not 0 <= slot < STATE_SLOTS:
        raise BadInput(f"MID slot {slot}: expected 0…{STATE_SLOTS - 1}")


def write_state(conn: TpmConnection, slot: int, state: MidState) -> None:
    """Set one slot's lifecycle byte (one NV write, owner auth).

    Raises:
        BadInput: slot out of range.
        Unavailable: the TPM refuses.
    """
    from tpm2_pytss import TSS2_Exception
    from tpm2_pytss.constants import ESYS_TR

    _check_slot(slot)
    try:
        with _handle(conn, MID_STATE) as tr:
            conn.esys.nv_write(tr, bytes((int(state),)), slot, auth_handle=ESYS_TR.OWNER)
    except TSS2_Exception as exc:
        raise _fail(f"cannot write MID_STATE slot {slot}", exc) from None


def extend_audit(conn: TpmConnection, event: bytes) -> None:
    """TPM2_NV_Extend: AUDIT ← H(AUDIT ‖ event) (Part 3 §31.7); events are short canonical JSON.

    Raises:
        Unavailable: the TPM refuses.
    """
    from tpm2_pytss import TSS2_Exception
    from tpm2_pytss.constants import ESYS_TR

    if not 0 < len(event) <= 1024:
        raise BadInput("audit event: 1…1024 bytes")
    try:
        with _handle(conn, AUDIT) as tr:
            conn.esys.nv_extend(tr, event, auth_handle=ESYS_TR.OWNER)
    except TSS2_Exception as exc:
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
