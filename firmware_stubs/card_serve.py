"""Edge: TCP, signals, filesystem. Plug a card engine into pcscd through the vpcd driver.

The card is a TCP *client* of vpcd (``127.0.0.1:35963`` is reader ``Virtual PCD 00 00``,
35964 the second reader). :class:`CardServer` connects, feeds what arrives to
:class:`firmware_stubs.vpcd.VpcdConnection` and writes back its answer. When pcscd stops or
restarts the connection ends; the card is powered off (volatile state cleared, as a removed
card loses it) and the server reconnects with a growing back-off (50 ms … 1 s), forever,
until :meth:`CardServer.stop` or SIGTERM/SIGINT (see :func:`run`).

vpcd accepts one card per reader. A second card that connects meanwhile waits in the listen
queue and is taken once the first leaves; the status file tells the two apart: ``connected``
(TCP up, nothing heard yet) vs ``attached`` (vpcd talks to this card).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import select
import signal
import socket
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Literal, TextIO

from trelab.atomic import atomic_write_text
from trelab.digits import is_decimal
from trelab.errors import BadInput, RemoteProtocolError

from .vpcd import VpcdCard, VpcdConnection

__all__ = [
    "DEFAULT_VPCD",
    "CardServer",
    "ServeState",
    "format_address",
    "parse_vpcd_address",
    "read_status",
    "run",
]

DEFAULT_VPCD = ("127.0.0.1", 35963)
ServeState = Literal["waiting", "connected", "attached", "stopped"]
_MIN_BACKOFF = 0.05
_MAX_BACKOFF = 1.0
_CONNECT_TIMEOUT = 2.0


def parse_vpcd_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``PORT``, or ``HOST``) → (host, port); defaults 127.0.0.1:35963.

    Raises:
        BadInput: a port that is not 1…65535.
    """
    host, _, port_text = text.strip().rpartition(":")
    if not host and not is_decimal(port_text):
        host, port_text = port_text, ""
    host = host.strip("[]") or DEFAULT_VPCD[0]
    if not port_text:
        return host, DEFAULT_VPCD[1]
    if not is_decimal(port_text) or not 1 <= int(port_text) <= 65535:
        raise BadInput(f"port {port_text!r} is not 1…65535", field="vpcd")
    return host, int(port_text)


