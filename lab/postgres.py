"""Edge: processes. A PostgreSQL server of the lab's own, from Debian's ``postgresql`` package:
the operator store for deployments (``trelab network serve --store postgresql://…``).

``PostgresServer(directory).ensure()`` makes a cluster there the first time (``initdb``: role
``trelab`` with a random password, SCRAM authentication, UTF-8, C locale), starts it on a free
loopback port with its unix socket in the same directory, and creates the database ``trelab``;
``stop()`` stops it (fast shutdown: sessions are cut, committed data stays); ``status()``
looks. The cluster stays for the next start. ``trelab lab up --with postgres`` calls it for
``<lab>/postgres/``; the test fixtures call it for theirs.

PostgreSQL refuses to run as root: as root the cluster belongs to the ``postgres`` user, its
programs run through ``runuser``, and the folders above the cluster get a POSIX ACL entry that
lets ``postgres`` (and nobody else) pass through them (``setfacl``, from Debian's ``acl``).

Directory::

    data/           the cluster (PGDATA)
    password        the ``trelab`` role's password (0600)
    server.json     port, user, database of the running server
    postgres.log    the server's log
    .s.PGSQL.PORT   its unix socket
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from trelab.atomic import atomic_write_text
from trelab.digits import is_decimal
from trelab.errors import Unavailable

__all__ = ["DATABASE", "USER", "PostgresServer", "PostgresStatus", "require_tools"]

USER = "trelab"
DATABASE = "trelab"
HOST = "127.0.0.1"
_SERVICE_USER = "postgres"
_START_TIMEOUT = 60  # seconds; initdb + start on a loaded 2-core machine
State = Literal["running", "stopped"]


def _bindir() -> Path | None:
    found = sorted(
        (p for p in glob.glob("/usr/lib/postgresql/*/bin/initdb") if is_decimal(Path(p).parts[-3])),
        key=lambda p: int(Path(p).parts[-3]),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def require_tools() -> Path:
    """The folder of PostgreSQL's server programs.

    Raises:
        Unavailable: PostgreSQL is not installed (or, as root, ``setfacl`` is missing).
    """
    bindir = _bindir()
    if bindir is None:
        raise Unavailable(
            "PostgreSQL's server programs (initdb, pg_ctl) are not installed",
            fix="apt-get install postgresql (scripts/setup.sh does)",
        )
    if os.geteuid() == 0 and shutil.which("setfacl") is None:
        raise Unavailable("setfacl is not installed", fix="apt-get install acl")
    return bindir


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class PostgresStatus:
    state: State
    port: int | None
    pid: int | None
    url: str | None  # with the password: what `--store` takes
    directory: Path
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "port": self.port,
            "pid": self.pid,
            "url": self.url,
            "directory": str(self.directory),
            **({"note": self.note} if self.note else {}),
        }


class PostgresServer:
    """One cluster in ``directory`` (module doc). ``durable=False`` (test sessions) runs it
    without fsync: faster, and a crash of the machine (not of PostgreSQL) may lose it."""

    def __init__(self, directory: str | os.PathLike[str], *, durable: bool = True) -> None:
        self.directory = Path(directory).resolve()
        self.durable = durable
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self._password_file = self.directory / "password"
        self._record = self.directory / "server.json"

    def __repr__(self) -> str:
        return f"PostgresServer({str(self.directory)!r})"

    # ---- running the server's programs ---------------------------------------------------------

    @property
    def _as_service_user(self) -> bool:
        return os.geteuid() == 0

    def _run(self, program: str, *args: str, timeout: float = _START_TIMEOUT) -> str:
        argv = [str(require_tools() / program), *args]
        if self._as_service_user:
            argv = ["runuser", "-u", _SERVICE_USER, "--", *argv]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False, cwd="/"
            )
        except subprocess.TimeoutExpired:
            raise Unavailable(f"PostgreSQL {program} did not finish in {timeout:g} s") from None
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise Unavailable(
                f"PostgreSQL {program} failed: {lines[-1] if lines else done.returncode}",
                fix=f"see {self.log}",
            )
        return done.stdout

    def _let_service_user_in(self) -> None:
        """As root: the cluster's folder belongs to ``postgres``; each folder above it gets an
        ACL entry letting ``postgres`` pass (search only, no listing)."""
        if not self._as_service_user:
            return
        service = pwd.getpwnam(_SERVICE_USER)
        for parent in reversed(self.directory.parents):
            mode = parent.stat().st_mode
            if mode & 0o001:  # anyone may pass already
                continue
            subprocess.run(
                ["setfacl", "-m", f"u:{_SERVICE_USER}:x", str(parent)], check=True, timeout=10
            )
        for path in (self.directory, *self.directory.rglob("*")):
            os.chown(path, service.pw_uid, service.pw_gid, follow_symlinks=False)

    # ---- state -----------------------------------------------------------------------------------

    @property
    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").is_file()

    def _password(self) -> str:
        return self._password_file.read_text().strip()

    def _read_record(self) -> dict[str, Any] | None:
        try:
            record: dict[str, Any] = json.loads(self._record.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return record

    def _pid(self) -> int | None:
        """The postmaster's pid if it runs (postmaster.pid names a live process)."""
        try:
            first = (self.data / "postmaster.pid").read_text().splitlines()[0]
            pid = int(first)
        except (FileNotFoundError, IndexError, ValueError, PermissionError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def url(self, database: str = DATABASE) -> str:
        """``postgresql://trelab:PASSWORD@127.0.0.1:PORT/database`` of the running server.

        Raises:
            Unavailable: it does not run.
        """
        record = self._read_record()
        if record is None or self._pid() is None:
            raise Unavailable(f"lab PostgreSQL in {self.directory} is not running")
        return f"postgresql://{USER}:{self._password()}@{HOST}:{record['port']}/{database}"

    def status(self) -> PostgresStatus:
        record = self._read_record()
        pid = self._pid()
        if pid is None or record is None:
            note = "" if self.initialised else "no cluster yet"
            return PostgresStatus("stopped", None, None, None, self.directory, note)
        return PostgresStatus(
            "running", int(record["port"]), pid, self.url(), self.directory, f"log {self.log}"
        )

    # ---- up / down -------------------------------------------------------------------------------

    def _initdb(self, actions: list[str]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.data.exists():  # a half-made cluster from an interrupted initdb
            shutil.rmtree(self.data)
        atomic_write_text(self._password_file, secrets.token_urlsafe(24) + "\n")
        self._let_service_user_in()
        self._run(
            "initdb",
            "-D", str(self.data),
            "-U", USER,
            f"--pwfile={self._password_file}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )  # fmt: skip
        actions.append(f"created a PostgreSQL cluster in {self.data}")

    def ensure(self, actions: list[str] | None = None) -> PostgresStatus:
        """Make the cluster if needed, start it if it is not running, create the database.

        Raises:
            Unavailable: PostgreSQL is missing or will not start.
        """
        actions = actions if actions is not None else []
        if not self.initialised:
            self._initdb(actions)
        if self._pid() is None:
            self._start(actions)
        self._create_database(DATABASE)
        return self.status()

    def _start(self, actions: list[str]) -> None:
        record = self._read_record()
        port = int(record["port"]) if record and _port_free(int(record["port"])) else _free_port()
        self._let_service_user_in()
        options = f"-p {port} -k {self.directory} -c listen_addresses={HOST}"
        if not self.durable:  # test sessions: a crash of the machine may lose the cluster
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        try:
            self._run(
                "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w",
                "-t", str(_START_TIMEOUT), "-o", options,
            )  # fmt: skip
        except Unavailable:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-1:]
            raise Unavailable(
                f"lab PostgreSQL did not start on port {port}: {tail[0] if tail else 'no log'}",
                fix=f"see {self.log}",
            ) from None
        atomic_write_text(
            self._record, json.dumps({"port": port, "user": USER, "database": DATABASE}) + "\n"
        )
        actions.append(f"started PostgreSQL on {HOST}:{port} (pid {self._pid()})")

    def start(self) -> None:
        """Start the existing cluster again (after :meth:`stop`)."""
        if self._pid() is None:
            self._start([])

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10)

    def _create_database(self, name: str, template: str | None = None) -> None:
        from psycopg import sql

        with self._admin() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is not None:
                return
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template is not None:
                statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.execute(statement)

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its URL."""
        self._create_database(name, template="template0")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def execute(self, statement: str, database: str = DATABASE) -> None:
        """One statement as the cluster's superuser (tests: revoke, set read-only, …)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement.encode())

    def stop(self, actions: list[str] | None = None) -> bool:
        """Fast shutdown (open sessions are cut; what was committed stays). Returns whether
        a server was running."""
        pid = self._pid()
        if pid is None:
            return False
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")
        if actions is not None:
            actions.append(f"stopped PostgreSQL (pid {pid})")
        return True  # server.json stays: the next start takes the same port if it is free
