"""Pure. The vpcd link protocol (vsmartcard ``ifd-vpcd``), card side, bring-your-own-I/O.

pcscd's vpcd driver talks to a virtual card over TCP. Every message in both directions is a
2-byte big-endian length and a payload. A 1-byte payload from vpcd is a control — 0 power off,
1 power on, 2 reset, 4 "send the ATR" — and only the last one is answered (with the ATR). Any
other payload is a command TPDU; the answer is data ‖ SW1 SW2 (vsmartcard ``vpcd.c``,
``vicc_transmit``/``vicc_getatr``).

:class:`VpcdConnection` buffers whatever bytes arrive (``receive_data``) and returns the bytes
to send back, like h11: the caller owns the socket. A malformed stream (a frame longer than a
short-APDU TPDU can be) is the peer's fault and raises :class:`RemoteProtocolError`.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Literal, Protocol

from trelab.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "CTRL_ATR",
    "CTRL_OFF",
    "CTRL_ON",
    "CTRL_RESET",
    "MAX_PAYLOAD",
    "Event",
    "VpcdCard",
    "VpcdConnection",
    "encode_frame",
]

CTRL_OFF = 0
CTRL_ON = 1
CTRL_RESET = 2
CTRL_ATR = 4
MAX_PAYLOAD = 0xFFFF  # the length field is 16 bits
# largest command TPDU: an extended one (header, 3-byte Lc, 2-byte Le) with the 4096 data bytes
# the emulated card takes at most; anything longer is garbage
_MAX_COMMAND = 4 + 3 + 4096 + 2

EventKind = Literal["power_off", "power_on", "reset", "atr", "apdu", "unknown_control"]


class VpcdCard(Protocol):
    """What the link needs from a card engine (``firmware_stubs.usim.engine.UsimEngine``)."""

    @property
    def atr(self) -> bytes: ...

    def power_on(self) -> bytes: ...

    def power_off(self) -> None: ...

    def reset(self) -> bytes: ...

    def process(self, apdu: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Event:
    """What one message from vpcd was (for logs and tests; never carries APDU data)."""

    kind: EventKind
    length: int = 0


def encode_frame(payload: bytes) -> bytes:
    """Length-prefix ``payload``.

    Raises:
        LocalProtocolError: the payload does not fit 16 bits (a card engine bug).
    """
    if len(payload) > MAX_PAYLOAD:
        raise LocalProtocolError(f"vpcd frame of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return len(payload).to_bytes(2, "big") + payload


class VpcdConnection:
    """Card side of one vpcd TCP connection: bytes in → bytes out, card engine in between."""

    def __init__(self, card: VpcdCard) -> None:
        self.card = card
        self._buffer = bytearray()
        self.events: deque[Event] = deque(maxlen=64)  # the latest messages, for logs and tests
        self.counts: Counter[EventKind] = Counter()

    def receive_data(self, data: bytes) -> bytes:
        """Feed bytes from vpcd; return what to send back (possibly ``b""``).

        Raises:
            RemoteProtocolError: a frame announces more than a command TPDU can hold; the
                connection is unusable afterwards (drop it).
        """
        self._buffer += data
        out = bytearray()
        while len(self._buffer) >= 2:
            length = int.from_bytes(self._buffer[:2], "big")
            if length > _MAX_COMMAND:
                raise RemoteProtocolError(f"vpcd frame of {length} bytes: not a command TPDU")
            if len(self._buffer) < 2 + length:
                break
            payload = bytes(self._buffer[2 : 2 + length])
            del self._buffer[: 2 + length]
            out += self._handle(payload)
        return bytes(out)

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered."""
        return len(self._buffer)

    def _note(self, event: Event) -> None:
        self.events.append(event)
        self.counts[event.kind] += 1

    def _handle(self, payload: bytes) -> bytes:
        if len(payload) == 1:
            control = payload[0]
            if control == CTRL_ATR:
                self._note(Event("atr"))
                return encode_frame(self.card.atr)
            if control == CTRL_ON:
                self._note(Event("power_on"))
                self.card.power_on()
            elif control == CTRL_OFF:
                self._note(Event("power_off"))
                self.card.power_off()
            elif control == CTRL_RESET:
                self._note(Event("reset"))
                self.card.reset()
            else:
                self._note(Event("unknown_control", control))
            return b""  # vpcd waits for no answer to power/reset controls
        self._note(Event("apdu", len(payload)))
        return encode_frame(self.card.process(payload))
