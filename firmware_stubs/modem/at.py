"""Pure. A cellular modem's AT command interpreter (ITU-T V.250, 3GPP TS 27.007) with a USIM
behind it: bytes from the serial line in, bytes to send back out.

Lines end with CR (S3); LF alone and CR LF are accepted too. Echo (``ATE``), verbose result
codes (``ATV``) and quiet mode (``ATQ``) follow V.250 §6.2; several commands may share a line
(``ATE0V1``, ``AT+CMEE=2;+CPIN?``). Errors in +C commands are ``+CME ERROR: <n>`` (numeric or
verbose per ``AT+CMEE``, TS 27.007 §9.1–9.2), everything else plain ``ERROR``. A line longer
than :data:`MAX_LINE` characters, or anything that is not an AT command, is answered ``ERROR``
and never grows memory.

``AT+CSIM`` passes the command TPDU through to the card and returns its answer unchanged,
``61xx`` included, as most modems do (TS 27.007 §8.17 leaves T=0 handling to the TE): the host
sends GET RESPONSE itself. ``AT+CRSM`` (§8.18) is the modem's own restricted access: it selects
the file, runs the command and fetches any ``61xx`` data itself. ``AT+CIMI`` and ``AT+CPIN``
use the host USIM client (:mod:`uicc.usim`) in-process, as a modem's SIM driver would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from trelab.digits import is_decimal
from trelab.errors import BadInput, CheckFailed, TrelabError
from uicc import apdu
from uicc.errors import CardRefused
from uicc.links.inprocess import InProcessLink
from uicc.usim import UsimClient

__all__ = [
    "CME_TEXT",
    "MAX_LINE",
    "AtError",
    "AtModem",
    "ModemCard",
    "ModemIdentity",
    "parse_arguments",
]

_ASCII_DIGITS = frozenset("0123456789")
MAX_LINE = 1024  # characters of a command line before its terminator; longer lines → ERROR
_CR, _LF, _BS, _DEL = 0x0D, 0x0A, 0x08, 0x7F

#: TS 27.007 §9.2.1 texts for the errors this modem reports.
CME_TEXT: dict[int, str] = {
    0: "phone failure",
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    16: "incorrect password",
    24: "text string too long",
    25: "invalid characters in text string",
    50: "Incorrect parameters",
    100: "unknown",
}

# AT+CRSM commands (TS 27.007 §8.18) → INS, and whether they carry data.
_CRSM_INS: dict[int, tuple[int, bool]] = {
    176: (0xB0, False),  # READ BINARY
    178: (0xB2, False),  # READ RECORD
    192: (0xC0, False),  # GET RESPONSE (of the SELECT)
    214: (0xD6, True),  # UPDATE BINARY
    220: (0xDC, True),  # UPDATE RECORD
    242: (0xF2, False),  # STATUS
}


class ModemCard(Protocol):
    """The card engine behind the modem (``firmware_stubs.usim.engine.UsimEngine``)."""

    def power_on(self) -> bytes: ...

    def process(self, apdu: bytes) -> bytes: ...


@dataclass(frozen=True)
class ModemIdentity:
    """What ``ATI``/``+CGMI``/``+CGMM``/``+CGMR``/``+CGSN`` report (TS 27.007 §5)."""

    manufacturer: str = "trelab"
    model: str = "trelab virtual M2M modem"
    revision: str = "trelab-modem 1.0"
    imei: str = "356938035643809"  # a test IMEI with a valid Luhn check digit


class AtError(Exception):
    """A command failed: ``cme`` set → ``+CME ERROR: cme`` (when CMEE allows), else ``ERROR``."""

    def __init__(self, cme: int | None = None) -> None:
        super().__init__(CME_TEXT.get(cme, "error") if cme is not None else "error")
        self.cme = cme


Handler = Callable[[str, list[str | None]], list[str]]


def parse_arguments(text: str) -> list[str | None]:
    """Split ``a,"b,c",,d`` at commas outside quotes: quoted strings lose their quotes, empty
    fields are None (omitted parameters, V.250 §5.3.1), spaces outside quotes are dropped.

    Raises:
        AtError: an unterminated string.
    """
    args: list[str | None] = []
    current: list[str] = []
    quoted = False
    present = False
    for ch in text:
        if quoted:
            if ch == '"':
                quoted = False
            else:
                current.append(ch)
        elif ch == '"':
            quoted = present = True
        elif ch == ",":
            args.append("".join(current) if present else None)
            current, present = [], False
        elif ch != " ":
            current.append(ch)
            present = True
    if quoted:
        raise AtError()
    args.append("".join(current) if present else None)
    return args


def _split_commands(body: str) -> list[tuple[str, str, str]]:
    """Split the text after ``AT`` into (name, form, arguments): form is "" (action), "?"
    (read), "=?" (test) or "=" (set). Basic commands are one letter (or ``&`` + letter) plus
    an optional number; extended ones start with ``+`` and run to ``;`` (V.250 §5.3–5.4).

    Raises:
        AtError: a character that starts no command, or an unterminated string.
    """
    out: list[tuple[str, str, str]] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch in " ;":
            i += 1
            continue
        if ch == "+":
            j = i + 1
            while j < n and (body[j].isalnum() or body[j] in "!%-./:_"):
                j += 1
            name = body[i:j].upper()
            if len(name) < 2:
                raise AtError()
            k, quoted = j, False
            while k < n and (quoted or body[k] != ";"):
                if body[k] == '"':
                    quoted = not quoted
                k += 1
            if quoted:
                raise AtError()
            rest = body[j:k].strip()
            if rest.startswith("=?"):
                form, args = "=?", rest[2:]
            elif rest.startswith("="):
                form, args = "=", rest[1:]
            elif rest == "?":
                form, args = "?", ""
            elif rest == "":
                form, args = "", ""
            else:
                raise AtError()
            if form == "=?" and args.strip():
                raise AtError()
            out.append((name, form, args))
            i = k
            continue
        if ch.isalpha() or ch == "&":
            j = i + 1
            if ch == "&":
                if j >= n or not body[j].isalpha():
                    raise AtError()
                j += 1
            name = body[i:j].upper()
            k = j
            while k < n and body[k] in _ASCII_DIGITS:
                k += 1
            if k < n and body[k] == "?" and k == j:
                out.append((name, "?", ""))
                i = k + 1
                continue
            out.append((name, "=", body[j:k]))
            i = k
            continue
        raise AtError()
    return out


def _number(value: str | None, low: int, high: int, *, default: int | None = None) -> int:
    if value is None:
        if default is None:
            raise AtError(50)
        return default
    if not is_decimal(value) or not low <= int(value) <= high:
        raise AtError(50)
    return int(value)


def _hex(value: str | None) -> bytes:
    if value is None or len(value) % 2:
        raise AtError(50)
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise AtError(25) from None


class AtModem:
    """The modem: feed it serial bytes with :meth:`receive_data`, write back what it returns.

    The card is powered on at construction, as a modem does at boot.
    """

    def __init__(self, card: ModemCard, identity: ModemIdentity | None = None) -> None:
        self.card = card
        self.identity = identity or ModemIdentity()
        atr = card.power_on()
        self._link = InProcessLink(card, power_on=False, atr=atr)
        self._sim = UsimClient(self._link)
        self.echo = True
        self.verbose = True
        self.quiet = False
        self.cmee = 0
        self._line = bytearray()
        self._overflow = False
        self._after_cr = False
        self.lines = 0  # command lines executed (tests, logs)
        self._extended: dict[str, Handler] = {
            "+CGMI": self._ident(lambda: self.identity.manufacturer),
            "+GMI": self._ident(lambda: self.identity.manufacturer),
            "+CGMM": self._ident(lambda: self.identity.model),
            "+GMM": self._ident(lambda: self.identity.model),
            "+CGMR": self._ident(lambda: self.identity.revision),
            "+GMR": self._ident(lambda: self.identity.revision),
            "+CGSN": self._ident(lambda: self.identity.imei),
            "+GSN": self._ident(lambda: self.identity.imei),
            "+GCAP": self._gcap,
            "+CMEE": self._cmee,
            "+CIMI": self._cimi,
            "+CPIN": self._cpin,
            "+CSIM": self._csim,
            "+CRSM": self._crsm,
        }

    # ---- bytes in, bytes out ------------------------------------------------------------------

    def receive_data(self, data: bytes) -> bytes:
        """Consume serial input; return the echo and the responses it caused."""
        out = bytearray()
        for byte in data:
            if self.echo:
                out.append(byte)
            if byte in (_CR, _LF):
                if byte == _LF and self._after_cr:
                    self._after_cr = False  # the LF of CR LF: the line already ran
                    continue
                self._after_cr = byte == _CR
                line, overflow = bytes(self._line), self._overflow
                self._line.clear()
                self._overflow = False
                out += self._run_line(line, overflow)
                continue
            self._after_cr = False
            if byte in (_BS, _DEL):
                if self._line:
                    self._line.pop()
            elif len(self._line) < MAX_LINE:
                self._line.append(byte)
            else:
                self._overflow = True
        return bytes(out)

    # ---- formatting (V.250 §5.7) ----------------------------------------------------------------

    def _info(self, text: str) -> bytes:
        body = text.encode("latin-1", errors="replace")
        return b"\r\n" + body + b"\r\n" if self.verbose else body + b"\r\n"

    def _final(self, verbose: str, numeric: str) -> bytes:
        if self.quiet:
            return b""
        if self.verbose:
            return b"\r\n" + verbose.encode() + b"\r\n"
        return numeric.encode() + b"\r"

    def _error(self, error: AtError) -> bytes:
        if error.cme is None or self.cmee == 0:
            return self._final("ERROR", "4")
        detail = str(error.cme) if self.cmee == 1 else CME_TEXT.get(error.cme, "unknown")
        if self.quiet:
            return b""
        return self._info(f"+CME ERROR: {detail}")

    def _run_line(self, raw: bytes, overflow: bool) -> bytes:
        text = raw.decode("latin-1").strip()
        if overflow:
            return self._final("ERROR", "4")
        if not text:
            return b""  # an empty line is no command (V.250 §5.2.1)
        if text[:2].upper() != "AT":
            return self._final("ERROR", "4")
        self.lines += 1
        out = bytearray()
        try:
            for name, form, args in _split_commands(text[2:]):
                for line in self._dispatch(name, form, args):
                    out += self._info(line)
        except AtError as error:
            return bytes(out) + self._error(error)
        return bytes(out) + self._final("OK", "0")

    def _dispatch(self, name: str, form: str, args: str) -> list[str]:
        if name.startswith("+"):
            handler = self._extended.get(name)
            if handler is None:
                raise AtError()
            try:
                return handler(form, parse_arguments(args) if form == "=" else [])
            except CardRefused as exc:
                if exc.sw == apdu.SW_SECURITY_NOT_SATISFIED:
                    # Which password the SIM waits for decides the code (TS 27.007 §9.2.1).
                    try:
                        puk = self._pin_code() == "SIM PUK"
                    except TrelabError:
                        raise AtError(13) from None
                    raise AtError(12 if puk else 11) from None
                raise AtError(_cme_for_sw(exc.sw)) from None
            except AtError:
                raise
            except BadInput:
                raise AtError(50) from None
            except TrelabError:  # the card answered something unparseable
                raise AtError(13) from None
        if form != "=":
            raise AtError()  # no basic command here has a read form
        return self._basic(name, args)

    # ---- basic commands (V.250 §6) --------------------------------------------------------------

    def _basic(self, name: str, value: str) -> list[str]:
        number = int(value) if value else 0
        if name == "E" and number in (0, 1):
            self.echo = number == 1
        elif name == "V" and number in (0, 1):
            self.verbose = number == 1
        elif name == "Q" and number in (0, 1):
            self.quiet = number == 1
        elif name in ("Z", "&F") and number == 0:
            self.echo, self.verbose, self.quiet, self.cmee = True, True, False, 0
        elif name == "I" and number == 0:
            ident = self.identity
            return [ident.manufacturer, ident.model, f"Revision: {ident.revision}"]
        else:
            raise AtError()
        return []

    # ---- identification (TS 27.007 §5) ----------------------------------------------------------

    @staticmethod
    def _ident(value: Callable[[], str]) -> Handler:
        def handler(form: str, args: list[str | None]) -> list[str]:
            if form == "":
                return [value()]
            if form == "=?":
                return []
            raise AtError()

        return handler

    def _gcap(self, form: str, args: list[str | None]) -> list[str]:
        if form == "":
            return ["+GCAP: +CGSM"]
        if form == "=?":
            return []
        raise AtError()

    def _cmee(self, form: str, args: list[str | None]) -> list[str]:
        """Report mobile termination errors (TS 27.007 §9.1): 0 off, 1 numeric, 2 verbose."""
        if form == "?":
            return [f"+CMEE: {self.cmee}"]
        if form == "=?":
            return ["+CMEE: (0-2)"]
        if form == "=" and len(args) == 1:
            self.cmee = _number(args[0], 0, 2, default=0)
            return []
        raise AtError(50 if form == "=" else None)

    # ---- SIM (TS 27.007 §7.1, §8.3, §8.17, §8.18) -----------------------------------------------

    def _cimi(self, form: str, args: list[str | None]) -> list[str]:
        """IMSI from EF.IMSI (TS 27.007 §7.1); the PIN must be verified first."""
        if form == "=?":
            return []
        if form != "":
            raise AtError()
        self._sim.forget_selection()
        return [self._sim.read_imsi()]

    def _pin_code(self) -> str:
        self._sim.forget_selection()
        status = self._sim.pin_status()
        if status.state == "blocked":
            return "SIM PUK"
        if status.state == "enabled" and not status.verified:
            return "SIM PIN"
        return "READY"

    def _cpin(self, form: str, args: list[str | None]) -> list[str]:
        """Enter PIN (TS 27.007 §8.3): read gives READY / SIM PIN / SIM PUK; set verifies the
        PIN, or with the PUK and a new PIN unblocks it."""
        if form == "=?":
            return []
        if form == "?":
            return [f"+CPIN: {self._pin_code()}"]
        if form != "=" or not 1 <= len(args) <= 2 or args[0] is None:
            raise AtError(50)
        code = self._pin_code()
        if code == "READY":
            raise AtError(3)  # nothing is waiting for a password
        try:
            if code == "SIM PIN":
                if len(args) != 1:
                    raise AtError(50)
                self._sim.verify_pin(args[0])
            else:
                new_pin = args[1] if len(args) == 2 else None
                if new_pin is None:
                    raise AtError(50)
                self._sim.unblock_pin(args[0], new_pin)
        except CardRefused as exc:
            if exc.sw == apdu.SW_BLOCKED and code == "SIM PUK":
                raise AtError(13) from None  # PUK blocked too: the SIM is dead
            if exc.sw == apdu.SW_BLOCKED or apdu.pin_tries(exc.sw) is not None:
                raise AtError(16) from None  # wrong (the last try blocks: next is SIM PUK)
            raise AtError(_cme_for_sw(exc.sw)) from None
        except BadInput:
            raise AtError(16) from None
        return []

    def _csim(self, form: str, args: list[str | None]) -> list[str]:
        """Generic SIM access (TS 27.007 §8.17): ``<length>`` counts the hex characters."""
        if form == "=?":
            return []
        if form != "=" or len(args) != 2:
            raise AtError(50)
        length = _number(args[0], 2, 2 * 261)
        command = _hex(args[1])
        if length != 2 * len(command):
            raise AtError(50)
        response = self.card.process(command)
        self._sim.forget_selection()
        return [f'+CSIM: {2 * len(response)},"{response.hex().upper()}"']

    def _crsm(self, form: str, args: list[str | None]) -> list[str]:
        """Restricted SIM access (TS 27.007 §8.18): the modem selects ``<fileid>`` (under
        ``<pathid>`` if given, else MF for 2Fxx and ADF.USIM for 6Fxx/4Fxx), then runs the
        command and answers ``+CRSM: <sw1>,<sw2>[,<response>]``."""
        if form == "=?":
            return []
        if form != "=" or not 1 <= len(args) <= 7:
            raise AtError(50)
        command = _number(args[0], 0, 255)
        if command not in _CRSM_INS:
            raise AtError(50)
        ins, with_data = _CRSM_INS[command]
        p1 = _number(args[2] if len(args) > 2 else None, 0, 255, default=0)
        p2 = _number(args[3] if len(args) > 3 else None, 0, 255, default=0)
        p3 = _number(args[4] if len(args) > 4 else None, 0, 255, default=0)
        data = _hex(args[5]) if len(args) > 5 and args[5] is not None else b""
        path = _hex(args[6]) if len(args) > 6 and args[6] is not None else None
        if with_data != bool(data):
            raise AtError(50)
        self._sim.forget_selection()
        if command == 242:  # STATUS needs no file
            return [self._crsm_line(self._raw(bytes((0x80, 0xF2, p1, p2, p3))))]
        fileid = _number(args[1] if len(args) > 1 else None, 0, 0xFFFF)
        selected = self._crsm_select(fileid, path)
        if command == 192 or not selected[1]:
            return [self._crsm_line(selected[0])]
        return [self._crsm_line(self._raw(bytes((0x00, ins, p1, p2, p3)) + data))]

    def _raw(self, command: bytes) -> bytes:
        return self._link.transmit(command)

    def _crsm_select(self, fileid: int, path: bytes | None) -> tuple[bytes, bool]:
        """Select the file; returns (response of the last SELECT, success)."""
        if path is None:
            path = b"\x7f\xff" if fileid >> 8 in (0x6F, 0x4F, 0x5F) else b""
        fids = [int.from_bytes(path[i : i + 2], "big") for i in range(0, len(path) - 1, 2)]
        fids = [fid for fid in fids if fid != 0x3F00]
        steps: list[bytes] = [apdu.build_select_fid(0x3F00).encode()]
        for fid in fids:
            if fid == 0x7FFF:
                try:
                    self._sim.select_usim()
                except CheckFailed as exc:
                    sw = exc.sw if isinstance(exc, CardRefused) else 0x6A82
                    return sw.to_bytes(2, "big"), False
                steps = []
                continue
            steps.append(apdu.build_select_fid(fid).encode())
        steps.append(apdu.build_select_fid(fileid).encode())
        resp = b""
        for step in steps:
            resp = self._raw(step)
            if not apdu.is_success((resp[-2] << 8) | resp[-1]):
                return resp, False
        return resp, True

    @staticmethod
    def _crsm_line(resp: bytes) -> str:
        sw1, sw2, data = resp[-2], resp[-1], resp[:-2]
        return f'+CRSM: {sw1},{sw2},"{data.hex().upper()}"' if data else f"+CRSM: {sw1},{sw2}"


def _cme_for_sw(sw: int) -> int:
    """A card refusal seen by +CIMI/+CPIN as a TS 27.007 error code."""
    if sw == apdu.SW_SECURITY_NOT_SATISFIED:
        return 11
    if sw == apdu.SW_BLOCKED:
        return 12
    return 13
