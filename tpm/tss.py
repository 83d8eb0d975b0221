"""Edge: TPM, TCP. The TPM access layer: how trelab reaches a TPM, below ESYS and beside it.

Every command to a TPM — sent by ESYS (tpm2-pytss) or by the lean session layer
(:mod:`tpm.lean`) — goes through one :class:`Transport` per connection:

- ``swtpm:host=H,port=P`` → :class:`SwtpmTransport`, trelab's own client of swtpm's server
  port (raw TPM command and response frames, as tpm2-tss's swtpm TCTI sends them; the
  response's own size field delimits it). Like that TCTI it connects per command, so other
  clients of the same swtpm get their turn; inside :meth:`Transport.kept` it keeps one socket
  (swtpm serves one connection at a time: keep it only around a burst of commands).
- anything else (``device:/dev/tpmrm0``, ``tabrmd:``, ``mssim:``) → :class:`TctiTransport`,
  the ESAPI's TCTI loaded by tpm2-tss, used to send the layer's bytes too.

ESYS sees the transport as a Python TCTI (:class:`_EsysTcti`), so one observer hook
(:meth:`Transport.observe`) sees every command with its code and the time inside the
transport: bench timing and crash injection hook here, not into ESYS objects.

:class:`TpmFacts` is what a connection knows about its TPM for its life (NV indices defined,
their ESYS objects, the EK), typed, instead of a dict of ad-hoc keys.
"""

from __future__ import annotations

import contextlib
import keyword
import os
import re
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

# ESYS prints its own error lines on stderr when the TPM refuses a command; trelab reports
# every refusal itself in one line, so silence the library unless the user asked for its logs.
os.environ.setdefault("TSS2_LOG", "all+NONE")

from tpm2_pytss import ESAPI, TCTILdr, TSS2_Exception
from tpm2_pytss.constants import TPM2_CC
from tpm2_pytss.TCTI import PyTCTI

from trelab.errors import BadInput, Unavailable

__all__ = [
    "CommandEvent",
    "CommandObserver",
    "InterruptibleEsys",
    "SwtpmTransport",
    "TctiTransport",
    "TpmFacts",
    "Transport",
    "command_name",
    "open_esys",
    "open_transport",
]

#: How long a response may take before the transport gives up (a stuck swtpm, or another
#: client holding swtpm's one connection).
RESPONSE_TIMEOUT = 120.0


def _snake(name: str) -> str:
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    return text + "_" if keyword.iskeyword(text) else text


def _command_names() -> dict[int, str]:
    names: dict[int, str] = {}
    for attr, value in vars(TPM2_CC).items():
        if attr.startswith("_") or not isinstance(value, int) or attr in ("FIRST", "LAST"):
            continue
        names.setdefault(int(value), _snake(attr))
    return names


_NAMES = _command_names()


def command_name(code: int) -> str:
    """The ESAPI-style name of a command code: 0x134 → ``nv_increment``, 0x156 → ``import_``."""
    return _NAMES.get(code, f"cc_{code:x}")


@dataclass(frozen=True)
class CommandEvent:
    """One command as the transport saw it: code, ESAPI-style name, seconds between the
    first byte sent and the last byte received, and the response code."""

    code: int
    name: str
    seconds: float
    rc: int


CommandObserver = Callable[[CommandEvent], None]


class Transport:
    """Moves one command's bytes to the TPM and its response back; observers run after each."""

    def __init__(self) -> None:
        self._observers: list[CommandObserver] = []
        self.commands = 0

    def _exchange(self, command: bytes) -> bytes:
        raise NotImplementedError

    def execute(self, command: bytes) -> bytes:
        """Send one marshalled command, return its marshalled response.

        Raises:
            Unavailable: the TPM cannot be reached or closed the connection.
        """
        if len(command) < 10:
            raise BadInput(f"TPM command of {len(command)} bytes")
        start = time.perf_counter()
        response = self._exchange(command)
        elapsed = time.perf_counter() - start
        self.commands += 1
        if self._observers:
            (code,) = struct.unpack_from(">I", command, 6)
            rc = struct.unpack_from(">I", response, 6)[0] if len(response) >= 10 else -1
            event = CommandEvent(code, command_name(code), elapsed, rc)
            for observer in tuple(self._observers):
                observer(event)
        return response

    @contextlib.contextmanager
    def observe(self, observer: CommandObserver) -> Iterator[None]:
        """Call ``observer`` after every command inside the block."""
        self._observers.append(observer)
        try:
            yield
        finally:
            self._observers.remove(observer)

    @contextlib.contextmanager
    def kept(self) -> Iterator[None]:
        """Keep the connection to the TPM open inside the block where the transport can."""
        yield

    def close(self) -> None:
        """Release the transport (idempotent)."""


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("swtpm closed the connection")
        data += chunk
    return bytes(data)


