"""Edge: TPM. The MID store inside the TPM: import, load, lifecycle, factory reset
(TR 33.812 §7.1.2.1 threats; docs/provisioning.md Part 1 §1.0, §1.6, §1.8).

Design, and why:

- **Transport to the EK.** The package is wrapped to the TPM's EK (the certified TRE
  identity), so only the TPM whose EK certificate the operator checked can open it. The EK
  never changes: its seed survives TPM2_Clear.
- **Per-MID parent bound to the owner epoch.** The operator wraps a fresh ECC P-256 storage
  key (the MID parent) to the EK and K, OPc/TOPc to that parent. The parent's USER role —
  needed to Import or Load anything under it — is PolicySecret(SRK) [∧ PolicyPCR for
  load-gated]. The SRK is the owner hierarchy's primary key: TPM2_Clear changes the storage
  seed, the new SRK has another name, and PolicySecret(old SRK) can never be satisfied again,
  so **every MID dies on factory reset while the EK stays**. (Observed on libtpms 0.9: even
  a child of the re-created, identical EK fails TPM2_Load with TPM_RC_INTEGRITY after
  Clear, so Clear evidently also changes what protects the EK's children; the SRK binding is
  the explicit lock that does not depend on that.) The SRK (TCG template, ECC P-256) is
  persisted at 0x81000001.
- **Load-gated** = the PCR check happens at TPM2_Load of K (parent policy); K itself then
  needs only the empty password, one plain command per E_K. **Use-gated** and
  **operator-updatable** put the checks in K's own policy (:mod:`tpm.package`).
- **Anti-replay**: a package's sequence number must be MID_CTR + 1; MID_CTR is incremented
  only after the TPM accepted the import. **Lifecycle**: MID_STATE byte per slot, or — for a
  package with a lifecycle binding (the network's) — the MID's own index that only the
  owning SHO's approvals can write (:mod:`tpm.nv`): its first write (INSTALLED, 1) comes
  before MID_CTR moves. Without the owner's approval such a MID can only be *discarded*
  (index undefined: K is dead for good, no deletion proof). The AUDIT index is extended for
  install, state changes and delete.

Object slots: swtpm holds three transient objects and has no resource manager, so loading
runs parent → OPc (unseal, flush) → K → flush parent, and only one MID can stay resident
while another loads (the kernel's /dev/tpmrm0 virtualises slots). Everything created here is
flushed on exit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

from aka.algorithm import AkaAlgorithm
from tpm import lean, lean_commands, nv, tss
from tpm.connection import TpmConnection
from tpm.ek import loaded_ek
from tpm.keyholder import (
    Mode,
    SealedAes,
    SealedHmac,
    SealedKeccak,
    SymmetricSupport,
    TpmBlockCipher,
    TpmHmac,
    probe_symmetric,
    translate,
)
from tpm.lean import ResponseAuthFailed, Session, TpmRefused
from tpm.lean_commands import LeanObject
from tpm.lifecycle_write import write_lifecycle
from tpm.mid_errors import MidRefused, PackageRejected
from tpm.package import (
    DEFAULT_PCRS,
    AlgorithmSpec,
    MidPolicy,
    MidSecrets,
    Package,
    Target,
    build_package,
    check_package,
    operator_public,
    sign_approval,
)
from tpm.policy import PolicyAuthorize, approval_hash, parse_pcr_selection, pcr_digest
from tpm.policy_session import PolicyRunner, set_session_attributes, start_session
from tpm.registry import MidRecord, Registry, RegistryData, StoredObject, now
from trelab.errors import BadInput, LocalProtocolError, TrelabError, Unavailable

__all__ = [
    "SRK_HANDLE",
    "AuditState",
    "DeviceInfo",
    "Layer",
    "LoadedMid",
    "audit_state",
    "delete_mid",
    "device_info",
    "ek_name",
    "ensure_srk",
    "factory_reset",
    "import_package",
    "log_event",
    "object_name",
    "pcr_values",
    "reauthorize",
    "repair_audit",
    "set_state",
    "verify_audit",
    "wrap_for_device",
]

SRK_HANDLE = 0x81000001
_RH_ENDORSEMENT = 0x4000000B
_RC_POLICY = 0x126  # TPM_RC_POLICY: PolicyNV's comparison failed
#: the client stack a loaded MID's commands go through (:class:`LoadedMid`)
Layer = Literal["lean", "esys"]
_EK_HANDLES = {"rsa2048": 0x81010001, "ecc": 0x81010016}
_ALG_SHA256 = 0x000B
_SHA256_TAG = _ALG_SHA256.to_bytes(2, "big")


def object_name(public: Any) -> bytes:
    """TPM name of a TPM2B_PUBLIC: nameAlg ‖ H(marshalled TPMT_PUBLIC) (Part 1 §16)."""
    area = public.publicArea
    if int(area.nameAlg) == _ALG_SHA256:  # the common case, without tpm2-pytss's detour
        return _SHA256_TAG + hashlib.sha256(bytes(area.marshal())).digest()
    return bytes(public.get_name().marshal())[2:]


def _srk_template() -> Any:
    """TCG SRK template (Provisioning Guidance §7.5.1), ECC NIST P-256, AES-128-CFB."""
    from tpm.tss import TPM2B_PUBLIC, TPMA_OBJECT

    return TPM2B_PUBLIC.parse(
        "ecc256:aes128cfb",
        objectAttributes=TPMA_OBJECT.FIXEDTPM
        | TPMA_OBJECT.FIXEDPARENT
        | TPMA_OBJECT.SENSITIVEDATAORIGIN
        | TPMA_OBJECT.USERWITHAUTH
        | TPMA_OBJECT.NODA
        | TPMA_OBJECT.RESTRICTED
        | TPMA_OBJECT.DECRYPT,
    )


def ensure_srk(conn: TpmConnection) -> tuple[Any, Any]:
    """The owner's SRK at 0x81000001 as (ESYS handle, TPM2B_PUBLIC), created and persisted if
    absent; remembered for the connection (:attr:`tpm.tss.TpmFacts.srk`: only TPM2_Clear
    removes it, and :func:`tpm.nv.forget_handles` forgets it then). The handle is ESYS's
    shared object for a persistent handle: neither flush nor close it (ESYS hands the same
    object to every caller).

    Raises:
        Unavailable: the TPM refuses (e.g. owner auth set).
    """
    known = conn.facts.srk
    if known is not None:
        return known[0], known[1]
    from tpm.tss import ESYS_TR, TPM2_CAP, TSS2_Exception

    esys = conn.esys
    try:
        _, caps = esys.get_capability(TPM2_CAP.HANDLES, SRK_HANDLE, 1)
        if any(int(h) == SRK_HANDLE for h in caps.data.handles):
            handle = esys.tr_from_tpmpublic(SRK_HANDLE)
            public, _, _ = esys.read_public(handle)
        else:
            transient, public, _, _, _ = esys.create_primary(None, _srk_template(), ESYS_TR.OWNER)
            try:
                handle = esys.evict_control(ESYS_TR.OWNER, transient, SRK_HANDLE)
            finally:
                conn.flush(transient)
    except TSS2_Exception as exc:
        raise Unavailable(f"cannot load or create the SRK (0x{SRK_HANDLE:08x}): {exc}") from None
    conn.facts.srk = (handle, public, object_name(public))
    return handle, public


def known_srk_name(conn: TpmConnection) -> bytes:
    """The SRK's name (:func:`ensure_srk`), computed once per connection."""
    ensure_srk(conn)
    assert conn.facts.srk is not None
    return conn.facts.srk[2]


