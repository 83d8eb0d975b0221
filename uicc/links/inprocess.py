"""Pure. A link to a card engine living in this process (the emulated USIM): unit tests and the
modem emulator use it, with the same T=0 handling as the real links."""

from __future__ import annotations

from typing import Protocol

from .base import exchange

__all__ = ["CardEngine", "InProcessLink"]


class CardEngine(Protocol):
    """What a card engine offers (``firmware_stubs.usim.engine.UsimEngine`` does)."""

    def power_on(self) -> bytes: ...

    def process(self, apdu: bytes) -> bytes: ...


class InProcessLink:
    """Real emulated USIM, no pcscd: ``transmit`` calls the engine directly.

    ``power_on`` (default) inserts the card: the engine is powered on and its ATR kept.
    """

    def __init__(self, engine: CardEngine, *, power_on: bool = True, atr: bytes | None = None):
        self._engine = engine
        self._atr = engine.power_on() if power_on else atr
        self.apdus = 0  # raw round trips to the engine: shows the T=0 handling in tests

    @property
    def name(self) -> str:
        return "inprocess"

    @property
    def atr(self) -> bytes | None:
        return self._atr

    def _send(self, tpdu: bytes) -> bytes:
        self.apdus += 1
        return self._engine.process(tpdu)

    def transmit(self, apdu: bytes) -> bytes:
        return exchange(self._send, apdu)

    def close(self) -> None:
        """Nothing to release: the engine belongs to the caller."""
