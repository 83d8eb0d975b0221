"""Pure. The terminal side of AT commands (ITU-T V.250, TS 27.007): build command lines, split
the modem's output into lines, spot the final result code, decode ``+CSIM``/``+CRSM``.

:class:`AtResponseReader` takes bytes as they arrive and says when a command is finished
(``OK``, ``ERROR``, ``+CME ERROR: <n>`` or ``+CMS ERROR: <n>``); echo of the command and
unsolicited lines are kept apart from the information lines the caller asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from trelab.digits import is_decimal
from trelab.errors import BadInput, RemoteProtocolError

__all__ = [
    "AtFinal",
    "AtResponseReader",
    "build_crsm",
    "build_csim",
    "parse_crsm",
    "parse_csim",
]

MAX_RESPONSE_LINE = 4096
_EOL = re.compile(rb"[\r\n]+")

FinalKind = Literal["ok", "error", "cme", "cms"]


@dataclass(frozen=True, slots=True)
class AtFinal:
    """The final result of one command and the information lines that came before it."""

    kind: FinalKind
    lines: tuple[str, ...]
    code: str | None = None  # the <err> of +CME/+CMS ERROR (number or text)

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


class AtResponseReader:
    """Collects one command's response. ``feed`` returns the :class:`AtFinal` once the final
    result code has arrived; bytes after it stay buffered for the next command."""

    def __init__(self, echo_of: str | None = None) -> None:
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._echo = echo_of

    def feed(self, data: bytes) -> AtFinal | None:
        """Raises:
        RemoteProtocolError: a line longer than any modem sends (garbage on the line).
        """
        self._buffer += data
        while True:
            end = _EOL.search(self._buffer)
            if end is None:
                if len(self._buffer) > MAX_RESPONSE_LINE:
                    raise RemoteProtocolError("modem sent a line without end")
                return None
            line = self._buffer[: end.start()].decode("latin-1").strip()
            del self._buffer[: end.end()]
            if not line:
                continue
            if self._echo is not None and line == self._echo:
                self._echo = None  # the modem echoed our command: not an answer
                continue
            final = _final(line)
            if final is not None:
                kind, code = final
                return AtFinal(kind, tuple(self._lines), code)
            self._lines.append(line)

    @property
    def leftover(self) -> bytes:
        return bytes(self._buffer)


def _final(line: str) -> tuple[FinalKind, str | None] | None:
    upper = line.upper()
    if upper in ("OK", "0"):
        return "ok", None
    if upper in ("ERROR", "4"):
        return "error", None
    for prefix, kind in (("+CME ERROR:", "cme"), ("+CMS ERROR:", "cms")):
        if upper.startswith(prefix):
            return kind, line[len(prefix) :].strip()  # type: ignore[return-value]
    return None


def build_csim(apdu: bytes) -> str:
    """``AT+CSIM=<length>,"<command>"``: length counts hex characters (TS 27.007 §8.17).

    Raises:
        BadInput: empty, or longer than a short TPDU.
    """
    if not 4 <= len(apdu) <= 261:
        raise BadInput(f"AT+CSIM: a TPDU of {len(apdu)} bytes cannot be sent")
    return f'AT+CSIM={2 * len(apdu)},"{apdu.hex().upper()}"'


def _hex_field(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise RemoteProtocolError(f"{what}: response is not hex") from None


def parse_csim(lines: tuple[str, ...]) -> bytes:
    """The card's answer from the ``+CSIM: <length>,"<response>"`` line.

    Raises:
        RemoteProtocolError: no +CSIM line, a length that does not match, or not hex.
    """
    for line in lines:
        if line.upper().startswith("+CSIM:"):
            length_text, _, rest = line[6:].strip().partition(",")
            body = rest.strip().strip('"')
            length_text = length_text.strip(" ")  # the text checked is the text converted
            if not is_decimal(length_text) or int(length_text) != len(body):
                raise RemoteProtocolError("+CSIM: length does not match the response")
            data = _hex_field(body, "+CSIM")
            if len(data) < 2:
                raise RemoteProtocolError("+CSIM: response without a status word")
            return data
    raise RemoteProtocolError("modem answered OK without a +CSIM line")


def build_crsm(
    command: int,
    fileid: int | None = None,
    p1: int | None = None,
    p2: int | None = None,
    p3: int | None = None,
    data: bytes | None = None,
    path: bytes | None = None,
) -> str:
    """``AT+CRSM=<command>[,<fileid>[,<P1>,<P2>,<P3>[,<data>[,<pathid>]]]]`` (TS 27.007 §8.18)."""
    parts = [str(command)]
    if fileid is not None:
        parts.append(str(fileid))
        if p1 is not None:
            parts += [str(p1), str(p2 or 0), str(p3 or 0)]
            if data is not None or path is not None:
                parts.append(f'"{(data or b"").hex().upper()}"' if data else "")
            if path is not None:
                parts.append(f'"{path.hex().upper()}"')
    return "AT+CRSM=" + ",".join(parts)


def parse_crsm(lines: tuple[str, ...]) -> tuple[int, bytes]:
    """``+CRSM: <sw1>,<sw2>[,"<response>"]`` → (SW, response data).

    Raises:
        RemoteProtocolError: no +CRSM line, or fields that do not decode.
    """
    for line in lines:
        if line.upper().startswith("+CRSM:"):
            fields = [f.strip().strip('"') for f in line[6:].split(",")]
            if len(fields) < 2 or not all(is_decimal(f) and int(f) < 256 for f in fields[:2]):
                raise RemoteProtocolError("+CRSM: SW1/SW2 are not numbers")
            data = _hex_field(fields[2], "+CRSM") if len(fields) > 2 else b""
            return (int(fields[0]) << 8) | int(fields[1]), data
    raise RemoteProtocolError("modem answered OK without a +CRSM line")
