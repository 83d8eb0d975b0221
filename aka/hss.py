"""Pure. The AuC/HSS side: authentication vectors for many subscribers and AUTS handling.

Randomness is a parameter (``random_bytes``) so tests are reproducible; production passes
``os.urandom``. A batch of vectors for one subscriber draws all its RANDs in one call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from trelab.errors import BadInput

from .algorithm import AkaAlgorithm
from .autn import recover_sqn_ms
from .sqn import SqnGenerator

__all__ = ["AuthVector", "Hss", "Subscriber", "UnknownSubscriber"]

RandomBytes = Callable[[int], bytes]


class UnknownSubscriber(BadInput):
    """No subscriber with that IMSI."""


class AuthVector(NamedTuple):
    """A UMTS authentication vector (TS 33.102 §6.3.2): RAND, XRES, CK, IK, AUTN."""

    rand: bytes
    xres: bytes
    ck: bytes
    ik: bytes
    autn: bytes

    def __repr__(self) -> str:  # XRES, CK, IK never reach logs
        return f"AuthVector(rand={self.rand.hex()}, autn={self.autn.hex()}, xres/ck/ik=<hidden>)"


@dataclass(slots=True)
class Subscriber:
    """One HSS record: the algorithm holding K and OPc/TOPc, the AMF and SQN_HE."""

    imsi: str
    algorithm: AkaAlgorithm = field(repr=False)
    amf: bytes = b"\x80\x00"
    sqn: SqnGenerator = field(default_factory=SqnGenerator)


class Hss:
    """An in-memory AuC for any number of subscribers."""

    def __init__(self, random_bytes: RandomBytes) -> None:
        self._random = random_bytes
        self._subscribers: dict[str, Subscriber] = {}

    def __len__(self) -> int:
        return len(self._subscribers)

    def add(self, subscriber: Subscriber) -> None:
        if len(subscriber.amf) != 2:
            raise BadInput("AMF: expected 2 bytes")
        self._subscribers[subscriber.imsi] = subscriber

    def subscriber(self, imsi: str) -> Subscriber:
        try:
            return self._subscribers[imsi]
        except KeyError:
            raise UnknownSubscriber(f"unknown subscriber {imsi!r}") from None

    def generate_vectors(self, imsi: str, count: int = 1) -> list[AuthVector]:
        """``count`` fresh vectors, each with its own RAND and the next SQN_HE."""
        if count < 1:
            raise BadInput("count must be ≥ 1")
        sub = self.subscriber(imsi)
        sqns = b"".join(sub.sqn.take(count))
        make = AuthVector._make
        return [make(v) for v in sub.algorithm.vectors(self._random(16 * count), sqns, sub.amf)]

    def resynchronise(self, imsi: str, rand: bytes, auts: bytes) -> bytes:
        """Verify AUTS for ``rand`` and move SQN_HE; returns SQN_MS.

        Raises:
            MacMismatch: MAC-S does not verify (the HSS state is left alone).
        """
        sub = self.subscriber(imsi)
        sqn_ms = recover_sqn_ms(sub.algorithm, rand, auts)
        sub.sqn.resynchronise(sqn_ms)
        return sqn_ms
