"""Pure. SMS-PP data download (TS 23.040): the SMS-DELIVER TPDU that carries a secured packet to
the (U)SIM."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from trelab.digits import is_decimal
from trelab.errors import BadInput
from uicc.ota.secured_packet import CPI_IEI, MAX_SMS_USER_DATA

__all__ = [
    "SmsDeliver",
    "build_sms_deliver",
    "encode_scts",
    "parse_sms_deliver",
]


_PID_DATA_DOWNLOAD = 0x7F  # TP-PID "(U)SIM data download" (TS 23.040 §9.2.3.9)
_DCS_CLASS2_8BIT = 0xF6  # TP-DCS: 8-bit data, class 2 (SIM-specific) (TS 23.038 §4)


@dataclass(frozen=True, slots=True)
class SmsDeliver:
    """The parts of an SMS-DELIVER TPDU a (U)SIM data download needs (TS 23.040 §9.2.2.1)."""

    originator: str
    pid: int
    dcs: int
    header: tuple[tuple[int, bytes], ...]  # user data header IEs (IEI, data)
    payload: bytes  # user data after the header


def _encode_address(digits: str) -> bytes:
    """TP-OA: number of digits, TON/NPI 81 (unknown, ISDN), BCD swapped (TS 23.040 §9.1.2.5)."""
    if not is_decimal(digits) or not 1 <= len(digits) <= 20:
        raise BadInput("originating address: 1 to 20 digits")
    padded = digits + ("F" if len(digits) % 2 else "")
    swapped = "".join(padded[i + 1] + padded[i] for i in range(0, len(padded), 2))
    return bytes([len(digits), 0x81]) + bytes.fromhex(swapped)


def _decode_address(data: bytes) -> tuple[str, int]:
    """(digits, bytes used) of a TP-OA (alphanumeric addresses come back as hex)."""
    if len(data) < 2:
        raise BadInput("SMS-DELIVER: originating address truncated")
    count, ton = data[0], data[1]
    used = 2 + (count + 1) // 2
    if count > 20 or len(data) < used:
        raise BadInput("SMS-DELIVER: originating address truncated")
    raw = data[2:used]
    if ton & 0x70 == 0x50:  # alphanumeric (GSM 7-bit): keep it opaque
        return raw.hex(), used
    text = "".join(f"{b & 0x0F:x}{b >> 4:x}" for b in raw)[:count]
    return text, used


def encode_scts(epoch: int) -> bytes:
    """TP-SCTS for a UTC instant (TS 23.040 §9.2.3.11): YY MM DD hh mm ss and time zone 00, each
    as two BCD digits in swapped nibbles."""
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)
    fields = moment.strftime("%y%m%d%H%M%S") + "00"
    return bytes.fromhex("".join(fields[i + 1] + fields[i] for i in range(0, 14, 2)))


def build_sms_deliver(
    command_packet: bytes,
    *,
    originator: str = "12345",
    timestamp: bytes = bytes(7),
) -> bytes:
    """An SMS-DELIVER for USIM data download carrying one command packet: TP-UDHI set, PID 7F,
    DCS F6 (class 2, 8-bit), UD = UDH ``02 70 00`` ‖ packet (TS 31.115 §4.2).

    Raises: BadInput: bad originator, timestamp not 7 bytes, user data over 140 octets.
    """
    if len(timestamp) != 7:
        raise BadInput("TP-SCTS must be 7 bytes")
    user_data = bytes([0x02, CPI_IEI, 0x00]) + command_packet
    if len(user_data) > MAX_SMS_USER_DATA:
        raise BadInput("SMS user data over 140 octets: concatenated SMS are not supported")
    first = 0x40  # TP-MTI 00 SMS-DELIVER, TP-UDHI
    return (
        bytes([first])
        + _encode_address(originator)
        + bytes([_PID_DATA_DOWNLOAD, _DCS_CLASS2_8BIT])
        + timestamp
        + bytes([len(user_data)])
        + user_data
    )


def parse_sms_deliver(tpdu: bytes) -> SmsDeliver:
    """Read an SMS-DELIVER with 8-bit user data.

    Raises: BadInput: not an SMS-DELIVER, not 8-bit data, or truncated.
    """
    if not tpdu or tpdu[0] & 0x03 != 0x00:
        raise BadInput("TPDU: not an SMS-DELIVER")
    originator, used = _decode_address(tpdu[1:])
    i = 1 + used
    if len(tpdu) < i + 10:
        raise BadInput("SMS-DELIVER: truncated after the address")
    pid, dcs = tpdu[i], tpdu[i + 1]
    udl = tpdu[i + 9]
    user_data = tpdu[i + 10 :]
    eight_bit = (dcs & 0xF0 == 0xF0 and dcs & 0x04) or (dcs & 0xC0 == 0x00 and dcs & 0x0C == 0x04)
    if not eight_bit:
        raise BadInput(f"SMS-DELIVER: DCS {dcs:02X} is not 8-bit data")
    if udl != len(user_data) or udl > MAX_SMS_USER_DATA:
        raise BadInput(f"SMS-DELIVER: TP-UDL {udl} but {len(user_data)} octets")
    header: list[tuple[int, bytes]] = []
    payload = user_data
    if tpdu[0] & 0x40:
        if not user_data or 1 + user_data[0] > len(user_data):
            raise BadInput("SMS-DELIVER: user data header truncated")
        udh, payload = user_data[1 : 1 + user_data[0]], user_data[1 + user_data[0] :]
        j = 0
        while j < len(udh):
            if j + 2 > len(udh) or j + 2 + udh[j + 1] > len(udh):
                raise BadInput("SMS-DELIVER: user data header element truncated")
            header.append((udh[j], udh[j + 2 : j + 2 + udh[j + 1]]))
            j += 2 + udh[j + 1]
    return SmsDeliver(originator, pid, dcs, tuple(header), payload)
