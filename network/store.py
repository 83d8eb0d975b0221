"""Edge: SQLite. The operator side's persistent store: devices, sessions, verdicts, MIDs and
their lifecycle, HSS records, PCIDs, orders, cached responses and a hash-chained audit trail.

Crash safety: WAL journal, ``synchronous=FULL``, and every state change inside one
``BEGIN IMMEDIATE … COMMIT`` (:meth:`Store.transaction`), so a kill -9 at any instant leaves
either all of a request's effects or none. Requests are idempotent: the response to a request
is stored in the same transaction as its effects (keyed by a hash of the request), and HSS
records carry a unique ``request_id`` — a retry after a crash replays the stored answer and
never creates a second subscriber.

Secrets at rest (TR 33.812 §7.1.2.1 threat 4): K, OPc/TOPc, the credential secret S
and XRES are sealed with AES-256-GCM under the store key from the configuration, the associated
data naming table, column and row, so a sealed value cannot be moved to another row. The key
is never logged; a wrong key is detected at open.

Audit: entries are append-only (SQLite triggers refuse UPDATE and DELETE) and chained,
``digest_i = SHA-256(digest_{i-1} ‖ CBOR[seq, at, actor, event, subject, detail])``;
:meth:`Store.verify_audit` recomputes the chain. Truncating the tail is detectable only
against a digest kept elsewhere (:meth:`Store.audit_head`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from protocol.errors import BadConfig, CheckFailed, Unavailable
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

__all__ = ["STORE_KEY_SIZE", "Sealer", "Store", "StoreTransaction"]

STORE_KEY_SIZE = 32
_GENESIS = bytes(32)
_KEY_CHECK = b"trelab/store-key-check/v1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY, ek_cert BLOB NOT NULL, ak_public BLOB NOT NULL,
    ak_name BLOB NOT NULL, state TEXT NOT NULL, revoked INTEGER NOT NULL,
    sequence INTEGER NOT NULL, last_quote BLOB NOT NULL, last_quote_sig BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    session_id BLOB PRIMARY KEY, kind TEXT NOT NULL, phase TEXT NOT NULL,
    transcript BLOB NOT NULL, created INTEGER NOT NULL, expires INTEGER NOT NULL,
    device_id TEXT NOT NULL, sho TEXT NOT NULL, mid_id TEXT NOT NULL, imsi TEXT NOT NULL,
    data BLOB NOT NULL, secrets BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS responses (
    request_id BLOB PRIMARY KEY, session_id BLOB NOT NULL, response BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS verdicts (
    session_id BLOB PRIMARY KEY, device_id TEXT NOT NULL, ak_name BLOB NOT NULL,
    pcr_digest BLOB NOT NULL, not_after INTEGER NOT NULL, cose BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS mids (
    mid_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, sho TEXT NOT NULL,
    imsi TEXT NOT NULL UNIQUE, state TEXT NOT NULL, sequence INTEGER NOT NULL,
    session_id BLOB NOT NULL, slot INTEGER NOT NULL, command_seq INTEGER NOT NULL,
    names BLOB NOT NULL, updated INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS hss_records (
    imsi TEXT PRIMARY KEY, sho TEXT NOT NULL, algorithm TEXT NOT NULL, params TEXT NOT NULL,
    k BLOB NOT NULL, opc BLOB NOT NULL, amf BLOB NOT NULL, sqn TEXT NOT NULL,
    state TEXT NOT NULL, request_id TEXT NOT NULL UNIQUE, mid_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS msin_counters (sho TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pcids (
    imsi TEXT PRIMARY KEY, not_before INTEGER NOT NULL, not_after INTEGER NOT NULL,
    device_id TEXT NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS grants (
    token_hash BLOB PRIMARY KEY, pcid TEXT NOT NULL, not_after INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    mid_id TEXT PRIMARY KEY, transition TEXT NOT NULL, sho TEXT NOT NULL,
    state TEXT NOT NULL, sequence INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS home_network_keys (
    sho TEXT NOT NULL, key_id INTEGER NOT NULL, profile INTEGER NOT NULL,
    private BLOB NOT NULL, public BLOB NOT NULL, state TEXT NOT NULL, created INTEGER NOT NULL,
    PRIMARY KEY (sho, key_id));
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, actor TEXT NOT NULL, event TEXT NOT NULL,
    subject TEXT NOT NULL, detail BLOB NOT NULL, prev BLOB NOT NULL, digest BLOB NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""


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
    return cbor2.dumps(value, canonical=True)


def _uncbor(data: bytes) -> Any:
    return cbor2.loads(data)


def _audit_digest(
    prev: bytes, seq: int, at: int, actor: str, event: str, subject: str, detail: bytes
) -> bytes:
    return hashlib.sha256(prev + _cbor([seq, at, actor, event, subject, detail])).digest()


class StoreTransaction:
    """The :class:`~protocol.records.Ledger` of one open transaction (valid inside
    :meth:`Store.transaction` only), plus the idempotence cache."""

    def __init__(self, db: sqlite3.Connection, sealer: Sealer) -> None:
        self._db = db
        self._sealer = sealer

    def _one(self, sql: str, *args: Any) -> Any:
        return self._db.execute(sql, args).fetchone()

    # -- idempotence ------------------------------------------------------------------------

    def response(self, request_id: bytes) -> bytes | None:
        row = self._one("SELECT response FROM responses WHERE request_id = ?", request_id)
        return None if row is None else bytes(row[0])

    def put_response(self, request_id: bytes, session_id: bytes, response: bytes) -> None:
        self._db.execute(
            "INSERT INTO responses (request_id, session_id, response) VALUES (?, ?, ?)",
            (request_id, session_id, response),
        )

    # -- devices ----------------------------------------------------------------------------

    def device(self, device_id: str) -> DeviceRecord | None:
        row = self._one("SELECT * FROM devices WHERE device_id = ?", device_id)
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
            "INSERT OR REPLACE INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        row = self._one("SELECT * FROM sessions WHERE session_id = ?", session_id)
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
            "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        row = self._one("SELECT * FROM verdicts WHERE session_id = ?", session_id)
        if row is None:
            return None
        return VerdictRecord(
            bytes(row[0]), row[1], bytes(row[2]), bytes(row[3]), row[4], bytes(row[5])
        )

    def put_verdict(self, r: VerdictRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?)",
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
        row = self._one("SELECT * FROM mids WHERE mid_id = ?", mid_id)
        return None if row is None else self._mid(row)

    def put_mid(self, r: MidRecord) -> None:
        self._db.execute(
            "INSERT INTO mids VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (mid_id) DO UPDATE"
            " SET device_id = excluded.device_id, sho = excluded.sho, imsi = excluded.imsi,"
            " state = excluded.state, sequence = excluded.sequence, session_id = excluded.session_id,"
            " slot = excluded.slot, command_seq = excluded.command_seq, names = excluded.names,"
            " updated = excluded.updated",
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
        row = self._one("SELECT * FROM hss_records WHERE imsi = ?", imsi)
        return None if row is None else self._hss(row)

    def hss_by_request(self, request_id: str) -> HssRecord | None:
        row = self._one("SELECT * FROM hss_records WHERE request_id = ?", request_id)
        return None if row is None else self._hss(row)

    def put_hss(self, r: HssRecord) -> None:
        self._db.execute(
            # an upsert on the IMSI only: a second record under a used request id is an error,
            # never a silent replacement (REPLACE would delete the other row)
            "INSERT INTO hss_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (imsi) DO UPDATE"
            " SET sho = excluded.sho, algorithm = excluded.algorithm, params = excluded.params,"
            " k = excluded.k, opc = excluded.opc, amf = excluded.amf, sqn = excluded.sqn,"
            " state = excluded.state, request_id = excluded.request_id, mid_id = excluded.mid_id",
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

    def hss_count(self, sho: str | None = None) -> int:
        if sho is None:
            return int(self._one("SELECT COUNT(*) FROM hss_records")[0])
        return int(self._one("SELECT COUNT(*) FROM hss_records WHERE sho = ?", sho)[0])

    def next_msin(self, sho: str) -> int:
        row = self._one("SELECT next FROM msin_counters WHERE sho = ?", sho)
        value = 1 if row is None else int(row[0])
        self._db.execute(
            "INSERT OR REPLACE INTO msin_counters (sho, next) VALUES (?, ?)", (sho, value + 1)
        )
        return value

    # -- SIDF -------------------------------------------------------------------------------

    def hn_keys(self, sho: str) -> list[HomeNetworkKey]:
        rows = self._db.execute(
            "SELECT key_id, profile, private, public, state, created FROM home_network_keys"
            " WHERE sho = ? ORDER BY key_id",
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
            "INSERT OR REPLACE INTO home_network_keys VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        row = self._one("SELECT * FROM pcids WHERE imsi = ?", imsi)
        return None if row is None else PcidRecord(row[0], row[1], row[2], row[3], row[4])

    def put_pcid(self, r: PcidRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO pcids VALUES (?, ?, ?, ?, ?)",
            (r.imsi, r.not_before, r.not_after, r.device_id, r.state),
        )

    def grant(self, token_hash: bytes) -> tuple[str, int] | None:
        row = self._one("SELECT pcid, not_after FROM grants WHERE token_hash = ?", token_hash)
        return None if row is None else (row[0], int(row[1]))

    def put_grant(self, token_hash: bytes, pcid: str, not_after: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO grants VALUES (?, ?, ?)", (token_hash, pcid, not_after)
        )

    # -- lifecycle orders ---------------------------------------------------------------------

    def order(self, mid_id: str) -> OrderRecord | None:
        row = self._one("SELECT * FROM orders WHERE mid_id = ?", mid_id)
        return None if row is None else OrderRecord(row[0], row[1], row[2], row[3], row[4])

    def put_order(self, r: OrderRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO orders VALUES (?, ?, ?, ?, ?)",
            (r.mid_id, r.transition, r.sho, r.state, r.sequence),
        )

    # -- audit ------------------------------------------------------------------------------

    def audit(
        self, at: int, actor: str, event: str, subject: str, detail: Mapping[str, Any]
    ) -> None:
        row = self._one("SELECT seq, digest FROM audit ORDER BY seq DESC LIMIT 1")
        seq, prev = (1, _GENESIS) if row is None else (int(row[0]) + 1, bytes(row[1]))
        blob = _cbor(dict(detail))
        digest = _audit_digest(prev, seq, at, actor, event, subject, blob)
        self._db.execute(
            "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, at, actor, event, subject, blob, prev, digest),
        )


class Store:
    """The SQLite file at ``path`` (created 0600), sealed with ``key``; thread-safe (one
    connection, one transaction at a time — SQLite has a single writer anyway)."""

    def __init__(self, path: str | os.PathLike[str], key: bytes) -> None:
        self.path = Path(path)
        self._sealer = Sealer(key)
        self._lock = threading.RLock()
        try:
            if not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise Unavailable(f"store {self.path}: {exc}") from None
        self._db = db
        self._check_key()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def _check_key(self) -> None:
        with self.transaction() as tx:
            row = tx._one("SELECT value FROM meta WHERE key = 'key_check'")
            if row is None:
                self._db.execute(
                    "INSERT INTO meta VALUES ('key_check', ?)",
                    (self._sealer.seal("meta/key_check", _KEY_CHECK),),
                )
                return
            try:
                ok = self._sealer.open("meta/key_check", bytes(row[0])) == _KEY_CHECK
            except CheckFailed:
                ok = False
        if not ok:
            self.close()
            raise BadConfig(f"store {self.path}: the configured store key does not open it")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        """One atomic unit: everything done through the yielded ledger commits together, or
        (on any exception) not at all.

        Raises:
            Unavailable: the database is locked for too long or unreadable.
        """
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise Unavailable(f"store {self.path}: {exc}") from None
            try:
                yield StoreTransaction(self._db, self._sealer)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise Unavailable(f"store {self.path}: commit failed: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def audit_events(self) -> list[AuditEvent]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM audit ORDER BY seq").fetchall()
        return [
            AuditEvent(r[0], r[1], r[2], r[3], r[4], _uncbor(bytes(r[5])), bytes(r[6]), bytes(r[7]))
            for r in rows
        ]

    def audit_head(self) -> tuple[int, bytes]:
        """(last seq, last digest): keep it elsewhere to detect a truncated tail later."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq, digest FROM audit ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        return (0, _GENESIS) if row is None else (int(row[0]), bytes(row[1]))

    def verify_audit(self, head: tuple[int, bytes] | None = None) -> int:
        """Recompute the audit chain; returns the number of entries.

        Raises:
            CheckFailed: an entry was altered, removed or reordered, or the chain does not
                reach ``head``.
        """
        with self._lock:
            rows = self._db.execute("SELECT * FROM audit ORDER BY seq").fetchall()
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
