"""Edge: PC/SC (pyscard). A card in a reader — physical, or the emulated USIM behind vpcd.

The low-level ``smartcard.scard`` API is used (one call per TPDU, no observers), so the link
adds almost nothing to the pcscd round trip. The reader is chosen by index (``0``), exact
name (``Virtual PCD 00 00``) or a regular expression that matches exactly one reader. T=0 and
T=1 are both offered; on T=0 case-4 commands go out without Le and :func:`exchange` fetches
the data (``61xx`` → GET RESPONSE). PC/SC result codes become trelab errors with a fix.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from trelab.digits import is_decimal
from trelab.errors import BadInput, RemoteProtocolError, TrelabError, Unavailable

from .base import exchange

__all__ = ["PcscLink", "Protocol", "list_readers", "pcsc_error", "resolve_reader"]

Protocol = Literal["auto", "T0", "T1"]

# PC/SC result codes (pcsclite.h), unsigned.
_NO_SERVICE = 0x8010001D
_SERVICE_STOPPED = 0x8010001E
_NO_READERS = 0x8010002E
_UNKNOWN_READER = 0x80100009
_READER_UNAVAILABLE = 0x80100017
_NO_SMARTCARD = 0x8010000C
_REMOVED_CARD = 0x80100069
_UNRESPONSIVE_CARD = 0x80100066
_UNPOWERED_CARD = 0x80100067
_RESET_CARD = 0x80100068
_SHARING_VIOLATION = 0x8010000B
_TIMEOUT = 0x8010000A
_PROTO_MISMATCH = 0x8010000F
_COMM_ERROR = 0x80100013
_INVALID_HANDLE = 0x80100003
_NOT_TRANSACTED = 0x80100016
_INVALID_PARAMETER = 0x80100004
_INVALID_VALUE = 0x80100011
_INSUFFICIENT_BUFFER = 0x80100008

_LAB_FIX = "run `trelab lab up` (or start pcscd)"


def _scard() -> Any:
    try:
        from smartcard import scard
    except ImportError as exc:  # pyscard is a dependency, but its C part may be missing
        raise Unavailable("pyscard is not installed", fix="pip install pyscard") from exc
    return scard


def pcsc_error(code: int, what: str, reader: str | None = None) -> TrelabError:
    """A PC/SC result code as the trelab error a user can act on."""
    code &= 0xFFFFFFFF
    where = f" ({reader})" if reader else ""
    if code in (_NO_SERVICE, _SERVICE_STOPPED):
        return Unavailable(f"{what}: pcscd is not running", fix=_LAB_FIX)
    if code == _NO_READERS:
        return Unavailable(f"{what}: no PC/SC reader", fix="plug a reader in, or `trelab lab up`")
    if code in (_UNKNOWN_READER, _READER_UNAVAILABLE):
        return Unavailable(
            f"{what}: reader{where} is gone", fix="`trelab lab detect` lists readers"
        )
    if code in (_NO_SMARTCARD, _REMOVED_CARD):
        return Unavailable(
            f"{what}: no card in reader{where}",
            fix="insert a card; for the lab's virtual card run `trelab lab up`",
        )
    if code in (_UNRESPONSIVE_CARD, _UNPOWERED_CARD):
        return Unavailable(f"{what}: the card{where} does not answer", fix="re-insert the card")
    if code == _RESET_CARD:
        return Unavailable(
            f"{what}: another application reset the card{where}", fix="run the command again"
        )
    if code == _SHARING_VIOLATION:
        return Unavailable(
            f"{what}: reader{where} is held exclusively by another application",
            fix="close the other application",
        )
    if code == _TIMEOUT:
        return Unavailable(f"{what}: the card{where} timed out", fix="re-insert the card")
    if code == _PROTO_MISMATCH:
        return Unavailable(
            f"{what}: the card{where} does not speak the requested protocol",
            fix="try --protocol auto",
        )
    if code == _NOT_TRANSACTED:
        return Unavailable(
            f"{what}: the card{where} was removed or reset during the command",
            fix="run the command again",
        )
    if code in (_INVALID_PARAMETER, _INVALID_VALUE, _INSUFFICIENT_BUFFER):
        return BadInput(f"{what}: PC/SC refused the command as malformed ({code:#010x})")
    if code in (_COMM_ERROR, _INVALID_HANDLE):
        return Unavailable(f"{what}: lost the reader{where}", fix="restart pcscd, run again")
    message = _scard().SCardGetErrorMessage(code)
    return Unavailable(f"{what}: PC/SC error {code:#010x} ({message})", fix="restart pcscd")


def list_readers() -> list[str]:
    """Reader names pcscd offers now.

    Raises:
        Unavailable: pcscd is not running.
    """
    scard = _scard()
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise pcsc_error(hresult, "PC/SC")
    try:
        hresult, names = scard.SCardListReaders(context, [])
        if hresult & 0xFFFFFFFF == _NO_READERS:
            return []
        if hresult != scard.SCARD_S_SUCCESS:
            raise pcsc_error(hresult, "listing readers")
        return [str(name) for name in names]
    finally:
        scard.SCardReleaseContext(context)


def resolve_reader(spec: str | int, names: Sequence[str]) -> str:
    """Pick a reader: exact name first, then index (``0``), then a regular expression that
    must match exactly one name (``re.search``).

    Raises:
        BadInput: no such index, an invalid regular expression, or it matches no reader or
            several (the message lists the readers there are).
        Unavailable: there is no reader at all (pcscd down, the lab not up).
    """
    there = ", ".join(f"#{i} {n!r}" for i, n in enumerate(names)) or "none"
    if isinstance(spec, int) or (isinstance(spec, str) and is_decimal(spec.strip(" "))):
        index = int(spec.strip(" ")) if isinstance(spec, str) else spec
        if isinstance(spec, str) and spec in names:
            return spec
        if 0 <= index < len(names):
            return names[index]
        if not names:
            raise Unavailable(f"no reader #{index}: no PC/SC reader at all", fix=_LAB_FIX)
        raise BadInput(f"no reader #{index} (readers: {there})", field="reader")
    if spec in names:
        return spec
    try:
        pattern = re.compile(spec)
    except re.error as exc:
        raise BadInput(
            f"{spec!r} is neither a reader name nor a regex ({exc})", field="reader"
        ) from None
    found = [n for n in names if pattern.search(n)]
    if len(found) == 1:
        return found[0]
    if found:
        several = ", ".join(repr(n) for n in found)
        raise BadInput(f"{spec!r} matches several readers: {several}", field="reader")
    if not names:
        raise Unavailable(f"no reader matches {spec!r}: no PC/SC reader at all", fix=_LAB_FIX)
    raise BadInput(f"no reader matches {spec!r} (readers: {there})", field="reader")


class PcscLink:
    """A connection to the card in one reader (shared mode).

    ``reset_on_close`` resets the card when the link closes, so a PIN verified for one
    command does not stay verified for the next application.

    Raises (constructor):
        Unavailable: pcscd down, no such reader, no card, wrong protocol.
        BadInput: an ambiguous or invalid reader pattern.
    """

    def __init__(self, reader: str | int, *, protocol: Protocol = "auto") -> None:
        scard = self._scard = _scard()
        hresult, self._context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            raise pcsc_error(hresult, "PC/SC")
        self._card: Any = None
        self.reset_on_close = False
        try:
            self.reader = resolve_reader(reader, self._readers())
            wanted = {
                "auto": scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
                "T0": scard.SCARD_PROTOCOL_T0,
                "T1": scard.SCARD_PROTOCOL_T1,
            }[protocol]
            hresult, card, active = scard.SCardConnect(
                self._context, self.reader, scard.SCARD_SHARE_SHARED, wanted
            )
            if hresult != scard.SCARD_S_SUCCESS:
                raise pcsc_error(hresult, "connecting to the card", self.reader)
            self._card = card
            self.protocol: Literal["T0", "T1"] = "T1" if active == scard.SCARD_PROTOCOL_T1 else "T0"
            self._pci = scard.SCARD_PCI_T1 if self.protocol == "T1" else scard.SCARD_PCI_T0
            hresult, _name, _state, _proto, atr = scard.SCardStatus(card)
            if hresult != scard.SCARD_S_SUCCESS:
                raise pcsc_error(hresult, "reading the ATR", self.reader)
            self._atr = bytes(atr)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"PcscLink({getattr(self, 'reader', '?')!r})"

    def __enter__(self) -> PcscLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _readers(self) -> list[str]:
        scard = self._scard
        hresult, names = scard.SCardListReaders(self._context, [])
        if hresult & 0xFFFFFFFF == _NO_READERS:
            return []
        if hresult != scard.SCARD_S_SUCCESS:
            raise pcsc_error(hresult, "listing readers")
        return [str(n) for n in names]

    @property
    def name(self) -> str:
        return f"pcsc:{self.reader}"

    @property
    def atr(self) -> bytes | None:
        return self._atr

    def transmit_raw(self, tpdu: bytes) -> bytes:
        """One SCardTransmit: the TPDU as given, the answer as the card gave it.

        Raises:
            Unavailable: the card or pcscd went away.
        """
        if self._card is None:
            raise Unavailable(f"{self.name}: link is closed", fix="open a new link")
        hresult, response = self._scard.SCardTransmit(self._card, self._pci, list(tpdu))
        if hresult != self._scard.SCARD_S_SUCCESS:
            raise pcsc_error(hresult, "transmitting to the card", self.reader)
        if len(response) < 2:
            raise RemoteProtocolError(f"{self.name}: answer of {len(response)} bytes")
        return bytes(response)

    def transmit(self, apdu: bytes) -> bytes:
        return exchange(self.transmit_raw, apdu, t0=self.protocol == "T0")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold the card for a sequence of commands (SCardBeginTransaction): no other
        application's APDU lands between our SELECT and AUTHENTICATE."""
        scard = self._scard
        hresult = scard.SCardBeginTransaction(self._card)
        if hresult != scard.SCARD_S_SUCCESS:
            raise pcsc_error(hresult, "starting a transaction", self.reader)
        try:
            yield
        finally:
            scard.SCardEndTransaction(self._card, scard.SCARD_LEAVE_CARD)

    def close(self) -> None:
        scard = self._scard
        if self._card is not None:
            disposition = scard.SCARD_RESET_CARD if self.reset_on_close else scard.SCARD_LEAVE_CARD
            with contextlib.suppress(Exception):
                scard.SCardDisconnect(self._card, disposition)
            self._card = None
        if self._context is not None:
            with contextlib.suppress(Exception):
                scard.SCardReleaseContext(self._context)
            self._context = None
