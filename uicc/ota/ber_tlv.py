"""Pure. BER-TLV (ISO/IEC 8825-1 definite lengths) as the OTA scripts and the ENVELOPE use it."""

from __future__ import annotations

from trelab.errors import BadInput

__all__ = ["ber_length", "tlv", "tlvs"]


def ber_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    if length <= 0xFF:
        return bytes([0x81, length])
    if length <= 0xFFFF:
        return bytes([0x82]) + length.to_bytes(2, "big")
    raise BadInput("BER-TLV: value longer than 65535 bytes")


def tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + ber_length(len(value)) + value


def tlvs(data: bytes, what: str) -> list[tuple[int, bytes]]:
    """Strict BER-TLV list with one-byte tags (no padding skipped).

    Raises: BadInput: truncated or an unsupported length form.
    """
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        tag = data[i]
        if i + 1 >= len(data):
            raise BadInput(f"{what}: TLV {tag:02X} truncated")
        first = data[i + 1]
        i += 2
        if first < 0x80:
            length = first
        elif first in (0x81, 0x82):
            size = first - 0x80
            if i + size > len(data):
                raise BadInput(f"{what}: TLV {tag:02X} truncated")
            length = int.from_bytes(data[i : i + size], "big")
            i += size
        else:
            raise BadInput(f"{what}: TLV {tag:02X} has an unsupported length form")
        if i + length > len(data):
            raise BadInput(f"{what}: TLV {tag:02X} truncated")
        out.append((tag, data[i : i + length]))
        i += length
    return out
