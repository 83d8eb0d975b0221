"""Pure. The operator algorithm sets by name, with K in software: what an HSS (or an emulated
card) builds from a subscriber record's algorithm name, parameters, K and OPc/TOPc."""

from __future__ import annotations

from collections.abc import Mapping

from trelab.errors import BadInput

from .algorithm import AkaAlgorithm

__all__ = ["ALGORITHM_NAMES", "software_algorithm"]

ALGORITHM_NAMES = ("milenage", "tuak", "hmac-sha256")


def software_algorithm(name: str, params: Mapping[str, int], k: bytes, opc: bytes) -> AkaAlgorithm:
    """Milenage (TS 35.206), TUAK (TS 35.231, ``params`` its lengths and iterations) or the
    HMAC-SHA-256 set (docs/hmac-aka.md, ``params`` its ``res_bits``), K held in software.

    Raises:
        BadInput: an unknown set, parameters it does not take, or wrong lengths.
    """
    if name == "milenage":
        from .keyholder import SoftwareAes
        from .milenage import Milenage

        if params:
            raise BadInput("Milenage takes no parameters")
        return Milenage(SoftwareAes(k), opc)
    if name == "tuak":
        from .tuak import SoftwareKeccak, Tuak

        extra = {key: v for key, v in params.items() if key != "key_bits"}
        return Tuak(SoftwareKeccak(k), opc, **extra)
    if name == "hmac-sha256":
        from .hmac_aka import HmacAka, SoftwareHmac

        unknown = set(params) - {"key_bits", "res_bits"}
        if unknown:
            raise BadInput(f"hmac-sha256 takes key_bits and res_bits, not {sorted(unknown)}")
        if "key_bits" in params and params["key_bits"] != len(k) * 8:
            raise BadInput(f"K: {len(k)} bytes, key_bits says {params['key_bits']}")
        return HmacAka(SoftwareHmac(k), opc, res_bits=params.get("res_bits", 64))
    raise BadInput(f"algorithm {name!r}: expected one of {', '.join(ALGORITHM_NAMES)}")
