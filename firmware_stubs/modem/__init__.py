"""A cellular modem emulator: AT commands (TS 27.007) on a serial line, the USIM behind it."""

from __future__ import annotations

__all__: list[str] = []
