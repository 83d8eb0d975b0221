"""Edge: pty, serial, signals. Run the AT modem on a pseudo-terminal or a real serial device.

With a pty (``os.openpty``, raw mode) the host opens the slave path — ``/dev/pts/N``, or a
stable symlink to it — exactly like ``/dev/ttyUSB2``; the server keeps its own slave fd open
so the port survives clients coming and going. With ``device`` an existing port (say a USB
gadget serial line) is opened through pyserial. Bytes go through :class:`AtModem` both ways
until :meth:`ModemServer.stop` or SIGTERM/SIGINT (see :func:`run`).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import select
import signal
import sys
import traceback
import tty
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from trelab.errors import BadInput, Unavailable

from .at import AtModem

__all__ = ["ModemServer", "run"]

_CHUNK = 4096


class ModemServer:
    """The modem on one port. ``device`` None → a new pty (``link`` names a symlink to it)."""

    def __init__(
        self,
        modem: AtModem,
        *,
        device: str | None = None,
        baudrate: int = 115200,
        link: Path | None = None,
        log: TextIO | None = None,
    ) -> None:
        self.modem = modem
        self.log = log if log is not None else sys.stderr
        self.link = link
        self._master: int | None = None
        self._slave: int | None = None
        self._port: Any = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stopping = False
        if device is None:
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)  # no echo, no CR/LF translation by the line discipline
            os.set_blocking(self._master, False)
            self.device = os.ttyname(self._slave)
            if link is not None:
                self._make_link(link)
        else:
            self.device = device
            self._open_device(device, baudrate)

    def _make_link(self, link: Path) -> None:
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()  # a previous run's link: points at a pty that is gone
        elif link.exists():
            raise BadInput(f"{link} exists and is not a symlink", field="link")
        link.symlink_to(self.device)

    def _open_device(self, device: str, baudrate: int) -> None:
        try:
            import serial
        except ImportError as exc:
            raise Unavailable("pyserial is not installed", fix="pip install pyserial") from exc
        try:
            self._port = serial.serial_for_url(device, baudrate=baudrate, timeout=0)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise Unavailable(
                f"cannot open serial device {device}: {exc}", fix="check the path and permissions"
            ) from exc

    @property
    def path(self) -> str:
        """What a host opens: the symlink if there is one, else the device."""
        return str(self.link) if self.link is not None else self.device

    def _say(self, message: str) -> None:
        stamp = datetime.datetime.now().isoformat(timespec="milliseconds")
        print(f"{stamp} modem: {message}", file=self.log, flush=True)

    def stop(self) -> None:
        """Make :meth:`serve_forever` return (signal-handler and thread safe)."""
        self._stopping = True
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    def close(self) -> None:
        if self.link is not None and self._master is not None:
            with contextlib.suppress(OSError):
                if self.link.is_symlink() and os.readlink(self.link) == self.device:
                    self.link.unlink()
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        if self._port is not None:
            with contextlib.suppress(Exception):
                self._port.close()
            self._port = None

    # ---- I/O -----------------------------------------------------------------------------------

    def _answer(self, data: bytes) -> bytes:
        try:
            return self.modem.receive_data(data)
        except Exception:  # a modem bug must not take the port down: log it, say ERROR
            self._say("AT core failed:\n" + traceback.format_exc().rstrip())
            return b"\r\nERROR\r\n"

    def _write_pty(self, data: bytes) -> None:
        assert self._master is not None
        view = memoryview(data)
        while view and not self._stopping:
            try:
                written = os.write(self._master, view)
                view = view[written:]
            except BlockingIOError:
                # Nobody reads the slave: wait until there is room, or a stop.
                select.select([self._wake_r], [self._master], [], 1.0)

    def serve_forever(self) -> None:
        """Pump bytes until :meth:`stop`."""
        self._say(f"serving on {self.path}")
        if self._master is not None:
            self._serve_pty()
        else:
            self._serve_port()
        self._say("stopped")

    def _serve_pty(self) -> None:
        master = self._master
        assert master is not None
        while not self._stopping:
            try:
                ready, _, _ = select.select([master, self._wake_r], [], [])
            except InterruptedError:
                continue
            if self._wake_r in ready:
                break
            try:
                data = os.read(master, _CHUNK)
            except BlockingIOError:
                continue
            except OSError:  # EIO: no slave open (cannot happen while we hold one)
                select.select([self._wake_r], [], [], 0.1)
                continue
            out = self._answer(data)
            if out:
                self._write_pty(out)

    def _serve_port(self) -> None:
        port = self._port
        fileno = getattr(port, "fileno", None)
        while not self._stopping:
            if fileno is not None:
                with contextlib.suppress(InterruptedError, OSError, ValueError):
                    select.select([port.fileno(), self._wake_r], [], [], 0.5)
            else:
                select.select([self._wake_r], [], [], 0.02)
            if self._stopping:
                break
            data = port.read(port.in_waiting or 1)
            if data:
                out = self._answer(bytes(data))
                if out:
                    port.write(out)


def run(server: ModemServer) -> None:
    """Serve until SIGTERM or SIGINT (main thread only); always closes the port."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.close()
