"""Pure. The USIM's side of AKA (TS 33.102 §6.3.3): RAND, AUTN → RES/CK/IK, AUTS or MAC failure.

Spec outcomes are return values, not exceptions: a sync failure is a normal answer that
carries AUTS. The SQN state is returned, not mutated, so the caller persists it first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trelab.errors import BadInput

from .algorithm import AkaAlgorithm
from .autn import build_auts
from .gsm import c2_sres, c3_kc
from .sqn import SqnState

__all__ = [
    "AkaMacFailure",
    "AkaResult",
    "AkaSuccess",
    "AkaSyncFailure",
    "GsmResult",
    "gsm_authenticate",
    "usim_authenticate",
]


class AkaSuccess:
    """Network authenticated: RES goes back, CK/IK (and Kc for GSM access) stay in the ME.

    A plain slotted class rather than a dataclass: it is built on every AKA (hot path).
    """

    __slots__ = ("ck", "ik", "res")
    result: Literal["success"] = "success"

    def __init__(self, res: bytes, ck: bytes, ik: bytes) -> None:
        self.res = res
        self.ck = ck
        self.ik = ik

    @property
    def kc(self) -> bytes:
        """Kc = c3(CK, IK) for GSM access (TS 33.102 §6.8.1.2); empty for 256-bit CK/IK."""
        return c3_kc(self.ck, self.ik) if len(self.ck) == 16 == len(self.ik) else b""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AkaSuccess) and (self.res, self.ck, self.ik) == (
            other.res,
            other.ck,
            other.ik,
        )

    def __hash__(self) -> int:
        return hash((self.res, self.ck, self.ik))

    def __repr__(self) -> str:
        return "AkaSuccess(res=<hidden>, ck=<hidden>, ik=<hidden>)"

    def to_json(self) -> dict[str, str]:
        return {
            "result": "success",
            "res": self.res.hex(),
            "ck": self.ck.hex(),
            "ik": self.ik.hex(),
            "kc": self.kc.hex(),
        }


@dataclass(frozen=True, slots=True)
class AkaSyncFailure:
    """SQN not fresh: AUTS lets the network resynchronise; ``reason`` is the SQN check that said no."""

    auts: bytes
    reason: str
    result: Literal["sync_failure"] = "sync_failure"

    def to_json(self) -> dict[str, str]:
        return {"result": "sync_failure", "auts": self.auts.hex(), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class AkaMacFailure:
    """MAC-A did not verify: the network (or RAND/AUTN) is not genuine."""

    result: Literal["mac_failure"] = "mac_failure"

    def to_json(self) -> dict[str, str]:
        return {"result": "mac_failure"}


AkaResult = AkaSuccess | AkaSyncFailure | AkaMacFailure
_MAC_FAILURE = AkaMacFailure()


def usim_authenticate(
    algorithm: AkaAlgorithm,
    state: SqnState,
    rand: bytes,
    autn: bytes,
) -> tuple[AkaResult, SqnState]:
    """Run the USIM checks in spec order: AK → SQN → MAC-A (constant time) → SQN freshness.

    Returns the result and the SQN state to persist (unchanged unless the AUTN was accepted).

    Raises:
        BadInput: RAND or AUTN of the wrong length.
    """
    if len(rand) != 16:
        raise BadInput(f"RAND: {len(rand)} bytes, expected 16")
    if len(autn) < 16:
        raise BadInput(f"AUTN: {len(autn)} bytes, expected at least 16")
    sqn, mac_ok, out = algorithm.check_autn(rand, autn)
    if not mac_ok:
        return _MAC_FAILURE, state
    verdict, new_state = state.check(sqn)
    if not verdict.accepted:
        return AkaSyncFailure(build_auts(algorithm, rand, state.sqn_ms), verdict.reason), state
    return AkaSuccess(out.res, out.ck, out.ik), new_state


@dataclass(frozen=True, slots=True)
class GsmResult:
    """GSM context (TS 33.102 §6.8.1.2): SRES = c2(RES), Kc = c3(CK, IK); no network check."""

    sres: bytes = field(repr=False)
    kc: bytes = field(repr=False)

    def to_json(self) -> dict[str, str]:
        return {"result": "success", "sres": self.sres.hex(), "kc": self.kc.hex()}


def gsm_authenticate(algorithm: AkaAlgorithm, rand: bytes) -> GsmResult:
    """A USIM answering a GSM-context AUTHENTICATE (RAND only)."""
    if len(rand) != 16:
        raise BadInput(f"RAND: {len(rand)} bytes, expected 16")
    out = algorithm.f2345(rand)
    return GsmResult(c2_sres(out.res), c3_kc(out.ck[:16], out.ik[:16]))
