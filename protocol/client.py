"""Edge: HTTP. How a device (the host agent) reaches the operator side: one
``post(endpoint, wire) -> wire`` call over HTTP (:class:`HttpTransport`) or straight into an
operator's WSGI application (:class:`InProcessTransport`, for tests: a PEP 3333 call with an
environ built here, the device side never imports the operator's code). An :class:`~protocol.messages.Error` reply becomes the matching
exception, so callers see the same errors either way.

A network that cannot be reached, or that drops the connection before its reply (a server
killed mid-request), is :class:`~trelab.errors.Unavailable` with one line saying
which: the request may or may not have been handled, and running the same command again is
safe — the server stores each reply with its effects and answers a repeated request from it.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from protocol.errors import (
    BadInput,
    Refused,
    RemoteProtocolError,
    ServerNotTrusted,
    SignatureInvalid,
    Unavailable,
)
from protocol.messages import CBOR, Error, decode
from trelab.errors import TrelabError

__all__ = [
    "App",
    "HttpTransport",
    "InProcessTransport",
    "Transport",
    "is_loopback",
    "pinned_context",
    "raise_for_error",
]


class Transport(Protocol):
    def post(self, endpoint: str, wire: bytes, *, grant: bytes | None = None) -> bytes: ...


#: A PEP 3333 application: ``app(environ, start_response) -> iterable of bytes``.
App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def raise_for_error(status: int, body: bytes) -> bytes:
    """``body`` if the request succeeded, else the Error it carries as an exception.

    Raises:
        RemoteProtocolError: 400-class protocol errors (or an unreadable error body).
        SignatureInvalid: 403 for a signature that does not verify.
        Refused: other 403 refusals (``.code`` = the Error's code).
        Unavailable: 503.
    """
    if status == 200:
        return body
    try:
        msg = decode(body)
    except TrelabError:
        raise RemoteProtocolError(f"network answered {status} without a readable Error") from None
    if not isinstance(msg, Error):
        raise RemoteProtocolError(f"network answered {status} with a {type(msg).__name__}")
    if status == 403 and msg.code == "signature":
        raise SignatureInvalid(msg.reason)
    if status == 403:
        raise Refused(msg.code, msg.reason)
    if status == 503:
        raise Unavailable(f"network: {msg.reason}")
    raise RemoteProtocolError(f"network refused the message ({msg.code}): {msg.reason}")


class InProcessTransport:
    """Calls a WSGI application directly: the real operator side, no socket."""

    def __init__(self, app: App) -> None:
        self.app = app

    def post(self, endpoint: str, wire: bytes, *, grant: bytes | None = None) -> bytes:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "",
            "PATH_INFO": f"/v1/{endpoint}",
            "QUERY_STRING": "",
            "SERVER_NAME": "in-process",
            "SERVER_PORT": "0",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "CONTENT_TYPE": CBOR,
            "CONTENT_LENGTH": str(len(wire)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(wire),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if grant is not None:
            environ["HTTP_AUTHORIZATION"] = f"PCID {grant.hex()}"
        started: list[str] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            started.append(status)
            return lambda data: None

        body = b"".join(self.app(environ, start_response))
        return raise_for_error(int(started[0].split(" ", 1)[0]), body)


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): traffic that never leaves the
    machine, the only place plain HTTP is allowed."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def pinned_context(ca_pem: str | bytes) -> ssl.SSLContext:
    """A client TLS context that trusts only ``ca_pem`` (the pinned CA, no system roots) and
    checks that the certificate names the host dialled.

    Raises:
        BadInput: ``ca_pem`` holds no certificate.
    """
    text = ca_pem.decode("ascii") if isinstance(ca_pem, bytes) else ca_pem
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=text)  # only this CA
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class HttpTransport:
    """POSTs to ``base_url``: ``https://HOST:PORT`` with the pinned TLS CA (``tls_ca``, PEM),
    or ``http://`` to a loopback address only.

    Raises (constructor):
        BadInput: another scheme, plain HTTP to a host that is not loopback, HTTPS without a
            pinned CA, or a CA that is not a PEM certificate.
    """

    def __init__(
        self, base_url: str, *, timeout: float = 30.0, tls_ca: str | bytes | None = None
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise BadInput(f"network URL {base_url!r}: expected https://HOST:PORT")
        self.context: ssl.SSLContext | None = None
        if parsed.scheme == "http" and not is_loopback(parsed.hostname):
            raise BadInput(
                f"network URL {base_url!r}: plain HTTP only to a loopback address; use https://"
            )
        if parsed.scheme == "https":
            if tls_ca is None:
                raise BadInput(
                    f"network URL {base_url!r}: HTTPS needs the pinned TLS CA "
                    "(tls_ca in device-trust.json)"
                )
            try:
                self.context = pinned_context(tls_ca)
            except (ssl.SSLError, ValueError, UnicodeDecodeError):
                raise BadInput("the pinned TLS CA is not a PEM certificate") from None
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def post(self, endpoint: str, wire: bytes, *, grant: bytes | None = None) -> bytes:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            f"{self.base_url}/v1/{endpoint}",
            data=wire,
            method="POST",
            headers={"Content-Type": CBOR},
        )
        if grant is not None:
            request.add_header("Authorization", f"PCID {grant.hex()}")
        try:
            with urllib.request.urlopen(  # noqa: S310 - the scheme is checked in __init__
                request, timeout=self.timeout, context=self.context
            ) as reply:
                status, body = reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            try:
                status, body = exc.code, exc.read()
            except (OSError, http.client.HTTPException) as lost:
                raise self._unavailable(lost) from None
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            raise self._unavailable(exc) from None
        return raise_for_error(status, body)

    def _unavailable(self, exc: BaseException) -> Unavailable | ServerNotTrusted:
        """One line for a request that got no reply: never reached, or cut off (module doc)."""
        cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(cause, ssl.SSLCertVerificationError):
            return ServerNotTrusted(
                f"network {self.base_url}: its TLS certificate is not the pinned network's "
                f"({cause.verify_message or cause.reason})"
            )
        if isinstance(cause, TimeoutError):
            what = f"did not answer within {self.timeout:g} s"
        elif isinstance(cause, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
            what = f"dropped the connection before its reply ({type(cause).__name__})"
        elif isinstance(cause, http.client.HTTPException):
            what = f"sent a broken reply ({type(cause).__name__})"
        else:  # refused, no such host, no route: the request never arrived
            detail = cause.strerror if isinstance(cause, OSError) and cause.strerror else cause
            return Unavailable(
                f"network {self.base_url} unreachable: {detail}",
                fix="start it (trelab network serve) or give the right --network URL",
            )
        return Unavailable(
            f"network {self.base_url} {what}",
            fix="run the same command again once it is up: a retry is safe",
        )
