"""Pure. One AKA run seen by each radio access: what the ME answers and keeps, what the home
and serving network expect and keep (TS 33.102 §6.3 for 3G, TS 33.401 §6.1 for EPS AKA,
TS 33.501 §6.1.3.2 for 5G AKA).

The TRE's answer (RES, CK, IK) is the same for all three; the access decides what goes back
(RES or RES*), which key anchors the session (CK ‖ IK, K_ASME, K_SEAF) and who checks what:
for 5G the serving network compares HRES* with HXRES* and the home network RES* with XRES*.
Both ends then prove they hold the same anchor with :func:`key_proof`, which reveals nothing
about it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Literal, get_args

from trelab.errors import BadInput

from .kdf import Plmn, hres_star, kamf, kasme, kausf, kseaf, res_star

__all__ = [
    "RATS",
    "Expected",
    "MeAnswer",
    "Rat",
    "amf_separation_ok",
    "anchor_name",
    "home_expects",
    "key_proof",
    "me_answer",
    "parse_rat",
    "serving_network_for",
]

Rat = Literal["3g", "eps", "5g"]
RATS: tuple[str, ...] = get_args(Rat)
ABBA_DEFAULT = b"\0\0"  # TS 33.501 §6.1.3.2 / TS 24.501 §9.11.3.10
_PROOF_LABEL = b"trelab key confirmation"


def parse_rat(text: str) -> Rat:
    if text not in RATS:
        raise BadInput(f"RAT: one of {', '.join(RATS)}")
    return text  # type: ignore[return-value]


def anchor_name(rat: Rat) -> str:
    return {"3g": "CK||IK", "eps": "K_ASME", "5g": "K_SEAF"}[rat]


def serving_network_for(rat: Rat, plmn: Plmn) -> str:
    """What the network announces as its identity: the PLMN (3G, EPS) or the 5G serving
    network name."""
    return plmn.serving_network_name() if rat == "5g" else plmn.mcc + plmn.mnc


def _plmn_of(serving_network: str) -> Plmn:
    return Plmn.parse(serving_network)


def _check_snn(serving_network: str) -> None:
    if not serving_network.startswith("5G:") or len(serving_network) > 255:
        raise BadInput("serving network name: expected 5G:… (TS 24.501 §9.12.1)")


def amf_separation_ok(rat: Rat, autn: bytes) -> bool:
    """EPS and 5G accept only vectors whose AMF separation bit is 1 (TS 33.401 §6.1.1,
    TS 33.501 §6.1.3.2); 3G has no such rule."""
    return rat == "3g" or bool(len(autn) >= 8 and autn[6] & 0x80)


def key_proof(anchor: bytes, rand: bytes) -> bytes:
    """HMAC-SHA-256(anchor, label ‖ RAND), 128 bits: equal only if both ends derived the same
    anchor for this RAND (a lab key confirmation; in service the NAS security mode command
    plays this part)."""
    return hmac.new(anchor, _PROOF_LABEL + rand, hashlib.sha256).digest()[:16]


@dataclass(frozen=True)
class MeAnswer:
    """What the ME sends (``response``: RES or RES*) and keeps (``anchor``, K_AMF for 5G)."""

    rat: Rat
    response: bytes = field(repr=False)
    anchor: bytes = field(repr=False)
    kamf: bytes = field(default=b"", repr=False)


def me_answer(
    rat: Rat,
    *,
    res: bytes,
    ck: bytes,
    ik: bytes,
    rand: bytes,
    autn: bytes,
    serving_network: str,
    supi: str | None = None,
    abba: bytes = ABBA_DEFAULT,
) -> MeAnswer:
    """The ME's part after a successful AUTHENTICATE.

    Raises:
        BadInput: a malformed serving network or lengths.
    """
    sqn_xor_ak = autn[:6]
    if rat == "3g":
        return MeAnswer(rat, res, ck + ik)
    if rat == "eps":
        return MeAnswer(rat, res, kasme(ck, ik, _plmn_of(serving_network), sqn_xor_ak))
    _check_snn(serving_network)
    anchor = kseaf(kausf(ck, ik, serving_network, sqn_xor_ak), serving_network)
    k_amf = kamf(anchor, supi, abba) if supi is not None else b""
    return MeAnswer(rat, res_star(ck, ik, serving_network, rand, res), anchor, k_amf)


@dataclass(frozen=True)
class Expected:
    """What the networks keep for one vector: the home network's XRES or XRES*, the serving
    network's HXRES* (5G only) and the anchor key it hands to the serving network."""

    rat: Rat
    xres: bytes = field(repr=False)
    hxres: bytes = field(repr=False)
    anchor: bytes = field(repr=False)
    kamf: bytes = field(default=b"", repr=False)

    def serving_accepts(self, rand: bytes, response: bytes) -> bool:
        """5G: HRES* = SHA-256(RAND ‖ RES*) against HXRES* (TS 33.501 §6.1.3.2 step 10);
        EPS and 3G: the serving network holds XRES itself."""
        if self.rat != "5g":
            return hmac.compare_digest(response, self.xres)
        if len(response) != 16:
            return False
        return hmac.compare_digest(hres_star(rand, response), self.hxres)

    def home_accepts(self, response: bytes) -> bool:
        """The home network's own comparison (RES* with XRES* for 5G, step 12)."""
        return hmac.compare_digest(response, self.xres)


def home_expects(
    rat: Rat,
    *,
    xres: bytes,
    ck: bytes,
    ik: bytes,
    rand: bytes,
    autn: bytes,
    serving_network: str,
    supi: str | None = None,
    abba: bytes = ABBA_DEFAULT,
) -> Expected:
    """The HSS/UDM + AUSF (+ SEAF) view of one vector for ``rat``."""
    answer = me_answer(
        rat,
        res=xres,
        ck=ck,
        ik=ik,
        rand=rand,
        autn=autn,
        serving_network=serving_network,
        supi=supi,
        abba=abba,
    )
    hx = hres_star(rand, answer.response) if rat == "5g" else b""
    return Expected(rat, answer.response, hx, answer.anchor, answer.kamf)
