"""The operator side (DRF, PVA, DPF, SHO, ICF) through its in-process interface: every
endpoint, fuzzed method, path, headers and body. The app always answers; a bad request gets
a 4xx carrying an Error message, never a 500; a refused request stores nothing (only its
audit event). Keys, clock and randomness are fixed, so an input replays the same way."""

from __future__ import annotations

import io
from collections.abc import Iterator

from network.roles import ENDPOINTS
from network.server import CBOR
from network.transfer import KI_EXPORT_ENDPOINT
from protocol import messages as m
from protocol.records import DeviceRecord, SessionRecord, VerdictRecord
from protocol.transitions import Session, SessionState
from tests.fuzz.operator_common import CONFIG, NOW, Deployment
from tests.fuzz.oracle import Reader

PATHS = [f"/v1/{e}" for e in (*sorted(ENDPOINTS), KI_EXPORT_ENDPOINT)]
PATHS += ["/v1/health", "/v1/trust", "/v1/nope", "/x"]
METHODS = ("POST", "GET", "PUT")
CONTENT_TYPES = (CBOR, f"{CBOR}; charset=x", "application/json", "")
VALIDATED = Session("device", SessionState(bytes([7]) * 32, "validated", bytes([8]) * 32))
IMSI = "001010000000042"
DEPLOYMENT = Deployment("app")


def _prepare_store() -> None:
    device = DeviceRecord("e" * 66, b"cert", b"ak", b"\x00\x0bname", state="activated")
    with DEPLOYMENT.store.transaction() as tx:
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
        DEPLOYMENT.app.operator.add_subscriber(
            tx, sho="sho-a", imsi=IMSI, k=bytes(16), opc=bytes(16), request_id="card", now=NOW
        )


_prepare_store()
DEPLOYMENT.count_changes()


def test_one_input(data: bytes) -> None:
    reader = Reader(data)
    path = PATHS[reader.pick(len(PATHS))]
    method = METHODS[reader.pick(3)] if reader.pick(8) == 0 else "POST"
    headers = {"Content-Type": CONTENT_TYPES[reader.pick(4)] if reader.flag() else CBOR}
    if reader.pick(4) == 0:
        headers["Authorization"] = reader.chunk(80).decode("utf-8", "replace")
    framing = reader.pick(8)
    body = reader.rest()
    if framing == 0:  # the in-process interface, without HTTP
        DEPLOYMENT.request(method, path, headers, body)
        return
    length = str(len(body))
    if framing == 1:  # a declared length of the fuzzer's own (digits or not)
        length, body = body[:8].decode("latin-1"), body[8:]
    elif framing == 2:  # no Content-Length at all
        length = ""
    elif framing == 3:  # a body cut short
        body = body[: len(body) // 2]
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_TYPE": headers["Content-Type"],
        "CONTENT_LENGTH": length,
        "wsgi.input": io.BytesIO(body),
    }
    if "Authorization" in headers:
        environ["HTTP_AUTHORIZATION"] = headers["Authorization"]
    DEPLOYMENT.wsgi(environ)


def _request(path_index: int, body: bytes, framing: int = 4) -> bytes:
    # path, then bytes that select POST, the CBOR content type, no Authorization header, and
    # the framing: HTTP with the right Content-Length (4), or the in-process interface (0)
    return bytes([path_index, 1, 0, 1, framing]) + body


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
    yield bytes([index["/v1/health"], 0, 1, 0, 1, 4])  # GET /v1/health through WSGI
    attach = m.encode(bodies["/v1/sho/attach"])
    yield _request(index["/v1/sho/attach"], attach, framing=0)  # in process, no HTTP
    yield _request(index["/v1/sho/attach"], "12²45678".encode()[:8] + attach, framing=1)
    yield _request(index["/v1/sho/attach"], b"99999999" + attach, framing=1)
    yield _request(index["/v1/sho/attach"], attach, framing=2)  # no Content-Length
    yield _request(index["/v1/sho/attach"], attach, framing=3)  # body cut short
    # a register the DRF accepts: a certificate of the manufacturer CA, a genuine AK
    from tests.fuzz.fuzz_tpm_identity import AKS, GENUINE_EKS

    for ek_cert, ak_public in zip(GENUINE_EKS, AKS, strict=True):
        genuine = m.RegisterRequest(
            session_id=m.derive_session_id(ek_cert, ak_public, nonce),
            transcript=m.INITIAL_TRANSCRIPT,
            ek_cert=ek_cert,
            ak_public=ak_public,
            device_nonce=nonce,
            sho="sho-a",
        )
        yield _request(index["/v1/drf/register"], m.encode(genuine))
