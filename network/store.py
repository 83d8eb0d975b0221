"""Edge: SQLite or PostgreSQL (:mod:`network.engines`). The operator side's persistent store:
devices, sessions, verdicts, MIDs and their lifecycle, HSS records, PCIDs, orders, cached
responses and a hash-chained audit trail — one schema (:mod:`network.migrations`) on both.

Crash safety: every state change inside one transaction (:meth:`Store.transaction`), so a
kill -9 at any instant leaves either all of a request's effects or none (SQLite: WAL,
``synchronous=FULL``, ``BEGIN IMMEDIATE``; PostgreSQL: its own WAL). Requests are idempotent:
the response to a request is stored in the same transaction as its effects (keyed by a hash of
the request), and HSS records carry a unique ``request_id`` — a retry after a crash, on this
server or another sharing the database, replays the stored answer and never creates a second
subscriber. Concurrency on PostgreSQL (several workers, several servers): keyed reads lock
their row, identical requests wait for each other, the MSIN counter is one atomic statement
and MIDs' IMSIs are unique — see :mod:`network.engines`.

Secrets at rest (TR 33.812 §7.1.2.1 threat 4): K, OPc/TOPc, the credential secret S
and XRES are sealed with AES-256-GCM under the store key from the configuration, the associated
data naming table, column and row, so a sealed value cannot be moved to another row. The key
is never logged; a wrong key is detected at open.

Audit: entries are append-only (triggers on both engines refuse UPDATE and DELETE) and chained,
``digest_i = SHA-256(digest_{i-1} ‖ CBOR[seq, at, actor, event, subject, detail])``;
:meth:`Store.verify_audit` recomputes the chain. A transaction's entries are appended just
before it commits, under a lock on the chain's tail, so concurrent requests never fork the
chain and hold that lock only briefly. Truncating the tail is detectable only against a digest
kept elsewhere (:meth:`Store.audit_head`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from network.engines import (
    AUDIT_LOCK,
    MIGRATION_LOCK,
    Connection,
    Engine,
    StoreConflict,
    open_engine,
)
from network.migrations import LATEST, MIGRATIONS
from protocol import canonical_cbor
from protocol.errors import BadConfig, BadInput, CheckFailed
from protocol.records import (
    AuditEvent,
    DeviceRecord,
    HomeNetworkKey,
    HssRecord,
    MidRecord,
    OrderRecord,
    PcidRecord,
    SessionRecord,
    VerdictRecord,
)

__all__ = ["STORE_KEY_SIZE", "Sealer", "Store", "StoreConflict", "StoreTransaction"]

STORE_KEY_SIZE = 32
_GENESIS = bytes(32)
_KEY_CHECK = b"trelab/store-key-check/v1"


class Sealer:
    """AES-256-GCM sealing of secrets at rest; the associated data names where a value lives."""

    __slots__ = ("_aead", "_random")

    def __init__(self, key: bytes, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        if not isinstance(key, bytes) or len(key) != STORE_KEY_SIZE:
            raise BadConfig(f"store key: {STORE_KEY_SIZE} bytes expected")
        self._aead = AESGCM(key)
        self._random = random_bytes

    def __repr__(self) -> str:
        return "Sealer(<store key hidden>)"

    def seal(self, where: str, plaintext: bytes) -> bytes:
        nonce = self._random(12)
        return nonce + self._aead.encrypt(nonce, plaintext, where.encode())

    def open(self, where: str, sealed: bytes) -> bytes:
        """Raises: CheckFailed: the value was altered, moved, or sealed under another key."""
        try:
            plain: bytes = self._aead.decrypt(sealed[:12], sealed[12:], where.encode())
            return plain
        except (InvalidTag, ValueError):
            raise CheckFailed(
                f"sealed value at {where} does not open (altered or wrong key)"
            ) from None


def _cbor(value: Any) -> bytes:
    return canonical_cbor.dumps(value)


def _uncbor(data: bytes) -> Any:
    return cbor2.loads(data)


def _audit_digest(
    prev: bytes, seq: int, at: int, actor: str, event: str, subject: str, detail: bytes
) -> bytes:
    return hashlib.sha256(prev + _cbor([seq, at, actor, event, subject, detail])).digest()


@functools.lru_cache(maxsize=64)
def _upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """INSERT … ON CONFLICT (key) DO UPDATE: the same on both engines; a clash on another
    unique column is an error, never a silent replacement (REPLACE would delete that row).
    Built once per (table, columns, key): callers pass this module's constant tuples."""
    marks = ", ".join("?" for _ in columns)
    changes = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    conflict = f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {changes}"
    # identifiers are this module's constants; values are bound
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})" + conflict  # noqa: S608


