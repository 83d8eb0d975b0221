"""Edge: HTTP. The operator side as a service: :class:`NetworkApp`, a PEP 3333 WSGI
application (``app(environ, start_response)``) whose core, :meth:`NetworkApp.handle`
(``(method, path, headers, body) -> Response``), tests may also call directly; and
:func:`serve`, the standard library's threaded WSGI server around it — one process, the
zero-setup default for a lab. :mod:`network.workers` serves the same application under
gunicorn with several worker processes.

``POST /v1/<role>/<message>`` with an ``application/cbor`` body (at most ``max_body`` bytes)
answers with the reply message (200) or an :class:`~protocol.messages.Error` (400 malformed or
out of order, 403 refused, 404 no such endpoint, 411 no Content-Length, 413 too large, 415 not
CBOR, 503 a part is unavailable, 500 a bug). ``GET /v1/health`` and ``GET /v1/trust`` (the
public keys a TRE pins, JSON) need no body. An ICF grant travels as ``Authorization: PCID <hex>``.
``POST /v1/sho/ki-export`` is SHO-A's side of a Ki transfer between two deployments
(:mod:`network.transfer`): another SHO's signed request in, the signed, encrypted package out.

Each request is one store transaction; its reply is stored with its effects, so a retry of
the same request (after a crash, a lost reply) gets the same reply and changes nothing — also
when another worker process answers the retry. Refusals are written to the audit trail in a
transaction of their own. Messages are protected end to end; the transport adds TLS
(:mod:`network.tls`). Logs name method, path, status, refusal code and duration — never
bodies, keys or grants.

Test hook (robustness). ``TRELAB_TEST_SERVER_CRASH_AT=<endpoint>:<before-commit|
after-commit>[#n]`` (:mod:`trelab.crash`, read once when the app is made) makes the process
handling the request SIGKILL itself while handling the n-th new request to ``endpoint`` (under
gunicorn: that worker, counted per worker): with its effects and reply written but not
committed (the request is lost), or just after the commit, before the reply leaves (the reply
is lost). No effect when unset.
"""

from __future__ import annotations

import contextlib
import hashlib
import http
import json
import logging
import os
import signal
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from network.config import NetworkConfig, device_trust
from network.roles import ENDPOINTS, Operator, PackageBuilder, Trust
from network.store import Store
from network.transfer import KI_EXPORT_ENDPOINT
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

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "CBOR",
    "NetworkApp",
    "Response",
    "ResponseCounts",
    "parse_listen",
    "running_server",
    "serve",
]

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


class ResponseCounts:
    """Responses served, by HTTP status, in this process (gunicorn's workers share
    :class:`network.workers.SharedCounts` instead)."""

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self._lock = threading.Lock()

    def add(self, status: int) -> None:
        with self._lock:
            self._counts[status] = self._counts.get(status, 0) + 1

    def snapshot(self) -> dict[int, int]:
        with self._lock:
            return dict(self._counts)


# the request headers the application reads, by their WSGI environ keys (PEP 3333)
_READ_HEADERS = (
    ("content-type", "CONTENT_TYPE"),
    ("content-length", "CONTENT_LENGTH"),
    ("authorization", "HTTP_AUTHORIZATION"),
)


def _headers_of(environ: WSGIEnvironment) -> dict[str, str]:
    """The request headers the application reads (lower-case names) from a WSGI environ; the
    others are never looked at, so they are not copied. An ``HTTP_*`` header counts when
    present, even empty (an empty Authorization is a malformed grant, not none); the CGI
    ones when not empty."""
    return {
        name: str(environ[key])
        for name, key in _READ_HEADERS
        if (key in environ if key.startswith("HTTP_") else environ.get(key))
    }


