"""Lab orchestration: swtpm, pcscd + vpcd, the emulated parts, hardware detection."""

from __future__ import annotations

__all__: list[str] = []