def pcr_values(conn: TpmConnection, selection: str) -> list[bytes]:
    """Current values of the selected PCRs, in selection order (TPM2_PCR_Read, ≤ 8 per call).

    Raises:
        BadInput: malformed selection.
        Unavailable: the bank or a PCR is not there.
    """
    bank, pcrs = parse_pcr_selection(selection)
    values: list[bytes] = []
    pending = list(pcrs)
    try:
        while pending:
            chunk = pending[:8]
            got = lean_commands.pcr_read(
                conn, lean_commands.pcr_selection(f"{bank}:{','.join(map(str, chunk))}")
            )
            if not got:
                raise Unavailable(f"the TPM has no {bank} bank (or PCRs {chunk})")
            values += got[: len(chunk)]
            pending = pending[len(got) :]
    except TpmRefused as exc:
        raise Unavailable(f"cannot read PCRs {selection}: {exc}") from None
    return values


@dataclass(frozen=True)
class DeviceInfo:
    """What the operator stand-in learns from the device before wrapping: the target keys,
    the PCR digest to bind, the next sequence number and a free slot, symmetric support."""

    target: Target
    pcr_digest: bytes
    next_seq: int
    free_slot: int
    symmetric: SymmetricSupport


def device_info(conn: TpmConnection, selection: str) -> DeviceInfo:
    """Read it from the TPM (defining the NV indices on first use).

    Raises:
        Unavailable: no free slot, or the TPM refuses.
    """
    nv.ensure_indices(conn)
    with loaded_ek(conn) as (_ek, ek_public):
        ek_blob = bytes(ek_public.marshal())
    _srk, srk_public = ensure_srk(conn)
    free = nv.free_slots(conn)
    if not free:
        raise Unavailable("no free MID slot left in MID_STATE", fix="trelab tpm mid reset --yes")
    return DeviceInfo(
        target=Target(ek_public=ek_blob, srk_name=object_name(srk_public)),
        pcr_digest=pcr_digest(pcr_values(conn, selection)),
        next_seq=nv.read_counter(conn, nv.MID_CTR) + 1,
        free_slot=free[0],
        symmetric=probe_symmetric(conn),
    )


def wrap_for_device(
    conn: TpmConnection,
    secrets: MidSecrets,
    *,
    imsi: str,
    algorithm: AlgorithmSpec,
    amf: bytes,
    sqn_ms: bytes,
    kind: str = "load",
    selection: str = DEFAULT_PCRS,
    form: str | None = None,
    operator_key: Any = None,
    seq: int | None = None,
    slot: int | None = None,
) -> Package:
    """Operator stand-in (``trelab tpm mid wrap``): read :func:`device_info` from this TPM
    and build a package for it. ``form`` defaults to sealed for TUAK or a TPM without
    TPM2_EncryptDecrypt2 (the default, bus-protected AKA cannot run symcipher there), else
    symcipher; ``operator_key`` is required for ``authorize``.

    Raises:
        BadInput: options that do not fit together.
    """
    info = device_info(conn, selection)
    if form is None:  # symcipher only where the default, bus-protected AKA can run it
        if algorithm.name == "hmac-sha256":
            form = "hmac"
        elif algorithm.name == "tuak" or info.symmetric.command != "EncryptDecrypt2":
            form = "sealed"
        else:
            form = "symcipher"
    slot = info.free_slot if slot is None else slot
    public = approval = None
    if kind == "authorize":
        if operator_key is None:
            raise BadInput("authorize needs the operator's policy-signing key", field="policy")
        public = operator_public(operator_key)
        approval = sign_approval(operator_key, selection, info.pcr_digest, slot)
    policy = MidPolicy(
        kind=kind,  # type: ignore[arg-type]  # checked by MidPolicy
        selection=selection,
        pcr_digest=info.pcr_digest,
        slot=slot,
        pin=secrets.pin is not None,
        command=info.symmetric.command or "EncryptDecrypt2",  # type: ignore[arg-type]
        k_form=form,  # type: ignore[arg-type]
        operator_key=public,
        approval=approval,
    )
    return build_package(
        info.target,
        secrets,
        seq=info.next_seq if seq is None else seq,
        imsi=imsi,
        algorithm=algorithm,
        amf=amf,
        sqn_ms=sqn_ms,
        policy=policy,
    )


def _event(kind: str, record: MidRecord, **extra: Any) -> str:
    body = {"event": kind, "mid": record.mid, "slot": record.slot, "seq": record.seq, **extra}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def _unmarshal(cls_name: type[Any], blob: bytes) -> Any:
    from tpm.tss import unmarshal

    return unmarshal(cls_name, blob)


# ---- import ---------------------------------------------------------------------------------------


def import_package(
    conn: TpmConnection,
    registry: Registry,
    package: Package,
    *,
    activate: bool = False,
    layer: Layer = "lean",
) -> MidRecord:
    """Check, import and record one MID package; MID_CTR, MID_STATE and AUDIT move only after
    the TPM accepted every object. Should writing the registry fail after that (disk full),
    the sequence number is spent and the operator must send a new package: a replay guard
    cannot be rolled back.

    Raises:
        PackageRejected: a check or the TPM refused it (nothing changed).
        MidRefused: the parent's PCR policy does not hold (load-gated package, other PCRs).
        RegistryRollback: the registry is stale.

    ``layer``: the TPM commands of the import (EK and parent policy sessions, three Imports,
    three Loads, the owner-approved first lifecycle write) through the lean layer (default)
    or ESYS (the reference).
    """
    if layer not in ("lean", "esys"):
        raise BadInput(f"TPM client layer {layer!r}: expected lean or esys")
    from tpm.tss import TPM2_ALG, TPMT_SYM_DEF_OBJECT, TSS2_Exception

    check_package(package)
    install = package.install()
    if install is not None and activate:
        raise BadInput("a MID with a lifecycle binding is activated by its owner, not on import")
    nv.ensure_indices(conn)
    esys = conn.esys
    no_inner = TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL)
    with registry.locked(), loaded_ek(conn) as (ek, ek_public):
        this_ek = object_name(ek_public)
        data = registry.read_checked(conn, this_ek)
        repair_audit(conn, data)
        if package.ek_name != this_ek:
            raise PackageRejected("package is for another TPM (EK name differs)")
        srk, srk_public = ensure_srk(conn)
        srk_name = object_name(srk_public)
        if package.srk_name != srk_name:
            raise PackageRejected(
                "package was made for another owner epoch (SRK differs: TPM cleared since?)"
            )
        counter = nv.read_counter(conn, nv.MID_CTR)
        if package.seq <= counter:
            raise PackageRejected(
                f"sequence number {package.seq} already used (MID_CTR = {counter}): replayed package"
            )
        if package.seq != counter + 1:
            raise PackageRejected(
                f"sequence number {package.seq} out of order: expected {counter + 1}"
            )
        slot = package.policy.slot
        resumed = install is not None and nv.holds(conn, install.index, nv.INSTALLED_FIRST)
        if package.mid_id in data.mids or (
            not resumed and nv.read_state(conn, slot) != nv.MidState.EMPTY
        ):
            raise PackageRejected(f"MID slot {slot} is already used (or the MID is installed)")

        def tpm_import(parent: Any, label: str, obj: Any, session: Any) -> Any:
            try:
                return esys.import_(
                    parent,
                    b"",
                    _unmarshal(tss.TPM2B_PUBLIC, obj.public),
                    _unmarshal(tss.TPM2B_PRIVATE, obj.duplicate),
                    _unmarshal(tss.TPM2B_ENCRYPTED_SECRET, obj.seed),
                    no_inner,
                    session1=session,
                )
            except TSS2_Exception as exc:
                raise PackageRejected(
                    f"the TPM refused to import the {label} ({exc}): the package was altered "
                    "or is not for this TPM"
                ) from None

        if layer == "lean":
            parent_blob, privates = _import_lean(conn, package, ek, ek_public, srk_name)
        else:
            parent_blob, privates = _import_esys(
                conn, package, ek, ek_public, srk, srk_name, tpm_import
            )

        state = nv.MidState.ACTIVE if activate else nv.MidState.INSTALLED
        if install is not None and not resumed:
            # owner-approved, while MID_CTR is still seq - 1 (tpm.nv docstring)
            nv.define_lifecycle(conn, install.index)
            try:
                write_lifecycle(
                    conn,
                    install,
                    package.policy.lifecycle.authority,  # type: ignore[union-attr]
                    layer=layer,
                )
            except MidRefused as exc:
                raise PackageRejected(
                    f"the owner's approval of INSTALLED is refused: {exc}"
                ) from None
        # committed: the sequence number is used up from here on
        if nv.increment(conn, nv.MID_CTR) != package.seq:
            raise PackageRejected("MID_CTR moved during the import (concurrent provisioning?)")
        if install is None:
            nv.write_state(conn, slot, state)
        record = MidRecord(
            mid=package.mid_id,
            imsi=package.imsi,
            slot=slot,
            seq=package.seq,
            algorithm=package.algorithm,
            amf=package.amf,
            policy=package.policy,
            parent=StoredObject(package.parent.public, parent_blob),
            k=StoredObject(package.k.public, privates["k"]),
            secret=StoredObject(package.secret.public, privates[package.secret_label]),
            sqn=_initial_sqn(package.sqn_ms),
            state=state.name.lower(),
            created=now(),
        )
        event = _event("install", record, state=record.state)
        log_event(conn, registry, data.with_mid(record), event, this_ek)
    return record


