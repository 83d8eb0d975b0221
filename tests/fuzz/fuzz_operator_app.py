"""The operator side (DRF, PVA, DPF, SHO, ICF) through its in-process interface: every
endpoint, fuzzed method, path, headers and body. The app always answers; a bad request gets
a 4xx carrying an Error message, never a 500; a refused request stores nothing (only its
audit event). Keys, clock and randomness are fixed, so an input replays the same way."""

from __future__ import annotations

import datetime
import hashlib
import itertools
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from network.config import NetworkConfig, ShoConfig
from network.roles import ENDPOINTS
from network.server import CBOR, NetworkApp
from network.store import Store
from protocol import messages as m
from protocol.records import DeviceRecord, SessionRecord, VerdictRecord
from protocol.transitions import Session, SessionState
from tests.fuzz.oracle import Reader

NOW = 1_800_000_000
PATHS = [f"/v1/{e}" for e in sorted(ENDPOINTS)] + ["/v1/health", "/v1/trust", "/v1/nope", "/x"]
METHODS = ("POST", "GET", "PUT")
CONTENT_TYPES = (CBOR, f"{CBOR}; charset=x", "application/json", "")


def _key(n: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(0xF022_0000 + n, ec.SECP256R1())


def _ca() -> x509.Certificate:
    key = _key(1)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fuzz Manufacturer CA")])
    when = datetime.datetime.fromtimestamp(NOW, datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(when - datetime.timedelta(days=1))
        .not_valid_after(when + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


CONFIG = NetworkConfig(
    trusted_cas=(_ca(),),
    pva_key=m.SigningKey("pva", _key(2)),
    dpf_key=m.SigningKey("dpf", _key(3)),
    shos={
        "sho-a": ShoConfig(name="sho-a", key=m.SigningKey("sho-a", _key(4)), plmn="00101"),
        "sho-b": ShoConfig(name="sho-b", key=m.SigningKey("sho-b", _key(5)), plmn="00102"),
    },
    store_key=bytes(range(32)),
)
_counter = itertools.count()


def _random(n: int) -> bytes:
    return hashlib.shake_256(next(_counter).to_bytes(8, "big")).digest(n)


VALIDATED = Session("device", SessionState(bytes([7]) * 32, "validated", bytes([8]) * 32))
_SHM = Path("/dev/shm")
_DIR = Path(tempfile.mkdtemp(prefix="trelab-fuzz-app-", dir=_SHM if _SHM.is_dir() else None))
STORE = Store(_DIR / "network.db", CONFIG.store_key)
APP = NetworkApp(CONFIG, STORE, clock=lambda: float(NOW), random_bytes=_random)
IMSI = "001010000000042"


def _prepare_store() -> None:
    device = DeviceRecord("e" * 66, b"cert", b"ak", b"\x00\x0bname", state="activated")
    with STORE.transaction() as tx:
        tx.put_device(device)
        tx.put_session(
            SessionRecord(
                VALIDATED.session_id,
                "provision",
                "validated",
                VALIDATED.transcript,
                NOW,
                NOW + 900,
                device.device_id,
                "sho-a",
                data={"ek_public": b"ek", "ak_public": b"ak", "ak_name": device.ak_name},
            )
        )
        tx.put_verdict(
            VerdictRecord(
                VALIDATED.session_id, device.device_id, device.ak_name, bytes(32), NOW + 300, b"c"
            )
        )
        APP.operator.add_subscriber(
            tx, sho="sho-a", imsi=IMSI, k=bytes(16), opc=bytes(16), request_id="card", now=NOW
        )


_prepare_store()
_READER = sqlite3.connect(f"file:{_DIR / 'network.db'}?mode=ro", uri=True)
_TABLES = [
    name
    for (name,) in _READER.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    if name != "audit"
]
#: refusals before any role looks at the request (routing, headers): answered, not audited
UNAUDITED = ("no-endpoint", "method", "content-type", "too-large", "bad-grant", "unavailable")


def _count_committed_changes() -> None:
    """Triggers on every table but the audit log count the rows a committed transaction
    changed (a rolled-back one takes its count back with it): O(1) per request, however
    large the store grows."""
    with sqlite3.connect(_DIR / "network.db", isolation_level=None) as db:
        db.execute("CREATE TABLE fuzz_changes (n INTEGER NOT NULL)")
        db.execute("INSERT INTO fuzz_changes VALUES (0)")
        for table in _TABLES:
            for event in ("INSERT", "UPDATE", "DELETE"):
                db.execute(
                    f"CREATE TRIGGER fuzz_{table}_{event.lower()} AFTER {event} ON {table} "
                    "BEGIN UPDATE fuzz_changes SET n = n + 1; END"
                )


_count_committed_changes()


def _audit_count() -> int:
    (count,) = _READER.execute("SELECT count(*) FROM audit").fetchone()
    return int(count)


def _snapshot() -> int:
    """How many rows outside the audit log committed transactions have changed so far."""
    (count,) = _READER.execute("SELECT n FROM fuzz_changes").fetchone()
    return int(count)


def test_one_input(data: bytes) -> None:
    reader = Reader(data)
    path = PATHS[reader.pick(len(PATHS))]
    method = METHODS[reader.pick(3)] if reader.pick(8) == 0 else "POST"
    headers = {"Content-Type": CONTENT_TYPES[reader.pick(4)] if reader.flag() else CBOR}
    if reader.pick(4) == 0:
        headers["Authorization"] = reader.chunk(80).decode("utf-8", "replace")
    body = reader.rest()
    before = _snapshot()
    audited = _audit_count()
    response = APP.handle(method, path, headers, body)
    assert response.status != 500, "internal error"
    assert 200 <= response.status < 600
    if response.status >= 400:
        assert response.content_type == CBOR
        error = m.decode(response.body)
        assert isinstance(error, m.Error), "an error answer that is not an Error message"
        assert _snapshot() == before, f"a refused request ({response.status}) changed the store"
        if error.code not in UNAUDITED:
            assert _audit_count() == audited + 1, f"refusal {error.code} not audited"


def _request(path_index: int, body: bytes) -> bytes:
    # path, then bytes that select POST, the CBOR content type and no Authorization header
    return bytes([path_index, 1, 0, 1]) + body


def starting_inputs() -> Iterator[bytes]:
    index = {path: i for i, path in enumerate(PATHS)}
    h = {"session_id": VALIDATED.session_id, "transcript": VALIDATED.transcript}
    ek, ak, nonce = b"\x30" * 60, b"\x00\x58" + b"a" * 88, bytes(16)
    bodies = {
        "/v1/drf/register": m.RegisterRequest(
            session_id=m.derive_session_id(ek, ak, nonce),
            transcript=m.INITIAL_TRANSCRIPT,
            ek_cert=ek,
            ak_public=ak,
            device_nonce=nonce,
            sho="sho-a",
        ),
        "/v1/dpf/package": m.PackageRequest(
            **h,
            srk_public=bytes.fromhex("00180023000b00040072000000100018000b0003001000000000"),
            slot=2,
            counter=0,
        ),
        "/v1/pva/evidence": m.Evidence(
            **h,
            quote_msg=b"\xffTCG" + bytes(40),
            quote_sig=bytes(72),
            pcrs=bytes(32),
            pcrlist="sha256:0",
        ),
        "/v1/sho/attach": m.AttachRequest(
            session_id=bytes(32), transcript=m.INITIAL_TRANSCRIPT, imsi=IMSI
        ),
        "/v1/sho/lifecycle": m.LifecycleRequest(**h, mid_id="abc123", transition="pending"),
        "/v1/drf/report": m.Error(**h, code="changed-platform", reason="PCR 7 changed"),
        "/v1/dpf/receipt": m.Receipt(
            **h, mid_id="abc123", sequence=1, event="install", evidence=(("state.sig", b"s"),)
        ),
    }
    for path, msg in bodies.items():
        yield _request(index[path], m.encode(msg))
    order = m.LifecycleOrder(
        session_id=bytes(32), transcript=m.INITIAL_TRANSCRIPT, mid_id="abc123", transition="delete"
    )
    yield _request(index["/v1/sho/order"], m.encode(m.sign(order, CONFIG.shos["sho-a"].key)))
    evidence_bad = m.ValidationChallenge(**h, nonce=bytes(32), pcr_selection="sha256:0")
    yield _request(
        index["/v1/pva/evidence"],
        m.encode(evidence_bad).replace(b"sha256:0", "sha256:²".encode()[:8]),
    )
    yield _request(index["/v1/health"], b"")
