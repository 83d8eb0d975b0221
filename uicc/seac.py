"""Pure. The ARA-M's data (GlobalPlatform Secure Element Access Control v1.1): its rule set
and refresh tag as BER-TLV, the STORE DATA commands that change the rules, and a decoder the
host client shares.

A fresh emulated card holds no access rules: GET DATA 'FF40' answers an empty
Response-ALL-REF-AR-DO, so a terminal falls back to its own default policy. STORE DATA
(:func:`apply_store`) adds rules (Command-Store-REF-AR-DO 'F0'), deletes them (Command-Delete
'F1': all, all of one AID, one REF-DO or one whole rule) or only moves the refresh tag
(Command-UpdateRefreshTag 'F2'). The decoder also reads the usual allow-all rule of real cards
(REF-DO with an empty AID-REF-DO and an empty DeviceAppID-REF-DO, AR-DO with APDU and NFC
"always").
"""

from __future__ import annotations

from typing import Any

from trelab.errors import BadInput
from uicc.fs import encode_ber_tlv, parse_ber_tlvs

__all__ = [
    "ALLOW_ALL_RULES",
    "ALL_RULES",
    "MAX_RULES_SIZE",
    "REFRESH_TAG",
    "RuleConflict",
    "RuleNotFound",
    "all_rules",
    "apply_store",
    "build_delete",
    "build_store_rule",
    "decode_rules",
    "refresh_tag",
]

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

        rule: dict[str, Any] = {
            "aid": ref.get(0x4F, b"").hex() if 0x4F in ref else None,
            "device_app": ref.get(0xC1, b"").hex(),
            "apdu": access(ar.get(0xD0)),
            "nfc": access(ar.get(0xD1)),
        }
        if 0xDB in ar:
            rule["permissions"] = ar[0xDB].hex()
        rules.append(rule)
    return rules


MAX_RULES_SIZE = 2048  # bytes of REF-AR-DOs the emulated ARA-M keeps (more: 6A84)


class RuleConflict(BadInput):
    """STORE DATA of a rule whose REF-DO the ARA-M already holds (SEAC: '6A89')."""


class RuleNotFound(BadInput):
    """A Command-Delete naming a rule the ARA-M does not hold (SEAC: '6A88')."""


def all_rules(stored: bytes) -> bytes:
    """Response-ALL-REF-AR-DO ('FF40') for the stored REF-AR-DOs."""
    return encode_ber_tlv(b"\xff\x40", stored)


def refresh_tag(version: int) -> bytes:
    """Refresh-Tag-DO ('DF20', 8 bytes): changes with every change of the rules."""
    return b"\xdf\x20\x08" + (version % (1 << 64)).to_bytes(8, "big")


def _check_ref_do(value: bytes) -> None:
    """REF-DO 'E1': AID-REF-DO '4F' (0 or 5–16 bytes) or Implicit-AID-REF-DO 'C0' (empty),
    then DeviceAppID-REF-DO 'C1' (0, 20 or 32 bytes: empty, SHA-1, SHA-256)."""
    parts = parse_ber_tlvs(value)
    tags = [t for t, _ in parts]
    if tags not in ([b"\x4f", b"\xc1"], [b"\xc0", b"\xc1"]):
        raise BadInput("access rule: REF-DO must hold an AID-REF-DO and a DeviceAppID-REF-DO")
    aid, device = parts[0][1], parts[1][1]
    if (parts[0][0] == b"\x4f" and len(aid) not in (0, *range(5, 17))) or (
        parts[0][0] == b"\xc0" and aid
    ):
        raise BadInput("access rule: AID-REF-DO of a wrong length")
    if len(device) not in (0, 20, 32):
        raise BadInput("access rule: DeviceAppID-REF-DO is not a SHA-1 or SHA-256 hash")


def _check_ar_do(value: bytes) -> None:
    """AR-DO 'E3': APDU-AR-DO 'D0' (1 byte 00/01, or 8-byte header ‖ mask filters), NFC-AR-DO
    'D1' (1 byte), PERM-AR-DO 'DB' (8 bytes), each at most once, at least one."""
    parts = parse_ber_tlvs(value)
    seen = [t for t, _ in parts]
    if not parts or len(set(seen)) != len(seen):
        raise BadInput("access rule: AR-DO empty or with a repeated object")
    for tag, body in parts:
        if tag == b"\xd0":
            ok = body in (b"\x00", b"\x01") or (body and len(body) % 8 == 0)
        elif tag == b"\xd1":
            ok = body in (b"\x00", b"\x01")
        elif tag == b"\xdb":
            ok = len(body) == 8
        else:
            ok = False
        if not ok:
            raise BadInput(f"access rule: AR-DO object {tag.hex()} malformed")


