"""Edge: SQLite and PostgreSQL. The two database engines under :class:`network.store.Store`:
how each connects, begins, commits and rolls back, locks what a transaction reads, and which
of its errors mean "conflict, retry", "unavailable" or "read-only / full".

- ``sqlite``: one connection per store (a single writer anyway), WAL, ``synchronous=FULL``,
  every transaction ``BEGIN IMMEDIATE`` — transactions are serial, so reads need no locks.
- ``postgresql`` (psycopg 3): a small pool of connections (one per concurrent transaction),
  ``READ COMMITTED`` with explicit locks: a keyed read inside a transaction is ``SELECT … FOR
  UPDATE`` (two requests about one device, MID, subscriber or session run one after the
  other), identical requests meet on an advisory lock on their request id, the audit trail's
  tail on another, and counters are single-statement upserts. A unique-key clash, a deadlock
  or a serialisation failure is a :class:`StoreConflict` (503: a retry is safe); a broken
  connection (server restarted) is dropped from the pool and reported as
  :class:`~protocol.errors.Unavailable`.

Store locations: a path or ``sqlite://PATH`` (``sqlite:///var/lib/x.db`` is the absolute
``/var/lib/x.db``), or ``postgresql://USER[:PASSWORD]@HOST:PORT/DB`` (libpq's URI, so
``?host=/socket/dir`` works too). The password never appears in reprs or messages.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from network.migrations import Dialect
from protocol.errors import BadInput, Unavailable

__all__ = [
    "AUDIT_LOCK",
    "MIGRATION_LOCK",
    "Connection",
    "Engine",
    "PostgresEngine",
    "SqliteEngine",
    "StoreConflict",
    "open_engine",
    "redact_url",
]

MIGRATION_LOCK = 0x7472656C_61620001  # advisory lock keys ("trelab" + n), PostgreSQL only
AUDIT_LOCK = 0x7472656C_61620002
_REQUEST_LOCK_SPACE = 0x7472  # high bits of a request's advisory lock key


class StoreConflict(Unavailable):
    """A concurrent transaction changed the same record (or a unique key clashed): nothing
    was written; the same request again is safe."""


class Connection(Protocol):
    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any: ...


def redact_url(url: str) -> str:
    """``url`` without its password (for reprs, logs and messages)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = (parts.username or "") + ":***"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}@{netloc[2]}"))


class Engine(Protocol):
    dialect: Dialect
    path: Path | None

    @property
    def where(self) -> str: ...

    def transaction(self) -> contextlib.AbstractContextManager[Connection]: ...

    def for_update(self) -> str: ...

    def advisory_lock(self, db: Connection, key: int) -> None: ...

    def lock_request(self, db: Connection, request_id: bytes) -> None: ...

    def schema_version(self, db: Connection) -> int: ...

    def close(self) -> None: ...


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _max_version(db: Connection) -> int:
    row = db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return 0 if row is None or row[0] is None else int(row[0])