@functools.lru_cache(maxsize=8)
def _audit_insert(entries: int) -> str:
    """One INSERT of ``entries`` audit rows (a transaction's entries go in together)."""
    rows = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * entries)
    columns = "seq, at, actor, event, subject, detail, prev, digest"
    return f"INSERT INTO audit ({columns}) VALUES {rows}"  # noqa: S608 - placeholders only


_DEVICE_COLUMNS = ("device_id", "ek_cert", "ak_public", "ak_name", "state", "revoked",
                   "sequence", "last_quote", "last_quote_sig")  # fmt: skip
_SESSION_COLUMNS = ("session_id", "kind", "phase", "transcript", "created", "expires",
                    "device_id", "sho", "mid_id", "imsi", "data", "secrets")  # fmt: skip
_VERDICT_COLUMNS = ("session_id", "device_id", "ak_name", "pcr_digest", "not_after", "cose")
_MID_COLUMNS = ("mid_id", "device_id", "sho", "imsi", "state", "sequence", "session_id", "slot",
                "command_seq", "names", "updated")  # fmt: skip
_HSS_COLUMNS = ("imsi", "sho", "algorithm", "params", "k", "opc", "amf", "sqn", "state",
                "request_id", "mid_id")  # fmt: skip
_HN_KEY_COLUMNS = ("sho", "key_id", "profile", "private", "public", "state", "created")
_PCID_COLUMNS = ("imsi", "not_before", "not_after", "device_id", "state")
_ORDER_COLUMNS = ("mid_id", "transition", "sho", "state", "sequence")


