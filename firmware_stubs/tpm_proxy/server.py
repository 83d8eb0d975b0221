"""Edge: TCP. The TPM proxy's transport: one thread per client connection, one upstream
connection to swtpm per client connection (so swtpm sees the same connection pattern as
without the proxy), the control channel piped through unchanged.

The part's state (failure mode) is shared by all connections, as on a chip.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Callable

from firmware_stubs.tpm_proxy.wire import (
    CAP_COMMANDS,
    COMMANDS,
    HEADER,
    ST_NO_SESSIONS,
    PartFilter,
    WireError,
    frame_size,
    response_code,
)

__all__ = ["TpmProxy", "read_frame"]

log = logging.getLogger("trelab.tpm_proxy")
_MAX_FRAME = 1 << 16  # far above any TPM buffer: a larger size is garbage, not a command


def _recv_exact(sock: socket.socket, count: int) -> bytes | None:
    """``count`` bytes, or None on a clean close before the first byte.

    Raises:
        WireError: the peer closed in the middle of a frame.
    """
    chunks = bytearray()
    while len(chunks) < count:
        chunk = sock.recv(count - len(chunks))
        if not chunk:
            if not chunks:
                return None
            raise WireError("connection closed in the middle of a frame")
        chunks += chunk
    return bytes(chunks)


def read_frame(sock: socket.socket) -> bytes | None:
    """One TPM command or response (header announces the size), None on a clean close.

    Raises:
        WireError: a malformed or oversized frame.
    """
    header = _recv_exact(sock, HEADER)
    if header is None:
        return None
    size = frame_size(header)
    if size > _MAX_FRAME:
        raise WireError(f"announced size {size} is not a TPM frame")
    rest = _recv_exact(sock, size - HEADER) if size > HEADER else b""
    if rest is None:
        raise WireError("connection closed after a header")
    return header + rest


class TpmProxy:
    """Serve ``port`` (TPM commands) and ``port + 1`` (control) on ``host``, in front of the
    swtpm on ``swtpm_port`` / ``swtpm_port + 1``."""

    def __init__(
        self, part: PartFilter, *, port: int, swtpm_port: int, host: str = "127.0.0.1"
    ) -> None:
        self.part = part
        self.host, self.port, self.swtpm_port = host, port, swtpm_port
        self._lock = threading.Lock()
        self._listeners: list[socket.socket] = []
        self._stopping = threading.Event()

    # ---- set-up ---------------------------------------------------------------------------

    def learn_command_counts(self) -> None:
        """Ask swtpm for its command list once, so TOTAL/LIBRARY_COMMANDS match the filtered
        list the proxy serves."""
        request = struct.pack(">HIIIII", ST_NO_SESSIONS, HEADER + 12, COMMANDS["GetCapability"],
                              CAP_COMMANDS, 0, 0x1000)  # fmt: skip
        with socket.create_connection((self.host, self.swtpm_port), timeout=10) as up:
            up.sendall(request)
            response = read_frame(up)
        if response is None or response_code(response) != 0:
            raise WireError("swtpm did not list its commands")
        count = struct.unpack(">I", response[HEADER + 5 : HEADER + 9])[0]
        attrs = struct.unpack(f">{count}I", response[HEADER + 9 : HEADER + 9 + 4 * count])
        self.part.set_command_counts(attrs)

    def bind(self) -> None:
        """Listen on both ports (raises OSError if one is taken)."""
        for port in (self.port, self.port + 1):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, port))
            except OSError:
                sock.close()
                self.close()
                raise
            sock.listen(16)
            self._listeners.append(sock)

    def serve_forever(self) -> None:
        commands, control = self._listeners
        threading.Thread(target=self._accept, args=(control, self._control), daemon=True).start()
        self._accept(commands, self._commands)

    def close(self) -> None:
        self._stopping.set()
        for sock in self._listeners:
            with contextlib.suppress(OSError):
                sock.close()
        self._listeners.clear()

    def _accept(self, listener: socket.socket, handler: Callable[[socket.socket], None]) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._guard, args=(handler, client), daemon=True).start()

    @staticmethod
    def _guard(handler: Callable[[socket.socket], None], client: socket.socket) -> None:
        with client:
            try:
                handler(client)
            except (OSError, WireError) as exc:
                log.info("connection closed: %s", exc)

    # ---- the two channels -----------------------------------------------------------------

    def _commands(self, client: socket.socket) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream: socket.socket | None = None
        try:
            while True:
                command = read_frame(client)
                if command is None:
                    return
                with self._lock:
                    decision, pending = self.part.on_command(command)
                if decision.action == "answer":
                    log.info("answered itself: %s", decision.reason)
                    client.sendall(decision.data)
                    continue
                if decision.action == "drop":
                    log.info("no answer (erratum %s): closing the connection", decision.reason)
                    return
                if upstream is None:
                    upstream = socket.create_connection((self.host, self.swtpm_port))
                    upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                upstream.sendall(decision.data)
                response = read_frame(upstream)
                if response is None:
                    return  # swtpm closed: so does the part
                with self._lock:
                    answer = self.part.on_response(pending, response)
                client.sendall(answer)
        finally:
            if upstream is not None:
                upstream.close()

    def _control(self, client: socket.socket) -> None:
        """swtpm's control channel (CMD_INIT, CMD_SET_LOCALITY, …): bytes both ways."""
        with socket.create_connection((self.host, self.swtpm_port + 1)) as upstream:

            def pump(src: socket.socket, dst: socket.socket) -> None:
                with contextlib.suppress(OSError):
                    while chunk := src.recv(4096):
                        dst.sendall(chunk)
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

            back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
            back.start()
            pump(client, upstream)
            back.join(timeout=5)
