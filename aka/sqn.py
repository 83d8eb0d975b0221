"""Pure. SQN handling of TS 33.102 Annex C: SEQ ‖ IND, the SEQ_MS array, Δ and L checks.

The USIM side is an immutable :class:`SqnState`: :meth:`SqnState.check` returns the verdict and
the next state, so a TRE persists the new state atomically *before* releasing RES (a crash can
never roll SQN back). :class:`SqnGenerator` is the HSS side (profile 1, non time-based).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from trelab.errors import BadInput

__all__ = [
    "DEFAULT_DELTA",
    "DEFAULT_IND_BITS",
    "SQN_BITS",
    "SqnGenerator",
    "SqnState",
    "SqnVerdict",
    "join_sqn",
    "split_sqn",
]

SQN_BITS = 48
DEFAULT_IND_BITS = 5  # a = 32 array entries (TS 33.102 C.1.1 example value)
DEFAULT_DELTA = 1 << 28  # C.2.2 example: Δ = 2^28


def split_sqn(sqn: bytes, ind_bits: int = DEFAULT_IND_BITS) -> tuple[int, int]:
    """SQN (6 bytes) → (SEQ, IND)."""
    if len(sqn) != 6:
        raise BadInput(f"SQN: {len(sqn)} bytes, expected 6")
    value = int.from_bytes(sqn, "big")
    return value >> ind_bits, value & ((1 << ind_bits) - 1)


def join_sqn(seq: int, ind: int, ind_bits: int = DEFAULT_IND_BITS) -> bytes:
    """(SEQ, IND) → SQN (6 bytes)."""
    if not 0 <= ind < (1 << ind_bits) or not 0 <= seq < (1 << (SQN_BITS - ind_bits)):
        raise BadInput("SQN: SEQ or IND out of range")
    return ((seq << ind_bits) | ind).to_bytes(6, "big")


@dataclass(frozen=True, slots=True)
class SqnVerdict:
    """Why an SQN was accepted or refused (refusal → synchronisation failure with AUTS)."""

    accepted: bool
    reason: str  # "fresh", "replayed", "too far ahead", "too old"


_FRESH = SqnVerdict(True, "fresh")


@dataclass(frozen=True, slots=True)
class SqnState:
    """USIM SQN state (TS 33.102 C.2): one SEQ_MS per IND, Δ, and the optional age limit L.

    ``limit`` (L, C.2.3) refuses an SQN whose SEQ lies more than L below the highest accepted
    SEQ; ``None`` switches that optional check off.
    """

    seq_ms: tuple[int, ...] = (0,) * (1 << DEFAULT_IND_BITS)
    ind_bits: int = DEFAULT_IND_BITS
    delta: int = DEFAULT_DELTA
    limit: int | None = None
    _max_index: int = field(default=-1, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.ind_bits <= 10:
            raise BadInput("SQN state: ind_bits must be 0…10")
        if len(self.seq_ms) != 1 << self.ind_bits:
            raise BadInput(f"SQN state: need {1 << self.ind_bits} SEQ_MS entries")
        top = 1 << (SQN_BITS - self.ind_bits)
        if any(not 0 <= s < top for s in self.seq_ms):
            raise BadInput("SQN state: SEQ_MS out of range")
        if self.delta <= 0 or (self.limit is not None and self.limit < 0):
            raise BadInput("SQN state: delta must be > 0 and limit ≥ 0")
        if self._max_index < 0:
            # highest SEQ; among equal SEQs the lowest IND, so the choice survives a round trip
            best = max(range(len(self.seq_ms)), key=lambda i: (self.seq_ms[i], -i))
            object.__setattr__(self, "_max_index", best)

    @classmethod
    def starting_at(cls, sqn_ms: bytes, ind_bits: int = DEFAULT_IND_BITS, **kw: Any) -> SqnState:
        """A state whose highest accepted SQN is ``sqn_ms``: any higher SEQ (within Δ) is fresh.

        Every entry gets SEQ_MS so that an old SQN in another IND slot is not accepted either.
        """
        seq, _ind = split_sqn(sqn_ms, ind_bits)
        seq_ms = [seq] * (1 << ind_bits)
        return cls(tuple(seq_ms), ind_bits, **kw)

    @property
    def highest_seq(self) -> int:
        """SEQ_MS: the highest SEQ accepted so far (C.2.2)."""
        return self.seq_ms[self._max_index]

    @property
    def sqn_ms(self) -> bytes:
        """The SQN a synchronisation failure reports: highest SEQ with its IND (C.3.4)."""
        return join_sqn(self.highest_seq, self._max_index, self.ind_bits)

    def check(self, sqn: bytes) -> tuple[SqnVerdict, SqnState]:
        """Verify freshness (C.2.1–C.2.3); on success return the state that records ``sqn``."""
        value = int.from_bytes(sqn, "big")
        if len(sqn) != 6:
            raise BadInput(f"SQN: {len(sqn)} bytes, expected 6")
        ind_bits = self.ind_bits
        seq = value >> ind_bits
        ind = value & ((1 << ind_bits) - 1)
        highest = self.seq_ms[self._max_index]
        if seq <= self.seq_ms[ind]:
            return SqnVerdict(False, "replayed"), self
        if seq - highest > self.delta:
            return SqnVerdict(False, "too far ahead"), self
        if self.limit is not None and highest - seq > self.limit:
            return SqnVerdict(False, "too old"), self
        seq_ms = list(self.seq_ms)
        seq_ms[ind] = seq
        best = self._max_index
        if seq > highest or (seq == highest and ind < best):
            best = ind
        return _FRESH, self._derived(tuple(seq_ms), best)

    def _derived(self, seq_ms: tuple[int, ...], max_index: int) -> SqnState:
        """A copy with one more accepted SEQ; skips re-validation (hot path, values checked)."""
        new = object.__new__(SqnState)
        for name, value in (
            ("seq_ms", seq_ms),
            ("ind_bits", self.ind_bits),
            ("delta", self.delta),
            ("limit", self.limit),
            ("_max_index", max_index),
        ):
            object.__setattr__(new, name, value)
        return new

    # -- persistence ---------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "ind_bits": self.ind_bits,
            "delta": self.delta,
            "limit": self.limit,
            "seq_ms": list(self.seq_ms),
        }

    @classmethod
    def from_json(cls, data: Any) -> SqnState:
        """Inverse of :meth:`to_json`.

        Raises:
            BadInput: missing or malformed fields.
        """
        try:
            if data["version"] != 1:
                raise BadInput(f"SQN state: unsupported version {data['version']!r}")
            limit = data["limit"]
            return cls(
                seq_ms=tuple(int(s) for s in data["seq_ms"]),
                ind_bits=int(data["ind_bits"]),
                delta=int(data["delta"]),
                limit=None if limit is None else int(limit),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, BadInput):
                raise
            raise BadInput(f"SQN state: malformed ({type(exc).__name__}: {exc})") from None

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))


@dataclass(slots=True)
class SqnGenerator:
    """HSS side SQN_HE (C.1.1–C.1.2, profile 1): SEQ_HE increments, IND cycles over the array."""

    seq_he: int = 0
    ind: int = 0
    ind_bits: int = DEFAULT_IND_BITS
    delta: int = DEFAULT_DELTA

    def next(self) -> bytes:
        """The SQN for the next vector."""
        self.seq_he += 1
        if self.seq_he >= 1 << (SQN_BITS - self.ind_bits):
            raise BadInput("SQN_HE exhausted: SEQ wrapped; the subscriber needs a new K")
        sqn = join_sqn(self.seq_he, self.ind, self.ind_bits)
        self.ind = (self.ind + 1) % (1 << self.ind_bits)
        return sqn

    def take(self, count: int) -> list[bytes]:
        """The SQNs of the next ``count`` vectors (one batch)."""
        ind_bits = self.ind_bits
        size = 1 << ind_bits
        first = self.seq_he + 1
        if first + count > 1 << (SQN_BITS - ind_bits):
            raise BadInput("SQN_HE exhausted: SEQ wrapped; the subscriber needs a new K")
        ind = self.ind
        out = [
            ((seq << ind_bits) | ((ind + i) % size)).to_bytes(6, "big")
            for i, seq in enumerate(range(first, first + count))
        ]
        self.seq_he = first + count - 1
        self.ind = (ind + count) % size
        return out

    def resynchronise(self, sqn_ms: bytes) -> bool:
        """After a verified AUTS (TS 33.102 §6.3.5): reset SEQ_HE to SEQ_MS unless the next SQN
        would already be accepted by the USIM. Returns whether SEQ_HE changed."""
        seq_ms, _ind = split_sqn(sqn_ms, self.ind_bits)
        upcoming = self.seq_he + 1
        if seq_ms < upcoming <= seq_ms + self.delta:
            return False
        self.seq_he = seq_ms
        return True

    def to_json(self) -> dict[str, int]:
        return {
            "seq_he": self.seq_he,
            "ind": self.ind,
            "ind_bits": self.ind_bits,
            "delta": self.delta,
        }