def format_address(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def read_status(path: Path) -> dict[str, object] | None:
    """The status file a server writes (``None`` if absent or unreadable)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class _Counters:
    sessions: int = 0  # connections on which vpcd talked to us
    apdus: int = 0


class CardServer:
    """One card on one vpcd reader. Thread-safe :meth:`stop`; :meth:`serve_forever` blocks."""

    def __init__(
        self,
        card: VpcdCard,
        address: tuple[str, int] = DEFAULT_VPCD,
        *,
        status_file: Path | None = None,
        log: TextIO | None = None,
        label: str = "card",
    ) -> None:
        self.card = card
        self.address = address
        self.status_file = status_file
        self.log = log if log is not None else sys.stderr
        self.label = label
        self.state: ServeState = "waiting"
        self.counters = _Counters()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stopping = False

    # ---- control -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`serve_forever` to return (safe from a signal handler or another thread)."""
        self._stopping = True
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    def close(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _say(self, message: str) -> None:
        stamp = datetime.datetime.now().isoformat(timespec="milliseconds")
        print(f"{stamp} {self.label}: {message}", file=self.log, flush=True)

    def _set_state(self, state: ServeState, *, force: bool = False) -> None:
        if state == self.state and not force:
            return
        self.state = state
        if self.status_file is None:
            return
        data = {
            "pid": os.getpid(),
            "vpcd": format_address(self.address),
            "state": state,
            "since": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            "sessions": self.counters.sessions,
        }
        with contextlib.suppress(OSError):  # a status file is a courtesy, never fatal
            atomic_write_text(self.status_file, json.dumps(data) + "\n", mode=0o644)

    def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once on :meth:`stop`."""
        with contextlib.suppress(InterruptedError):
            select.select([self._wake_r], [], [], seconds)

    # ---- the loop ------------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Connect, serve, reconnect; return after :meth:`stop`."""
        backoff = _MIN_BACKOFF
        refused_logged = False
        self._set_state("waiting", force=True)
        while not self._stopping:
            try:
                sock = self._connect()
                if sock is None:
                    break  # stopped while connecting
            except OSError as exc:
                if not refused_logged:
                    self._say(
                        f"vpcd {format_address(self.address)} not reachable ({exc}); retrying"
                    )
                    refused_logged = True
                self._pause(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            refused_logged = False
            attached = self._session(sock)
            if attached:
                backoff = _MIN_BACKOFF  # pcscd went away after a good session: come back fast
            elif not self._stopping:
                self._pause(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
        self._set_state("stopped")
        self._say("stopped")

    def _connect(self) -> socket.socket | None:
        """Connect to vpcd, but return None at once on :meth:`stop` (a queued or dead vpcd
        can keep a connect pending for seconds).

        Raises:
            OSError: refused, unreachable, or no answer within the timeout.
        """
        host, port = self.address
        family, kind, protocol, _, target = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[
            0
        ]
        sock = socket.socket(family, kind, protocol)
        try:
            sock.setblocking(False)
            code = sock.connect_ex(target)
            if code not in (0, errno.EINPROGRESS):
                raise OSError(code, os.strerror(code))
            if code == errno.EINPROGRESS:
                ready, writable, _ = select.select([self._wake_r], [sock], [], _CONNECT_TIMEOUT)
                if self._wake_r in ready:
                    sock.close()
                    return None
                if not writable:
                    raise TimeoutError("timed out")
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, os.strerror(code))
            sock.setblocking(True)
            return sock
        except BaseException:
            sock.close()
            raise

    def _session(self, sock: socket.socket) -> bool:
        """Serve one TCP connection until EOF, error or stop; True if vpcd talked to us."""
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _quick_ack(sock)
        conn = VpcdConnection(self.card)
        attached = False
        self._set_state("connected")
        self._say(f"connected to vpcd {format_address(self.address)}")
        reason = "vpcd closed the connection"
        fd = sock.fileno()
        try:
            while not self._stopping:
                try:
                    ready, _, _ = select.select([fd, self._wake_r], [], [])
                except InterruptedError:
                    continue
                if self._wake_r in ready:
                    reason = "stopping"
                    break
                data = sock.recv(4096)
                if not data:
                    break
                _quick_ack(sock)
                if not attached:
                    attached = True
                    self.counters.sessions += 1
                    self._set_state("attached")
                    self._say("attached: vpcd is talking to this card")
                before = conn.counts["apdu"]
                out = conn.receive_data(data)
                self.counters.apdus += conn.counts["apdu"] - before
                if out:
                    sock.sendall(out)
                    _quick_ack(sock)  # sending re-enters delayed-ACK ("pingpong") mode
        except RemoteProtocolError as exc:
            reason = f"protocol error from vpcd: {exc}"
        except OSError as exc:
            reason = f"connection lost: {exc}"
        except Exception:  # an engine bug: log it in full, drop the card, keep serving
            reason = "card engine failed:\n" + traceback.format_exc().rstrip()
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with contextlib.suppress(Exception):
                self.card.power_off()  # like a card pulled from the reader
        self._say(f"detached ({reason})")
        if not self._stopping:
            self._set_state("waiting")
        return attached


def _quick_ack(sock: socket.socket) -> None:
    """ACK at once, not after the ~40 ms delayed-ACK timer. vpcd (vsmartcard 0.9 as Debian 12
    ships it) writes a message's 2-byte length and its payload as two sends with Nagle on: the
    payload waits for our ACK of the length, which Linux delays — 44 ms per APDU, measured.
    TCP_QUICKACK is not sticky (a send re-arms delayed ACKs), so it is set again after every
    read and every write (Linux only)."""
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)


def run(server: CardServer) -> None:
    """Serve until SIGTERM or SIGINT (main thread only): clean stop, exit status 0."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.close()
