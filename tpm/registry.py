"""Edge: filesystem, TPM. The host's MID registry: what is in the TPM, and each MID's SQN state.

One registry per TPM (REG_CTR and AUDIT are TPM-wide). One JSON file (its path is the caller's:
the CLI's default is ``mids.json`` in the lab directory), written atomically (temp + fsync + rename) under an exclusive lock, so concurrent
``trelab tpm aka`` runs cannot lose an SQN update. It holds, per MID: id, IMSI, algorithm,
policy, slot, sequence number, the TPM2B_PUBLIC/TPM2B_PRIVATE blobs (the private blobs are
encrypted by the MID parent: only this TPM can load them), and the SQN state (aka.sqn).

Anti-rollback (TS 33.102 Annex C needs SEQ_MS never to go back): every write records
``version`` = REG_CTR + 1, then increments the TPM's REG_CTR NV counter. On read, ``version``
must equal REG_CTR; ``REG_CTR + 1`` means a crash between the two steps and is repaired;
anything lower is an older copy of the file (a restored backup or snapshot) and is refused
with :class:`RegistryRollback`. The new SQN state is committed this way *before* RES is
returned. Limits, honestly:

- It detects restoring an older file, not forging a new one: whoever can edit the file as
  root can also drive the TPM as this agent does. (A MAC by a TPM key would not change that.)
- Cost: one NV write per accepted AKA (failures write nothing). NV wears out after ~100k–1M
  writes on chips: ~27 years at 10 AKAs a day on a 100k part, 2.7 years at 100 a day. An
  ORDERLY counter would spare NV but jumps after an unorderly shutdown, which this check
  cannot tell apart from a rollback; hence a plain counter.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aka.sqn import SqnState
from tpm import nv
from tpm.connection import TpmConnection
from tpm.mid_errors import RegistryRollback, UnknownMid
from tpm.package import AlgorithmSpec, MidPolicy
from trelab.atomic import atomic_write_bytes, file_lock
from trelab.errors import BadInput, Unavailable
from trelab.jsontext import load_json

__all__ = [
    "REGISTRY_VERSION",
    "MidRecord",
    "Registry",
    "RegistryData",
    "StoredObject",
]

REGISTRY_VERSION = 1
FORMAT = "trelab.mid-registry"


def _hex(label: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise BadInput(f"registry: {label} must be hex")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise BadInput(f"registry: {label} is not hex") from None


@dataclass(frozen=True)
class StoredObject:
    """An imported object: public area and private blob (encrypted by its parent), marshaled."""

    public: bytes
    private: bytes

    def to_json(self) -> dict[str, str]:
        return {"public": self.public.hex(), "private": self.private.hex()}

    @classmethod
    def from_json(cls, label: str, data: Any) -> StoredObject:
        if not isinstance(data, dict):
            raise BadInput(f"registry: object {label} malformed")
        return cls(
            _hex(f"{label}.public", data.get("public")),
            _hex(f"{label}.private", data.get("private")),
        )


@dataclass(frozen=True)
class MidRecord:
    """One MID as the host knows it; ``state`` mirrors its MID_STATE byte."""

    mid: str
    imsi: str
    slot: int
    seq: int
    algorithm: AlgorithmSpec
    amf: bytes
    policy: MidPolicy
    parent: StoredObject
    k: StoredObject
    secret: StoredObject
    sqn: SqnState
    state: str
    created: str

    def with_sqn(self, sqn: SqnState) -> MidRecord:
        """This record with another SQN state (an accepted AKA's commit)."""
        return MidRecord(
            self.mid, self.imsi, self.slot, self.seq, self.algorithm, self.amf, self.policy,
            self.parent, self.k, self.secret, sqn, self.state, self.created,
        )  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """What ``mid list`` shows (no blobs)."""
        return {
            "mid": self.mid,
            "imsi": self.imsi,
            "algorithm": self.algorithm.name,
            "policy": self.policy.kind,
            "k_form": self.policy.k_form,
            "pin": self.policy.pin,
            "pcrs": self.policy.selection,
            "slot": self.slot,
            "seq": self.seq,
            "state": self.state,
            "sqn_ms": self.sqn.sqn_ms.hex(),
            "created": self.created,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "mid": self.mid,
            "imsi": self.imsi,
            "slot": self.slot,
            "seq": self.seq,
            "algorithm": self.algorithm.to_json(),
            "amf": self.amf.hex(),
            "policy": self.policy.to_json(),
            "objects": {
                "parent": self.parent.to_json(),
                "k": self.k.to_json(),
                "secret": self.secret.to_json(),
            },
            "sqn": self.sqn.to_json(),
            "state": self.state,
            "created": self.created,
        }

    @classmethod
    def from_json(cls, data: Any) -> MidRecord:
        if not isinstance(data, dict) or not isinstance(data.get("objects"), dict):
            raise BadInput("registry: malformed MID record")
        objects = data["objects"]
        try:
            return cls(
                mid=str(data["mid"]),
                imsi=str(data["imsi"]),
                slot=int(data["slot"]),
                seq=int(data["seq"]),
                algorithm=AlgorithmSpec.from_json(data["algorithm"]),
                amf=_hex("amf", data["amf"]),
                policy=MidPolicy.from_json(data["policy"]),
                parent=StoredObject.from_json("parent", objects.get("parent")),
                k=StoredObject.from_json("k", objects.get("k")),
                secret=StoredObject.from_json("secret", objects.get("secret")),
                sqn=SqnState.from_json(data["sqn"]),
                state=str(data["state"]),
                created=str(data["created"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, BadInput):
                raise
            raise BadInput(f"registry: malformed MID record ({type(exc).__name__})") from None


@dataclass(frozen=True)
class RegistryData:
    """The whole file. ``version`` is the REG_CTR value it was committed under (0 = new)."""

    version: int = 0
    ek_name: bytes = b""
    mids: dict[str, MidRecord] = field(default_factory=dict)
    audit: tuple[str, ...] = ()

    def get(self, mid: str) -> MidRecord:
        """Raises:
        UnknownMid: no such id.
        """
        try:
            return self.mids[mid]
        except KeyError:
            raise UnknownMid(f"no MID {mid!r} in the registry (see trelab tpm mid list)") from None

    def with_mid(self, record: MidRecord) -> RegistryData:
        return RegistryData(
            self.version, self.ek_name, {**self.mids, record.mid: record}, self.audit
        )

    def without_mid(self, mid: str) -> RegistryData:
        return replace(self, mids={k: v for k, v in self.mids.items() if k != mid})

    def with_event(self, event: str) -> RegistryData:
        return replace(self, audit=(*self.audit, event))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": REGISTRY_VERSION,
            "counter": self.version,
            "ek_name": self.ek_name.hex(),
            "mids": [record.to_json() for record in self.mids.values()],
            "audit": list(self.audit),
        }

    @classmethod
    def from_json(cls, data: Any) -> RegistryData:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BadInput(f"registry: not a MID registry (format must be {FORMAT!r})")
        if data.get("version") != REGISTRY_VERSION:
            raise BadInput(f"registry: version {data.get('version')!r} not supported")
        mids = data.get("mids")
        audit = data.get("audit", [])
        counter = data.get("counter")
        if (
            not isinstance(mids, list)
            or not isinstance(audit, list)
            or not isinstance(counter, int)
        ):
            raise BadInput("registry: malformed (mids, audit, counter)")
        records = [MidRecord.from_json(m) for m in mids]
        return cls(
            version=counter,
            ek_name=_hex("ek_name", data.get("ek_name", "")),
            mids={r.mid: r for r in records},
            audit=tuple(str(a) for a in audit),
        )


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class Registry:
    """The registry file at ``path``; every read reads the file's bytes again. Their parse is
    kept per file for the process (:data:`_PARSED`), reused only for the very same bytes, and
    a changed file re-parses only its changed MID lines: an AKA with a registry of many MIDs
    costs no more host time than with one."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._key = os.path.abspath(self.path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._locked = False
        #: REG_CTR as this process last read or wrote it under the lock held now (and on which
        #: connection): nobody else can move it before the lock is released
        self._counter: tuple[TpmConnection, int] | None = None

    def __repr__(self) -> str:
        return f"Registry({str(self.path)!r})"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock (``<file>.lock``) for a read-modify-write across processes."""
        with file_lock(self._lock_path):
            self._locked, self._counter = True, None
            try:
                yield
            finally:
                self._locked, self._counter = False, None

    def read(self) -> RegistryData:
        """The file as it is, without the TPM check (for ``list`` and repairs).

        Raises:
            BadInput: unreadable or malformed.
        """
        try:
            with open(self._key, "rb") as file:
                raw = file.read()
        except FileNotFoundError:
            return RegistryData()
        except OSError as exc:
            raise BadInput(f"registry {self.path}: {exc.strerror}") from None
        seen = _PARSED.get(self._key)
        if seen is not None and seen.raw == raw:  # the same bytes: the same parse
            data = seen.data
        else:
            try:
                text = raw.decode()
            except UnicodeDecodeError:
                raise BadInput(f"registry {self.path}: not UTF-8 text") from None
            seen = replace(_parse(text, seen, f"registry {self.path}"), raw=raw)
            _remember_parse(self._key, seen)
            data = seen.data
        return RegistryData(data.version, data.ek_name, dict(data.mids), data.audit)

    def freshness(self, conn: TpmConnection, data: RegistryData, ek_name: bytes) -> str:
        """``"fresh"``, ``"repairable"`` (crash between file write and NV increment), ``"new"``
        (no file yet) or a reason it is stale.

        Raises:
            BadInput: the registry belongs to another TPM.
        """
        if data.ek_name and data.ek_name != ek_name:
            raise BadInput(f"registry {self.path} belongs to another TPM (EK name differs)")
        if not nv.counter_defined(conn, nv.REG_CTR):
            if data.mids:
                return "the TPM was cleared since the registry was written (REG_CTR is gone)"
            return "new"
        counter = nv.read_counter(conn, nv.REG_CTR)
        self._remember(conn, counter)
        if data.version == 0 and not data.mids:
            return "new"
        if data.version == counter:
            return "fresh"
        if data.version == counter + 1:
            return "repairable"
        if data.version < counter:
            return (
                f"registry version {data.version} is older than the TPM's REG_CTR {counter}: "
                "an older copy of the file was restored (or another registry file was used "
                "with this TPM: keep one registry per TPM)"
            )
        return f"registry version {data.version} is ahead of REG_CTR {counter} (TPM cleared or replaced)"

    def read_checked(self, conn: TpmConnection, ek_name: bytes) -> RegistryData:
        """The file, verified against REG_CTR (module docstring); call under :meth:`locked`.

        Raises:
            RegistryRollback: the file is not the last one committed.
            BadInput: malformed, or for another TPM.
        """
        data = self.read()
        verdict = self.freshness(conn, data, ek_name)
        if verdict == "repairable":
            self._counter = None
            self._remember(conn, nv.increment(conn, nv.REG_CTR))
        elif verdict not in ("fresh", "new"):
            raise RegistryRollback(f"MID registry refused: {verdict}")
        return data

    def commit(self, conn: TpmConnection, data: RegistryData, ek_name: bytes) -> RegistryData:
        """Write ``data`` as version REG_CTR + 1, then increment REG_CTR (call under
        :meth:`locked`). Returns what was written.

        Raises:
            Unavailable: the TPM refuses the NV write (the file is then one ahead: repaired
                on the next read).
        """
        known, self._counter = self._counter, None
        if known is not None and known[0] is conn:
            counter = known[1]  # read under this lock: REG_CTR cannot have moved since
        else:
            if not nv.counter_defined(conn, nv.REG_CTR):
                nv.ensure_indices(conn)
            counter = nv.read_counter(conn, nv.REG_CTR)
        written = RegistryData(counter + 1, ek_name, data.mids, data.audit)
        self.write_unchecked(written)
        nv.bump(conn, nv.REG_CTR)
        self._remember(conn, counter + 1)
        return written

    def _remember(self, conn: TpmConnection, counter: int) -> None:
        """Keep REG_CTR's value for the rest of the lock (only while it is held)."""
        if self._locked:
            self._counter = (conn, counter)

    def write_unchecked(self, data: RegistryData) -> None:
        """Atomic write without the counter (tests, and after a factory reset).

        Raises:
            Unavailable: the file cannot be written (disk full, read-only, …).
        """
        parsed = _render(data, _forget_parse(self._key))
        try:
            atomic_write_bytes(self.path, parsed.raw)
        except OSError as exc:
            raise Unavailable(
                f"cannot write the MID registry {self.path}: {exc.strerror}"
            ) from None
        _remember_parse(self._key, parsed)


@dataclass(frozen=True)
class _Parsed:
    """A registry file's text and its parse, with each MID's line in it: a later text that
    differs in a few lines (one SQN update) re-parses only those, and a write re-encodes only
    the records that changed (the others keep their line)."""

    text: str
    data: RegistryData
    #: a MID line (without its trailing comma) → the record it parses to
    records: dict[str, MidRecord]
    #: id of a record in :attr:`data` → (that record, its line): identity, so an equal but
    #: rebuilt record is encoded again rather than trusted
    lines: dict[int, tuple[MidRecord, str]]
    #: the audit events as :func:`_text` encoded them for :attr:`data`'s very audit tuple
    #: (None after a parse: a file's own lines are never reused for writing)
    event_lines: list[str] | None = None
    #: :attr:`text` as the file's bytes (what a read compares)
    raw: bytes = b""


#: the last text each registry file (by absolute path) was read or written as in this process,
#: and its parse. Always compared with the file's bytes as read now, under the caller's lock:
#: a change by anyone (another process, a restored copy) is a different text, parsed afresh.
_PARSED: dict[str, _Parsed] = {}
_PARSED_FILES = 8  # registries one process uses at a time (the bench: one per TPM)


_PARSED_LOCK = threading.Lock()  # the agent's threads share the process's registries


def _remember_parse(key: str, parsed: _Parsed) -> None:
    with _PARSED_LOCK:
        _PARSED.pop(key, None)
        while len(_PARSED) >= _PARSED_FILES:
            del _PARSED[next(iter(_PARSED))]
        _PARSED[key] = parsed


def _forget_parse(key: str) -> _Parsed | None:
    with _PARSED_LOCK:
        return _PARSED.pop(key, None)


_MIDS_OPEN, _LIST_CLOSE, _AUDIT_OPEN = ' "mids": [', " ],", ' "audit": ['


def _parse(text: str, previous: _Parsed | None, where: str) -> _Parsed:
    """Parse a registry file: line by line when it has the layout :func:`_render` writes
    (unchanged MID lines reuse ``previous``'s records), else as any JSON document.

    Raises:
        BadInput: malformed.
    """
    quick = _parse_lines(text, previous.records if previous is not None else {})
    if quick is not None:
        return quick
    data = RegistryData.from_json(load_json(text, where))
    return _Parsed(text, data, {}, {})


def _parse_lines(text: str, known: dict[str, MidRecord]) -> _Parsed | None:
    """The file in :func:`_render`'s layout, or None when it is not exactly that layout (the
    caller then parses it as a whole). Each MID line is one complete JSON object, so parsing
    the lines one by one gives what parsing the whole text gives."""
    lines = text.split("\n")
    if len(lines) < 7 or lines[0] != "{" or lines[-1] != "" or lines[-2] != "}":
        return None
    try:
        opened = lines.index(_MIDS_OPEN)
        closed = lines.index(_LIST_CLOSE, opened)
    except ValueError:
        return None
    if lines[closed + 1] != _AUDIT_OPEN or lines[-3] != " ]" or closed + 2 > len(lines) - 3:
        return None
    header = lines[1:opened]
    if not header or not header[-1].endswith(","):
        return None
    values = _list_values(lines[opened + 1 : closed])
    events = _list_values(lines[closed + 2 : -3])
    if values is None or events is None:
        return None
    try:
        doc = json.loads("{" + "\n".join(header)[:-1] + "}")
        audit = [json.loads(event) for event in events]
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    doc["mids"], doc["audit"] = [], audit
    records: dict[str, MidRecord] = {}
    mids: dict[str, MidRecord] = {}
    for value in values:
        record = known.get(value)
        if record is None:
            try:
                parsed = json.loads(value)
            except ValueError:
                return None
            record = MidRecord.from_json(parsed)
        records[value] = mids[record.mid] = record
    data = replace(RegistryData.from_json(doc), mids=mids)
    lines_of = {id(r): (r, v) for v, r in records.items() if mids.get(r.mid) is r}
    return _Parsed(text, data, records, lines_of)


def _list_values(rows: list[str]) -> list[str] | None:
    """The values of a list written one per line (``  value,`` … ``  value``), or None."""
    values = []
    for n, row in enumerate(rows):
        last = n == len(rows) - 1
        if not row.startswith("  ") or row.endswith(",") == last:
            return None
        values.append(row[2:] if last else row[2:-1])
    return values


def _render(data: RegistryData, previous: _Parsed | None) -> _Parsed:
    """The file's text for ``data`` (:func:`_text`) and its parse; records already encoded
    in ``previous`` keep their line, a record that differs from its previous version only in
    its SQN state gets that line with the new state (:func:`_sqn_line`)."""
    known = previous.lines if previous is not None else {}
    before = previous.data.mids if previous is not None else {}
    lines: dict[int, tuple[MidRecord, str]] = {}
    rows: list[str] = []
    for record in data.mids.values():
        seen = known.get(id(record))
        line = seen[1] if seen is not None and seen[0] is record else None
        if line is None:
            old = before.get(record.mid)
            seen = known.get(id(old)) if old is not None else None
            if old is not None and seen is not None and seen[0] is old:
                line = _sqn_line(old, seen[1], record)
        if line is None:
            line = json.dumps(record.to_json())
        lines[id(record)] = (record, line)
        rows.append(line)
    events = None
    if previous is not None and previous.data.audit is data.audit:
        events = previous.event_lines
    if events is None:
        events = [json.dumps(event) for event in data.audit]
    text = _text(data, rows, events)
    kept = RegistryData(data.version, data.ek_name, dict(data.mids), data.audit)
    records = {line: record for record, line in lines.values()}
    return _Parsed(text, kept, records, lines, events, text.encode())


#: the fields of a MID record other than its SQN state, in :meth:`MidRecord.to_json` order
_NOT_SQN = tuple(f for f in MidRecord.__dataclass_fields__ if f != "sqn")


def _sqn_line(old: MidRecord, line: str, new: MidRecord) -> str | None:
    """``json.dumps(new.to_json())`` from ``line`` (``old``'s) when ``new`` is ``old`` with
    another SQN state — every other field the very same object, as an AKA's commit makes
    it: only the SQN state (and the short fields after it) are encoded again, not the
    blobs. None when that does not hold."""
    for name in _NOT_SQN:
        if getattr(old, name) is not getattr(new, name):
            return None
    tail = f', "state": {json.dumps(new.state)}, "created": {json.dumps(new.created)}}}'
    ending = f'"sqn": {json.dumps(old.sqn.to_json())}{tail}'
    if not line.endswith(ending):
        return None
    return f'{line[: len(line) - len(ending)]}"sqn": {json.dumps(new.sqn.to_json())}{tail}'


#: the first header lines, the same in every file
_HEAD = [
    f" {json.dumps(key)}: {json.dumps(value)},"
    for key, value in (("format", FORMAT), ("version", REGISTRY_VERSION))
]


def _text(data: RegistryData, mid_lines: list[str], event_lines: list[str]) -> str:
    """The file's text, one line per MID (``mid_lines``: each record's JSON) and per audit
    event (``event_lines``: each event's JSON): written on every accepted AKA, so it goes
    through json's C encoder (which ``indent`` would bypass) and is parsed back line by line
    (:func:`_parse_lines`)."""
    lines = [
        *_HEAD,
        f' "counter": {json.dumps(data.version)},',
        f' "ek_name": "{data.ek_name.hex()}",',
    ]

    def listed(opening: str, items: list[str], closing: str) -> list[str]:
        if not items:
            return [opening, closing]
        return [opening, "  " + ",\n  ".join(items), closing]

    lines += listed(_MIDS_OPEN, mid_lines, _LIST_CLOSE)
    lines += listed(_AUDIT_OPEN, event_lines, " ]")
    return "\n".join(["{", *lines, "}"]) + "\n"
