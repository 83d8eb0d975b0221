"""Links from the host USIM client to a card: PC/SC, AT+CSIM over a serial port, in-process.

Each link offers :class:`uicc.links.base.Link`; the edges (pyscard, pyserial) are imported only
by the module that needs them.
"""

from __future__ import annotations

from .base import Link, TransmitFn, exchange

__all__ = ["Link", "TransmitFn", "exchange"]
