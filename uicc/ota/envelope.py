"""Pure. The ENVELOPE (SMS-PP download) that hands an SMS-DELIVER to the UICC (TS 31.111 §7.1.1)."""

from __future__ import annotations

from trelab.errors import BadInput
from uicc.ota.ber_tlv import tlv, tlvs

__all__ = [
    "SMS_PP_TAG",
    "build_envelope_sms_pp",
    "parse_envelope_sms_pp",
]


SMS_PP_TAG = 0xD1  # SMS-PP download BER-TLV tag (TS 101 220 §7.2, TS 31.111 §7.1.1.2)
_DEVICE_IDENTITIES = bytes([0x82, 0x02, 0x83, 0x81])  # source: network, destination: UICC
_TAG_DEVICE_IDENTITIES = 0x02
_TAG_ADDRESS = 0x06
_TAG_SMS_TPDU = 0x0B


def build_envelope_sms_pp(tpdu: bytes) -> bytes:
    """The ENVELOPE (SMS-PP DOWNLOAD) command APDU: ``80 C2 00 00 Lc D1{82 83 81, 8B TPDU} 00``
    (TS 31.111 §7.1.1.2; TS 102 221 §10.1.1 CLA 80).

    Raises: BadInput: the BER-TLV would not fit a short APDU.
    """
    body = tlv(SMS_PP_TAG, _DEVICE_IDENTITIES + tlv(0x80 | _TAG_SMS_TPDU, tpdu))
    if len(body) > 255:
        raise BadInput("ENVELOPE data longer than 255 bytes")
    return bytes([0x80, 0xC2, 0x00, 0x00, len(body)]) + body + b"\x00"


def parse_envelope_sms_pp(data: bytes) -> bytes:
    """The SMS-TPDU of an SMS-PP download ENVELOPE's data (device identities network → UICC).

    Raises: BadInput: not a D1 template, or device identities / TPDU missing or wrong.
    """
    outer = tlvs(data, "ENVELOPE")
    if len(outer) != 1 or outer[0][0] != SMS_PP_TAG:
        raise BadInput("ENVELOPE: not an SMS-PP download (tag D1)")
    tpdu = None
    identities = None
    for tag, value in tlvs(outer[0][1], "ENVELOPE"):
        kind = tag & 0x7F  # comprehension TLV: b8 is the "comprehension required" flag
        if kind == _TAG_DEVICE_IDENTITIES:
            identities = value
        elif kind == _TAG_SMS_TPDU:
            tpdu = value
        elif kind != _TAG_ADDRESS and tag & 0x80:
            raise BadInput(f"ENVELOPE: unknown comprehension-required TLV {tag:02X}")
    if identities != bytes([0x83, 0x81]):
        raise BadInput("ENVELOPE: device identities must say network → UICC (83 81)")
    if not tpdu:
        raise BadInput("ENVELOPE: no SMS-TPDU")
    return tpdu
