"""Pure. Alternative 2 (TR 33.812 §5.1.3.2, pre-personalised UICC): a card profile and its HSS record.

The card manufacturer personalises the USIM with IMSI, K, OPc/TOPc and an initial SQN state,
and hands the operator the matching AuC record. :func:`personalise` produces both from one
profile; :func:`new_profile_data` draws a fresh profile (randomness is a parameter, as in
:mod:`aka.hss`); :func:`hss_subscriber` builds an :class:`aka.hss.Subscriber` so tests can run
AKA end to end against the emulated card.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aka.hss import Subscriber
from aka.sqn import DEFAULT_DELTA, DEFAULT_IND_BITS, SqnGenerator, join_sqn, split_sqn
from trelab.errors import BadInput

from .profile import Algorithm, CardProfile, make_algorithm, parse_profile

__all__ = ["HssRecord", "hss_record", "hss_subscriber", "new_profile_data", "personalise"]

RandomBytes = Callable[[int], bytes]


@dataclass(frozen=True)
class HssRecord:
    """What the operator's AuC needs for one pre-personalised card; secrets hidden from repr.

    ``seq_he`` is the last SEQ the card has accepted (SEQ of ``sqn_ms``): the first vector
    uses SEQ_HE + 1, which the card finds fresh (TS 33.102 C.1.1, C.2.1).
    """

    imsi: str
    algorithm: Algorithm
    k: bytes = field(repr=False)
    amf: bytes
    seq_he: int
    ind: int = 0
    ind_bits: int = DEFAULT_IND_BITS
    delta: int = DEFAULT_DELTA
    opc: bytes | None = field(default=None, repr=False)
    topc: bytes | None = field(default=None, repr=False)
    iterations: int = 1
    res_bits: int = 64
    mac_bits: int = 64
    ck_bits: int = 128
    ik_bits: int = 128

    @property
    def next_sqn(self) -> bytes:
        """The SQN of the first vector this record will produce."""
        return join_sqn(self.seq_he + 1, self.ind, self.ind_bits)

    def to_json(self) -> dict[str, Any]:
        """The record for the operator's HSS import. Contains K and OPc/TOPc in hex: it is the
        secret hand-over of Alternative 2 and goes to the operator's store, never to a log."""
        out: dict[str, Any] = {
            "imsi": self.imsi,
            "algorithm": self.algorithm,
            "k": self.k.hex(),
            "amf": self.amf.hex(),
            "sqn": {
                "seq_he": self.seq_he,
                "ind": self.ind,
                "ind_bits": self.ind_bits,
                "delta": self.delta,
            },
        }
        if self.algorithm == "milenage":
            assert self.opc is not None
            out["opc"] = self.opc.hex()
        elif self.algorithm == "hmac-sha256":
            assert self.opc is not None
            out.update(opc=self.opc.hex(), res_bits=self.res_bits)
        else:
            assert self.topc is not None
            out.update(
                topc=self.topc.hex(),
                iterations=self.iterations,
                res_bits=self.res_bits,
                mac_bits=self.mac_bits,
                ck_bits=self.ck_bits,
                ik_bits=self.ik_bits,
            )
        return out


def hss_record(profile: CardProfile) -> HssRecord:
    """The AuC record matching ``profile`` (same K, OPc/TOPc, lengths; SQN_HE at the card's SQN_MS)."""
    seq_ms, _ind = split_sqn(profile.sqn_ms)
    return HssRecord(
        imsi=profile.imsi,
        algorithm=profile.algorithm,
        k=profile.k,
        amf=profile.amf,
        seq_he=seq_ms,
        opc=profile.opc,
        topc=profile.topc,
        iterations=profile.iterations,
        res_bits=profile.res_bits,
        mac_bits=profile.mac_bits,
        ck_bits=profile.ck_bits,
        ik_bits=profile.ik_bits,
    )


def personalise(profile: CardProfile | Mapping[str, Any]) -> tuple[CardProfile, HssRecord]:
    """Alternative 2: the validated card profile and the HSS record that goes with it.

    Raises:
        BadInput: the profile mapping is invalid (see :func:`parse_profile`).
    """
    card = profile if isinstance(profile, CardProfile) else parse_profile(profile)
    return card, hss_record(card)


def hss_subscriber(profile: CardProfile | HssRecord) -> Subscriber:
    """An :class:`aka.hss.Subscriber` for the card, K in software (HSS side)."""
    record = profile if isinstance(profile, HssRecord) else hss_record(profile)
    generator = SqnGenerator(record.seq_he, record.ind, record.ind_bits, record.delta)
    return Subscriber(record.imsi, make_algorithm(record), record.amf, generator)


def _digits(random_bytes: RandomBytes, count: int) -> str:
    """``count`` uniform decimal digits (rejection sampling: bytes ≥ 250 are redrawn)."""
    out: list[str] = []
    while len(out) < count:
        out.extend(str(b % 10) for b in random_bytes(count) if b < 250)
    return "".join(out[:count])


def new_profile_data(
    imsi: str,
    iccid: str,
    random_bytes: RandomBytes,
    *,
    algorithm: Algorithm = "milenage",
    amf: str = "8000",
) -> dict[str, Any]:
    """A fresh profile mapping: random K, OPc (or TOPc), PIN1, PUK1, ADM1, PIN2, PUK2, one OTA
    keyset.

    Production passes ``os.urandom``; tests pass a deterministic source.

    Raises:
        BadInput: bad IMSI, ICCID or algorithm.
    """
    if algorithm not in ("milenage", "tuak", "hmac-sha256"):
        raise BadInput("algorithm must be 'milenage', 'tuak' or 'hmac-sha256'")
    data: dict[str, Any] = {
        "iccid": iccid,
        "imsi": imsi,
        "algorithm": algorithm,
        "k": random_bytes(16).hex(),
        "amf": amf,
        "sqn_ms": "000000000000",
        "pin1": _digits(random_bytes, 4),
        "puk1": _digits(random_bytes, 8),
        "adm1": _digits(random_bytes, 8),
        "ota_keysets": [
            {
                "kvn": 1,
                "kic": random_bytes(16).hex(),
                "kid": random_bytes(16).hex(),
                "tar": "b00001",
                "counter": "0000000000",
            }
        ],
    }
    if algorithm == "milenage":
        data["opc"] = random_bytes(16).hex()
    elif algorithm == "hmac-sha256":
        data["opc"] = random_bytes(32).hex()
    else:
        data["topc"] = random_bytes(32).hex()
    # drawn last, so the keys above stay what they were for a given source
    data["pin2"] = _digits(random_bytes, 4)
    data["puk2"] = _digits(random_bytes, 8)
    parse_profile(data)  # validate now: a bad IMSI/ICCID is the caller's mistake
    return data