def _import_esys(
    conn: TpmConnection,
    package: Package,
    ek: Any,
    ek_public: Any,
    srk: Any,
    srk_name: bytes,
    tpm_import: Any,
) -> tuple[bytes, dict[str, bytes]]:
    """The import's TPM commands through ESYS (the reference): the parent under the EK, then
    K and OPc/TOPc under the parent, each loaded once to prove it loads. Returns the marshalled
    TPM2B_PRIVATEs (parent, and by label)."""
    from tpm.ek import ek_policy_session
    from tpm.tss import TSS2_Exception

    esys = conn.esys
    session = ek_policy_session(conn, ek_public)
    try:
        parent_private = tpm_import(ek, "parent", package.parent, session)
    finally:
        conn.flush(session)
    parent_public = _unmarshal(tss.TPM2B_PUBLIC, package.parent.public)
    session = ek_policy_session(conn, ek_public)
    try:
        parent = esys.load(ek, parent_private, parent_public, session1=session)
    except TSS2_Exception as exc:
        raise PackageRejected(f"the TPM refused to load the MID parent ({exc})") from None
    finally:
        conn.flush(session)
    try:
        with PolicyRunner(
            conn, package.policy.parent_steps(srk_name), handles={srk_name: srk}
        ) as runner:
            privates = {}
            for label, obj in (("k", package.k), (package.secret_label, package.secret)):
                with runner.use() as s:
                    privates[label] = tpm_import(parent, label, obj, s)
                with runner.use() as s:  # prove it loads, then drop it
                    try:
                        handle = esys.load(
                            parent,
                            privates[label],
                            _unmarshal(tss.TPM2B_PUBLIC, obj.public),
                            session1=s,
                        )
                    except TSS2_Exception as exc:
                        raise PackageRejected(
                            f"the TPM refused to load the imported {label} ({exc})"
                        ) from None
                conn.flush(handle)
    finally:
        conn.flush(parent)
    out = {label: bytes(private.marshal()) for label, private in privates.items()}
    return bytes(parent_private.marshal()), out


def _import_lean(
    conn: TpmConnection, package: Package, ek: Any, ek_public: Any, srk_name: bytes
) -> tuple[bytes, dict[str, bytes]]:
    """:func:`_import_esys` on the lean layer: the EK's policy session (PolicySecret on the
    endorsement hierarchy [PolicyOR]), the parent's (PolicySecret SRK [PolicyPCR])."""
    from tpm.ek import ek_policy_or_list

    memo = conn.facts.ek_branches  # the EK's PolicyOR branches: computed once per EK
    if memo is not None and memo[0] is ek_public:
        branches = memo[1]
    else:
        branches = ek_policy_or_list(ek_public)
        conn.facts.ek_branches = (ek_public, branches)
    ek_object = LeanObject(int(conn.esys.tr_get_tpm_handle(ek)), _ek_public_name(conn, ek_public))

    def ek_session() -> Session:
        return lean_commands.ek_session(conn, branches)

    def refused(label: str, exc: TpmRefused) -> PackageRejected:
        return PackageRejected(
            f"the TPM refused to import the {label} ({exc}): the package was altered or is not "
            "for this TPM"
        )

    obj = package.parent
    s = ek_session()
    try:
        parent_blob = lean_commands.import_object(
            conn, ek_object, obj.public, obj.duplicate, obj.seed, session=s
        )
    except TpmRefused as exc:
        raise refused("parent", exc) from None
    finally:
        lean_commands.flush_session(conn, s)
    s = ek_session()
    try:
        parent = lean_commands.load(conn, ek_object, parent_blob, obj.public, session=s)
    except TpmRefused as exc:
        raise PackageRejected(f"the TPM refused to load the MID parent ({exc})") from None
    finally:
        lean_commands.flush_session(conn, s)
    steps = package.policy.parent_steps(srk_name)
    srk_object = LeanObject(SRK_HANDLE, srk_name)
    privates: dict[str, bytes] = {}
    try:
        with lean_commands.session(conn, kind="policy", symmetric=False) as runner:
            for label, item in (("k", package.k), (package.secret_label, package.secret)):
                try:
                    lean_commands.run_policy(conn, runner, steps, {srk_name: srk_object})
                    privates[label] = lean_commands.import_object(
                        conn, parent, item.public, item.duplicate, item.seed, session=runner
                    )
                except TpmRefused as exc:
                    if exc.command_code == lean.CC.POLICY_PCR:
                        raise MidRefused(
                            "PolicyPCR: the PCR values differ from the authorised ones"
                        ) from None
                    raise refused(label, exc) from None
                try:  # prove it loads, then drop it
                    lean_commands.run_policy(conn, runner, steps, {srk_name: srk_object})
                    loaded = lean_commands.load(
                        conn, parent, privates[label], item.public, session=runner
                    )
                except TpmRefused as exc:
                    raise PackageRejected(
                        f"the TPM refused to load the imported {label} ({exc})"
                    ) from None
                lean_commands.flush_object(conn, loaded.handle)
    finally:
        lean_commands.flush_object(conn, parent.handle)
    return parent_blob, privates


def _initial_sqn(sqn_ms: bytes) -> Any:
    from aka.sqn import SqnState

    return SqnState.starting_at(sqn_ms)