class SqliteEngine:
    """One SQLite file, one connection, serial ``BEGIN IMMEDIATE`` transactions."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path: Path | None = path
        self._lock = threading.RLock()
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
        except (sqlite3.Error, OSError) as exc:
            raise Unavailable(f"store {path}: {_first_line(exc)}") from None
        self._db = db

    @property
    def where(self) -> str:
        return str(self.path)

    def for_update(self) -> str:
        return ""  # transactions are serial

    def advisory_lock(self, db: Connection, key: int) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` already holds the only write lock."""

    def lock_request(self, db: Connection, request_id: bytes) -> None:
        """Nothing to do (see :meth:`advisory_lock`)."""

    def schema_version(self, db: Connection) -> int:
        """The last migration applied (0: none, or a store from before numbered migrations)."""
        row = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        return 0 if row is None else _max_version(db)

    def _fault(self, exc: sqlite3.Error) -> Unavailable:
        text = _first_line(exc)
        if isinstance(exc, sqlite3.IntegrityError):
            return StoreConflict(f"store {self.where}: {text}")
        if "readonly" in text or "read-only" in text:
            return Unavailable(f"store {self.where} is read-only: {text}")
        if "full" in text:
            return Unavailable(f"store {self.where} is full: {text}")
        return Unavailable(f"store {self.where}: {text}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._fault(exc) from None
            try:
                yield self._db
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._fault(exc) from None
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                fault = self._fault(exc)
                raise type(fault)(f"{fault} (commit failed; nothing written)") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _PgConnection:
    """A psycopg connection that takes ``?`` placeholders (the store's SQL is written once)."""

    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        if not args:
            return self.raw.execute(sql)
        return self.raw.execute(sql.replace("?", "%s"), tuple(args))


class PostgresEngine:
    """PostgreSQL through psycopg 3: a pool of autocommit connections, explicit transactions."""

    dialect: Dialect = "postgresql"
    path: Path | None = None

    def __init__(self, url: str, *, pool_size: int = 8, connect_timeout: int = 5) -> None:
        try:
            import psycopg
        except ImportError:  # pragma: no cover - psycopg is a dependency
            raise Unavailable("store: PostgreSQL needs psycopg (pip install psycopg)") from None
        self._psycopg = psycopg
        self.url = url
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        with self.transaction():  # fail now, not at the first request
            pass

    @property
    def where(self) -> str:
        return redact_url(self.url)

    def for_update(self) -> str:
        return " FOR UPDATE"

    def advisory_lock(self, db: Connection, key: int) -> None:
        """Held until the transaction ends; the statements after it see what the holder
        before committed (READ COMMITTED takes a fresh snapshot per statement)."""
        signed = key - (1 << 64) if key >= (1 << 63) else key
        db.execute("SELECT pg_advisory_xact_lock(?)", (signed,))

    def lock_request(self, db: Connection, request_id: bytes) -> None:
        key = (_REQUEST_LOCK_SPACE << 48) | int.from_bytes(request_id[:6], "big")
        self.advisory_lock(db, key)

    def schema_version(self, db: Connection) -> int:
        """The last migration applied (0: none)."""
        row = db.execute("SELECT to_regclass('schema_migrations')").fetchone()
        return 0 if row is None or row[0] is None else _max_version(db)

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(
                self.url, autocommit=True, connect_timeout=self._connect_timeout
            )
        except self._psycopg.Error as exc:
            raise Unavailable(f"store {self.where}: cannot connect: {_first_line(exc)}") from None

    def _take(self) -> Any:
        with self._lock:
            if self._closed:
                raise Unavailable(f"store {self.where} is closed")
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _give_back(self, raw: Any) -> None:
        with self._lock:
            if not self._closed and not raw.closed and len(self._idle) < self._pool_size:
                self._idle.append(raw)
                return
        with contextlib.suppress(self._psycopg.Error):
            raw.close()

    def _fault(self, exc: Exception) -> Unavailable | None:
        errors = self._psycopg.errors
        text = _first_line(exc)
        if isinstance(
            exc, errors.UniqueViolation | errors.SerializationFailure | errors.DeadlockDetected
        ):
            return StoreConflict(f"store {self.where}: concurrent update: {text}")
        if isinstance(exc, errors.ReadOnlySqlTransaction):
            return Unavailable(f"store {self.where} is read-only: {text}")
        if isinstance(exc, errors.InsufficientPrivilege):
            return Unavailable(f"store {self.where} refuses writes: {text}")
        if isinstance(exc, errors.DiskFull | errors.OutOfMemory | errors.InsufficientResources):
            return Unavailable(f"store {self.where} is full: {text}")
        if isinstance(exc, self._psycopg.OperationalError):  # lost connection, shutdown, …
            return Unavailable(f"store {self.where} unavailable: {text}")
        return None  # a bug in the SQL: let it surface as one

    def _drop_idle(self) -> None:
        """After a lost connection: the pooled ones date from the same server run."""
        with self._lock:
            idle, self._idle = self._idle, []
        for raw in idle:
            with contextlib.suppress(self._psycopg.Error):
                raw.close()

    def _begin(self) -> Any:
        """A connection with a transaction begun. A pooled connection the server dropped
        (restarted since) fails here, before anything was done: take a fresh one."""
        raw = self._take()
        try:
            raw.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            return raw
        except self._psycopg.OperationalError:
            with contextlib.suppress(self._psycopg.Error):
                raw.close()
            self._drop_idle()
        raw = self._connect()
        try:
            raw.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        except self._psycopg.Error as exc:
            with contextlib.suppress(self._psycopg.Error):
                raw.close()
            raise self._fault(exc) or Unavailable(
                f"store {self.where}: {_first_line(exc)}"
            ) from None
        return raw

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        raw = self._begin()
        db = _PgConnection(raw)
        try:
            try:
                yield db
            except BaseException as exc:
                with contextlib.suppress(self._psycopg.Error):
                    if not raw.closed:
                        raw.execute("ROLLBACK")
                fault = self._fault(exc) if isinstance(exc, self._psycopg.Error) else None
                if isinstance(exc, self._psycopg.OperationalError):
                    self._drop_idle()
                if fault is not None:
                    raise fault from None
                raise
            try:
                db.execute("COMMIT")
            except self._psycopg.Error as exc:
                fault = self._fault(exc) or Unavailable(f"store {self.where}: {_first_line(exc)}")
                # a connection lost during COMMIT leaves it in doubt: the reply stored with
                # the effects makes the retry safe either way
                raise type(fault)(f"{fault} (commit not confirmed; a retry is safe)") from None
        except BaseException:
            if raw.closed or raw.info.transaction_status != self._psycopg.pq.TransactionStatus.IDLE:
                with contextlib.suppress(self._psycopg.Error):
                    raw.close()
            else:
                self._give_back(raw)
            raise
        self._give_back(raw)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for raw in idle:
            with contextlib.suppress(self._psycopg.Error):
                raw.close()


def open_engine(location: str | os.PathLike[str]) -> Engine:
    """The engine for a store location (module doc).

    Raises:
        BadInput: a URL of another kind.
        Unavailable: the database cannot be opened or reached.
    """
    if isinstance(location, str):
        if location.startswith(("postgresql://", "postgres://")):
            return PostgresEngine(location)
        if location.startswith("sqlite://"):
            path = location[len("sqlite://") :]
            if not path:
                raise BadInput("sqlite://PATH: the path is missing", field="store")
            return SqliteEngine(Path(path))
        if "://" in location:
            scheme = location.split("://", 1)[0]
            raise BadInput(
                f"{scheme}:// is not a store; use sqlite://PATH or postgresql://…", field="store"
            )
    return SqliteEngine(Path(location))
