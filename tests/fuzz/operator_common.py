"""Shared by the operator-side harnesses: one deployment with fixed keys, clock and randomness
(an input replays the same way), its store on a RAM disk, and the contract every answer is
held to: the app always answers; a bad request gets a 4xx carrying an Error message, never a
500; a refused request changes nothing in the store but its own audit entry."""

from __future__ import annotations

import datetime
import hashlib
import itertools
import sqlite3
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from network.config import NetworkConfig, ShoConfig
from network.server import CBOR, NetworkApp, Response
from network.store import Store
from protocol import messages as m
from tests.fuzz.scratch import scratch_dir

NOW = 1_800_000_000
WHEN = datetime.datetime.fromtimestamp(NOW, datetime.UTC)
#: refusals before any role looks at the request (HTTP framing, routing, headers): answered,
#: not audited
UNAUDITED = (
    "length",
    "truncated",
    "no-endpoint",
    "method",
    "content-type",
    "too-large",
    "bad-grant",
    "unavailable",
)


def fixed_key(n: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(0xF022_0000 + n, ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(key: ec.EllipticCurvePrivateKey, common_name: str) -> x509.Certificate:
    """A self-signed manufacturer root, as RFC 5280 path validation wants it."""
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(WHEN - datetime.timedelta(days=1))
        .not_valid_after(WHEN + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


CA_KEY = fixed_key(1)
CA = make_ca(CA_KEY, "Fuzz Manufacturer CA")
CONFIG = NetworkConfig(
    trusted_cas=(CA,),
    pva_key=m.SigningKey("pva", fixed_key(2)),
    dpf_key=m.SigningKey("dpf", fixed_key(3)),
    shos={
        "sho-a": ShoConfig(name="sho-a", key=m.SigningKey("sho-a", fixed_key(4)), plmn="00101"),
        "sho-b": ShoConfig(name="sho-b", key=m.SigningKey("sho-b", fixed_key(5)), plmn="00102"),
    },
    store_key=bytes(range(32)),
)


class Deployment:
    """The app over a store of its own, and counters of what committed transactions changed:
    triggers on every table but the audit log count changed rows (a rolled-back transaction
    takes its count back with it), one on the audit log counts its entries. Both are O(1)
    per request however large the store grows (``count(*)`` over an audit log of a million
    entries made every request slower than the last)."""

    def __init__(self, name: str) -> None:
        self.path = scratch_dir(name) / "network.db"
        self.store = Store(self.path, CONFIG.store_key)
        counter = itertools.count()

        def random_bytes(n: int) -> bytes:
            return hashlib.shake_256(next(counter).to_bytes(8, "big")).digest(n)

        self.app = NetworkApp(
            CONFIG, self.store, clock=lambda: float(NOW), random_bytes=random_bytes
        )
        self._reader: sqlite3.Connection | None = None

    def count_changes(self) -> None:
        """Install the counting triggers (after the deployment's own setup is stored)."""
        with sqlite3.connect(self.path, isolation_level=None) as db:
            tables = [
                name
                for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                if name != "audit"
            ]
            db.execute("CREATE TABLE fuzz_changes (n INTEGER NOT NULL, audits INTEGER NOT NULL)")
            db.execute("INSERT INTO fuzz_changes SELECT 0, count(*) FROM audit")
            db.execute(
                "CREATE TRIGGER fuzz_audit_insert AFTER INSERT ON audit "
                "BEGIN UPDATE fuzz_changes SET audits = audits + 1; END"
            )
            for table in tables:
                for event in ("INSERT", "UPDATE", "DELETE"):
                    db.execute(
                        f"CREATE TRIGGER fuzz_{table}_{event.lower()} AFTER {event} ON {table} "
                        "BEGIN UPDATE fuzz_changes SET n = n + 1; END"
                    )
        self._reader = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)

    def counts(self) -> tuple[int, int]:
        """(rows changed outside the audit log, audit entries) so far."""
        assert self._reader is not None, "count_changes() first"
        changed, audits = self._reader.execute("SELECT n, audits FROM fuzz_changes").fetchone()
        return int(changed), int(audits)

    def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[Response, m.Message]:
        """One request (in process, without HTTP), held to the contract; returns the answer
        and its decoded message (an Error for a refusal) when the answer is CBOR."""
        return self._checked(lambda: self.app.handle(method, path, headers, body))

    def wsgi(self, environ: dict[str, Any]) -> tuple[Response, m.Message]:
        """One request through the WSGI interface (PEP 3333), held to the same contract and
        to HTTP's: one status line of a known code, Content-Type and an exact Content-Length."""

        def call() -> Response:
            started: list[tuple[str, list[tuple[str, str]]]] = []

            def start_response(status: str, headers: list[tuple[str, str]]) -> None:
                started.append((status, headers))

            body = b"".join(self.app(environ, start_response))
            assert len(started) == 1, "start_response not called exactly once"
            status, headers = started[0]
            code, _, phrase = status.partition(" ")
            assert code.isascii() and code.isdigit() and phrase == HTTPStatus(int(code)).phrase
            fields = dict(headers)
            assert fields["Content-Length"] == str(len(body))
            return Response(int(code), body, fields["Content-Type"])

        return self._checked(call)

    def _checked(self, call: Callable[[], Response]) -> tuple[Response, m.Message]:
        changed, audits = self.counts()
        response = call()
        assert response.status != 500, "internal error"
        assert 200 <= response.status < 600
        if response.status < 400:
            message = m.decode(response.body) if response.content_type == CBOR else None
            return response, message  # type: ignore[return-value]
        assert response.content_type == CBOR
        error = m.decode(response.body)
        assert isinstance(error, m.Error), "an error answer that is not an Error message"
        now_changed, now_audits = self.counts()
        assert now_changed == changed, f"a refused request ({response.status}) changed the store"
        if error.code not in UNAUDITED:
            assert now_audits == audits + 1, f"refusal {error.code} not audited"
        return response, error