# ---- lifecycle --------------------------------------------------------------------------------------


def ek_name(conn: TpmConnection) -> bytes:
    """The name of this TPM's RSA EK: what a registry and a package are bound to."""
    with loaded_ek(conn) as (_ek, ek_public):
        return _ek_public_name(conn, ek_public)


def _ek_public_name(conn: TpmConnection, ek_public: Any) -> bytes:
    """The name of the EK ``ek_public`` (the connection's remembered one: computed once)."""
    memo = conn.facts.ek_name
    if memo is not None and memo[0] is ek_public:
        return memo[1]
    name = object_name(ek_public)
    conn.facts.ek_name = (ek_public, name)
    return name


def _checked(conn: TpmConnection, registry: Registry) -> tuple[RegistryData, bytes]:
    """The registry verified against REG_CTR, an interrupted AUDIT extension completed."""
    name = ek_name(conn)
    data = registry.read_checked(conn, name)
    repair_audit(conn, data)
    return data, name


def _write_state(
    conn: TpmConnection,
    record: MidRecord,
    state: nv.MidState,
    approval: bytes,
    layer: Layer = "lean",
) -> None:
    """MID_STATE byte (owner auth), or the MID's lifecycle index with the owner's
    ``approval`` of (current → ``state``, version + 1).

    Raises:
        MidRefused: no approval for an owner-bound MID, or the TPM refused it.
    """
    policy = record.policy
    index = policy.state_index()
    if index is None or policy.lifecycle is None:
        nv.write_state(conn, record.slot, state)
        return
    current = nv.read_lifecycle(conn, record.slot)
    if current is None:
        raise MidRefused(f"MID {record.mid}: its lifecycle index is gone (discarded?)")
    if current.state == state:
        return  # applied before (a retry after a crash)
    if not approval:
        raise MidRefused(
            f"MID {record.mid} is bound to its owner's lifecycle key: {state.name} needs the"
            " owner's signed approval (trelab mid activate|suspend|delete over the network)"
        )
    approved = nv.StateApproval(index, current, current.then(state), approval)
    write_lifecycle(conn, approved, policy.lifecycle.authority, layer=layer)


def set_state(
    conn: TpmConnection,
    registry: Registry,
    mid_id: str,
    state: nv.MidState,
    *,
    approval: bytes = b"",
    layer: Layer = "lean",
) -> MidRecord:
    """Move a MID to ACTIVE, INSTALLED or SUSPENDED (its state in the TPM + AUDIT + registry);
    ``approval``: the owner's signature, for a MID with a lifecycle binding; ``layer``: the
    lifecycle write's session on the lean layer or through ESYS (the reference).

    Raises:
        UnknownMid, BadInput: no such MID, or DELETED/EMPTY asked (use :func:`delete_mid`).
        MidRefused: an owner-bound MID without a valid approval.
    """
    if state not in (nv.MidState.ACTIVE, nv.MidState.INSTALLED, nv.MidState.SUSPENDED):
        raise BadInput(f"state {state.name}: use delete to delete a MID")
    with registry.locked():
        data, name = _checked(conn, registry)
        record = replace(data.get(mid_id), state=state.name.lower())
        _write_state(conn, record, state, approval, layer)
        event = _event("state", record, state=record.state)
        log_event(conn, registry, data.with_mid(record), event, name)
        return record


def delete_mid(
    conn: TpmConnection,
    registry: Registry,
    mid_id: str,
    *,
    approval: bytes = b"",
    layer: Layer = "lean",
) -> MidRecord:
    """State DELETED (terminal: a surviving blob of a use-gated or operator-updatable MID can
    never pass PolicyNV again), AUDIT, blobs dropped. An owner-bound MID without the owner's
    ``approval`` is *discarded*: its lifecycle index is undefined (owner auth), so K can never
    be used again — but there is no TPM-signed deletion proof for its SHO.

    Raises:
        UnknownMid: no such MID.
        MidRefused: the TPM refused the owner's approval.
    """
    with registry.locked():
        data, name = _checked(conn, registry)
        record = data.get(mid_id)
        kind = "delete"
        if record.policy.lifecycle is not None and not approval:
            nv.discard_lifecycle(conn, record.slot)
            kind = "discard"
        else:
            _write_state(conn, record, nv.MidState.DELETED, approval, layer)
        event = _event(kind, record)
        log_event(conn, registry, data.without_mid(mid_id), event, name)
        return replace(record, state="deleted")


def reauthorize(
    conn: TpmConnection, registry: Registry, mid_id: str, operator_key: Any
) -> MidRecord:
    """Operator stand-in: sign a new approval (PolicyPCR of the *current* PCR values ∧ ACTIVE)
    for an operator-updatable MID, e.g. after a firmware update changed the PCRs.

    Raises:
        BadInput: the MID is not operator-updatable, or the key is not its operator key.
    """
    with registry.locked():
        data, name = _checked(conn, registry)
        record = data.get(mid_id)
        policy = record.policy
        if policy.kind != "authorize":
            raise BadInput(f"MID {mid_id} is {policy.kind}-gated, not operator-updatable")
        if operator_public(operator_key) != policy.operator_key:
            raise BadInput("this is not the operator key the MID was provisioned with")
        digest = pcr_digest(pcr_values(conn, policy.selection))
        approval = sign_approval(operator_key, policy.selection, digest, record.slot)
        record = replace(record, policy=replace(policy, approval=approval, pcr_digest=digest))
        event = _event("approve", record, pcr_digest=digest.hex())
        log_event(conn, registry, data.with_mid(record), event, name)
        return record


def log_event(
    conn: TpmConnection, registry: Registry, data: RegistryData, event: str, ek: bytes
) -> RegistryData:
    """Commit ``data`` with ``event`` appended to the host's log, *then* extend it into AUDIT
    (call under :meth:`Registry.locked`). In this order an interrupt at any instant leaves
    the log equal to AUDIT or exactly one event ahead — which :func:`repair_audit` completes —
    never an AUDIT value no log can replay."""
    written = registry.commit(conn, data.with_event(event), ek)
    nv.extend_audit(conn, event.encode())
    return written


AuditState = Literal["matches", "one event behind", "mismatch"]


def audit_state(conn: TpmConnection, data: RegistryData) -> AuditState:
    """How the host's event log relates to the TPM's AUDIT value: it replays to it
    ("matches"), the TPM lacks only the last logged event (an interrupt between
    :func:`log_event`'s two steps: "one event behind", repairable), or neither ("mismatch":
    events missing from or altered in the log — what the AUDIT index exists to reveal)."""
    if not nv.counter_defined(conn, nv.AUDIT):
        return "matches" if not data.audit else "mismatch"
    value = nv.read_audit(conn)
    events = [e.encode() for e in data.audit]
    if nv.audit_chain(events) == value:
        return "matches"
    if events and nv.audit_chain(events[:-1]) == value:
        return "one event behind"
    return "mismatch"


def verify_audit(conn: TpmConnection, data: RegistryData) -> bool:
    """Does the host's event log replay to the TPM's AUDIT value (docs/provisioning.md §1.8)?"""
    return audit_state(conn, data) == "matches"


def repair_audit(conn: TpmConnection, data: RegistryData) -> str | None:
    """Extend the last logged event into AUDIT when the TPM is exactly that one event behind
    (call under :meth:`Registry.locked`); returns what was repaired, or None."""
    if audit_state(conn, data) != "one event behind":
        return None
    last = data.audit[-1]
    nv.extend_audit(conn, last.encode())
    try:
        kind = str(json.loads(last).get("event", "?"))
    except (ValueError, AttributeError):
        kind = "?"
    return (
        f"the last logged event ({kind}) had not reached the TPM's AUDIT index "
        "(interrupted): extended now, log and TPM match"
    )