class SwtpmTransport(Transport):
    """swtpm's server port, one TCP connection per command unless :meth:`kept`."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self.host, self.port = host, port
        self._sock: socket.socket | None = None
        self._keep = 0
        # fail early and clearly when nothing listens (as the swtpm TCTI does)
        self._close_socket(self._connect())

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=RESPONSE_TIMEOUT)
        except OSError as exc:
            raise Unavailable(
                f"cannot reach swtpm at {self.host}:{self.port}: {exc.strerror or exc}",
                fix="trelab lab up",
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _close_socket(self, sock: socket.socket) -> None:
        sock.close()

    def _exchange(self, command: bytes) -> bytes:
        sock = self._sock if self._sock is not None else self._connect()
        try:
            sock.sendall(command)
            header = _recv_exact(sock, 10)
            (size,) = struct.unpack_from(">I", header, 2)
            if size < 10:
                raise ConnectionError(f"response header says {size} bytes")
            response = header + _recv_exact(sock, size - 10)
        except (OSError, ConnectionError) as exc:
            self._sock = None
            sock.close()
            raise Unavailable(
                f"swtpm at {self.host}:{self.port} did not answer: {exc}", fix="trelab lab up"
            ) from None
        if self._keep:
            self._sock = sock
        else:
            self._close_socket(sock)
        return response

    @contextlib.contextmanager
    def kept(self) -> Iterator[None]:
        self._keep += 1
        try:
            yield
        finally:
            self._keep -= 1
            if not self._keep and self._sock is not None:
                sock, self._sock = self._sock, None
                self._close_socket(sock)

    def close(self) -> None:
        self._keep = 0
        if self._sock is not None:
            sock, self._sock = self._sock, None
            self._close_socket(sock)


class TctiTransport(Transport):
    """A tpm2-tss TCTI (device, tabrmd, mssim): the ESAPI's own transport for both users."""

    def __init__(self, tcti: TCTILdr) -> None:
        super().__init__()
        self._tcti = tcti

    def _exchange(self, command: bytes) -> bytes:
        try:
            self._tcti.transmit(command)
            return bytes(self._tcti.receive(4096, -1))
        except TSS2_Exception as exc:
            raise Unavailable(f"the TPM transport failed: {exc}") from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._tcti.close()


class _EsysTcti(PyTCTI):  # type: ignore[misc]
    """The transport as a TCTI for ESYS: transmit stores, receive executes.

    Ctrl-C. ``receive`` runs inside a cffi callback, where a KeyboardInterrupt cannot
    propagate (cffi prints "Exception ignored" and hands ESYS a bogus success, which then
    reads as a TPM refusal). So SIGINT is held while a command is on the wire — the command
    completes, as with a native TCTI — and :class:`InterruptibleEsys` raises it the moment
    the ESYS call returns to Python."""

    def __init__(self, transport: Transport) -> None:
        super().__init__(max_size=4096)
        self._transport = transport
        self._pending: bytes | None = None
        self.interrupted = False

    def do_transmit(self, command: bytes) -> None:
        self._pending = bytes(command)

    def do_receive(self, timeout: int) -> bytes:
        command, self._pending = self._pending, None
        if command is None:
            raise Unavailable("ESYS asked for a response without a command")
        if threading.current_thread() is not threading.main_thread():
            return self._transport.execute(command)  # signals reach only the main thread
        previous = signal.signal(signal.SIGINT, self._hold)
        try:
            return self._transport.execute(command)
        finally:
            signal.signal(signal.SIGINT, previous)

    def _hold(self, signum: int, frame: Any) -> None:
        self.interrupted = True


