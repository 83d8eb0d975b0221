"""The operator store on both engines (SQLite, PostgreSQL): atomic transactions, secrets sealed
at rest, the key check, the append-only hash-chained audit trail, numbered migrations. (The
kill -9 crash test is in tests/integration/test_network_server.py: it needs a subprocess.)"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from network.config import NetworkConfig
from network.migrations import LATEST, MIGRATIONS, ddl
from network.store import Store, StoreConflict
from protocol.errors import BadConfig, CheckFailed
from protocol.records import DeviceRecord, HssRecord, SessionRecord
from trelab.errors import BadInput


def hss(imsi: str, request: str) -> HssRecord:
    return HssRecord(
        imsi, "sho-a", "milenage", {}, os.urandom(16), os.urandom(16), request_id=request
    )


class Raw:
    """Someone with direct access to the database (no store key): runs SQL as written."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.error: type[Exception]
        if url.startswith("sqlite://"):
            self._db: Any = sqlite3.connect(url[len("sqlite://") :], isolation_level=None)
            self.error = sqlite3.DatabaseError
            self._mark = "?"
        else:
            import psycopg

            self._db = psycopg.connect(url, autocommit=True)
            self.error = psycopg.Error
            self._mark = "%s"

    def execute(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        cursor = self._db.execute(sql.replace("?", self._mark), args)
        return list(cursor.fetchall()) if cursor.description else []

    def drop_trigger(self, name: str) -> None:
        self.execute(f"DROP TRIGGER {name}" + ("" if self._mark == "?" else " ON audit"))

    def close(self) -> None:
        self._db.close()


@pytest.fixture
def raw(store_url: str, store: Store) -> Iterator[Raw]:
    attacker = Raw(store_url)
    yield attacker
    attacker.close()


def test_transaction_is_all_or_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.put_hss(hss("001010000000001", "r1"))
        tx.audit(1, "sho-a", "hss-record", "001010000000001", {})
        raise RuntimeError("crash in the middle")
    with store.transaction() as tx:
        assert tx.hss("001010000000001") is None
        assert tx.hss_count() == 0
    assert store.verify_audit() == 0


def test_records_round_trip(store: Store) -> None:
    record = hss("001010000000002", "r2")
    session = SessionRecord(os.urandom(32), "provision", "registered", os.urandom(32), 5, 10, "dev", "sho-a",
                            data={"nonce": b"n", "count": 2}, secrets={"credential": os.urandom(32)})  # fmt: skip
    device = DeviceRecord("ab" * 33, b"cert", b"ak", b"name", sequence=4)
    with store.transaction() as tx:
        tx.put_hss(record)
        tx.put_session(session)
        tx.put_device(device)
    with store.transaction() as tx:
        assert tx.hss(record.imsi) == record
        assert tx.hss_by_request("r2") == record
        assert tx.session(session.session_id) == session
        assert tx.device(device.device_id) == device
        tx.put_device(DeviceRecord("ab" * 33, b"cert", b"ak", b"name", sequence=5))
    with store.transaction() as tx:
        got = tx.device(device.device_id)
        assert got is not None and got.sequence == 5  # an upsert replaces the row


def test_secrets_are_sealed_at_rest(store: Store, raw: Raw, tmp_path: Path) -> None:
    record = hss("001010000000003", "r3")
    secret = os.urandom(32)
    sid = os.urandom(32)
    with store.transaction() as tx:
        tx.put_hss(record)
        tx.put_session(
            SessionRecord(sid, "attach", "start", bytes(32), 0, 1, secrets={"xres": secret})
        )
    cells = [
        v if isinstance(v, bytes) else str(v).encode()
        for table in ("hss_records", "sessions")
        for row in raw.execute(f"SELECT * FROM {table}")
        for v in row
    ]
    stored = b"".join(bytes(c) for c in cells)
    if store.path is not None:  # SQLite: the file and its journal, as a thief would copy them
        store.close()
        stored += b"".join(p.read_bytes() for p in tmp_path.glob("network.db*"))
    assert record.imsi.encode() in stored  # the rows are readable: the secrets are what is hidden
    for value in (record.k, record.opc, secret):
        assert value not in stored


def test_a_sealed_value_cannot_be_moved_to_another_row(store: Store, raw: Raw) -> None:
    a, b = hss("001010000000004", "r4"), hss("001010000000005", "r5")
    with store.transaction() as tx:
        tx.put_hss(a)
        tx.put_hss(b)
    raw.execute(
        "UPDATE hss_records SET k = (SELECT k FROM hss_records WHERE imsi = ?) WHERE imsi = ?",
        a.imsi,
        b.imsi,
    )
    with (
        pytest.raises(CheckFailed, match="hss_records/k/001010000000005"),
        store.transaction() as tx,
    ):
        tx.hss(b.imsi)


def test_wrong_store_key_is_refused(store_url: str, store: Store) -> None:
    with pytest.raises(BadConfig, match="store key does not open"):
        Store(store_url, os.urandom(32))


def test_request_ids_make_hss_records_unique(store: Store) -> None:
    with store.transaction() as tx:
        tx.put_hss(hss("001010000000006", "same"))
    with pytest.raises(StoreConflict, match="request_id"), store.transaction() as tx:
        tx.put_hss(hss("001010000000007", "same"))
    with store.transaction() as tx:
        assert tx.hss_count() == 1


def test_a_subscribers_state_changes_alone(store: Store, raw: Raw) -> None:
    record = hss("001010000000008", "r8")
    with store.transaction() as tx:
        tx.put_hss(record)
    sealed = raw.execute("SELECT k, opc FROM hss_records WHERE imsi = ?", record.imsi)
    with store.transaction() as tx:
        assert tx.set_hss_state(record.imsi, "active")
        assert not tx.set_hss_state("001010000000009", "active")  # no such subscriber
    with store.transaction() as tx:
        assert tx.hss(record.imsi) == dataclasses.replace(record, state="active")
        assert tx.hss("001010000000009") is None
    assert raw.execute("SELECT k, opc FROM hss_records WHERE imsi = ?", record.imsi) == sealed


def test_msin_counter_counts_per_sho(store: Store) -> None:
    with store.transaction() as tx:
        drawn = [tx.next_msin("sho-a"), tx.next_msin("sho-a"), tx.next_msin("sho-b")]
    with store.transaction() as tx:
        drawn.append(tx.next_msin("sho-a"))
    assert drawn == [1, 2, 1, 3]


def test_audit_chain_verifies_and_detects_tampering(store: Store, raw: Raw) -> None:
    for i in range(4):
        with store.transaction() as tx:
            tx.audit(i, "drf", "register", f"dev{i}", {"n": i})
    with store.transaction() as tx:  # two entries in one transaction chain in order
        tx.audit(4, "drf", "register", "dev4", {"n": 4})
        tx.audit(5, "drf", "register", "dev5", {"n": 5})
    head = store.audit_head()
    assert store.verify_audit(head) == 6
    assert [e.subject for e in store.audit_events()] == [f"dev{i}" for i in range(6)]
    with pytest.raises(raw.error, match="append-only"):
        raw.execute("UPDATE audit SET subject = 'x' WHERE seq = 2")
    with pytest.raises(raw.error, match="append-only"):
        raw.execute("DELETE FROM audit WHERE seq = 5")
    raw.drop_trigger("audit_no_update")  # someone with the database can drop triggers …
    raw.execute("UPDATE audit SET subject = 'forged' WHERE seq = 3")
    with pytest.raises(CheckFailed, match="entry 3 was altered"):  # … but not fix the chain
        store.verify_audit()
    raw.drop_trigger("audit_no_delete")
    raw.execute("DELETE FROM audit WHERE seq >= 3")
    assert store.verify_audit() == 2  # a cut tail is self-consistent …
    with pytest.raises(CheckFailed, match="truncated"):
        store.verify_audit(head)  # … and caught against a head kept elsewhere


# ---- migrations ------------------------------------------------------------------------------


def test_a_new_store_is_at_the_latest_schema_and_reopens_unchanged(
    store_url: str, store: Store, raw: Raw, config: NetworkConfig
) -> None:
    assert store.version() == LATEST
    with store.transaction() as tx:
        tx.put_hss(hss("001010000000008", "r8"))
    again = Store(store_url, config.store_key)
    try:
        assert again.version() == LATEST
        with again.transaction() as tx:
            assert tx.hss_count() == 1
    finally:
        again.close()
    rows = raw.execute("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]


def test_a_store_from_a_newer_trelab_is_refused(
    store_url: str, store: Store, raw: Raw, config: NetworkConfig
) -> None:
    raw.execute("INSERT INTO schema_migrations (version, name) VALUES (?, 'from the future')",
                LATEST + 1)  # fmt: skip
    with pytest.raises(BadConfig, match=f"schema version {LATEST + 1} is newer"):
        Store(store_url, config.store_key)


def test_a_store_made_before_numbered_migrations_is_adopted(tmp_path: Path) -> None:
    """A SQLite file with the tables but no schema_migrations (as made before) opens at the
    latest version with its rows intact."""
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        for statement in MIGRATIONS[0].for_dialect("sqlite"):
            db.execute(statement)
        db.execute("INSERT INTO msin_counters VALUES ('sho-a', 41)")
        db.commit()
    store = Store(path, os.urandom(32))
    try:
        assert store.version() == LATEST
        with store.transaction() as tx:
            assert tx.next_msin("sho-a") == 41
    finally:
        store.close()


def test_neutral_ddl_becomes_postgresql_types() -> None:
    assert ddl("a BLOB NOT NULL, b INTEGER, blobby TEXT", "postgresql") == (
        "a BYTEA NOT NULL, b BIGINT, blobby TEXT"
    )
    assert ddl("a BLOB", "sqlite") == "a BLOB"


def test_store_locations() -> None:
    with pytest.raises(BadInput, match="mysql:// is not a store"):
        Store("mysql://x/y", os.urandom(32))
    with pytest.raises(BadInput, match="path is missing"):
        Store("sqlite://", os.urandom(32))


def test_many_openers_of_a_fresh_store_at_once_all_open(
    store_url: str, config: NetworkConfig
) -> None:
    """Several workers or servers starting at once on a new database (each opening the store
    after its fork): every one migrates or waits, and agrees on the key check — none fails."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    gate = threading.Barrier(6)

    def open_store(_: int) -> Store | Exception:
        gate.wait()
        try:
            return Store(store_url, config.store_key)
        except Exception as exc:  # what each opener met, to report them all
            return exc

    with ThreadPoolExecutor(6) as pool:
        opened = list(pool.map(open_store, range(6)))
    stores = [s for s in opened if isinstance(s, Store)]
    try:
        assert len(stores) == 6, [str(s) for s in opened if not isinstance(s, Store)]
    finally:
        for s in stores:
            s.close()
    with pytest.raises(BadConfig, match="store key"):
        Store(store_url, os.urandom(32))
