"""Pure. The operator store's one schema, as numbered migrations for SQLite and PostgreSQL.

Each :class:`Migration` is written once, in a neutral subset of SQL: column types ``BLOB`` and
``INTEGER`` become ``BYTEA`` and ``BIGINT`` on PostgreSQL (:func:`ddl`); what the two engines
spell differently (the audit trail's append-only triggers) is given per engine. The runner
(:meth:`network.store.Store`'s open) applies, in order, every migration whose number is above
the one recorded in ``schema_migrations``, each in its own transaction together with its row
there, under an exclusive lock (SQLite's ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock), so
two servers starting at once migrate once. A store whose number is above :data:`LATEST`
belongs to a newer trelab and is refused.

Why not Alembic: the store speaks DB-API SQL directly (no SQLAlchemy models to autogenerate
from), and the schema is small; a numbered list with an exclusive lock and a version table is
all the guarantees need, and it is tested on both engines.

Migration 1 uses ``IF NOT EXISTS`` throughout, so a SQLite store made before migrations were
numbered is adopted as version 1 without change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["LATEST", "MIGRATIONS", "Dialect", "Migration", "ddl"]

Dialect = Literal["sqlite", "postgresql"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]  # neutral DDL, both engines
    sqlite: tuple[str, ...] = ()  # engine-specific additions
    postgresql: tuple[str, ...] = ()

    def for_dialect(self, dialect: Dialect) -> tuple[str, ...]:
        extra = self.sqlite if dialect == "sqlite" else self.postgresql
        return tuple(ddl(s, dialect) for s in self.statements) + extra


def ddl(statement: str, dialect: Dialect) -> str:
    """The neutral DDL in ``dialect``: SQLite as written; PostgreSQL with BYTEA and BIGINT."""
    if dialect == "sqlite":
        return statement
    return re.sub(r"\bINTEGER\b", "BIGINT", re.sub(r"\bBLOB\b", "BYTEA", statement))


_APPEND_ONLY = "the audit trail is append-only"

_INITIAL = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
    """CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY, ek_cert BLOB NOT NULL, ak_public BLOB NOT NULL,
    ak_name BLOB NOT NULL, state TEXT NOT NULL, revoked INTEGER NOT NULL,
    sequence INTEGER NOT NULL, last_quote BLOB NOT NULL, last_quote_sig BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS sessions (
    session_id BLOB PRIMARY KEY, kind TEXT NOT NULL, phase TEXT NOT NULL,
    transcript BLOB NOT NULL, created INTEGER NOT NULL, expires INTEGER NOT NULL,
    device_id TEXT NOT NULL, sho TEXT NOT NULL, mid_id TEXT NOT NULL, imsi TEXT NOT NULL,
    data BLOB NOT NULL, secrets BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS responses (
    request_id BLOB PRIMARY KEY, session_id BLOB NOT NULL, response BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS verdicts (
    session_id BLOB PRIMARY KEY, device_id TEXT NOT NULL, ak_name BLOB NOT NULL,
    pcr_digest BLOB NOT NULL, not_after INTEGER NOT NULL, cose BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS mids (
    mid_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, sho TEXT NOT NULL,
    imsi TEXT NOT NULL UNIQUE, state TEXT NOT NULL, sequence INTEGER NOT NULL,
    session_id BLOB NOT NULL, slot INTEGER NOT NULL, command_seq INTEGER NOT NULL,
    names BLOB NOT NULL, updated INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS hss_records (
    imsi TEXT PRIMARY KEY, sho TEXT NOT NULL, algorithm TEXT NOT NULL, params TEXT NOT NULL,
    k BLOB NOT NULL, opc BLOB NOT NULL, amf BLOB NOT NULL, sqn TEXT NOT NULL,
    state TEXT NOT NULL, request_id TEXT NOT NULL UNIQUE, mid_id TEXT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS msin_counters (sho TEXT PRIMARY KEY, next INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS pcids (
    imsi TEXT PRIMARY KEY, not_before INTEGER NOT NULL, not_after INTEGER NOT NULL,
    device_id TEXT NOT NULL, state TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS grants (
    token_hash BLOB PRIMARY KEY, pcid TEXT NOT NULL, not_after INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS orders (
    mid_id TEXT PRIMARY KEY, transition TEXT NOT NULL, sho TEXT NOT NULL,
    state TEXT NOT NULL, sequence INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS home_network_keys (
    sho TEXT NOT NULL, key_id INTEGER NOT NULL, profile INTEGER NOT NULL,
    private BLOB NOT NULL, public BLOB NOT NULL, state TEXT NOT NULL, created INTEGER NOT NULL,
    PRIMARY KEY (sho, key_id))""",
    """CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, actor TEXT NOT NULL, event TEXT NOT NULL,
    subject TEXT NOT NULL, detail BLOB NOT NULL, prev BLOB NOT NULL, digest BLOB NOT NULL)""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "operator records, idempotent replies and the audit trail",
        _INITIAL,
        sqlite=(
            "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit"
            f" BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END",
            "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit"
            f" BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END",
        ),
        postgresql=(
            "CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql"
            f" AS $$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END $$",
            "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
            " FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
            "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
            " FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
            "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit"
            " FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
        ),
    ),
    Migration(
        2,
        "the operators' OTA key sets and counters, and the journal of Ki transfers",
        (
            """CREATE TABLE IF NOT EXISTS ota_cards (
    sho TEXT NOT NULL, iccid TEXT NOT NULL, keysets BLOB NOT NULL, counters TEXT NOT NULL,
    meta TEXT NOT NULL, PRIMARY KEY (sho, iccid))""",
            """CREATE TABLE IF NOT EXISTS ota_transfers (
    transfer_id TEXT PRIMARY KEY, iccid TEXT NOT NULL, holder TEXT NOT NULL,
    requester TEXT NOT NULL, started INTEGER NOT NULL, journal TEXT NOT NULL)""",
        ),
    ),
)

LATEST = MIGRATIONS[-1].version
