"""Edge: HTTP. The operator side as a service: :class:`NetworkApp`, a WSGI-like callable
``app(method, path, headers, body) -> Response`` that tests call in-process, and
:func:`serve`, stdlib ``ThreadingHTTPServer`` around it on loopback.

``POST /v1/<role>/<message>`` with an ``application/cbor`` body (at most ``max_body`` bytes)
answers with the reply message (200) or an :class:`~protocol.messages.Error` (400 malformed or
out of order, 403 refused, 404 no such endpoint, 413 too large, 415 not CBOR, 503 a part is
unavailable, 500 a bug). ``GET /v1/health`` and ``GET /v1/trust`` (the public keys a TRE pins,
JSON) need no body. An ICF grant travels as ``Authorization: PCID <hex>``.

Each request is one store transaction; its reply is stored with its effects, so a retry of
the same request (after a crash, a lost reply) gets the same reply and changes nothing.
Refusals are written to the audit trail in a transaction of their own. The transport carries
no security of its own (messages are protected end to end); logs name method, path, status
and refusal code — never bodies, keys or grants.

Test hook (robustness). ``TRELAB_TEST_SERVER_CRASH_AT=<endpoint>:<before-commit|
after-commit>[#n]`` (:mod:`trelab.crash`, read once when the app is made) makes the server
SIGKILL itself while handling the n-th new request to ``endpoint``: with its effects and reply
written but not committed (the request is lost), or just after the commit, before the reply
leaves (the reply is lost). No effect when unset.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from network.config import NetworkConfig, device_trust
from network.roles import ENDPOINTS, Operator, PackageBuilder, Trust
from network.store import Store
from protocol.errors import (
    BadInput,
    CheckFailed,
    Refused,
    RemoteProtocolError,
    SignatureInvalid,
    Unavailable,
)
from protocol.messages import CBOR, INITIAL_TRANSCRIPT, SESSION_ID_SIZE, Error, decode, encode
from trelab.crash import SERVER_CRASH_ENV, crash_hook, no_crash
from trelab.digits import is_decimal
from trelab.errors import TrelabError

__all__ = ["CBOR", "NetworkApp", "Response", "parse_listen", "running_server", "serve"]

_LOG = logging.getLogger("trelab.network")


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = CBOR


def _error(status: int, code: str, reason: str, body: bytes = b"") -> Response:
    session_id = bytes(SESSION_ID_SIZE)
    with contextlib.suppress(TrelabError):  # undecodable request: the Error names no session
        session_id = decode(body).session_id
    reason = reason.splitlines()[0][:300] if reason else code
    error = Error(session_id=session_id, transcript=INITIAL_TRANSCRIPT, code=code, reason=reason)
    return Response(status, encode(error))


class NetworkApp:
    """The operator side behind one callable. ``clock`` and ``random_bytes`` are injectable
    (tests make verdicts go stale without sleeping)."""

    def __init__(
        self,
        config: NetworkConfig,
        store: Store,
        *,
        trust: Trust | None = None,
        builder: PackageBuilder | None = None,
        clock: Callable[[], float] = time.time,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if trust is None:
            from network.trust import TpmTrust

            trust = TpmTrust(config.trusted_cas)
        if builder is None:
            from network.trust import tpm_package_builder

            builder = tpm_package_builder
        self.config = config
        self.store = store
        self.clock = clock
        self.operator = Operator(config, trust, random_bytes=random_bytes, builder=builder)
        self._counts: dict[int, int] = {}
        self._count_lock = threading.Lock()
        self._crash = crash_hook(SERVER_CRASH_ENV) or no_crash  # test hook (module doc)

    def __repr__(self) -> str:
        return f"NetworkApp({self.store!r})"

    @property
    def counts(self) -> dict[int, int]:
        """Responses served so far, by HTTP status."""
        with self._count_lock:
            return dict(self._counts)

    def now(self) -> int:
        return int(self.clock())

    def __call__(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        response = self._route(method, path, {k.lower(): v for k, v in headers.items()}, body)
        with self._count_lock:
            self._counts[response.status] = self._counts.get(response.status, 0) + 1
        return response

    def _route(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        if method == "GET" and path == "/v1/health":
            return Response(200, b'{"status": "ok"}\n', "application/json")
        if method == "GET" and path == "/v1/trust":
            text = json.dumps(device_trust(self.config), indent=2) + "\n"
            return Response(200, text.encode(), "application/json")
        if not path.startswith("/v1/") or path[4:] not in ENDPOINTS:
            return _error(404, "no-endpoint", f"no endpoint {path[:80]!r}")
        if method != "POST":
            return _error(405, "method", "use POST with an application/cbor body")
        if headers.get("content-type", "").split(";")[0].strip() != CBOR:
            return _error(415, "content-type", f"the body must be {CBOR}")
        if len(body) > self.config.max_body:
            return _error(413, "too-large", f"body larger than {self.config.max_body} bytes")
        try:
            token = self._grant_token(headers.get("authorization"))
        except BadInput as exc:
            return _error(400, "bad-grant", str(exc), body)
        return self._post(path[4:], body, token)

    @staticmethod
    def _grant_token(value: str | None) -> bytes | None:
        if value is None:
            return None
        scheme, _, token = value.partition(" ")
        if scheme != "PCID":
            raise BadInput("Authorization: expected 'PCID <hex grant>'")
        try:
            return bytes.fromhex(token.strip())
        except ValueError:
            raise BadInput("Authorization: the grant is not hex") from None

    def _post(self, endpoint: str, body: bytes, token: bytes | None) -> Response:
        request_id = hashlib.sha256(endpoint.encode() + b"\0" + body).digest()
        now = self.now()
        try:
            with self.store.transaction() as tx:
                cached = tx.response(request_id)
                if cached is not None:
                    return Response(200, cached)
                pcid = self.operator.admit(tx, token, endpoint, now)
                session_id, reply = self.operator.handle(tx, endpoint, body, now, pcid=pcid)
                tx.put_response(request_id, session_id, reply)
                self._crash(f"{endpoint}:before-commit")
            self._crash(f"{endpoint}:after-commit")
            return Response(200, reply)
        except RemoteProtocolError as exc:
            return self._refused(400, "protocol", exc, endpoint, body, now)
        except SignatureInvalid as exc:
            return self._refused(403, "signature", exc, endpoint, body, now)
        except Refused as exc:
            return self._refused(403, exc.code, exc, endpoint, body, now)
        except CheckFailed as exc:
            return self._refused(403, "refused", exc, endpoint, body, now)
        except BadInput as exc:
            return self._refused(400, "bad-input", exc, endpoint, body, now)
        except Unavailable as exc:
            _LOG.warning("POST /v1/%s: unavailable: %s", endpoint, exc)
            return _error(503, "unavailable", str(exc), body)
        except Exception:  # a bug: log it here, tell the client only that it happened
            _LOG.exception("POST /v1/%s: internal error", endpoint)
            return _error(500, "internal", "internal error in the network (logged)", body)

    def _refused(
        self, status: int, code: str, exc: TrelabError, endpoint: str, body: bytes, now: int
    ) -> Response:
        reason = str(exc).splitlines()[0][:300] if str(exc) else code
        _LOG.info("POST /v1/%s refused: %s", endpoint, code)
        try:
            with self.store.transaction() as tx:
                tx.audit(
                    now,
                    endpoint.split("/")[0],
                    "refused",
                    endpoint,
                    {"code": code, "reason": reason},
                )
        except Unavailable:
            _LOG.warning("could not audit a refusal at /v1/%s", endpoint)
        return _error(status, code, reason, body)


# ---- HTTP --------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = (
        "HTTP/1.0"  # one request per connection: shutdown never waits on idle keep-alives
    )
    timeout = 30  # a client that stalls mid-body loses its connection

    def _answer(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not is_decimal(length):
            self._answer(_error(411, "length", "Content-Length required"))
            return None
        if int(length) > self.server.app.config.max_body:
            self.close_connection = True
            self._answer(
                _error(
                    413, "too-large", f"body larger than {self.server.app.config.max_body} bytes"
                )
            )
            return None
        return self.rfile.read(int(length))

    def do_POST(self) -> None:
        body = self._body()
        if body is not None:
            self._answer(self.server.app("POST", self.path, dict(self.headers.items()), body))

    def do_GET(self) -> None:
        self._answer(self.server.app("GET", self.path, dict(self.headers.items()), b""))

    def log_message(self, format: str, *args: Any) -> None:
        _LOG.info("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for requests in flight: graceful stop
    block_on_close = True

    def __init__(self, address: tuple[str, int], app: NetworkApp) -> None:
        self.app = app
        super().__init__(address, _Handler)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``PORT``) → (host, port); port 0 = any free port.

    Raises:
        BadInput: not that shape.
    """
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if not is_decimal(port) or int(port) > 65535:
        raise BadInput(f"{text!r}: expected HOST:PORT with a port 0..65535", field="listen")
    return host, int(port)


def _url(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}"


@contextmanager
def running_server(app: NetworkApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` on a background thread; yields the base URL; stops and joins on exit."""
    try:
        server = _Server((host, port), app)
    except OSError as exc:
        raise Unavailable(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    thread = threading.Thread(target=server.serve_forever, name="trelab-network", daemon=True)
    thread.start()
    try:
        yield _url(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def serve(
    app: NetworkApp, host: str, port: int, *, ready: Callable[[str], None] | None = None
) -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests in flight and return.

    Raises:
        Unavailable: the address is taken or not allowed.
    """
    try:
        server = _Server((host, port), app)
    except OSError as exc:
        raise Unavailable(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if not stop.is_set():
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if ready is not None:
            ready(_url(server))
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.server_close()
