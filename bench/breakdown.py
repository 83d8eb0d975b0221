"""Edge: clock, TPM transport, filesystem, card link. Where one sample's time goes, measured
where it is spent: each TPM command inside the transport (:meth:`tpm.tss.Transport.observe`),
each fsync and rename of a state write (:func:`trelab.atomic.observe_fsync`), each APDU
exchange at the card link. What no observer saw is the host's own code (the remainder), so
the parts of one sample always sum to that sample.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tpm.tss import CommandEvent, Transport

__all__ = [
    "FSYNC",
    "HOST",
    "LINK",
    "TPM",
    "Observed",
    "Observer",
    "TimedLink",
    "observe_tpm",
    "split_sample",
]

TPM = "TPM commands (transport)"
FSYNC = "fsync + rename"
LINK = "card + link (APDU exchange)"
HOST = "host: our code + crypto"


@dataclass
class Observed:
    """Seconds of one sample seen by observers, per part, and the TPM commands counted."""

    seconds: dict[str, float] = field(default_factory=dict)
    commands: int = 0

    def add(self, part: str, seconds: float) -> None:
        self.seconds[part] = self.seconds.get(part, 0.0) + seconds


#: given where to add, a context manager that observes one sample
Observer = Callable[[Observed], contextlib.AbstractContextManager[None]]


def _timed_step(into: Observed, part: str) -> Callable[[Callable[[], None]], None]:
    def run(step: Callable[[], None]) -> None:
        start = time.perf_counter()
        try:
            step()
        finally:
            into.add(part, time.perf_counter() - start)

    return run


@contextlib.contextmanager
def observe_tpm(transport: Transport, into: Observed) -> Iterator[None]:
    """Add every TPM command's time inside ``transport`` and every fsync and rename of
    :mod:`trelab.atomic` to ``into`` while the block runs."""
    from trelab.atomic import observe_fsync

    def on_command(event: CommandEvent) -> None:
        into.add(TPM, event.seconds)
        into.commands += 1

    with transport.observe(on_command), observe_fsync(_timed_step(into, FSYNC)):
        yield


class TimedLink:
    """A card link (:class:`uicc.links.base.Link`) whose APDU exchanges are timed while
    :meth:`observe` runs; otherwise a plain pass-through."""

    def __init__(self, link: Any) -> None:
        self._link = link
        self._into: Observed | None = None

    @property
    def name(self) -> str:
        return str(self._link.name)

    @property
    def atr(self) -> bytes | None:
        atr: bytes | None = self._link.atr
        return atr

    def transmit(self, apdu: bytes) -> bytes:
        into = self._into
        if into is None:
            response: bytes = self._link.transmit(apdu)
            return response
        start = time.perf_counter()
        try:
            response = self._link.transmit(apdu)
        finally:
            into.add(LINK, time.perf_counter() - start)
        return response

    def close(self) -> None:
        self._link.close()

    @contextlib.contextmanager
    def observe(self, into: Observed) -> Iterator[None]:
        """Add every APDU exchange's time to ``into`` while the block runs."""
        self._into = into
        try:
            yield
        finally:
            self._into = None


def split_sample(total_ns: float, observed: Observed, batch: int = 1) -> dict[str, float]:
    """One sample (``total_ns`` per operation of a batch) split into the observed parts and
    the host's own remainder, in ns per operation; the parts sum to ``total_ns``."""
    parts = {part: seconds * 1e9 / batch for part, seconds in observed.seconds.items()}
    parts[HOST] = total_ns - sum(parts.values())
    return parts