def factory_reset(conn: TpmConnection, registry: Registry) -> dict[str, Any]:
    """TPM2_Clear (platform auth, else lockout auth): new storage seed, owner NV and the SRK
    gone, so every MID is dead; the EK is re-created from the unchanged endorsement seed and
    persisted again. The registry is emptied. Returns EK names before/after and what went.

    Raises:
        Unavailable: neither platform nor lockout authorisation works.
    """
    from tpm.ek import load_ek, read_ek_certificates, release_ek
    from tpm.tss import ESYS_TR, TSS2_Exception

    esys = conn.esys
    with registry.locked():
        with loaded_ek(conn) as (_ek, ek_public):
            before = object_name(ek_public)
        try:
            old = registry.read()
        except BadInput:
            old = RegistryData()
        # ESYS's cached objects for the SRK and our NV indices describe what Clear destroys
        nv.forget_handles(
            conn,
            (
                SRK_HANDLE,
                nv.MID_CTR,
                nv.MID_STATE,
                nv.AUDIT,
                nv.REG_CTR,
                *nv.lifecycle_handles(conn),
            ),
        )
        errors = []
        for hierarchy in (ESYS_TR.PLATFORM, ESYS_TR.LOCKOUT):
            try:
                esys.clear(hierarchy)
                conn.facts.forget_all()  # NV indices, EK: what the connection knew is gone
                break
            except TSS2_Exception as exc:
                errors.append(str(exc))
        else:
            raise Unavailable(f"TPM2_Clear refused: {'; '.join(errors)}")
        kinds = read_ek_certificates(conn)
        after = b""
        for kind in ("rsa2048", "ecc"):
            if kind not in kinds and kind != "rsa2048":
                continue
            handle, public = load_ek(conn, kind)
            try:
                if int(esys.tr_get_tpm_handle(handle)) >> 24 == 0x80:
                    esys.evict_control(ESYS_TR.OWNER, handle, _EK_HANDLES[kind])
            except TSS2_Exception as exc:
                raise Unavailable(f"cannot persist the {kind} EK again: {exc}") from None
            finally:
                release_ek(conn, handle)
            if kind == "rsa2048":
                after = object_name(public)
        ensure_srk(conn)
        nv.ensure_indices(conn)
        registry.write_unchecked(RegistryData())
        registry.commit(conn, RegistryData(), after)
    return {
        "ek_name_before": before.hex(),
        "ek_name_after": after.hex(),
        "ek_unchanged": before == after,
        "mids_removed": sorted(old.mids),
    }


# ---- loading a MID for AKA ---------------------------------------------------------------------------


