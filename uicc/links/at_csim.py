"""Edge: serial (pyserial). A card behind a cellular modem, reached with AT+CSIM (TS 27.007 §8.17).

Any port pyserial opens works: a pty of the lab's modem emulator, ``/dev/ttyUSB2`` of a real
modem, or a pyserial URL. At open the link turns echo off (``ATE0``) and asks for numeric
``+CME ERROR`` codes (``AT+CMEE=1``). Modems pass TPDUs through in T=0 form, so case-4
commands go without Le and the link fetches ``61xx`` data with GET RESPONSE itself. No answer
within the timeout is :class:`Unavailable`, as is a modem that reports no SIM.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from trelab.errors import RemoteProtocolError, Unavailable

from .at_codec import AtFinal, AtResponseReader, build_crsm, build_csim, parse_crsm, parse_csim
from .base import exchange

__all__ = ["AtCommandFailed", "AtCsimLink"]

# +CME ERROR codes (TS 27.007 §9.2.1) that mean "there is no usable SIM".
_NO_SIM = {"10": "SIM not inserted", "13": "SIM failure", "14": "SIM busy", "15": "SIM wrong"}


class AtCommandFailed(RemoteProtocolError):
    """The modem answered ``ERROR`` or ``+CME ERROR`` to a command that should work."""

    def __init__(self, command: str, final: AtFinal) -> None:
        what = "ERROR" if final.code is None else f"+{final.kind.upper()} ERROR: {final.code}"
        super().__init__(f"modem answered {what} to {command.split('=')[0]}")
        self.final = final


class AtCsimLink:
    """A modem's SIM over a serial port.

    Raises (constructor):
        Unavailable: the port cannot be opened or the modem does not answer ``AT``.
    """

    def __init__(self, port: str, *, baudrate: int = 115200, timeout: float = 5.0) -> None:
        try:
            import serial
        except ImportError as exc:
            raise Unavailable("pyserial is not installed", fix="pip install pyserial") from exc
        self.port = port
        self.timeout = timeout
        self._serial_error: type[Exception] = serial.SerialException
        try:
            self._serial: Any = serial.serial_for_url(port, baudrate=baudrate, timeout=0.05)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise Unavailable(
                f"cannot open serial port {port}: {exc}",
                fix="check the path (`trelab lab detect` lists serial ports)",
            ) from exc
        try:
            self._serial.reset_input_buffer()
            self.command("ATE0")  # echo would only be parsed away again
            with contextlib.suppress(AtCommandFailed):  # an old modem: plain ERROR is fine too
                self.command("AT+CMEE=1")
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"AtCsimLink({self.port!r})"

    def __enter__(self) -> AtCsimLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        return f"serial:{self.port}"

    @property
    def atr(self) -> bytes | None:
        return None  # TS 27.007 has no command for the ATR

    @property
    def serial_port(self) -> Any:
        """The open pyserial port, for diagnostics and the benchmark's bare exchange; do not
        interleave with :meth:`command` (both read the same line)."""
        return self._serial

    def command(self, line: str, *, timeout: float | None = None) -> tuple[str, ...]:
        """Send one command line, return its information lines.

        Raises:
            Unavailable: no final result within the timeout, the port failed, or no SIM.
            AtCommandFailed: ``ERROR`` / ``+CME ERROR`` for any other reason.
        """
        if self._serial is None:
            raise Unavailable(f"{self.name}: link is closed", fix="open a new link")
        reader = AtResponseReader(echo_of=line)
        limit = self.timeout if timeout is None else timeout
        try:
            self._serial.write(line.encode("ascii") + b"\r")
            deadline = time.monotonic() + limit
            final = None
            while final is None:
                chunk = self._serial.read(self._serial.in_waiting or 1)
                if chunk:
                    final = reader.feed(chunk)
                elif time.monotonic() > deadline:
                    raise Unavailable(
                        f"modem on {self.port} did not answer {line.split('=')[0]} "
                        f"within {limit:g} s",
                        fix="check the port and that the modem is on",
                    )
        except (self._serial_error, OSError) as exc:
            raise Unavailable(f"serial port {self.port}: {exc}", fix="reconnect the modem") from exc
        if final.ok:
            return final.lines
        if final.kind == "cme" and final.code in _NO_SIM:
            raise Unavailable(
                f"modem on {self.port}: {_NO_SIM[final.code]}", fix="insert or re-seat the SIM"
            )
        raise AtCommandFailed(line, final)

    def transmit_raw(self, tpdu: bytes) -> bytes:
        """One AT+CSIM round trip: the TPDU as given, the card's answer as given."""
        return parse_csim(self.command(build_csim(tpdu)))

    def transmit(self, apdu: bytes) -> bytes:
        return exchange(self.transmit_raw, apdu, t0=True)

    def restricted(
        self,
        command: int,
        fileid: int | None = None,
        p1: int = 0,
        p2: int = 0,
        p3: int = 0,
        data: bytes | None = None,
        path: bytes | None = None,
    ) -> tuple[int, bytes]:
        """AT+CRSM (TS 27.007 §8.18) → (SW, data): the modem selects and fetches itself."""
        line = build_crsm(command, fileid, p1, p2, p3, data, path)
        return parse_crsm(self.command(line))

    def close(self) -> None:
        port, self._serial = getattr(self, "_serial", None), None
        if port is not None:
            with contextlib.suppress(Exception):  # closing must not raise
                port.close()
