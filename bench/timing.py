"""Edge: clock. Time a callable in chunks so per-call timer overhead does not swamp µs work."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["per_call_ns"]


def per_call_ns(body: Callable[[int], None], *, chunk: int, samples: int) -> list[float]:
    """Run ``body(chunk)`` ``samples`` times; each sample is elapsed ns / chunk.

    ``body(n)`` must perform the measured operation ``n`` times (a tight loop inside it keeps
    Python's call overhead of the harness out of the figure).
    """
    body(max(1, chunk // 10))  # warm caches and lazy imports
    out: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(samples):
        start = clock()
        body(chunk)
        out.append((clock() - start) / chunk)
    return out
