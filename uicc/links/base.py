"""Pure. The one interface every card link offers, and the T=0 response dance they share.

A :class:`Link` takes a command APDU and returns data ‖ SW1 SW2 with the transport's quirks
hidden: on T=0 (and over AT+CSIM, whose modems pass TPDUs through) a case-4 command goes out
without Le, the card answers ``61xx`` and the data is fetched with GET RESPONSE; ``6Cxx`` means
"resend with Le = xx" (TS 102 221 §7.3.1.1, ISO/IEC 7816-4 §5.1.3). :func:`exchange` does that
over any raw ``send`` function, so every link handles it the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from trelab.errors import BadInput, RemoteProtocolError
from uicc.apdu import (
    CLA_GSM,
    CommandApdu,
    build_get_response,
    more_data,
    parse_command,
    to_t0,
    wrong_le,
)

__all__ = ["MAX_CHAINED", "Link", "TransmitFn", "exchange", "get_response_cla"]

TransmitFn = Callable[[bytes], bytes]
MAX_CHAINED = 32  # GET RESPONSE / resend rounds before a card counts as misbehaving


class Link(Protocol):
    """A card reachable by APDUs: PC/SC reader, modem (AT+CSIM), or an in-process engine."""

    @property
    def name(self) -> str:
        """Where the card is, for messages: ``pcsc:Virtual PCD 00 00``, ``serial:/dev/pts/3``."""
        ...

    @property
    def atr(self) -> bytes | None:
        """Answer to reset; None where the transport cannot tell (AT+CSIM)."""
        ...

    def transmit(self, apdu: bytes) -> bytes:
        """Send a command APDU, return data ‖ SW1 SW2 with ``61xx``/``6Cxx`` already handled.

        Raises:
            Unavailable: the card, reader or modem went away or timed out.
            RemoteProtocolError: the card or modem answered something unparseable.
        """
        ...

    def close(self) -> None:
        """Release the card; idempotent."""
        ...


def get_response_cla(cla: int) -> int:
    """CLA of the GET RESPONSE that follows a command of class ``cla``: 2G SIM keeps ``A0``;
    UICC proprietary class ``8X`` (STATUS…) fetches with the interindustry ``0X`` of the same
    logical channel (TS 102 221 §10.1.1)."""
    if cla == CLA_GSM:
        return CLA_GSM
    return cla & 0x4F if cla & 0x40 else cla & 0x03


def exchange(send: TransmitFn, apdu: bytes, *, t0: bool = True) -> bytes:
    """Send ``apdu`` through ``send`` (one raw TPDU round trip) and collect the full answer.

    With ``t0`` a case-4 APDU is sent as case 3 first. A malformed APDU is sent unchanged:
    judging it is the card's job (it answers ``6700``…), and tests rely on that.

    Raises:
        RemoteProtocolError: the card keeps asking for more rounds, or sends no status word.
    """
    command: CommandApdu | None = None
    if t0:
        try:
            command = parse_command(apdu)
        except BadInput:
            return _checked(send(apdu))
        tpdu = to_t0(command)
    else:
        tpdu = apdu  # T=1 sends the APDU as it is: parse it only if the card asks for more
    resp = _checked(send(tpdu))
    rounds = 0
    data = b""
    while True:
        rounds += 1
        if rounds > MAX_CHAINED:
            raise RemoteProtocolError(f"card asked for more than {MAX_CHAINED} response rounds")
        sw = (resp[-2] << 8) | resp[-1]
        resend = wrong_le(sw)
        waiting = more_data(sw) if resend is None else None
        if command is None and (resend is not None or waiting is not None):
            try:
                command = parse_command(apdu)
            except BadInput:
                return resp  # a malformed APDU's answer, as the card gave it
        if resend is not None and len(resp) == 2:
            assert command is not None
            # 6Cxx: the card wants the same command again with Le = xx.
            again = command.with_le(resend)
            resp = _checked(send(to_t0(again) if t0 else again.encode()))
            continue
        if waiting is None:
            return data + resp
        data += resp[:-2]
        assert command is not None
        fetch = build_get_response(waiting, cla=get_response_cla(command.cla))
        command = fetch  # a 6Cxx now concerns the GET RESPONSE
        resp = _checked(send(fetch.encode()))


def _checked(resp: bytes) -> bytes:
    if len(resp) < 2:
        raise RemoteProtocolError(f"card answered {len(resp)} bytes: no status word")
    return resp
