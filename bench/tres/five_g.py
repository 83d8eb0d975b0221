"""Pure. What the ``aka-5g`` and ``suci`` rows add to a TRE's AKA: the ME's 5G AKA derivations
(RES*, K_AUSF, K_SEAF, K_AMF, TS 33.501 Annex A) on the TRE's answer, and a SUCI (TS 33.501
Annex C) with the ephemeral key wherever the TRE can hold it.

Every TRE's rows use the same serving network, SUPI and home network key, so the rows differ
only by where RES/CK/IK (and the ephemeral key) come from.
"""

from __future__ import annotations

from aka.access import me_answer
from aka.hss import AuthVector
from aka.suci import EphemeralAgreement, Profile, SoftwareAgreement, conceal, new_home_key
from aka.usim import AkaResult, AkaSuccess
from trelab.errors import LocalProtocolError

__all__ = ["BENCH_SNN", "BENCH_SUPI", "HomeKeys", "me_5g", "suci_once"]

BENCH_SNN = "5G:mnc001.mcc001.3gppnetwork.org"
BENCH_SUPI = "imsi-001010000000001"


def me_5g(result: AkaResult, vector: AuthVector, what: str) -> bytes:
    """The ME's part of 5G AKA after a successful AUTHENTICATE; returns RES* (kept so the work
    cannot be skipped)."""
    if not isinstance(result, AkaSuccess):
        raise LocalProtocolError(f"{what}: bench AKA gave {result.result}")
    answer = me_answer(
        "5g",
        res=result.res,
        ck=result.ck,
        ik=result.ik,
        rand=vector.rand,
        autn=vector.autn,
        serving_network=BENCH_SNN,
        supi=BENCH_SUPI,
    )
    return answer.response


class HomeKeys:
    """One home network key pair per profile for a benchmark run (made once, untimed)."""

    def __init__(self) -> None:
        self.public = {p: new_home_key(p)[1] for p in (Profile.A, Profile.B)}


def suci_once(keys: HomeKeys, profile: Profile, agreement: EphemeralAgreement | None) -> str:
    """One fresh SUCI of ``BENCH_SUPI`` (software agreement unless one is given)."""
    return conceal(
        BENCH_SUPI,
        profile,
        hn_public=keys.public[profile],
        key_id=1,
        agreement=agreement if agreement is not None else SoftwareAgreement(),
    ).to_string()
