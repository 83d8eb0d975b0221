"""Pure. The ARA-M's answers (GlobalPlatform Secure Element Access Control v1.1): its rule
set and refresh tag as BER-TLV, and a decoder the host client shares.

The emulated card holds no access rules: GET DATA 'FF40' answers an empty
Response-ALL-REF-AR-DO, so a terminal falls back to its own default policy. The decoder also
reads the usual allow-all rule of real cards (REF-DO with an empty AID-REF-DO and an empty
DeviceAppID-REF-DO, AR-DO with APDU and NFC "always").
"""

from __future__ import annotations

from typing import Any

from trelab.errors import BadInput

__all__ = ["ALLOW_ALL_RULES", "ALL_RULES", "REFRESH_TAG", "decode_rules"]

ALL_RULES = bytes.fromhex("ff4000")  # Response-ALL-REF-AR-DO, no rule
# REF-AR-DO E2 { REF-DO E1 { AID-REF-DO 4F 00, DeviceAppID-REF-DO C1 00 },
#               AR-DO E3 { APDU-AR-DO D0 01 01, NFC-AR-DO D1 01 01 } }
ALLOW_ALL_RULES = bytes.fromhex("ff4010e20ee1044f00c100e306d00101d10101")
REFRESH_TAG = bytes.fromhex("df2008") + bytes(8)


def _tlvs(data: bytes) -> list[tuple[int, bytes]]:
    """BER-TLV with one- or two-byte tags (first byte x1F: two bytes) and short/81/82 lengths."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:
            if i >= len(data):
                raise BadInput("access rules: truncated tag")
            tag = tag << 8 | data[i]
            i += 1
        if i >= len(data):
            raise BadInput("access rules: truncated length")
        length = data[i]
        i += 1
        if length in (0x81, 0x82):
            size = length - 0x80
            if i + size > len(data):
                raise BadInput("access rules: truncated length")
            length = int.from_bytes(data[i : i + size], "big")
            i += size
        elif length > 0x80:
            raise BadInput("access rules: unsupported length form")
        if i + length > len(data):
            raise BadInput("access rules: truncated value")
        out.append((tag, data[i : i + length]))
        i += length
    return out


def decode_rules(data: bytes) -> list[dict[str, Any]]:
    """Response-ALL-REF-AR-DO ('FF40') → one dict per REF-AR-DO: ``aid`` (hex, "" = all),
    ``device_app`` (hash hex, "" = all), ``apdu`` ("always"/"never"/filter hex), ``nfc``.

    Raises:
        BadInput: not a well-formed 'FF40' object.
    """
    outer = _tlvs(data)
    if len(outer) != 1 or outer[0][0] != 0xFF40:
        raise BadInput("access rules: expected one Response-ALL-REF-AR-DO ('FF40')")
    rules = []
    for tag, value in _tlvs(outer[0][1]):
        if tag != 0xE2:
            raise BadInput(f"access rules: unexpected tag {tag:X} in 'FF40'")
        parts = dict(_tlvs(value))
        if 0xE1 not in parts or 0xE3 not in parts:
            raise BadInput("access rules: REF-AR-DO without REF-DO and AR-DO")
        ref = dict(_tlvs(parts[0xE1]))
        ar = dict(_tlvs(parts[0xE3]))

        def access(raw: bytes | None) -> str | None:
            if raw is None:
                return None
            if raw == b"\x01":
                return "always"
            if raw == b"\x00":
                return "never"
            return raw.hex()

        rules.append(
            {
                "aid": ref.get(0x4F, b"").hex() if 0x4F in ref else None,
                "device_app": ref.get(0xC1, b"").hex(),
                "apdu": access(ar.get(0xD0)),
                "nfc": access(ar.get(0xD1)),
            }
        )
    return rules