class InterruptibleEsys:
    """The ESAPI context, with Ctrl-C raised as soon as an ESYS call that held it returns
    (see :class:`_EsysTcti`). Attribute access is forwarded; wrapped methods are cached."""

    def __init__(self, esys: Any, tcti: _EsysTcti) -> None:
        self._esys = esys
        self._tcti = tcti

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._esys, name)
        if not callable(target):
            return target
        tcti = self._tcti

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return target(*args, **kwargs)
            finally:
                if tcti.interrupted:
                    tcti.interrupted = False
                    signal.raise_signal(signal.SIGINT)  # the handler of the moment decides

        self.__dict__[name] = call
        return call


def _conf(conf: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, conf.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise BadInput(f"TCTI option {part!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def open_transport(name: str, conf: str) -> Transport:
    """The transport for TCTI ``name:conf`` (module docstring).

    Raises:
        BadInput: a malformed swtpm configuration.
        Unavailable: nothing answers there.
    """
    if name == "swtpm":
        options = _conf(conf)
        host = options.get("host", "127.0.0.1")
        text = options.get("port", "2321")
        if not re.fullmatch(r"[0-9]{1,5}", text) or not 0 < int(text) < 65536:
            raise BadInput(f"swtpm TCTI port {text!r}")
        return SwtpmTransport(host, int(text))
    try:
        loader = TCTILdr(name, conf or None)
    except TSS2_Exception as exc:
        raise Unavailable(
            f"cannot open TPM {name}:{conf}: {exc}",
            fix="check the TCTI (trelab lab status / lab detect) and that libtss2-tcti-* is installed",
        ) from None
    return TctiTransport(loader)


def open_esys(transport: Transport) -> tuple[Any, Any]:
    """(ESAPI context, its TCTI) over ``transport``; keep the TCTI alive as long as ESYS.

    Raises:
        Unavailable: ESYS cannot initialise.
    """
    tcti = _EsysTcti(transport)
    try:
        return InterruptibleEsys(ESAPI(tcti), tcti), tcti
    except TSS2_Exception as exc:
        raise Unavailable(f"the TPM does not answer: {exc}", fix="trelab lab up") from None


@dataclass
class TpmFacts:
    """What holds about one TPM for a connection's life, so hot paths do not ask again;
    whoever changes such a fact (NV undefine, TPM2_Clear) updates it here."""

    #: NV indices known to be defined
    nv_defined: set[int] = field(default_factory=set)
    #: the connection's one ESYS object per NV index (shared: never closed by a user)
    nv_objects: dict[int, Any] = field(default_factory=dict)
    #: trelab's four MID-store NV indices were checked (defined, with our attributes)
    store_indices_checked: bool = False
    #: persistent EK matched to its certificate, per kind: (ESYS object, TPM2B_PUBLIC)
    ek: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    #: the symmetric commands and AES modes the TPM implements (tpm.keyholder.probe_symmetric)
    symmetric: Any = None
    #: the persistent SRK: (ESYS object, TPM2B_PUBLIC, name), as tpm.mid.ensure_srk found it
    srk: tuple[Any, Any, bytes] | None = None
    #: the EK's TPM2B_PUBLIC (as held in ``ek``) and its name, computed once
    ek_name: tuple[Any, bytes] | None = None

    def remember_nv(self, index: int, obj: Any) -> None:
        self.nv_objects[index] = obj
        self.nv_defined.add(index)

    def forget_nv(self, index: int) -> Any:
        """Drop what is known of ``index``; returns its ESYS object, if any."""
        self.nv_defined.discard(index)
        return self.nv_objects.pop(index, None)

    def holds_ek(self, obj: Any) -> bool:
        return any(kept[0] is obj for kept in self.ek.values())

    def forget_all(self) -> None:
        """After TPM2_Clear: nothing known holds any more."""
        self.nv_defined.clear()
        self.nv_objects.clear()
        self.store_indices_checked = False
        self.ek.clear()
        self.srk = None
        self.ek_name = None
