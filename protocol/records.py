"""Pure. What the operator side remembers, as frozen records, and the :class:`Ledger` protocol
the roles read and write them through (one :class:`Ledger` = one store transaction).

Secrets (HSS K and OPc/TOPc, the credential-activation secret S, XRES) sit in fields with
``repr=False`` and are sealed by the store before they touch the disk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

__all__ = [
    "HSS_STATES",
    "SESSION_KINDS",
    "AuditEvent",
    "DeviceRecord",
    "HssRecord",
    "Ledger",
    "MidRecord",
    "OrderRecord",
    "PcidRecord",
    "SessionRecord",
    "VerdictRecord",
    "evolve",
]

SessionKind = Literal["provision", "lifecycle", "attach", "order"]
SESSION_KINDS: tuple[str, ...] = ("provision", "lifecycle", "attach", "order")
#: HSS record states: vectors only while ``active`` (the MID is ACTIVE in its TRE).
HSS_STATES = ("pending", "installed", "active", "suspended", "deleted")


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A TRE known by its certified EK (``device_id`` = hex of the EK's TPM name)."""

    device_id: str
    ek_cert: bytes = field(repr=False)
    ak_public: bytes = field(repr=False)
    ak_name: bytes
    state: str = "registered"  # registered → activated (AK proven to live next to the EK)
    revoked: bool = False
    sequence: int = 0  # last package sequence number given to this TRE (mirrors MID_CTR)
    last_quote: bytes = field(default=b"", repr=False)  # for clock monotonicity
    last_quote_sig: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One protocol session's stored end: phase and transcript plus role data."""

    session_id: bytes
    kind: str
    phase: str
    transcript: bytes
    created: int
    expires: int
    device_id: str = ""
    sho: str = ""
    mid_id: str = ""
    imsi: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class VerdictRecord:
    """A PVA verdict as issued (``cose`` = the signed wire form)."""

    session_id: bytes
    device_id: str
    ak_name: bytes
    pcr_digest: bytes
    not_after: int
    cose: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class MidRecord:
    """A MID delivered to a TRE and its lifecycle state (TR 33.812 §7.1.2.1 threat 7/8)."""

    mid_id: str
    device_id: str
    sho: str
    imsi: str
    state: str  # PENDING, INSTALLED, ACTIVE, SUSPENDED, DELETED
    sequence: int  # the package's number (the TPM's MID_CTR after import)
    session_id: bytes
    slot: int = 0  # the MID_STATE byte that holds its lifecycle state in the TPM
    command_seq: int = 0  # last LifecycleCommand number issued for it
    names: Mapping[str, bytes] = field(default_factory=dict)
    updated: int = 0


@dataclass(frozen=True, slots=True)
class HssRecord:
    """A subscriber in an SHO's AuC: algorithm, K and OPc/TOPc, AMF, SQN_HE (as
    :meth:`aka.sqn.SqnGenerator.to_json`), keyed for idempotence by ``request_id``."""

    imsi: str
    sho: str
    algorithm: str
    params: Mapping[str, int]
    k: bytes = field(repr=False)
    opc: bytes = field(repr=False)
    amf: bytes = b"\x80\x00"
    sqn: Mapping[str, int] = field(default_factory=dict)
    state: str = "pending"
    request_id: str = ""
    mid_id: str = ""


@dataclass(frozen=True, slots=True)
class PcidRecord:
    """A provisional connectivity identity (the ICF of TR 33.812; docs/provisioning.md §1.3): valid from
    ``not_before`` to ``not_after``, bound to the first TRE that uses it, released after
    provisioning."""

    imsi: str
    not_before: int
    not_after: int
    device_id: str = ""
    state: str = "issued"  # issued → bound → released


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """A lifecycle transition the owning SHO ordered, waiting for its TRE to fetch it;
    ``sequence`` is fixed at first delivery so a re-delivery carries the same number."""

    mid_id: str
    transition: str
    sho: str
    state: str = "pending"  # pending → delivered → done
    sequence: int = 0


@dataclass(frozen=True, slots=True)
class HomeNetworkKey:
    """One SUCI home network key pair of an SHO (TS 33.501 §6.12.2): ``profile`` 1 (A, X25519)
    or 2 (B, P-256), ``public`` as the USIM/ME holds it; ``state`` current (new SUCIs use it)
    → previous (still de-conceals after a rotation) → retired (refused)."""

    sho: str
    key_id: int
    profile: int
    private: bytes = field(repr=False)
    public: bytes = b""
    state: str = "current"
    created: int = 0


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One entry of the hash-chained audit trail (no secrets in ``detail``)."""

    seq: int
    at: int
    actor: str
    event: str
    subject: str
    detail: Mapping[str, Any]
    prev: bytes
    digest: bytes


class Ledger(Protocol):
    """Everything a role reads or writes, inside one atomic store transaction."""

    def device(self, device_id: str) -> DeviceRecord | None: ...
    def put_device(self, record: DeviceRecord) -> None: ...
    def session(self, session_id: bytes) -> SessionRecord | None: ...
    def put_session(self, record: SessionRecord) -> None: ...
    def verdict(self, session_id: bytes) -> VerdictRecord | None: ...
    def put_verdict(self, record: VerdictRecord) -> None: ...
    def mid(self, mid_id: str) -> MidRecord | None: ...
    def put_mid(self, record: MidRecord) -> None: ...
    def mids(self, *, device_id: str | None = None, sho: str | None = None) -> list[MidRecord]: ...
    def hss(self, imsi: str) -> HssRecord | None: ...
    def hss_by_request(self, request_id: str) -> HssRecord | None: ...
    def put_hss(self, record: HssRecord) -> None: ...
    def set_hss_state(self, imsi: str, state: str) -> bool: ...
    def next_msin(self, sho: str) -> int: ...
    def pcid(self, imsi: str) -> PcidRecord | None: ...
    def put_pcid(self, record: PcidRecord) -> None: ...
    def grant(self, token_hash: bytes) -> tuple[str, int] | None: ...
    def put_grant(self, token_hash: bytes, pcid: str, not_after: int) -> None: ...
    def order(self, mid_id: str) -> OrderRecord | None: ...
    def put_order(self, record: OrderRecord) -> None: ...
    def hn_keys(self, sho: str) -> list[HomeNetworkKey]: ...
    def put_hn_key(self, record: HomeNetworkKey) -> None: ...
    def audit(
        self, at: int, actor: str, event: str, subject: str, detail: Mapping[str, Any]
    ) -> None: ...


_D = TypeVar("_D")
_INIT_FIELDS: dict[type, tuple[str, ...]] = {}


def evolve(record: _D, **changes: Any) -> _D:
    """``dataclasses.replace`` for dataclasses whose fields are all set by ``__init__`` (these
    records): the same new object through the same ``__init__`` and checks, without walking
    the class's field table on every call — the operator copies records many times a request.

    Raises:
        TypeError: a field the class does not have (as ``dataclasses.replace``).
    """
    cls = type(record)
    names = _INIT_FIELDS.get(cls)
    if names is None:
        fields = dataclasses.fields(record)  # type: ignore[arg-type]
        if not all(f.init for f in fields):
            raise TypeError(f"{cls.__name__} has fields __init__ does not set: use replace")
        names = _INIT_FIELDS[cls] = tuple(f.name for f in fields)
    values = {name: getattr(record, name) for name in names}
    values.update(changes)
    return cls(**values)
