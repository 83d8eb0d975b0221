"""The store's faults, each against the real database: PostgreSQL restarted while a request is
inside its transaction, a database that is read-only, refuses writes, or is full — on
PostgreSQL and on SQLite. Each time: the request fails with 503 and a one-line reason, nothing
is half-written, and the device's retry of the same request succeeds once the fault is gone.

Making a SQLite file read-only as root takes the immutable attribute (``chattr +i``: root
ignores file modes); filling a disk takes a small tmpfs mounted for the test — both need root,
which CI and the lab set-up have; elsewhere the full-disk tests skip and say so."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.postgres import PostgresServer
from network.config import NetworkConfig
from network.roles import BuiltPackage, PackageInputs
from network.server import NetworkApp
from network.store import Store
from protocol.client import InProcessTransport
from protocol.errors import Unavailable

from .conftest import Clock, opaque_builder
from .test_concurrency import package_wire, validated_sessions

ROOT = os.geteuid() == 0
_names = iter(range(1, 1_000_000))


@pytest.fixture
def pg_database(postgres: PostgresServer) -> Iterator[tuple[str, str]]:
    """(name, URL) of a fresh database in the session's PostgreSQL."""
    name = f"faults_{os.getpid()}_{next(_names)}"
    url = postgres.create_database(name)
    yield name, url
    postgres.start()  # a test that stopped it leaves it running again
    postgres.drop_database(name)


def one_line_503(exc: object, *words: str) -> str:
    assert isinstance(exc, Unavailable), exc
    text = str(exc)
    assert "\n" not in text and text.startswith("network: store ")
    for word in words:
        assert word in text, text
    return text


def unchanged(store: Store) -> None:
    """Nothing of the failed request was written."""
    with store.transaction() as tx:
        assert tx.hss_count() == 0 and tx.mids() == []
    events = [e.event for e in store.audit_events()]
    assert "package" not in events and "hss-record" not in events
    store.verify_audit()


def retry_succeeds(url: str, config: NetworkConfig, clock: Clock, wire: bytes) -> None:
    store = Store(url, config.store_key)
    try:
        unchanged(store)
        app = NetworkApp(config, store, clock=clock, builder=opaque_builder)
        InProcessTransport(app).post("dpf/package", wire)
        with store.transaction() as tx:
            assert tx.hss_count() == 1 and len(tx.mids()) == 1
        store.verify_audit()
    finally:
        store.close()


def prepared(url: str, config: NetworkConfig, clock: Clock) -> bytes:
    """A migrated store with one device ready for its package; returns the request."""
    store = Store(url, config.store_key)
    try:
        app = NetworkApp(config, store, clock=clock, builder=opaque_builder)
        return package_wire(validated_sessions(app, "f1" * 33, 1)[0])
    finally:
        store.close()


# ---- PostgreSQL --------------------------------------------------------------------------------


def test_postgresql_restarted_mid_request(
    postgres: PostgresServer, pg_database: tuple[str, str], config: NetworkConfig, clock: Clock
) -> None:
    _, url = pg_database
    wire = prepared(url, config, clock)
    inside, go_on = threading.Event(), threading.Event()

    def builder(inputs: PackageInputs) -> BuiltPackage:  # runs inside the transaction
        inside.set()
        go_on.wait(60)
        return opaque_builder(inputs)

    store = Store(url, config.store_key)
    try:
        app = NetworkApp(config, store, clock=clock, builder=builder)
        result: list[object] = []

        def device() -> None:
            try:
                result.append(InProcessTransport(app).post("dpf/package", wire))
            except Unavailable as exc:
                result.append(exc)

        thread = threading.Thread(target=device)
        thread.start()
        assert inside.wait(30)
        postgres.stop()  # fast shutdown: the request's session is cut mid-transaction
        go_on.set()
        thread.join(60)
        one_line_503(result[0], "unavailable")
        with pytest.raises(Unavailable) as down:  # while it is down: the same, at once
            InProcessTransport(app).post("dpf/package", wire)
        one_line_503(down.value, "cannot connect")
        postgres.start()
        reply = InProcessTransport(  # the same worker, its pool from before the restart
            NetworkApp(config, store, clock=clock, builder=opaque_builder)
        ).post("dpf/package", wire)
        assert reply
    finally:
        store.close()
    check = Store(url, config.store_key)
    try:
        with check.transaction() as tx:
            assert tx.hss_count() == 1 and len(tx.mids()) == 1
        assert [e.event for e in check.audit_events()].count("package") == 1
        check.verify_audit()
    finally:
        check.close()


def test_postgresql_read_only(
    postgres: PostgresServer, pg_database: tuple[str, str], config: NetworkConfig, clock: Clock
) -> None:
    name, url = pg_database
    wire = prepared(url, config, clock)
    postgres.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    store = Store(url, config.store_key)  # opens: a migrated store needs no write to open
    try:
        app = NetworkApp(config, store, clock=clock, builder=opaque_builder)
        with pytest.raises(Unavailable) as caught:
            InProcessTransport(app).post("dpf/package", wire)
        one_line_503(caught.value, "read-only")
    finally:
        store.close()
    postgres.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = off")
    retry_succeeds(url, config, clock, wire)


