"""The SQLite store: atomic transactions, secrets sealed at rest, the key check, the
append-only hash-chained audit trail. (The kill -9 crash test is in
tests/integration/test_network_server.py: it needs a subprocess.)"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from network.store import Store
from protocol.errors import BadConfig, CheckFailed
from protocol.records import DeviceRecord, HssRecord, SessionRecord


def hss(imsi: str, request: str) -> HssRecord:
    return HssRecord(
        imsi, "sho-a", "milenage", {}, os.urandom(16), os.urandom(16), request_id=request
    )


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


def test_secrets_are_sealed_at_rest(store: Store, tmp_path: Path) -> None:
    record = hss("001010000000003", "r3")
    secret = os.urandom(32)
    sid = os.urandom(32)
    with store.transaction() as tx:
        tx.put_hss(record)
        tx.put_session(
            SessionRecord(sid, "attach", "start", bytes(32), 0, 1, secrets={"xres": secret})
        )
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("network.db*"))
    assert record.imsi.encode() in raw  # the file is readable: the secrets are what is hidden
    for value in (record.k, record.opc, secret):
        assert value not in raw


def test_a_sealed_value_cannot_be_moved_to_another_row(store: Store) -> None:
    a, b = hss("001010000000004", "r4"), hss("001010000000005", "r5")
    with store.transaction() as tx:
        tx.put_hss(a)
        tx.put_hss(b)
    db = sqlite3.connect(store.path)
    db.execute(
        "UPDATE hss_records SET k = (SELECT k FROM hss_records WHERE imsi = ?) WHERE imsi = ?",
        (a.imsi, b.imsi),
    )
    db.commit()
    db.close()
    with (
        pytest.raises(CheckFailed, match="hss_records/k/001010000000005"),
        store.transaction() as tx,
    ):
        tx.hss(b.imsi)


def test_wrong_store_key_is_refused(tmp_path: Path, store: Store) -> None:
    with pytest.raises(BadConfig, match="store key does not open"):
        Store(store.path, os.urandom(32))


def test_request_ids_make_hss_records_unique(store: Store) -> None:
    with store.transaction() as tx:
        tx.put_hss(hss("001010000000006", "same"))
    with pytest.raises(sqlite3.IntegrityError), store.transaction() as tx:
        tx.put_hss(hss("001010000000007", "same"))
    with store.transaction() as tx:
        assert tx.hss_count() == 1


def test_audit_chain_verifies_and_detects_tampering(store: Store) -> None:
    for i in range(5):
        with store.transaction() as tx:
            tx.audit(i, "drf", "register", f"dev{i}", {"n": i})
    head = store.audit_head()
    assert store.verify_audit(head) == 5
    db = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit SET subject = 'x' WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM audit WHERE seq = 5")
    db.execute("DROP TRIGGER audit_no_update")  # an attacker with the file can drop triggers …
    db.execute("UPDATE audit SET subject = 'forged' WHERE seq = 3")
    db.commit()
    with pytest.raises(CheckFailed, match="entry 3 was altered"):  # … but not fix the chain
        store.verify_audit()
    db.execute("DROP TRIGGER audit_no_delete")
    db.execute("DELETE FROM audit WHERE seq >= 3")
    db.commit()
    db.close()
    assert store.verify_audit() == 2  # a cut tail is self-consistent …
    with pytest.raises(CheckFailed, match="truncated"):
        store.verify_audit(head)  # … and caught against a head kept elsewhere
