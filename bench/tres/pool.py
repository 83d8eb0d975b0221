"""Pure (randomness comes with the Hss). Authentication vectors drawn ahead of the timed bodies.

Every benchmarked AKA needs a fresh vector (TS 33.102 C.2: a replayed SQN is refused), and
drawing one is HSS-side Milenage/TUAK work that belongs to the ``av-generation`` row, not to the
TRE being timed. A pool is drawn ahead and topped up from a case's untimed ``teardown``; vectors
leave it in the order the HSS produced them, so a TRE sees SQNs increase whichever case of it
runs next.
"""

from __future__ import annotations

from collections import deque

from aka.hss import AuthVector, Hss

__all__ = ["VectorPool"]


class VectorPool:
    """Fresh vectors for one subscriber of ``hss``; ``misses`` counts vectors drawn inside a
    timed body because the pool ran dry (should stay 0: raise ``ahead`` if not)."""

    def __init__(self, hss: Hss, imsi: str, *, ahead: int) -> None:
        self.hss = hss
        self.imsi = imsi
        self.ahead = max(1, ahead)
        self.misses = 0
        self._vectors: deque[AuthVector] = deque()

    def __len__(self) -> int:
        return len(self._vectors)

    def take(self) -> AuthVector:
        """The next vector in SQN order."""
        if not self._vectors:
            self.misses += 1
            self._vectors.extend(self.hss.generate_vectors(self.imsi, 1))
        return self._vectors.popleft()

    def top_up(self) -> None:
        """Refill to ``ahead`` vectors (call outside the clock)."""
        missing = self.ahead - len(self._vectors)
        if missing > 0:
            self._vectors.extend(self.hss.generate_vectors(self.imsi, missing))

    def discard(self) -> None:
        """Drop the drawn vectors (after a resynchronisation moved SQN_HE)."""
        self._vectors.clear()