def _split_rule(rule: bytes) -> tuple[bytes, bytes]:
    """A REF-AR-DO's value → (REF-DO value, AR-DO value), both checked."""
    parts = parse_ber_tlvs(rule)
    if [t for t, _ in parts] != [b"\xe1", b"\xe3"]:
        raise BadInput("access rule: REF-AR-DO must be a REF-DO then an AR-DO")
    _check_ref_do(parts[0][1])
    _check_ar_do(parts[1][1])
    return parts[0][1], parts[1][1]


def _stored(stored: bytes) -> list[tuple[bytes, bytes]]:
    """The stored REF-AR-DOs as (REF-DO value, whole REF-AR-DO value)."""
    return [(_split_rule(v)[0], v) for _, v in parse_ber_tlvs(stored)]


def apply_store(stored: bytes, command: bytes) -> bytes:
    """The rule set after one STORE DATA command (SEAC v1.1 §3.5): 'F0' adds REF-AR-DOs, 'F1'
    deletes (empty: all; '4F' AID: every rule of that AID; 'E1' REF-DO: its rule; 'E2'
    REF-AR-DO: that exact rule), 'F2' keeps the rules (only the refresh tag moves).

    Raises:
        RuleConflict: a stored rule has the same REF-DO.
        RuleNotFound: nothing to delete.
        BadInput: anything malformed, another command, or more than :data:`MAX_RULES_SIZE`.
    """
    objects = parse_ber_tlvs(command)
    if len(objects) != 1:
        raise BadInput("STORE DATA: one command data object expected")
    tag, value = objects[0]
    rules = _stored(stored)
    if tag == b"\xf0":
        added = parse_ber_tlvs(value)
        if not added or any(t != b"\xe2" for t, _ in added):
            raise BadInput("Command-Store-REF-AR-DO: REF-AR-DOs expected")
        for _, rule in added:
            ref, _ = _split_rule(rule)
            if any(ref == have for have, _ in rules):
                raise RuleConflict("access rule: a rule for this REF-DO is already stored")
            rules.append((ref, rule))
    elif tag == b"\xf1":
        if not value:
            rules = []
        else:
            which = parse_ber_tlvs(value)
            if len(which) != 1:
                raise BadInput("Command-Delete: one object expected")
            kind, body = which[0]
            if kind == b"\x4f":
                kept = [r for r in rules if parse_ber_tlvs(r[0])[0] != (b"\x4f", body)]
            elif kind == b"\xe1":
                _check_ref_do(body)
                kept = [r for r in rules if r[0] != body]
            elif kind == b"\xe2":
                _split_rule(body)
                kept = [r for r in rules if r[1] != body]
            else:
                raise BadInput("Command-Delete: AID-REF-DO, REF-DO or REF-AR-DO expected")
            if len(kept) == len(rules):
                raise RuleNotFound("access rule: no such rule stored")
            rules = kept
    elif tag == b"\xf2":
        if value:
            raise BadInput("Command-UpdateRefreshTag: no value expected")
    else:
        raise BadInput(f"STORE DATA: command {tag.hex()} not supported")
    out = b"".join(encode_ber_tlv(b"\xe2", rule) for _, rule in rules)
    if len(out) > MAX_RULES_SIZE:
        raise BadInput("access rules: no room left")
    return out


def build_store_rule(
    aid: bytes | None,
    device_app: bytes,
    *,
    apdu: bytes | None = b"\x01",
    nfc: bytes | None = None,
    permissions: bytes | None = None,
) -> bytes:
    """Command-Store-REF-AR-DO for one rule: ``aid`` None is the implicit AID ('C0'), b""
    every application; ``device_app`` b"" every device application, else its hash."""
    ref = (encode_ber_tlv(b"\xc0", b"") if aid is None else encode_ber_tlv(b"\x4f", aid)) + (
        encode_ber_tlv(b"\xc1", device_app)
    )
    ar = b""
    for tag, body in ((b"\xd0", apdu), (b"\xd1", nfc), (b"\xdb", permissions)):
        if body is not None:
            ar += encode_ber_tlv(tag, body)
    rule = encode_ber_tlv(b"\xe2", encode_ber_tlv(b"\xe1", ref) + encode_ber_tlv(b"\xe3", ar))
    return encode_ber_tlv(b"\xf0", rule)


def build_delete(aid: bytes | None = None) -> bytes:
    """Command-Delete: every rule, or (``aid``) every rule of that AID."""
    return encode_ber_tlv(b"\xf1", b"" if aid is None else encode_ber_tlv(b"\x4f", aid))
