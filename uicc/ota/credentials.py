"""Pure. The AKA credential command of trelab's emulated USIM: a proprietary extension (PUT DATA of
the private data object DF01) that real USIMs do not have."""

from __future__ import annotations

from trelab.errors import BadInput

__all__ = [
    "CREDENTIALS_P1P2",
    "build_set_credentials",
    "parse_set_credentials",
]


# ---- proprietary: AKA credentials of this emulated card -----------------------------------------

CREDENTIALS_P1P2 = (0xDF, 0x01)  # PUT DATA of the private data object 'DF01'


def build_set_credentials(k: bytes, opc: bytes) -> bytes:
    """``80 DA DF 01 Lc K ‖ OPc`` (or K ‖ TOPc): set the AKA credentials of ADF.USIM.

    Proprietary to the emulated USIM of this project (ISO 7816-4 PUT DATA with a private tag),
    allowed only with ADM1 rights (the RFM application grants them). Real cards store K and OPc
    in ADM-protected proprietary EFs instead; most cannot change K over the air at all.
    """
    data = k + opc
    return bytes([0x80, 0xDA, *CREDENTIALS_P1P2, len(data)]) + data


def parse_set_credentials(data: bytes, *, algorithm: str) -> tuple[bytes, bytes]:
    """(K, OPc/TOPc) of a credentials command for ``algorithm`` (milenage: 16+16; tuak: K of
    16 or 32 + TOPc 32).

    Raises: BadInput: lengths that do not fit the algorithm.
    """
    if algorithm == "milenage":
        if len(data) != 32:
            raise BadInput("credentials: Milenage needs K (16) ‖ OPc (16)")
        return data[:16], data[16:]
    if len(data) not in (48, 64):
        raise BadInput("credentials: TUAK and HMAC-SHA-256 need K (16 or 32) ‖ TOPc/OPc (32)")
    return data[:-32], data[-32:]