class NetworkApp:
    """The operator side as one WSGI application. ``clock`` and ``random_bytes`` are
    injectable (tests make verdicts go stale without sleeping); ``counts`` collects the
    responses served (shared between worker processes under gunicorn)."""

    def __init__(
        self,
        config: NetworkConfig,
        store: Store,
        *,
        trust: Trust | None = None,
        builder: PackageBuilder | None = None,
        clock: Callable[[], float] = time.time,
        random_bytes: Callable[[int], bytes] = os.urandom,
        counts: ResponseCounts | None = None,
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
        self._counts = counts if counts is not None else ResponseCounts()
        self._crash = crash_hook(SERVER_CRASH_ENV) or no_crash  # test hook (module doc)

    def __repr__(self) -> str:
        return f"NetworkApp({self.store!r})"

    @property
    def counts(self) -> dict[int, int]:
        """Responses served so far, by HTTP status."""
        return self._counts.snapshot()

    def now(self) -> int:
        return int(self.clock())

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """PEP 3333: the request from ``environ`` (its body read only when its declared
        length is within ``max_body``), the answer through ``start_response``."""
        method = str(environ.get("REQUEST_METHOD", "GET"))
        path = str(environ.get("PATH_INFO", "")) or "/"
        headers = _headers_of(environ)
        body = b""
        response: Response | None = None
        if method == "POST":
            length = headers.get("content-length", "")
            if not is_decimal(length):
                response = _error(411, "length", "Content-Length required")
            elif int(length) > self.config.max_body:
                response = _error(
                    413, "too-large", f"body larger than {self.config.max_body} bytes"
                )
            else:
                body = environ["wsgi.input"].read(int(length)) if int(length) else b""
                if len(body) != int(length):
                    response = _error(400, "truncated", "the body ended before Content-Length")
        if response is None:
            response = self._route(method, path, headers, body)  # headers already lower-case
        self._counts.add(response.status)
        phrase = http.HTTPStatus(response.status).phrase
        start_response(
            f"{response.status} {phrase}",
            [("Content-Type", response.content_type), ("Content-Length", str(len(response.body)))],
        )
        return [response.body]

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        """The application without HTTP: one request in, its response out."""
        response = self._route(method, path, {k.lower(): v for k, v in headers.items()}, body)
        self._counts.add(response.status)
        return response

    def _route(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        if method == "GET" and path == "/v1/health":
            return Response(200, b'{"status": "ok"}\n', "application/json")
        if method == "GET" and path == "/v1/trust":
            text = json.dumps(device_trust(self.config), indent=2) + "\n"
            return Response(200, text.encode(), "application/json")
        if not path.startswith("/v1/") or (
            path[4:] not in ENDPOINTS and path[4:] != KI_EXPORT_ENDPOINT
        ):
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
            if endpoint == KI_EXPORT_ENDPOINT:  # SHO-A's side of a Ki transfer (its own steps)
                return Response(200, self._ki_export(body))
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

    def _ki_export(self, body: bytes) -> bytes:
        """Alternative 3a: another SHO's signed request for a subscription this deployment's
        SHO holds; answers the signed, encrypted package (:meth:`KiTransfer.export`)."""
        from network.transfer import KiTransfer

        return KiTransfer(self.config, self.store, now=self.now).export(None, body)

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


# ---- the built-in server (one process, threads) ---------------------------------------------


class _Handler(WSGIRequestHandler):
    timeout = 30  # a client that stalls mid-request loses its connection

    def address_string(self) -> str:
        return str(self.client_address[0])

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        started = getattr(self, "_started", None)
        took = f" {(time.monotonic() - started) * 1000:.0f}ms" if started is not None else ""
        _LOG.info("%s %s %s %s%s", self.address_string(), self.command, self.path, code, took)

    def log_message(self, format: str, *args: Any) -> None:
        _LOG.info("%s %s", self.address_string(), format % args)

    def handle(self) -> None:
        self._started = time.monotonic()
        with contextlib.suppress(ssl.SSLError, ConnectionError, TimeoutError):
            super().handle()  # a failed handshake or a vanished client is that client's loss


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = False  # server_close() waits for requests in flight: graceful stop
    block_on_close = True
    request_queue_size = 64

    def __init__(
        self, address: tuple[str, int], app: NetworkApp, tls: ssl.SSLContext | None = None
    ) -> None:
        self.tls = tls
        super().__init__(address, _Handler)
        self.set_app(app)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.tls is None:
            return sock, address
        sock.settimeout(_Handler.timeout)  # the handshake runs in the request's thread
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def setup_environ(self) -> None:
        super().setup_environ()
        if self.tls is not None:
            self.base_environ["HTTPS"] = "on"
            self.base_environ["wsgi.url_scheme"] = "https"

    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"


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


def _bind(app: NetworkApp, host: str, port: int, tls: ssl.SSLContext | None) -> _Server:
    try:
        return _Server((host, port), app, tls)
    except OSError as exc:
        raise Unavailable(f"cannot listen on {host}:{port}: {exc.strerror}") from None


@contextmanager
def running_server(
    app: NetworkApp, host: str = "127.0.0.1", port: int = 0, *, tls: ssl.SSLContext | None = None
) -> Iterator[str]:
    """Serve ``app`` on a background thread; yields the base URL; stops and joins on exit."""
    server = _bind(app, host, port, tls)
    thread = threading.Thread(target=server.serve_forever, name="trelab-network", daemon=True)
    thread.start()
    try:
        yield server.url()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def serve(
    app: NetworkApp,
    host: str,
    port: int,
    *,
    ready: Callable[[str], None] | None = None,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests in flight and return.

    Raises:
        Unavailable: the address is taken or not allowed.
    """
    server = _bind(app, host, port, tls)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if not stop.is_set():
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if ready is not None:
            ready(server.url())
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.server_close()
