"""Edge: the TREs the benchmark harness can measure, one provider module each."""

from __future__ import annotations

__all__: list[str] = []