def test_postgresql_refusing_writes(
    postgres: PostgresServer, pg_database: tuple[str, str], config: NetworkConfig, clock: Clock
) -> None:
    """A role that may read but not write (privileges revoked)."""
    name, url = pg_database
    wire = prepared(url, config, clock)
    clerk = f"clerk_{name}"
    postgres.execute(f"CREATE ROLE {clerk} LOGIN PASSWORD 'clerk-only'")
    try:
        postgres.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {clerk}", name)
        clerk_url = url.replace(url.split("//", 1)[1].split("@", 1)[0], f"{clerk}:clerk-only")
        store = Store(clerk_url, config.store_key)
        try:
            app = NetworkApp(config, store, clock=clock, builder=opaque_builder)
            with pytest.raises(Unavailable) as caught:
                InProcessTransport(app).post("dpf/package", wire)
            one_line_503(caught.value, "refuses writes", "permission denied")
        finally:
            store.close()
    finally:
        postgres.execute(f"DROP OWNED BY {clerk}", name)
        postgres.execute(f"DROP ROLE {clerk}")
    retry_succeeds(url, config, clock, wire)


@contextlib.contextmanager
def small_disk(size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (root only), in /tmp (reachable by the postgres user)."""
    if not ROOT:
        pytest.skip("a full disk is made by mounting a small tmpfs, which needs root")
    where = Path(tempfile.mkdtemp(prefix="trelab-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)
        where.rmdir()


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk``; returns the file to remove to free them."""
    junk = disk / "junk"
    with open(junk, "wb", buffering=0) as f:
        for chunk in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while f.write(bytes(chunk)):
                    pass
    return junk


def test_postgresql_full(postgres: PostgresServer, config: NetworkConfig, clock: Clock) -> None:
    with small_disk("24m") as disk:
        space = disk / "ts"
        space.mkdir()
        shutil.chown(space, "postgres", "postgres")
        os.chmod(disk, 0o755)
        name = f"full_{os.getpid()}"
        postgres.execute(f"CREATE TABLESPACE {name} LOCATION '{space}'")
        try:
            postgres.execute(f"CREATE DATABASE {name} TEMPLATE template0 TABLESPACE {name}")
            url = postgres.url(name)
            wire = prepared(url, config, clock)
            junk = fill(disk)
            store = Store(url, config.store_key)
            try:
                app = NetworkApp(config, store, clock=clock, builder=opaque_builder)
                with pytest.raises(Unavailable) as caught:
                    InProcessTransport(app).post("dpf/package", wire)
                one_line_503(caught.value, "is full")
            finally:
                store.close()
            junk.unlink()
            retry_succeeds(url, config, clock, wire)
        finally:
            postgres.drop_database(name)
            postgres.execute(f"DROP TABLESPACE IF EXISTS {name}")


# ---- SQLite ------------------------------------------------------------------------------------


@contextlib.contextmanager
def read_only_file(path: Path) -> Iterator[None]:
    """Root ignores file modes: the immutable attribute it is; others get mode 0444."""
    if ROOT:
        subprocess.run(["chattr", "+i", str(path)], check=True)
    else:
        path.chmod(0o444)
    try:
        yield
    finally:
        if ROOT:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o600)


def test_sqlite_read_only_file(tmp_path: Path, config: NetworkConfig, clock: Clock) -> None:
    path = tmp_path / "network.db"
    wire = prepared(str(path), config, clock)
    before = path.read_bytes()
    with read_only_file(path):
        store = Store(path, config.store_key)  # opens read-only
        try:
            app = NetworkApp(config, store, clock=clock, builder=opaque_builder)
            with pytest.raises(Unavailable) as caught:
                InProcessTransport(app).post("dpf/package", wire)
            one_line_503(caught.value, "read-only")
        finally:
            store.close()
    assert path.read_bytes() == before
    retry_succeeds(str(path), config, clock, wire)


def test_sqlite_full_disk(config: NetworkConfig, clock: Clock) -> None:
    with small_disk("1m") as disk:
        path = disk / "network.db"
        wire = prepared(str(path), config, clock)
        store = Store(path, config.store_key)  # the server runs; then the disk fills up
        junk = fill(disk)
        try:
            app = NetworkApp(config, store, clock=clock, builder=opaque_builder)
            with pytest.raises(Unavailable) as caught:
                InProcessTransport(app).post("dpf/package", wire)
            one_line_503(caught.value, "is full")
            with store.transaction() as tx:
                assert tx._one("PRAGMA integrity_check")[0] == "ok"
        finally:
            store.close()
        junk.unlink()
        retry_succeeds(str(path), config, clock, wire)