class StoreTransaction:
    """The :class:`~protocol.records.Ledger` of one open transaction (valid inside
    :meth:`Store.transaction` only), plus the idempotence cache. Keyed reads lock their row
    until the transaction ends (PostgreSQL; SQLite's transactions are serial anyway)."""

    def __init__(self, db: Connection, sealer: Sealer, engine: Engine) -> None:
        self._db = db
        self._sealer = sealer
        self._engine = engine
        self._lock = engine.for_update()
        self._pending_audit: list[tuple[int, str, str, str, bytes]] = []

    def _one(self, sql: str, *args: Any) -> Any:
        return self._db.execute(sql, args).fetchone()

    def _row(self, table: str, key: str, value: Any) -> Any:
        """The row of ``table`` whose ``key`` is ``value``, locked for this transaction."""
        sql = f"SELECT * FROM {table} WHERE {key} = ?{self._lock}"  # noqa: S608 - constants
        return self._one(sql, value)

    # -- idempotence ------------------------------------------------------------------------

    def response(self, request_id: bytes) -> bytes | None:
        """The stored reply to this request, if any; an identical request in flight elsewhere
        is waited for first (so its reply is found, not computed twice)."""
        self._engine.lock_request(self._db, request_id)
        row = self._one("SELECT response FROM responses WHERE request_id = ?", request_id)
        return None if row is None else bytes(row[0])

    def put_response(self, request_id: bytes, session_id: bytes, response: bytes) -> None:
        self._db.execute(
            "INSERT INTO responses (request_id, session_id, response) VALUES (?, ?, ?)",
            (request_id, session_id, response),
        )

    # -- devices ----------------------------------------------------------------------------

    def device(self, device_id: str) -> DeviceRecord | None:
        row = self._row("devices", "device_id", device_id)
        if row is None:
            return None
        return DeviceRecord(
            device_id=row[0],
            ek_cert=bytes(row[1]),
            ak_public=bytes(row[2]),
            ak_name=bytes(row[3]),
            state=row[4],
            revoked=bool(row[5]),
            sequence=row[6],
            last_quote=bytes(row[7]),
            last_quote_sig=bytes(row[8]),
        )

    def put_device(self, r: DeviceRecord) -> None:
        self._db.execute(
            _upsert("devices", _DEVICE_COLUMNS, ("device_id",)),
            (
                r.device_id,
                r.ek_cert,
                r.ak_public,
                r.ak_name,
                r.state,
                int(r.revoked),
                r.sequence,
                r.last_quote,
                r.last_quote_sig,
            ),
        )

    # -- sessions ---------------------------------------------------------------------------

    def session(self, session_id: bytes) -> SessionRecord | None:
        row = self._row("sessions", "session_id", session_id)
        if row is None:
            return None
        where = f"sessions/secrets/{session_id.hex()}"
        secrets = _uncbor(self._sealer.open(where, bytes(row[11])))
        return SessionRecord(
            session_id=bytes(row[0]),
            kind=row[1],
            phase=row[2],
            transcript=bytes(row[3]),
            created=row[4],
            expires=row[5],
            device_id=row[6],
            sho=row[7],
            mid_id=row[8],
            imsi=row[9],
            data=_uncbor(bytes(row[10])),
            secrets=secrets,
        )

    def put_session(self, r: SessionRecord) -> None:
        where = f"sessions/secrets/{r.session_id.hex()}"
        self._db.execute(
            _upsert("sessions", _SESSION_COLUMNS, ("session_id",)),
            (
                r.session_id,
                r.kind,
                r.phase,
                r.transcript,
                r.created,
                r.expires,
                r.device_id,
                r.sho,
                r.mid_id,
                r.imsi,
                _cbor(dict(r.data)),
                self._sealer.seal(where, _cbor(dict(r.secrets))),
            ),
        )

    # -- verdicts ---------------------------------------------------------------------------

    def verdict(self, session_id: bytes) -> VerdictRecord | None:
        row = self._row("verdicts", "session_id", session_id)
        if row is None:
            return None
        return VerdictRecord(
            bytes(row[0]), row[1], bytes(row[2]), bytes(row[3]), row[4], bytes(row[5])
        )

    def put_verdict(self, r: VerdictRecord) -> None:
        self._db.execute(
            _upsert("verdicts", _VERDICT_COLUMNS, ("session_id",)),
            (r.session_id, r.device_id, r.ak_name, r.pcr_digest, r.not_after, r.cose),
        )

    # -- MIDs -------------------------------------------------------------------------------

    @staticmethod
    def _mid(row: Any) -> MidRecord:
        return MidRecord(
            mid_id=row[0],
            device_id=row[1],
            sho=row[2],
            imsi=row[3],
            state=row[4],
            sequence=row[5],
            session_id=bytes(row[6]),
            slot=row[7],
            command_seq=row[8],
            names=_uncbor(bytes(row[9])),
            updated=row[10],
        )

    def mid(self, mid_id: str) -> MidRecord | None:
        row = self._row("mids", "mid_id", mid_id)
        return None if row is None else self._mid(row)

    def put_mid(self, r: MidRecord) -> None:
        self._db.execute(
            _upsert("mids", _MID_COLUMNS, ("mid_id",)),
            (
                r.mid_id,
                r.device_id,
                r.sho,
                r.imsi,
                r.state,
                r.sequence,
                r.session_id,
                r.slot,
                r.command_seq,
                _cbor(dict(r.names)),
                r.updated,
            ),
        )

    def mids(self, *, device_id: str | None = None, sho: str | None = None) -> list[MidRecord]:
        sql, args = "SELECT * FROM mids WHERE 1 = 1", list[str]()
        if device_id is not None:
            sql, args = sql + " AND device_id = ?", [*args, device_id]
        if sho is not None:
            sql, args = sql + " AND sho = ?", [*args, sho]
        rows = self._db.execute(sql + " ORDER BY device_id, sequence", args).fetchall()
        return [self._mid(row) for row in rows]

    # -- HSS --------------------------------------------------------------------------------

    def _hss(self, row: Any) -> HssRecord:
        imsi = row[0]
        return HssRecord(
            imsi=imsi,
            sho=row[1],
            algorithm=row[2],
            params=json.loads(row[3]),
            k=self._sealer.open(f"hss_records/k/{imsi}", bytes(row[4])),
            opc=self._sealer.open(f"hss_records/opc/{imsi}", bytes(row[5])),
            amf=bytes(row[6]),
            sqn=json.loads(row[7]),
            state=row[8],
            request_id=row[9],
            mid_id=row[10],
        )

    def hss(self, imsi: str) -> HssRecord | None:
        row = self._row("hss_records", "imsi", imsi)
        return None if row is None else self._hss(row)

    def hss_by_request(self, request_id: str) -> HssRecord | None:
        row = self._row("hss_records", "request_id", request_id)
        return None if row is None else self._hss(row)

    def put_hss(self, r: HssRecord) -> None:
        """Raises: StoreConflict: another record already carries this request id."""
        self._db.execute(
            _upsert("hss_records", _HSS_COLUMNS, ("imsi",)),
            (
                r.imsi,
                r.sho,
                r.algorithm,
                json.dumps(dict(r.params), sort_keys=True),
                self._sealer.seal(f"hss_records/k/{r.imsi}", r.k),
                self._sealer.seal(f"hss_records/opc/{r.imsi}", r.opc),
                r.amf,
                json.dumps(dict(r.sqn), sort_keys=True),
                r.state,
                r.request_id,
                r.mid_id,
            ),
        )

    def set_hss_state(self, imsi: str, state: str) -> bool:
        """A subscriber's state alone (K and OPc/TOPc stay sealed as stored, nothing else is
        read or rewritten); False: no such subscriber."""
        row = self._one(
            "UPDATE hss_records SET state = ? WHERE imsi = ? RETURNING imsi", state, imsi
        )
        return row is not None

    def hss_count(self, sho: str | None = None) -> int:
        if sho is None:
            return int(self._one("SELECT COUNT(*) FROM hss_records")[0])
        return int(self._one("SELECT COUNT(*) FROM hss_records WHERE sho = ?", sho)[0])

    def next_msin(self, sho: str) -> int:
        """The SHO's next subscriber number: one atomic statement, so two transactions never
        draw the same one."""
        row = self._one(
            "INSERT INTO msin_counters (sho, next) VALUES (?, 2) ON CONFLICT (sho)"
            " DO UPDATE SET next = msin_counters.next + 1 RETURNING next",
            sho,
        )
        return int(row[0]) - 1

    # -- SIDF -------------------------------------------------------------------------------

    def hn_keys(self, sho: str) -> list[HomeNetworkKey]:
        columns = "key_id, profile, private, public, state, created"
        rows = self._db.execute(
            f"SELECT {columns} FROM home_network_keys WHERE sho = ? ORDER BY key_id{self._lock}",  # noqa: S608
            (sho,),
        ).fetchall()
        return [
            HomeNetworkKey(
                sho,
                int(r[0]),
                int(r[1]),
                self._sealer.open(f"home_network_keys/{sho}/{int(r[0])}", bytes(r[2])),
                bytes(r[3]),
                str(r[4]),
                int(r[5]),
            )
            for r in rows
        ]

    def put_hn_key(self, r: HomeNetworkKey) -> None:
        self._db.execute(
            _upsert("home_network_keys", _HN_KEY_COLUMNS, ("sho", "key_id")),
            (
                r.sho,
                r.key_id,
                r.profile,
                self._sealer.seal(f"home_network_keys/{r.sho}/{r.key_id}", r.private),
                r.public,
                r.state,
                r.created,
            ),
        )

    # -- ICF --------------------------------------------------------------------------------

    def pcid(self, imsi: str) -> PcidRecord | None:
        row = self._row("pcids", "imsi", imsi)
        return None if row is None else PcidRecord(row[0], row[1], row[2], row[3], row[4])

    def put_pcid(self, r: PcidRecord) -> None:
        self._db.execute(
            _upsert("pcids", _PCID_COLUMNS, ("imsi",)),
            (r.imsi, r.not_before, r.not_after, r.device_id, r.state),
        )

    def grant(self, token_hash: bytes) -> tuple[str, int] | None:
        row = self._one("SELECT pcid, not_after FROM grants WHERE token_hash = ?", token_hash)
        return None if row is None else (row[0], int(row[1]))

    def put_grant(self, token_hash: bytes, pcid: str, not_after: int) -> None:
        self._db.execute(
            _upsert("grants", ("token_hash", "pcid", "not_after"), ("token_hash",)),
            (token_hash, pcid, not_after),
        )

    # -- lifecycle orders ---------------------------------------------------------------------

    def order(self, mid_id: str) -> OrderRecord | None:
        row = self._row("orders", "mid_id", mid_id)
        return None if row is None else OrderRecord(row[0], row[1], row[2], row[3], row[4])

    def put_order(self, r: OrderRecord) -> None:
        self._db.execute(
            _upsert("orders", _ORDER_COLUMNS, ("mid_id",)),
            (r.mid_id, r.transition, r.sho, r.state, r.sequence),
        )

    # -- OTA key sets and Ki transfers (Alternative 3a, network.transfer) ---------------------

    def ota_card(
        self, sho: str, iccid: str
    ) -> tuple[dict[int, bytes], dict[int, int], dict[str, Any]] | None:
        """(key sets by version — opened —, counters by version, facts) of a card ``sho``
        manages, locked for this transaction; or None."""
        row = self._one(
            f"SELECT keysets, counters, meta FROM ota_cards WHERE sho = ? AND iccid = ?{self._lock}",  # noqa: S608
            sho,
            iccid,
        )
        if row is None:
            return None
        keysets = {
            int(kvn): self._sealer.open(f"ota/{sho}/{iccid}/kvn{int(kvn)}", bytes(sealed))
            for kvn, sealed in _uncbor(bytes(row[0])).items()
        }
        counters = {int(k): int(v) for k, v in json.loads(row[1]).items()}
        return keysets, counters, json.loads(row[2])

    def put_ota_card(
        self,
        sho: str,
        iccid: str,
        keysets: Mapping[int, bytes],
        counters: Mapping[int, int],
        meta: Mapping[str, Any],
    ) -> None:
        sealed = {
            kvn: self._sealer.seal(f"ota/{sho}/{iccid}/kvn{kvn}", data)
            for kvn, data in keysets.items()
        }
        self._db.execute(
            _upsert("ota_cards", ("sho", "iccid", "keysets", "counters", "meta"), ("sho", "iccid")),
            (
                sho,
                iccid,
                _cbor(sealed),
                json.dumps({str(k): v for k, v in counters.items()}, sort_keys=True),
                json.dumps(dict(meta), sort_keys=True),
            ),
        )

    def ota_transfer(self, transfer_id: str) -> Any:
        """The journal document of a Ki transfer (locked for this transaction), or None."""
        row = self._row("ota_transfers", "transfer_id", transfer_id)
        if row is None:
            return None
        try:
            return json.loads(row[5])
        except (ValueError, RecursionError):
            raise BadInput("not JSON", field=f"OTA keyring: transfer {transfer_id}") from None

    def ota_transfer_ids(self, iccid: str, holder: str, requester: str) -> list[tuple[int, str]]:
        """(started, transfer id) of this card's transfers between these operators."""
        rows = self._db.execute(
            "SELECT started, transfer_id FROM ota_transfers"
            " WHERE iccid = ? AND holder = ? AND requester = ?",
            (iccid, holder, requester),
        ).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    def put_ota_transfer(
        self, transfer_id: str, iccid: str, holder: str, requester: str, started: int, doc: Any
    ) -> None:
        self._db.execute(
            _upsert(
                "ota_transfers",
                ("transfer_id", "iccid", "holder", "requester", "started", "journal"),
                ("transfer_id",),
            ),
            (transfer_id, iccid, holder, requester, started, json.dumps(doc, sort_keys=True)),
        )

    # -- audit ------------------------------------------------------------------------------

    def audit(
        self, at: int, actor: str, event: str, subject: str, detail: Mapping[str, Any]
    ) -> None:
        """Queue an audit entry: appended (chained) when the transaction commits."""
        self._pending_audit.append((at, actor, event, subject, _cbor(dict(detail))))

    def _append_audit(self) -> None:
        if not self._pending_audit:
            return
        self._engine.advisory_lock(self._db, AUDIT_LOCK)
        row = self._one("SELECT seq, digest FROM audit ORDER BY seq DESC LIMIT 1")
        seq, prev = (0, _GENESIS) if row is None else (int(row[0]), bytes(row[1]))
        values: list[Any] = []
        for at, actor, event, subject, blob in self._pending_audit:
            seq += 1
            digest = _audit_digest(prev, seq, at, actor, event, subject, blob)
            values += (seq, at, actor, event, subject, blob, prev, digest)
            prev = digest
        self._db.execute(_audit_insert(len(self._pending_audit)), values)  # one statement
        self._pending_audit.clear()