class LoadedMid:
    """A MID's K loaded in the TPM (and OPc/TOPc unsealed into host memory) for AKA.

    ``with LoadedMid(conn, record, pin=…, mode=…) as mid:`` → ``mid.algorithm`` (a Milenage or
    TUAK object whose kernel is the TPM), ``mid.mode``, ``mid.bus_protection``,
    ``mid.session()`` (for sealed K: one unseal per AKA). Everything is flushed on exit.

    **Sessions and the bus** (threat 9, §7.1.2.1; :mod:`tpm.keyholder`). While the MID parent
    is loaded, one session is started for the MID, salted to the parent: the parent's public
    area comes from the operator's package and the TPM just accepted it in TPM2_Load, whose
    integrity check binds the private part to exactly that public area, so only this TPM can
    recover the salt — a sniffer of the whole exchange, StartAuthSession included, cannot
    derive the session key. The session outlives the parent (a salt is needed only at
    StartAuthSession) and serves, for the MID's lifetime:

    - OPc/TOPc's TPM2_Unseal (response encrypted), always;
    - with ``bus_protection`` (the default), K's commands: EncryptDecrypt2 with decrypt|encrypt
      (inData and outData encrypted), or sealed K's Unseal (encrypted response). Use-gated and
      operator-updatable MIDs: the session is the policy session (the policy steps re-run in
      it per command, PolicyAuthValue for a PIN); load-gated: a salted HMAC session that
      authorises with K's empty authValue and carries the encryption (one session for both:
      cheaper than a password session plus an encrypt-only session, measured 6.7 vs 7.1 ms);
    - ``bus_protection=False`` (an opt-out for benchmarks, reported as such): K's E_K
      commands run as before — load-gated with the empty password, policy-gated in an unsalted
      policy session (salted if there is a PIN) — so RAND ⊕ OPc and the E_K outputs cross the
      bus in clear. It does not apply to sealed K (K itself would cross the bus).

    The PIN never travels: it is K's authValue, proven by PolicyAuthValue, i.e. it keys the
    session HMAC (with the salted session key) and never appears on the bus (PolicyPassword,
    which sends it in clear, is not used).

    Raises (on enter):
        MidRefused: PCRs or MID_STATE do not satisfy the policy; the SRK changed (cleared TPM).
        PinRejected, TpmLockedOut: PIN problems (use-gated or operator-updatable with PIN).
        BadInput: a mode the MID cannot run (e.g. ``sealed`` for a symmetric K).
        Unavailable: the TPM lacks what the mode needs (bus protection: EncryptDecrypt2).
    """

    def __init__(
        self,
        conn: TpmConnection,
        record: MidRecord,
        *,
        pin: bytes | None = None,
        mode: Mode | None = None,
        symmetric: SymmetricSupport | None = None,
        bus_protection: bool = True,
        layer: Layer = "lean",
    ) -> None:
        if layer not in ("lean", "esys"):
            raise BadInput(f"TPM client layer {layer!r}: expected lean or esys")
        self._conn = conn
        self.record = record
        self._pin = pin
        #: ``lean`` (default): the MID's sessions, Loads, policies and K's commands go through
        #: :mod:`tpm.lean`; ``esys``: everything through ESYS (the reference path). A policy
        #: with a step the lean layer does not send runs through ESYS either way.
        self.layer: Layer = layer if _runs_lean(record.policy) else "esys"
        self._lean: Session | None = None
        self._runner: PolicyRunner | None = None
        self._hmac: Any = None
        self._k_runner: PolicyRunner | None = None
        self._lean_key: LeanObject | None = None
        self._lean_policy: _LeanPolicy | None = None
        self._esys_key: Any = None
        policy = record.policy
        if pin is not None and not policy.pin:
            raise BadInput(f"MID {record.mid} has no PIN")
        if pin is None and policy.pin:
            raise BadInput(f"MID {record.mid} needs its PIN (--pin)")
        if policy.k_form == "sealed":
            if mode not in (None, "sealed"):
                raise BadInput(f"MID {record.mid} holds K as sealed data: only mode sealed runs")
            self.mode: Mode = "sealed"
            self.bus_protection = True  # K itself is unsealed: never over an open bus
        elif policy.k_form == "hmac":
            if mode not in (None, "hmac"):
                raise BadInput(f"MID {record.mid} holds K as an HMAC key: only mode hmac runs")
            self.mode = "hmac"
            self.bus_protection = bus_protection  # TPM2_HMAC's buffer comes first: encryptable
        else:
            if mode == "hmac":
                raise BadInput(f"MID {record.mid} holds K as an AES key: mode hmac cannot run")
            if mode == "sealed":
                raise BadInput(
                    f"MID {record.mid} holds K as a TPM key: it cannot be unsealed (that is the point)"
                )
            support = symmetric or conn.facts.symmetric
            if support is None:
                support = conn.facts.symmetric = probe_symmetric(conn)
            if support.command is None:
                raise Unavailable(
                    "this TPM has no EncryptDecrypt/EncryptDecrypt2: a symmetric-K MID cannot run",
                    fix="re-provision with --form sealed",
                )
            chosen = mode or support.default_mode
            if chosen == "ecb" and not support.ecb:
                raise Unavailable("this TPM refuses AES-ECB", fix="use --mode cfb")
            if chosen == "cfb" and not support.cfb:
                raise Unavailable("this TPM refuses AES-CFB", fix="use --mode ecb")
            if chosen == "sealed":
                raise Unavailable("this TPM offers neither ECB nor CFB for AES")
            self.mode = chosen
            self._command = policy.command if policy.kind != "load" else support.command
            if bus_protection and self._command != "EncryptDecrypt2":
                raise Unavailable(
                    "bus protection needs TPM2_EncryptDecrypt2: TPM2_EncryptDecrypt puts a flag"
                    " before inData, so parameter encryption cannot hide the E_K input"
                    " (RAND ⊕ OPc) on the TPM bus",
                    fix="re-provision with --form sealed, or accept the risk with"
                    " --no-bus-protection",
                )
            self.bus_protection = bus_protection
        self._stack = contextlib.ExitStack()
        self.holder: Any = None
        self.secret: bytes = b""
        self.algorithm: AkaAlgorithm | None = None

    def __enter__(self) -> LoadedMid:
        try:
            # one kept TPM connection for the MID's life where the transport allows it
            self._stack.enter_context(self._conn.transport.kept())
            if self.layer == "lean":
                self._load_lean()
            else:
                self._load()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def __repr__(self) -> str:
        return (
            f"LoadedMid({self.record.mid!r}, mode={self.mode!r}, "
            f"bus_protection={self.bus_protection}, layer={self.layer!r})"
        )

    # -- internals ----------------------------------------------------------------------------------
    def _flush_later(self, handle: Any) -> Any:
        self._stack.callback(self._conn.flush, handle)
        return handle

    def _policy_runner(self, steps: list[Any], *, salt_key: Any, encrypt: bool) -> PolicyRunner:
        policy = self.record.policy
        return PolicyRunner(
            self._conn,
            steps,
            approval=policy.approval,
            operator_public=policy.operator_key,
            salt_key=salt_key,
            encrypt=encrypt,
        )

    def _open_session(self, salt_key: Any) -> None:
        """Start the MID's salted session (class docstring) while ``salt_key`` (the parent)
        is loaded: the policy session ``_runner`` for a policy-gated K, else the HMAC session
        ``_hmac``. Response encryption only until :meth:`_build` adds decrypt."""
        k_steps = self.record.policy.k_steps()
        self._runner = None
        self._hmac = None
        self._k_runner = None
        self._stack.callback(self._close_session)
        if k_steps:
            self._runner = self._policy_runner(k_steps, salt_key=salt_key, encrypt=True)
        else:
            self._hmac = start_session(self._conn, kind="hmac", salt_key=salt_key, encrypt=True)

    def _close_session(self) -> None:
        runner, self._runner = self._runner, None
        hmac, self._hmac = self._hmac, None
        lean_session, self._lean = self._lean, None
        if runner is not None:
            runner.close()
        if hmac is not None:
            self._conn.flush(hmac)
        if lean_session is not None:
            lean_commands.flush_session(self._conn, lean_session)

    def _open_unprotected(self, salt_key: Any) -> None:
        """The ``bus_protection=False`` opt-out, after OPc is unsealed: drop the salted
        session; a policy-gated K gets its own policy session, salted only for a PIN (so the
        PIN still cannot be brute-forced offline), without parameter encryption."""
        self._close_session()
        policy = self.record.policy
        k_steps = policy.k_steps()
        if k_steps:
            self._k_runner = self._policy_runner(
                k_steps, salt_key=salt_key if policy.pin else None, encrypt=False
            )
            self._stack.callback(self._k_runner.close)

    @contextlib.contextmanager
    def _unseal_session(self, steps: list[Any]) -> Iterator[Any]:
        """The salted session, response encryption only (TPM2_Unseal has no command
        parameter to decrypt), with ``steps`` run for a policy-gated object."""
        session = self._runner.session if self._runner is not None else self._hmac
        set_session_attributes(self._conn, session, encrypt=True, decrypt=False)
        if self._runner is None:
            yield session
            return
        with self._runner.use(steps) as s:
            yield s

    def _load(self) -> None:
        from tpm.ek import ek_policy_session
        from tpm.tss import TSS2_Exception

        conn, esys, record, policy = self._conn, self._conn.esys, self.record, self.record.policy
        srk, _ = ensure_srk(conn)
        srk_name = known_srk_name(conn)
        try:
            with loaded_ek(conn) as (ek, ek_public):
                session = ek_policy_session(conn, ek_public)
                try:
                    parent = esys.load(
                        ek,
                        _unmarshal(tss.TPM2B_PRIVATE, record.parent.private),
                        _unmarshal(tss.TPM2B_PUBLIC, record.parent.public),
                        session1=session,
                    )
                finally:
                    conn.flush(session)
        except TSS2_Exception as exc:
            raise _load_error(exc, "the parent", record.mid) from None
        with contextlib.ExitStack() as parent_scope:
            parent_scope.callback(conn.flush, parent)
            parent_runner = PolicyRunner(
                conn, policy.parent_steps(srk_name), handles={srk_name: srk}
            )
            parent_scope.callback(parent_runner.close)
            try:
                self._open_session(parent)
            except TSS2_Exception as exc:
                raise translate(
                    exc, f"starting a session salted to MID {record.mid}'s parent"
                ) from None

            def load_child(stored: StoredObject, label: str) -> Any:
                try:
                    with parent_runner.use() as s:
                        return esys.load(
                            parent,
                            _unmarshal(tss.TPM2B_PRIVATE, stored.private),
                            _unmarshal(tss.TPM2B_PUBLIC, stored.public),
                            session1=s,
                        )
                except TSS2_Exception as exc:
                    raise _load_error(exc, label, record.mid) from None

            secret = load_child(record.secret, "OPc/TOPc")
            try:
                with self._unseal_session(policy.secret_steps()) as s:
                    self.secret = bytes(esys.unseal(secret, session1=s))
            except TSS2_Exception as exc:
                raise translate(exc, f"unsealing OPc/TOPc of MID {record.mid}") from None
            finally:
                conn.flush(secret)
            if not self.bus_protection:
                try:
                    self._open_unprotected(parent)
                except TSS2_Exception as exc:
                    raise translate(exc, f"starting K's session for MID {record.mid}") from None
            key = self._flush_later(load_child(record.k, "K"))
        if self._pin is not None:
            esys.tr_set_auth(key, self._pin)
        self._esys_key = key
        self._build(key)

    def _load_lean(self) -> None:
        """:meth:`_load` on the lean layer: one policy session for the EK's policy and the
        parent's USER policy, the three Loads, OPc's Unseal and the MID's salted session (with
        K's and OPc's policies, PolicyAuthorize's ticket included) all built by
        :mod:`tpm.lean`; ESYS only finds the SRK and the EK."""
        from tpm.ek import ek_policy_or_list

        conn, record, policy = self._conn, self.record, self.record.policy
        srk_name = known_srk_name(conn)
        srk_object = LeanObject(SRK_HANDLE, srk_name)
        endorsement = LeanObject(_RH_ENDORSEMENT, _RH_ENDORSEMENT.to_bytes(4, "big"))
        with contextlib.ExitStack() as parent_scope:
            # One policy session for the three Loads: the EK's policy for the parent, then the
            # parent's USER policy for OPc and for K. The TPM resets a policy session's digest
            # after every command it authorised (Part 1 §19.7.1), so each Load is checked
            # against its own steps only, as with a fresh session, one StartAuthSession less.
            runner = lean_commands.start_session(conn, kind="policy", symmetric=False)
            parent_scope.callback(lean_commands.flush_session, conn, runner)
            try:
                with loaded_ek(conn) as (ek, ek_public):
                    memo = conn.facts.ek_branches
                    if memo is not None and memo[0] is ek_public:
                        branches = memo[1]
                    else:
                        branches = ek_policy_or_list(ek_public)
                        conn.facts.ek_branches = (ek_public, branches)
                    ek_object = LeanObject(
                        int(conn.esys.tr_get_tpm_handle(ek)), _ek_public_name(conn, ek_public)
                    )
                    lean_commands.policy_secret(conn, runner, endorsement)
                    if branches is not None:
                        lean_commands.policy_or(conn, runner, branches)
                    parent = lean_commands.load(
                        conn, ek_object, record.parent.private, record.parent.public,
                        session=runner,
                    )  # fmt: skip
            except TpmRefused as exc:
                raise _load_error(exc, "the parent", record.mid) from None
            parent_scope.callback(lean_commands.flush_object, conn, parent.handle)
            steps = policy.parent_steps(srk_name)
            self._stack.callback(self._close_session)
            try:
                self._lean = lean_commands.start_session(
                    conn,
                    kind="policy" if policy.k_steps() else "hmac",
                    salt_to=(parent.handle, record.parent.public),
                )
            except TpmRefused as exc:
                raise translate(
                    exc, f"starting a session salted to MID {record.mid}'s parent"
                ) from None

            def load_child(stored: StoredObject, label: str, *, last: bool = False) -> LeanObject:
                try:
                    lean_commands.run_policy(conn, runner, steps, {srk_name: srk_object})
                    return lean_commands.load(
                        conn, parent, stored.private, stored.public, session=runner,
                        last_use=last,
                    )  # fmt: skip
                except TpmRefused as exc:
                    if exc.command_code == lean.CC.POLICY_PCR:
                        raise MidRefused(
                            "PolicyPCR: the PCR values differ from the authorised ones"
                        ) from None
                    raise _load_error(exc, label, record.mid) from None

            secret = load_child(record.secret, "OPc/TOPc")
            session = self._lean
            assert session is not None
            # one ticket for OPc's and K's PolicyAuthorize, as the ESYS path's one runner keeps
            ticket = _ApprovalTicket(conn, policy) if policy.kind == "authorize" else None
            secret_policy = _LeanPolicy(
                conn, session, policy.secret_steps(), record.mid, approval=ticket
            )
            try:
                secret_policy.before()
                self.secret = lean_commands.unseal(conn, secret, session=session)
                secret_policy.after()
            except TpmRefused as exc:
                raise translate(exc, f"unsealing OPc/TOPc of MID {record.mid}") from None
            finally:
                lean_commands.flush_object(conn, secret.handle)
            if not self.bus_protection and not policy.k_steps():
                self._close_session()  # the opt-out: K's commands in the empty-password session
            key = load_child(record.k, "K", last=True)
            self._stack.callback(lean_commands.flush_object, conn, key.handle)
        key.auth_value = self._pin or b""
        self._lean_key = key
        if self._lean is not None and policy.k_steps():
            self._lean_policy = _LeanPolicy(
                conn, self._lean, policy.k_steps(), record.mid, approval=ticket
            )
        self._build(None)

    @property
    def _key(self) -> Any:
        """K's ESYS handle (tests and the benchmark's bare commands use it). On the lean layer
        ESYS learns of K only when asked (TPM2_ReadPublic once); it is closed, not flushed,
        on exit (the lean layer flushes K)."""
        if self._esys_key is None and self._lean_key is not None:
            esys = self._conn.esys
            self._esys_key = esys.tr_from_tpmpublic(self._lean_key.handle)
            self._stack.callback(esys.tr_close, self._esys_key)
        return self._esys_key

    def _build(self, key: Any) -> None:
        from aka.hmac_aka import HmacAka
        from aka.milenage import Milenage
        from aka.tuak import Tuak
        from tpm.tss import TSS2_Exception

        policy = self.record.policy
        k_steps = policy.k_steps()
        if self.mode == "sealed":
            lean_key = self._lean_key

            def unseal() -> bytearray:
                try:
                    if lean_key is not None and self._lean is not None:
                        if self._lean_policy is not None:
                            self._lean_policy.before()
                        value = lean_commands.unseal(self._conn, lean_key, session=self._lean)
                        if self._lean_policy is not None:
                            self._lean_policy.after()
                        return bytearray(value)
                    with self._unseal_session(k_steps) as s:
                        return bytearray(bytes(self._conn.esys.unseal(key, session1=s)))
                except TpmRefused as exc:
                    raise translate(exc, f"unsealing K of MID {self.record.mid}") from None
                except TrelabError:
                    raise
                except TSS2_Exception as exc:
                    raise translate(exc, f"unsealing K of MID {self.record.mid}") from None

            spec = self.record.algorithm
            if spec.name == "tuak":
                self.holder = SealedKeccak(unseal, spec.key_bits)
            elif spec.name == "hmac-sha256":
                self.holder = SealedHmac(unseal)
            else:
                self.holder = SealedAes(unseal)
        elif self.mode == "hmac" and self._lean_key is not None:
            self.holder = TpmHmac(
                self._conn,
                None,
                bus_protected=self.bus_protection,
                command=self._lean_hmac_command(),
            )
        elif self.mode == "hmac":
            if self.bus_protection:  # buffer (OPc, RAND) and outHMAC encrypted on the bus
                shared = self._runner.session if self._runner is not None else self._hmac
                set_session_attributes(self._conn, shared, encrypt=True, decrypt=True)
                self.holder = TpmHmac(
                    self._conn,
                    key,
                    authorize=self._runner.use if self._runner is not None else None,
                    session=self._hmac if self._runner is None else None,
                    bus_protected=True,
                )
            else:
                self.holder = TpmHmac(
                    self._conn,
                    key,
                    authorize=self._k_runner.use if self._k_runner is not None else None,
                )
        elif self._lean_key is not None:
            self.holder = TpmBlockCipher(
                self._conn,
                None,
                mode=self.mode,
                command=self._command,
                bus_protected=self.bus_protection,
                lean_key=self._lean_key,
                lean_session=self._lean if self.bus_protection or self._lean_policy else None,
                lean_policy=self._lean_policy,
            )
        elif self.bus_protection:
            # from here on the salted session carries only K's EncryptDecrypt2: inData too
            shared = self._runner.session if self._runner is not None else self._hmac
            set_session_attributes(self._conn, shared, encrypt=True, decrypt=True)
            self.holder = TpmBlockCipher(
                self._conn,
                key,
                mode=self.mode,
                command=self._command,
                authorize=self._runner.use if self._runner is not None else None,
                session=self._hmac if self._runner is None else None,
                bus_protected=True,
            )
        else:
            self.holder = TpmBlockCipher(
                self._conn,
                key,
                mode=self.mode,
                command=self._command,
                authorize=self._k_runner.use if self._k_runner is not None else None,
            )
        spec = self.record.algorithm
        if spec.name == "hmac-sha256":
            self.algorithm = HmacAka(self.holder, self.secret, res_bits=spec.res_bits)
        elif spec.name == "tuak":
            self.algorithm = Tuak(
                self.holder,
                self.secret,
                mac_bits=spec.mac_bits,
                res_bits=spec.res_bits,
                ck_bits=spec.ck_bits,
                ik_bits=spec.ik_bits,
                iterations=spec.iterations,
            )
        else:
            self.algorithm = Milenage(self.holder, self.secret)

    def _lean_hmac_command(self) -> Any:
        """TPM2_HMAC with K on the lean layer (:data:`tpm.keyholder.HmacCommand`): in the MID's
        salted session (buffer and outHMAC encrypted) unless bus protection is off, with K's
        policy steps before each use for a use-gated MID."""
        conn, key, policy = self._conn, self._lean_key, self._lean_policy
        session = self._lean if self.bus_protection or policy is not None else None
        protect = self.bus_protection
        assert key is not None

        def command(_key: Any, buffer: bytes, _session: Any) -> bytes:
            try:
                if policy is not None:
                    policy.before()
                out = lean_commands.hmac(conn, key, buffer, session=session, protect=protect)
            except TpmRefused as exc:
                raise translate(exc, "HMAC with K") from None
            except ResponseAuthFailed:
                if session is not None:  # its nonces can no longer be trusted (as for E_K)
                    lean_commands.flush_session(conn, session)
                raise
            if policy is not None:
                policy.after()
            return out

        return command

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Scope of one AKA: sealed holders unseal K once for it and zero it afterwards."""
        if isinstance(self.holder, SealedAes | SealedKeccak | SealedHmac):
            with self.holder.unsealed():
                yield
        else:
            yield


def _runs_lean(policy: MidPolicy) -> bool:
    """Can the lean layer send every step of ``policy`` (K's, OPc's, an approval's)? Its
    PolicyAuthorize steps are sent by :class:`_LeanPolicy`, the rest by
    :func:`tpm.lean_commands.run_policy`."""
    steps = policy.k_steps() + policy.secret_steps()
    if policy.approval is not None:
        steps += policy.approval.steps()
    return lean_commands.runs_lean([s for s in steps if not isinstance(s, PolicyAuthorize)])


class _ApprovalTicket:
    """The TPM's TPMT_TK_VERIFIED for the operator's approval of an operator-updatable MID
    (LoadExternal of the operator key in the owner hierarchy, VerifySignature of its
    signature over H(approvedPolicy ‖ policyRef), FlushContext): made at the MID's first
    PolicyAuthorize and kept for the MID's load, as the ESYS path's runner keeps it. The
    ticket proves only that the key signed that hash; PolicyAuthorize checks it again, with
    the key's name, against the session's digest at every use."""

    def __init__(self, conn: TpmConnection, policy: MidPolicy) -> None:
        if policy.approval is None or policy.operator_key is None:
            raise LocalProtocolError("PolicyAuthorize without an approval")
        self._conn, self.approval, self._operator_public = (
            conn,
            policy.approval,
            policy.operator_key,
        )
        self._ticket: bytes | None = None

    def get(self) -> bytes:
        if self._ticket is None:
            approval = self.approval
            a_hash = approval_hash(approval.approved_policy(), approval.policy_ref)
            self._ticket = lean_commands.approval_ticket(
                self._conn, self._operator_public, a_hash, approval.signature
            )
        return self._ticket


#: the commands whose refusal means the operator's approval is not accepted
_APPROVAL_COMMANDS = frozenset(
    {lean.CC.LOAD_EXTERNAL, lean.CC.VERIFY_SIGNATURE, lean.CC.POLICY_AUTHORIZE}
)
_RC_SIGNATURE = 0x09B  # TPM_RC_SIGNATURE: the signature is not valid


class _LeanPolicy:
    """A MID's policy steps in its lean policy session (:class:`tpm.keyholder.LeanPolicy`):
    PolicyRestart first if the last use did not complete; at a PolicyAuthorize step the
    approval's own steps, then PolicyAuthorize with the ``approval`` ticket; a refused step
    becomes the error the user can act on (PCRs changed, MID not ACTIVE, approval not
    accepted), as on the ESYS path (:class:`tpm.policy_session.PolicyRunner`)."""

    def __init__(
        self,
        conn: TpmConnection,
        session: Session,
        steps: list[Any],
        mid: str,
        *,
        approval: _ApprovalTicket | None = None,
    ) -> None:
        self._conn, self._session, self._steps, self._mid = conn, session, steps, mid
        self._approval = approval
        self._dirty = False

    def before(self) -> None:
        if not self._steps:
            return
        conn, session = self._conn, self._session
        if self._dirty:
            lean_commands.policy_restart(conn, session)
        self._dirty = True
        try:
            for step in self._steps:
                if isinstance(step, PolicyAuthorize):
                    self._authorize(step)
                else:
                    lean_commands.run_policy(conn, session, [step], {})
        except TpmRefused as exc:
            if exc.command_code == lean.CC.POLICY_PCR:
                raise MidRefused(
                    "PolicyPCR: the PCR values differ from the authorised ones"
                ) from None
            if exc.command_code == lean.CC.POLICY_NV and exc.base == _RC_POLICY:
                raise MidRefused(
                    "PolicyNV: the MID's lifecycle state (MID_STATE byte or its own index) is "
                    "not ACTIVE"
                ) from None
            if exc.command_code in _APPROVAL_COMMANDS or exc.base == _RC_SIGNATURE:
                raise MidRefused(
                    f"PolicyAuthorize: the operator approval is not accepted ({exc})"
                ) from None
            raise translate(exc, f"the policy of MID {self._mid}") from None

    def _authorize(self, step: PolicyAuthorize) -> None:
        ticket = self._approval
        if ticket is None:
            raise LocalProtocolError("PolicyAuthorize without an approval")
        approval = ticket.approval
        lean_commands.run_policy(self._conn, self._session, approval.steps(), {})
        lean_commands.policy_authorize(
            self._conn, self._session, approval.approved_policy(), step.policy_ref,
            step.key_name, ticket.get(),
        )  # fmt: skip

    def after(self) -> None:
        self._dirty = False


def _load_error(exc: Exception, label: str, mid: str) -> TrelabError:
    """A refused TPM2_Load (or its policy) is the MID being unusable here: PCRs, owner epoch
    (TPM cleared since import) or a corrupt blob; PIN and lockout keep their own errors, and
    errors below the TPM (TCTI, ESYS) stay Unavailable."""
    from tpm.tss import TSS2_Exception

    error = translate(exc, f"loading {label} of MID {mid}")
    tpm_said_no = isinstance(exc, TpmRefused) or (
        isinstance(exc, TSS2_Exception) and int(exc.rc) >> 16 == 0
    )
    if isinstance(error, MidRefused) or (isinstance(error, Unavailable) and tpm_said_no):
        return MidRefused(
            f"the TPM refused to load {label} of MID {mid}: its load policy (PCRs, owner "
            f"epoch) does not hold or the TPM was cleared since import ({exc})"
        )
    return error