class Store:
    """The operator store at ``location`` — a SQLite file (created 0600; a path or
    ``sqlite://PATH``) or a PostgreSQL database (``postgresql://…``) — sealed with ``key``,
    migrated to the latest schema when opened. Thread-safe: SQLite runs one transaction at a
    time; PostgreSQL one per pooled connection."""

    def __init__(self, location: str | os.PathLike[str], key: bytes) -> None:
        self._sealer = Sealer(key)
        self._engine = open_engine(location)
        self.dialect = self._engine.dialect
        self.path: Path | None = self._engine.path
        try:
            self._migrate()
            self._check_key()
        except BaseException:
            self._engine.close()
            raise

    def __repr__(self) -> str:
        return f"Store({self._engine.where!r})"

    @property
    def where(self) -> str:
        """The store's location, without any password."""
        return self._engine.where

    def _migrate(self) -> None:
        with self._engine.transaction() as db:
            version = self._engine.schema_version(db)
        if version == LATEST:
            return  # nothing to write: a read-only store still opens
        if version > LATEST:
            raise BadConfig(
                f"store {self.where}: schema version {version} is newer than this trelab's"
                f" ({LATEST}); upgrade trelab"
            )
        for migration in MIGRATIONS:
            with self._engine.transaction() as db:
                self._engine.advisory_lock(db, MIGRATION_LOCK)
                db.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                    " name TEXT NOT NULL)"
                )
                if self._engine.schema_version(db) >= migration.version:
                    continue  # applied before, or by another server meanwhile
                for statement in migration.for_dialect(self.dialect):
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                    (migration.version, migration.name),
                )

    def version(self) -> int:
        """The schema version this store is at."""
        with self._engine.transaction() as db:
            return self._engine.schema_version(db)

    def _check_key(self) -> None:
        """The first opener of a new store seals a known value under its key; every later one
        must open it. Openers racing on a new store (workers or servers starting together)
        all write "if none yet" and then check the one that won."""
        with self.transaction() as tx:
            row = tx._one("SELECT value FROM meta WHERE key = 'key_check'")
            if row is None:
                tx._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('key_check', ?)"
                    " ON CONFLICT (key) DO NOTHING",
                    (self._sealer.seal("meta/key_check", _KEY_CHECK),),
                )
                row = tx._one("SELECT value FROM meta WHERE key = 'key_check'")
            try:
                ok = self._sealer.open("meta/key_check", bytes(row[0])) == _KEY_CHECK
            except CheckFailed:
                ok = False
        if not ok:
            raise BadConfig(f"store {self.where}: the configured store key does not open it")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        """One atomic unit: everything done through the yielded ledger commits together, or
        (on any exception) not at all.

        Raises:
            StoreConflict: a concurrent transaction changed the same record; nothing written.
            Unavailable: the database is unreachable, locked for too long, read-only or full.
        """
        with self._engine.transaction() as db:
            tx = StoreTransaction(db, self._sealer, self._engine)
            yield tx
            tx._append_audit()

    def run(self, work: Callable[[StoreTransaction], Any], *, attempts: int = 5) -> Any:
        """``work`` in a transaction, run again (up to ``attempts`` times) when it clashed with
        a concurrent one. ``work`` must have no effect outside the store."""
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction() as tx:
                    return work(tx)
            except StoreConflict:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def seal(self, where: str, data: bytes) -> bytes:
        """``data`` sealed under the store key, bound to ``where``."""
        return self._sealer.seal(where, data)

    def unseal(self, where: str, sealed: bytes) -> bytes:
        """Raises: CheckFailed: altered, moved, or sealed under another key."""
        return self._sealer.open(where, sealed)

    def close(self) -> None:
        self._engine.close()

    def _audit_rows(self) -> list[Any]:
        with self._engine.transaction() as db:
            return list(
                db.execute(
                    "SELECT seq, at, actor, event, subject, detail, prev, digest"
                    " FROM audit ORDER BY seq"
                ).fetchall()
            )

    def audit_events(self) -> list[AuditEvent]:
        return [
            AuditEvent(r[0], r[1], r[2], r[3], r[4], _uncbor(bytes(r[5])), bytes(r[6]), bytes(r[7]))
            for r in self._audit_rows()
        ]

    def audit_head(self) -> tuple[int, bytes]:
        """(last seq, last digest): keep it elsewhere to detect a truncated tail later."""
        with self._engine.transaction() as db:
            row = db.execute("SELECT seq, digest FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, _GENESIS) if row is None else (int(row[0]), bytes(row[1]))

    def verify_audit(self, head: tuple[int, bytes] | None = None) -> int:
        """Recompute the audit chain; returns the number of entries.

        Raises:
            CheckFailed: an entry was altered, removed or reordered, or the chain does not
                reach ``head``.
        """
        rows = self._audit_rows()
        prev = _GENESIS
        for index, r in enumerate(rows, start=1):
            seq, at, actor, event, subject, blob, stored_prev, digest = r
            if seq != index or bytes(stored_prev) != prev:
                raise CheckFailed(f"audit trail broken at entry {index}")
            if _audit_digest(prev, seq, at, actor, event, subject, bytes(blob)) != bytes(digest):
                raise CheckFailed(f"audit entry {seq} was altered")
            prev = bytes(digest)
        if head is not None and (len(rows), prev) != (head[0], head[1]):
            raise CheckFailed("audit trail does not reach the recorded head (truncated?)")
        return len(rows)
