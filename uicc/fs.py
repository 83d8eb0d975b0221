"""Pure. The UICC/USIM file system as data (TS 102 221 §8, TS 31.102 §4): declarations, codecs, FCP.

Each elementary file is a frozen declaration (FID, SFI, structure, size, access conditions,
codec, samples); the emulated USIM (``firmware_stubs/usim``) runs its commands over these
declarations and the host client (``uicc/``) decodes what it reads with the same codecs.
Codecs turn file bytes into plain Python values and back; every declared sample must
round-trip (one test runs them all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from trelab.digits import is_decimal
from trelab.errors import BadInput

__all__ = [
    "ADF",
    "ADF_ARA_M",
    "ADF_ISIM",
    "ADF_USIM",
    "APPLICATIONS",
    "ARA_M_AID",
    "ARR_RECORD_LEN",
    "ARR_RULES",
    "DF",
    "DF_5GS",
    "DF_GRAPHICS",
    "DF_GSM",
    "DF_GSM_ACCESS",
    "DF_MCS",
    "DF_MULTIMEDIA",
    "DF_PHONEBOOK",
    "DF_SAIP",
    "DF_TELECOM",
    "EF",
    "EF_5GAUTHKEYS",
    "EF_5GS3GPPLOCI",
    "EF_5GS3GPPNSC",
    "EF_5GSN3GPPLOCI",
    "EF_5GSN3GPPNSC",
    "EF_ACC",
    "EF_AD",
    "EF_ADN",
    "EF_ARR",
    "EF_ARR_MF",
    "EF_BDN",
    "EF_DIR",
    "EF_DOMAIN",
    "EF_ECC",
    "EF_EHPLMN",
    "EF_EPSLOCI",
    "EF_EPSNSC",
    "EF_EST",
    "EF_FDN",
    "EF_FPLMN",
    "EF_GSM_KC",
    "EF_HPLMNWACT",
    "EF_HPPLMN",
    "EF_ICCID",
    "EF_ICI",
    "EF_ICT",
    "EF_IMG",
    "EF_IMPI",
    "EF_IMPU",
    "EF_IMSI",
    "EF_ISIM_AD",
    "EF_ISIM_ARR",
    "EF_IST",
    "EF_KC",
    "EF_KCGPRS",
    "EF_KEYS",
    "EF_KEYSPS",
    "EF_LI",
    "EF_LOCI",
    "EF_MML",
    "EF_MSISDN",
    "EF_MST",
    "EF_NETPAR",
    "EF_OPL",
    "EF_OPL5G",
    "EF_OPLMNWACT",
    "EF_PBR",
    "EF_PCSCF",
    "EF_PHASE",
    "EF_PL",
    "EF_PLMNWACT",
    "EF_PNN",
    "EF_PSLOCI",
    "EF_ROUTING_INDICATOR",
    "EF_SDN",
    "EF_SMS",
    "EF_SMSP",
    "EF_SMSS",
    "EF_SPN",
    "EF_SST",
    "EF_START_HFN",
    "EF_SUCI_CALC_INFO",
    "EF_SUCI_CALC_INFO_USIM",
    "EF_TELECOM_ARR",
    "EF_THRESHOLD",
    "EF_UAC_AIC",
    "EF_UST",
    "ISIM_AID",
    "KEY_REFERENCE",
    "MF",
    "SCHEME_IDS",
    "USIM_AID",
    "Access",
    "BerTlvEF",
    "Codec",
    "CyclicEF",
    "Fcp",
    "LinearFixedEF",
    "TransparentEF",
    "all_efs",
    "arr_record",
    "arr_record_number",
    "declared_services",
    "decode_bcd_swapped",
    "decode_iccid",
    "decode_imsi",
    "describe_access_rule",
    "efs_under",
    "encode_bcd_swapped",
    "encode_ber_length",
    "encode_ber_tlv",
    "encode_iccid",
    "encode_imsi",
    "encode_tlv",
    "parse_ber_tlvs",
    "parse_fcp",
    "parse_tlvs",
    "read_ber_length",
    "read_ber_tag",
]


class Access(StrEnum):
    """Access condition of one operation (TS 102 221 §9.2, simplified to the key references used)."""

    ALW = "ALW"  # always
    PIN1 = "PIN1"  # PIN1 verified, or PIN1 disabled
    PIN2 = "PIN2"  # the second application PIN verified, or disabled
    ADM1 = "ADM1"  # administrative key 1 verified
    NEV = "NEV"  # never


# Key references of TS 102 221 §9.5.1 Table 9.3: PIN Appl 1 (global) = 01, Second PIN Appl 1
# (local) = 81, ADM1 = 0A.
KEY_REFERENCE: dict[Access, int] = {Access.PIN1: 0x01, Access.PIN2: 0x81, Access.ADM1: 0x0A}

# The access rules the card uses, one EF.ARR record each (TS 102 221 §9.2.4), as (read,
# update) pairs; every EF's FCP points at its pair's record with tag 8B (§11.1.1.4.7.3). Each
# EF.ARR of the card holds this same table, record n = ARR_RULES[n - 1].
ARR_RULES: tuple[tuple[Access, Access], ...] = (
    (Access.ALW, Access.ADM1),
    (Access.PIN1, Access.PIN1),
    (Access.PIN1, Access.ADM1),
    (Access.ALW, Access.PIN1),
    (Access.ALW, Access.NEV),
    (Access.ADM1, Access.ADM1),
    (Access.PIN1, Access.PIN2),
    (Access.NEV, Access.NEV),
)
ARR_RECORD_LEN = 24  # the longest rule: two key conditions, 3 + 8 + 3 + 8 bytes

# Access mode byte for EFs (ISO/IEC 7816-4 Table 17): b1 READ/SEARCH, b2 UPDATE/ERASE, b3 WRITE,
# b4 DEACTIVATE, b5 ACTIVATE, b6 TERMINATE, b7 DELETE FILE (self)
_AM_OPERATIONS = ("read", "update", "write", "deactivate", "activate", "terminate", "delete")


@dataclass(frozen=True)
class Codec:
    """File content ↔ plain value; ``encode(value, size)`` pads with FF to ``size`` bytes."""

    name: str
    decode: Callable[[bytes], Any]
    encode: Callable[[Any, int], bytes]


def _pad(name: str, data: bytes, size: int) -> bytes:
    if len(data) > size:
        raise BadInput(f"{name}: {len(data)} bytes do not fit in {size}")
    return data + b"\xff" * (size - len(data))


def _erased(data: bytes) -> bool:
    return all(b == 0xFF for b in data)


# -- BCD -----------------------------------------------------------------------------------------
def decode_bcd_swapped(data: bytes) -> str:
    """Swapped-nibble BCD (low nibble first), stopping at the first F filler (TS 102 221 §13.2)."""
    digits: list[str] = []
    for byte in data:
        for nibble in (byte & 0x0F, byte >> 4):
            if nibble == 0x0F:
                return "".join(digits)
            if nibble > 9:
                raise BadInput(f"BCD: nibble {nibble:X} is not a digit")
            digits.append(str(nibble))
    return "".join(digits)


def encode_bcd_swapped(digits: str, size: int) -> bytes:
    """Digits as swapped-nibble BCD, F-padded to ``size`` bytes."""
    if not is_decimal(digits, max_digits=None):
        raise BadInput("BCD: digits only")
    padded = digits + "F" * (2 * size - len(digits))
    if len(padded) > 2 * size:
        raise BadInput(f"BCD: {len(digits)} digits do not fit in {size} bytes")
    return bytes(int(padded[i + 1] + padded[i], 16) for i in range(0, len(padded), 2))


def decode_iccid(data: bytes) -> str:
    """EF.ICCID (TS 102 221 §13.2): 10 bytes of swapped BCD."""
    return decode_bcd_swapped(data)


def encode_iccid(iccid: str, size: int = 10) -> bytes:
    """Inverse of :func:`decode_iccid`."""
    if not 1 <= len(iccid) <= 20:
        raise BadInput("ICCID: 1 to 20 digits")
    return encode_bcd_swapped(iccid, size)


def decode_imsi(data: bytes) -> str | None:
    """EF.IMSI (TS 31.102 §4.2.2): length byte, then digit 1 with the parity nibble, then BCD.

    Returns ``None`` for an erased file.

    Raises:
        BadInput: length byte or parity inconsistent with the digits.
    """
    if not data or _erased(data):
        return None
    length = data[0]
    if not 1 <= length <= 8 or len(data) < 1 + length:
        raise BadInput(f"IMSI: length byte {length} out of range")
    body = data[1 : 1 + length]
    parity = body[0] & 0x0F
    digits = str(body[0] >> 4) + decode_bcd_swapped(body[1:])
    if body[0] >> 4 > 9 or parity not in (0x1, 0x9) or not is_decimal(digits):
        raise BadInput("IMSI: bad first digit or parity nibble")
    if (parity == 0x9) != (len(digits) % 2 == 1):
        raise BadInput("IMSI: parity nibble does not match the number of digits")
    return digits


def encode_imsi(imsi: str | None, size: int = 9) -> bytes:
    """Inverse of :func:`decode_imsi`: odd digit count → parity 9, even → 1 (TS 31.102 §4.2.2)."""
    if imsi is None:
        return b"\xff" * size
    if not is_decimal(imsi) or not 6 <= len(imsi) <= 15:
        raise BadInput("IMSI: 6 to 15 digits")
    parity = 0x9 if len(imsi) % 2 else 0x1
    first = bytes([int(imsi[0]) << 4 | parity])
    rest = imsi[1:]
    body = first + encode_bcd_swapped(rest, (len(rest) + 1) // 2)
    return _pad("IMSI", bytes([len(body)]) + body, size)


# -- BER-TLV (one-byte tags, as in FCP templates, TS 102 221 §11.1.1.3) ----------------------------
def encode_tlv(tag: int, value: bytes) -> bytes:
    """One TLV with a one-byte tag; lengths ≥ 128 use the 81 form."""
    if len(value) < 0x80:
        return bytes([tag, len(value)]) + value
    if len(value) <= 0xFF:
        return bytes([tag, 0x81, len(value)]) + value
    raise BadInput("TLV: value longer than 255 bytes")


def parse_tlvs(data: bytes) -> list[tuple[int, bytes]]:
    """The TLVs of ``data`` in order (one-byte tags; 00/FF padding between them skipped).

    Raises:
        BadInput: truncated TLV.
    """
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        tag = data[i]
        if tag in (0x00, 0xFF):
            i += 1
            continue
        if i + 1 >= len(data):
            raise BadInput(f"TLV {tag:02X}: truncated")
        length, i = data[i + 1], i + 2
        if length == 0x81:
            if i >= len(data):
                raise BadInput(f"TLV {tag:02X}: truncated")
            length, i = data[i], i + 1
        elif length > 0x80:
            raise BadInput(f"TLV {tag:02X}: unsupported length form {length:02X}")
        if i + length > len(data):
            raise BadInput(f"TLV {tag:02X}: truncated")
        out.append((tag, data[i : i + length]))
        i += length
    return out


# -- BER-TLV data objects of BER-TLV structured EFs (TS 102 221 §11.3) -------------------------
def read_ber_tag(data: bytes, i: int = 0) -> tuple[bytes, int]:
    """The tag starting at ``data[i]`` (1 to 3 bytes, ISO/IEC 8825-1 coding) and where it ends.

    Raises:
        BadInput: no tag there, '00'/'FF', or a tag longer than 3 bytes.
    """
    if i >= len(data) or data[i] in (0x00, 0xFF):
        raise BadInput("BER-TLV: no valid tag")
    end = i + 1
    if data[i] & 0x1F == 0x1F:
        while True:
            if end >= len(data) or end - i >= 3:
                raise BadInput("BER-TLV: tag truncated or longer than 3 bytes")
            end += 1
            if not data[end - 1] & 0x80:
                break
    return data[i:end], end


def read_ber_length(data: bytes, i: int) -> tuple[int, int]:
    """A length coded on 1 to 4 bytes, shortest form only (TS 102 221 §11.3: '00'–'7F',
    '81 80'–'81 FF', '82 0100'–'82 FFFF', '83 010000'–'83 FFFFFF') and where it ends.

    Raises:
        BadInput: truncated, or not the shortest coding.
    """
    if i >= len(data):
        raise BadInput("BER-TLV: length missing")
    first = data[i]
    if first < 0x80:
        return first, i + 1
    count = first - 0x80
    if not 1 <= count <= 3 or i + 1 + count > len(data):
        raise BadInput(f"BER-TLV: length form {first:02X} unsupported or truncated")
    value = int.from_bytes(data[i + 1 : i + 1 + count], "big")
    if value < (0x80 if count == 1 else 1 << (8 * (count - 1))):
        raise BadInput("BER-TLV: length not in its shortest form")
    return value, i + 1 + count


def encode_ber_length(length: int) -> bytes:
    """Inverse of :func:`read_ber_length`."""
    if length < 0x80:
        return bytes([length])
    for count in (1, 2, 3):
        if length < 1 << (8 * count):
            return bytes([0x80 | count]) + length.to_bytes(count, "big")
    raise BadInput("BER-TLV: length beyond 16 MiB")


def encode_ber_tlv(tag: bytes, value: bytes) -> bytes:
    """One data object: tag ‖ length ‖ value."""
    return tag + encode_ber_length(len(value)) + value


def parse_ber_tlvs(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (tag, value) data objects of a BER-TLV structured EF's content, in order.

    Raises:
        BadInput: a malformed or truncated object.
    """
    out: list[tuple[bytes, bytes]] = []
    i = 0
    while i < len(data):
        tag, i = read_ber_tag(data, i)
        length, i = read_ber_length(data, i)
        if i + length > len(data):
            raise BadInput(f"BER-TLV {tag.hex()}: value truncated")
        out.append((tag, data[i : i + length]))
        i += length
    return out


@dataclass(frozen=True)
class Fcp:
    """What a SELECT's FCP template (tag 62) says about a file (TS 102 221 §11.1.1.3)."""

    descriptor: bytes
    fid: int | None = None
    aid: bytes | None = None
    size: int | None = None
    lcsi: int | None = None
    sfi: int | None = None
    pin_status: bytes | None = None
    security: bytes | None = None
    raw: dict[int, bytes] = field(default_factory=dict, compare=False)

    @property
    def is_df(self) -> bool:
        return bool(self.descriptor) and self.descriptor[0] & 0x3F == 0x38

    @property
    def structure(self) -> str:
        """``"df"``, ``"transparent"``, ``"linear-fixed"``, ``"cyclic"``, ``"ber-tlv"`` or
        ``"unknown"``."""
        if self.is_df:
            return "df"
        if self.descriptor and self.descriptor[0] & 0x3F == 0x39:  # TS 102 221 Table 11.5
            return "ber-tlv"
        kind = self.descriptor[0] & 0x07 if self.descriptor else 0
        return {1: "transparent", 2: "linear-fixed", 6: "cyclic"}.get(kind, "unknown")

    @property
    def record_length(self) -> int | None:
        if len(self.descriptor) >= 4:
            return int.from_bytes(self.descriptor[2:4], "big")
        return None

    @property
    def records(self) -> int | None:
        return self.descriptor[4] if len(self.descriptor) >= 5 else None

    @property
    def arr_reference(self) -> tuple[int, int] | None:
        """Security attributes referenced to expanded format (tag 8B, TS 102 221
        §11.1.1.4.7.3): (FID of the EF.ARR, record number); with per-SE pairs (FID, SEID,
        record …) the first pair's record."""
        value = self.raw.get(0x8B)
        if value is None or len(value) < 3:
            return None
        fid = int.from_bytes(value[:2], "big")
        if len(value) == 3:
            return fid, value[2]
        if len(value) % 2 == 0:
            return fid, value[3]
        return None

    def key_enabled(self, reference: int) -> bool | None:
        """From the PIN status template C6: whether verification of key ``reference`` is
        enabled (its PS_DO bit, §9.5.2); None when the template does not list it."""
        if self.pin_status is None:
            return None
        try:
            tlvs = parse_tlvs(self.pin_status)
        except BadInput:
            return None
        ps_do = next((v for t, v in tlvs if t == 0x90), b"")
        refs = [v[0] for t, v in tlvs if t == 0x83 and v]
        if reference not in refs or not ps_do:
            return None
        index = refs.index(reference)
        return bool(ps_do[index // 8] & (0x80 >> (index % 8))) if index // 8 < len(ps_do) else None

    @property
    def pin1_enabled(self) -> bool | None:
        """From the PIN status template C6: PS_DO bit for the first key reference (§9.5.2)."""
        return self.key_enabled(KEY_REFERENCE[Access.PIN1])


def parse_fcp(data: bytes) -> Fcp:
    """Parse an FCP template (62 …).

    Raises:
        BadInput: not an FCP template, or truncated.
    """
    tlvs = parse_tlvs(data)
    if len(tlvs) != 1 or tlvs[0][0] != 0x62:
        raise BadInput("FCP: expected one template with tag 62")
    inner = dict(parse_tlvs(tlvs[0][1]))
    if 0x82 not in inner:
        raise BadInput("FCP: no file descriptor (82)")

    def num(tag: int) -> int | None:
        value = inner.get(tag)
        return int.from_bytes(value, "big") if value else None

    sfi_raw = inner.get(0x88)
    return Fcp(
        descriptor=inner[0x82],
        fid=num(0x83),
        aid=inner.get(0x84),
        size=num(0x80),
        lcsi=num(0x8A),
        sfi=(sfi_raw[0] >> 3) if sfi_raw else None,
        pin_status=inner.get(0xC6),
        security=inner.get(0x8C, inner.get(0x8B)),
        raw=inner,
    )


# -- codecs --------------------------------------------------------------------------------------
def _int_codec(name: str) -> Codec:
    def decode(data: bytes) -> int:
        if not data:
            raise BadInput(f"{name}: empty")
        return data[0]

    def encode(value: int, size: int) -> bytes:
        if not 0 <= value <= 0xFF:
            raise BadInput(f"{name}: 0…255")
        return _pad(name, bytes([value]), size)

    return Codec(name, decode, encode)


def _struct_codec(name: str, fields: tuple[tuple[str, int, str], ...]) -> Codec:
    """Fixed fields: (key, length, "hex"|"int") in order; the rest of the file is padding."""

    def decode(data: bytes) -> dict[str, Any]:
        out: dict[str, Any] = {}
        i = 0
        for key, length, kind in fields:
            chunk = data[i : i + length]
            if len(chunk) != length:
                raise BadInput(f"{name}: too short for {key}")
            out[key] = int.from_bytes(chunk, "big") if kind == "int" else chunk.hex()
            i += length
        return out

    def encode(value: dict[str, Any], size: int) -> bytes:
        unknown = set(value) - {f[0] for f in fields}
        if unknown:
            raise BadInput(f"{name}: unknown field {sorted(unknown)[0]!r}")
        parts = []
        for key, length, kind in fields:
            item = value[key]
            if kind == "int":
                if not isinstance(item, int) or not 0 <= item < 1 << (8 * length):
                    raise BadInput(f"{name}: {key} out of range")
                parts.append(item.to_bytes(length, "big"))
            else:
                raw = bytes.fromhex(item)
                if len(raw) != length:
                    raise BadInput(f"{name}: {key} must be {length} bytes")
                parts.append(raw)
        return _pad(name, b"".join(parts), size)

    return Codec(name, decode, encode)


def _service_table_codec(name: str) -> Codec:
    """Service tables (EF.UST §4.2.8, EF.EST §4.2.47): service n ↔ bit (n−1)%8 of byte (n−1)//8."""

    def decode(data: bytes) -> tuple[int, ...]:
        return tuple(
            8 * i + b + 1 for i, byte in enumerate(data) for b in range(8) if byte >> b & 1
        )

    def encode(services: tuple[int, ...], size: int) -> bytes:
        out = bytearray(size)
        for n in services:
            if not 1 <= n <= 8 * size:
                raise BadInput(f"{name}: service {n} does not fit in {size} bytes")
            out[(n - 1) // 8] |= 1 << ((n - 1) % 8)
        return bytes(out)

    return Codec(name, decode, encode)


def _sim_service_table_codec() -> Codec:
    """EF.SST (TS 51.011 §10.3.7): two bits per service, n ↔ bits 2(n−1)%8 (allocated) and
    2(n−1)%8 + 1 (activated) of byte (n−1)//4; the value lists the allocated and activated ones."""

    def decode(data: bytes) -> tuple[int, ...]:
        return tuple(
            4 * i + pair + 1
            for i, byte in enumerate(data)
            for pair in range(4)
            if byte >> (2 * pair) & 0b11 == 0b11
        )

    def encode(services: tuple[int, ...], size: int) -> bytes:
        out = bytearray(size)
        for n in services:
            if not 1 <= n <= 4 * size:
                raise BadInput(f"sst: service {n} does not fit in {size} bytes")
            out[(n - 1) // 4] |= 0b11 << (2 * ((n - 1) % 4))
        return bytes(out)

    return Codec("sst", decode, encode)


def _plmn_encode(plmn: str) -> bytes:
    """MCC/MNC as 3 BCD bytes (TS 24.008 §10.5.1.3): MCC2 MCC1, MNC3 MCC3, MNC2 MNC1."""
    if not is_decimal(plmn) or len(plmn) not in (5, 6):
        raise BadInput("PLMN: 5 or 6 digits (MCC + MNC)")
    d = [int(c) for c in plmn] + ([0xF] if len(plmn) == 5 else [])
    mnc3 = d[5]
    return bytes([d[1] << 4 | d[0], mnc3 << 4 | d[2], d[4] << 4 | d[3]])


def _plmn_decode(data: bytes) -> str:
    if len(data) != 3:
        raise BadInput(f"PLMN: {len(data)} bytes, not 3")
    d = [data[0] & 0xF, data[0] >> 4, data[1] & 0xF, data[2] & 0xF, data[2] >> 4, data[1] >> 4]
    digits = d[:5] + ([] if d[5] == 0xF else [d[5]])
    if any(x > 9 for x in digits):
        raise BadInput("PLMN: not BCD")
    return "".join(map(str, digits))


def _plmn_list_codec(name: str) -> Codec:
    def decode(data: bytes) -> tuple[str, ...]:
        chunks = [data[i : i + 3] for i in range(0, len(data) - 2, 3)]
        return tuple(_plmn_decode(c) for c in chunks if not _erased(c))

    def encode(plmns: tuple[str, ...], size: int) -> bytes:
        return _pad(name, b"".join(_plmn_encode(p) for p in plmns), size)

    return Codec(name, decode, encode)


def _acc_codec() -> Codec:
    """EF.ACC (TS 31.102 §4.2.15): access classes 0…15, class n ↔ bit n of the 16-bit value."""

    def decode(data: bytes) -> tuple[int, ...]:
        if len(data) < 2:
            raise BadInput("ACC: shorter than 2 bytes")
        value = int.from_bytes(data[:2], "big")
        return tuple(n for n in range(16) if value >> n & 1)

    def encode(classes: tuple[int, ...], size: int) -> bytes:
        value = 0
        for n in classes:
            if not 0 <= n <= 15:
                raise BadInput("ACC: classes 0…15")
            value |= 1 << n
        return _pad("ACC", value.to_bytes(2, "big"), size)

    return Codec("acc", decode, encode)


# GSM 7-bit default alphabet (TS 23.038 §6.2.1) agrees with ASCII on these characters.
_GSM_SAFE = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .,-+/()&'*:;=?!%\"#<>"
)


def _spn_codec() -> Codec:
    """EF.SPN (TS 31.102 §4.2.12): display condition byte, then the name (GSM default alphabet)."""

    def decode(data: bytes) -> dict[str, Any]:
        if not data:
            raise BadInput("SPN: empty (no display condition byte)")
        name = data[1:].split(b"\xff", 1)[0].decode("ascii", errors="replace")
        return {"display_condition": data[0], "name": name}

    def encode(value: dict[str, Any], size: int) -> bytes:
        name = value["name"]
        if not set(name) <= _GSM_SAFE:
            raise BadInput("SPN: letters, digits, space and simple punctuation only")
        cond = value["display_condition"]
        if not 0 <= cond <= 0xFF:
            raise BadInput("SPN: display condition 0…255")
        return _pad("SPN", bytes([cond]) + name.encode("ascii"), size)

    return Codec("spn", decode, encode)


def _language_codec() -> Codec:
    """EF.PL (TS 102 221 §13.5): 2-character ISO 639 codes, FF FF unused."""

    def decode(data: bytes) -> tuple[str, ...]:
        pairs = [
            data[i : i + 2] for i in range(0, len(data) - 1, 2) if not _erased(data[i : i + 2])
        ]
        if not all(p.isascii() and p.isalpha() for p in pairs):
            raise BadInput("PL: a language code that is not two ASCII letters")
        return tuple(p.decode("ascii") for p in pairs)

    def encode(codes: tuple[str, ...], size: int) -> bytes:
        if any(len(c) != 2 or not c.isascii() or not c.isalpha() for c in codes):
            raise BadInput("PL: two-letter language codes")
        return _pad("PL", "".join(codes).encode("ascii"), size)

    return Codec("pl", decode, encode)


def _dir_record_codec() -> Codec:
    """EF.DIR record (TS 102 221 §13.1): application template 61 { 4F AID, 50 label }."""

    def decode(data: bytes) -> dict[str, str] | None:
        if _erased(data):
            return None
        tlvs = parse_tlvs(data)
        if not tlvs or tlvs[0][0] != 0x61:
            raise BadInput("EF.DIR: record is not an application template (61)")
        inner = dict(parse_tlvs(tlvs[0][1]))
        if 0x4F not in inner:
            raise BadInput("EF.DIR: application template without AID (4F)")
        label = inner.get(0x50, b"").decode("ascii", "replace")  # shown, not trusted
        return {"aid": inner[0x4F].hex(), "label": label}

    def encode(value: dict[str, str] | None, size: int) -> bytes:
        if value is None:
            return b"\xff" * size
        aid = bytes.fromhex(value["aid"])
        if not 5 <= len(aid) <= 16:
            raise BadInput("EF.DIR: AID must be 5 to 16 bytes")
        if not value["label"].isascii():
            raise BadInput("EF.DIR: application label must be ASCII")  # (decoding marks others)
        body = encode_tlv(0x4F, aid) + encode_tlv(0x50, value["label"].encode("ascii"))
        return _pad("EF.DIR", encode_tlv(0x61, body), size)

    return Codec("dir", decode, encode)


def _hex_codec(name: str) -> Codec:
    """Opaque content as hex (files whose inner structure nothing here interprets)."""

    def encode(value: str, size: int) -> bytes:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise BadInput(f"{name}: not hex") from None
        return _pad(name, raw, size)

    return Codec(name, lambda data: data.hex(), encode)


def _iccid_codec() -> Codec:
    return Codec("iccid", decode_iccid, encode_iccid)


def _imsi_codec() -> Codec:
    return Codec("imsi", decode_imsi, encode_imsi)


# -- GSM 7-bit default alphabet (TS 23.038 §6.1.2.1), on the characters it shares with ASCII ------
def _gsm7_pack(text: str) -> tuple[bytes, int]:
    """Septets packed LSB first (TS 23.038 §6.1.2.1.1); returns (octets, spare bits in the last)."""
    if not set(text) <= _GSM_SAFE:
        raise BadInput("name: letters, digits, space and simple punctuation only")
    bits = 0
    count = 0
    out = bytearray()
    for char in text:
        bits |= ord(char) << count
        count += 7
        while count >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            count -= 8
    if count:
        out.append(bits & 0xFF)
    return bytes(out), (8 - count) % 8 if count else 0


def _gsm7_unpack(data: bytes, spare: int) -> str:
    septets = (8 * len(data) - spare) // 7
    value = int.from_bytes(data, "little")
    chars = [chr(value >> (7 * i) & 0x7F) for i in range(septets)]
    text = "".join(chars)
    if not set(text) <= _GSM_SAFE:
        raise BadInput("name: characters outside the supported GSM default alphabet subset")
    return text


def _alpha_decode(data: bytes) -> str:
    """Alpha identifier (TS 31.102 Annex A, GSM default alphabet, 8-bit, FF padded)."""
    text = data.split(b"\xff", 1)[0]
    if any(b & 0x80 for b in text):
        raise BadInput("alpha identifier: UCS2 coding is not supported here")
    decoded = text.decode("ascii")
    if not set(decoded) <= _GSM_SAFE:
        raise BadInput("alpha identifier: characters outside the supported alphabet subset")
    return decoded


def _alpha_encode(text: str, size: int) -> bytes:
    if not set(text) <= _GSM_SAFE:
        raise BadInput("alpha identifier: letters, digits, space and simple punctuation only")
    return _pad("alpha identifier", text.encode("ascii"), size)


# -- dialling numbers (TS 31.102 §4.4.2.3 EF.ADN, used by MSISDN/FDN/SDN/BDN/MBDN) -----------
_DIAL_DIGITS = "0123456789*#"


def _dial_encode(number: str) -> tuple[int, bytes]:
    """(TON/NPI, swapped BCD) of a dialling number; a leading '+' is the international TON."""
    international = number.startswith("+")
    digits = number[1:] if international else number
    if not digits or not set(digits) <= set(_DIAL_DIGITS) or len(digits) > 20:
        raise BadInput("dialling number: 1 to 20 of 0-9 * #, optionally after '+'")
    nibbles = [_DIAL_DIGITS.index(d) if d.isdigit() else 0xA + "*#".index(d) for d in digits]
    if len(nibbles) % 2:
        nibbles.append(0xF)
    bcd = bytes(nibbles[i] | nibbles[i + 1] << 4 for i in range(0, len(nibbles), 2))
    return (0x91 if international else 0x81), bcd


def _dial_decode(ton_npi: int, bcd: bytes) -> str:
    digits: list[str] = []
    for byte in bcd:
        for nibble in (byte & 0x0F, byte >> 4):
            if nibble == 0x0F:
                break
            if nibble > 0xB:
                raise BadInput(f"dialling number: nibble {nibble:X} (DTMF control) not supported")
            digits.append(_DIAL_DIGITS[nibble] if nibble < 10 else "*#"[nibble - 10])
        else:
            continue
        break
    prefix = "+" if ton_npi & 0x70 == 0x10 else ""
    return prefix + "".join(digits)


def _dialling_codec(name: str, trailer: int = 2) -> Codec:
    """A dialling-number record: alpha (X), BCD length, TON/NPI, 10 BCD bytes, CCP2 id, ext id
    (and for EF.BDN one more byte, the comparison method pointer). Erased → ``None``."""

    def decode(data: bytes) -> dict[str, str] | None:
        alpha_len = len(data) - 12 - trailer  # X follows from the record length
        if alpha_len < 0:
            raise BadInput(f"{name}: record shorter than {12 + trailer} bytes")
        if _erased(data[alpha_len:]):
            return None
        body = data[alpha_len:]
        length = body[0]
        if not 1 <= length <= 11 or len(body) < 1 + length:
            raise BadInput(f"{name}: BCD length byte {length} out of range")
        return {
            "alpha": _alpha_decode(data[:alpha_len]),
            "number": _dial_decode(body[1], body[2 : 1 + length]),
        }

    def encode(value: dict[str, str] | None, size: int) -> bytes:
        if value is None:
            return b"\xff" * size
        ton_npi, bcd = _dial_encode(value["number"])
        if len(bcd) > 10:
            raise BadInput(f"{name}: at most 20 digits (no extension records here)")
        body = bytes([len(bcd) + 1, ton_npi]) + bcd.ljust(10, b"\xff")
        alpha = _alpha_encode(value["alpha"], size - 12 - trailer)
        return alpha + body + b"\xff" * trailer

    return Codec(name, decode, encode)


def _ecc_codec() -> Codec:
    """EF.ECC record (TS 31.102 §4.2.21): 3 BCD bytes, alpha (X), service category. Erased → None."""

    def decode(data: bytes) -> dict[str, Any] | None:
        if _erased(data[:3]):
            return None
        return {
            "number": decode_bcd_swapped(data[:3]),
            "alpha": _alpha_decode(data[3:-1]),
            "category": data[-1],
        }

    def encode(value: dict[str, Any] | None, size: int) -> bytes:
        if value is None:
            return b"\xff" * size
        if not 0 <= value["category"] <= 0x7F:
            raise BadInput("ECC: service category 0…127")
        code = encode_bcd_swapped(value["number"], 3)
        return code + _alpha_encode(value["alpha"], size - 4) + bytes([value["category"]])

    return Codec("ecc", decode, encode)


def _sms_codec() -> Codec:
    """EF.SMS record (TS 31.102 §4.2.25): status byte, then 175 bytes. A free record
    (status b1 = 0) → None."""

    def decode(data: bytes) -> dict[str, Any] | None:
        if not data:
            raise BadInput("SMS: empty record")
        if not data[0] & 0x01:
            return None
        return {"status": data[0], "body": data[1:].rstrip(b"\xff").hex()}

    def encode(value: dict[str, Any] | None, size: int) -> bytes:
        if value is None:
            return b"\x00" + b"\xff" * (size - 1)
        status = value["status"]
        if not 0 <= status <= 0xFF or not status & 0x01:
            raise BadInput("SMS: status must mark the record used (b1 = 1)")
        return _pad("SMS", bytes([status]) + bytes.fromhex(value["body"]), size)

    return Codec("sms", decode, encode)


def _address_decode(data: bytes) -> str | None:
    """TS 24.011 RP address / TS 23.040 TP address as stored in EF.SMSP: length, TON/NPI, BCD."""
    if _erased(data):
        return None
    if not 1 <= data[0] <= len(data) - 1:
        raise BadInput("SMSP: address length out of range")
    return _dial_decode(data[1], data[2 : 1 + data[0]])


def _address_encode(number: str | None, size: int) -> bytes:
    if number is None:
        return b"\xff" * size
    ton_npi, bcd = _dial_encode(number)
    return _pad("SMSP address", bytes([len(bcd) + 1, ton_npi]) + bcd, size)


def _smsp_codec() -> Codec:
    """EF.SMSP record (TS 31.102 §4.2.27): alpha (Y), parameter indicators, TP-destination
    address (12), service centre address (12), PID, DCS, validity period. Erased → None."""

    def decode(data: bytes) -> dict[str, Any] | None:
        if _erased(data):
            return None
        alpha_len = len(data) - 28  # Y follows from the record length
        if alpha_len < 0:
            raise BadInput("SMSP: record shorter than 28 bytes")
        p = data[alpha_len:]
        return {
            "alpha": _alpha_decode(data[:alpha_len]),
            "indicators": p[0],
            "destination": _address_decode(p[1:13]),
            "service_centre": _address_decode(p[13:25]),
            "pid": p[25],
            "dcs": p[26],
            "validity": p[27],
        }

    def encode(value: dict[str, Any] | None, size: int) -> bytes:
        if value is None:
            return b"\xff" * size
        for key in ("indicators", "pid", "dcs", "validity"):
            if not 0 <= value[key] <= 0xFF:
                raise BadInput(f"SMSP: {key} 0…255")
        out = (
            _alpha_encode(value["alpha"], size - 28)
            + bytes([value["indicators"]])
            + _address_encode(value["destination"], 12)
            + _address_encode(value["service_centre"], 12)
            + bytes([value["pid"], value["dcs"], value["validity"]])
        )
        return _pad("SMSP", out, size)

    return Codec("smsp", decode, encode)


def _smss_codec() -> Codec:
    """EF.SMSS (TS 31.102 §4.2.28): last used TP-MR; memory capacity flag (b1 = 1: room)."""

    def decode(data: bytes) -> dict[str, Any]:
        if len(data) < 2:
            raise BadInput("SMSS: shorter than 2 bytes")
        return {"last_tp_mr": data[0], "memory_available": bool(data[1] & 0x01)}

    def encode(value: dict[str, Any], size: int) -> bytes:
        if not 0 <= value["last_tp_mr"] <= 0xFF:
            raise BadInput("SMSS: TP-MR 0…255")
        flag = 0xFF if value["memory_available"] else 0xFE
        return _pad("SMSS", bytes([value["last_tp_mr"], flag]), size)

    return Codec("smss", decode, encode)


# Access technology identifier bits (TS 31.102 §4.2.5, tables 4.2.5.1/2): byte 4 then byte 5.
# The E-UTRAN bit alone means both WB-S1 and NB-S1; the two qualifier bits narrow it. The GSM
# bit's qualifiers say whether EC-GSM-IoT is meant. Named bit by bit, as the card holds them.
_ACT_BITS = {
    "UTRAN": 0x8000,
    "E-UTRAN": 0x4000,
    "E-UTRAN WB-S1 qualifier": 0x2000,
    "E-UTRAN NB-S1 qualifier": 0x1000,
    "NG-RAN": 0x0800,
    "GSM": 0x0080,
    "GSM COMPACT": 0x0040,
    "cdma2000 HRPD": 0x0020,
    "cdma2000 1xRTT": 0x0010,
    "EC-GSM-IoT qualifier": 0x0008,
    "GSM without EC-GSM-IoT qualifier": 0x0004,
}


def _plmn_act_codec(name: str) -> Codec:
    """PLMN selector with access technology (EF.PLMNwAcT/OPLMNwAcT/HPLMNwAcT): 5-byte entries."""

    def decode(data: bytes) -> tuple[dict[str, Any], ...]:
        out = []
        for i in range(0, len(data) - 4, 5):
            entry = data[i : i + 5]
            if _erased(entry[:3]):
                continue
            act = int.from_bytes(entry[3:5], "big")
            if act & ~sum(_ACT_BITS.values()):
                raise BadInput(f"{name}: access technology bits {act:04X} not supported here")
            techs = tuple(t for t, bit in _ACT_BITS.items() if act & bit)
            out.append({"plmn": _plmn_decode(entry[:3]), "act": techs})
        return tuple(out)

    def encode(entries: tuple[dict[str, Any], ...], size: int) -> bytes:
        raw = b""
        for entry in entries:
            unknown = set(entry["act"]) - set(_ACT_BITS)
            if unknown:
                raise BadInput(f"{name}: unknown access technology {sorted(unknown)[0]!r}")
            act = sum(_ACT_BITS[t] for t in entry["act"])
            raw += _plmn_encode(entry["plmn"]) + act.to_bytes(2, "big")
        if len(raw) > size:
            raise BadInput(f"{name}: {len(entries)} entries do not fit in {size} bytes")
        return raw + bytes.fromhex("ffffff0000") * ((size - len(raw)) // 5)

    return Codec(name, decode, encode)


def _network_name_decode(value: bytes) -> str:
    """Network name IE contents (TS 24.008 §10.5.3.5a): coding octet, then GSM 7-bit text."""
    if not value:
        raise BadInput("PNN: empty network name")
    if value[0] & 0x70:
        raise BadInput("PNN: only the GSM default alphabet coding is supported here")
    return _gsm7_unpack(value[1:], value[0] & 0x07)


def _network_name_encode(text: str) -> bytes:
    packed, spare = _gsm7_pack(text)
    return bytes([0x80 | spare]) + packed


def _pnn_codec() -> Codec:
    """EF.PNN record (TS 31.102 §4.2.58): '43' full name, optional '45' short name. Erased → None."""

    def decode(data: bytes) -> dict[str, Any] | None:
        if _erased(data):
            return None
        tlvs = dict(parse_tlvs(data))
        if 0x43 not in tlvs:
            raise BadInput("PNN: record without a full name ('43')")
        short = tlvs.get(0x45)
        return {
            "full_name": _network_name_decode(tlvs[0x43]),
            "short_name": _network_name_decode(short) if short is not None else None,
        }

    def encode(value: dict[str, Any] | None, size: int) -> bytes:
        if value is None:
            return b"\xff" * size
        out = encode_tlv(0x43, _network_name_encode(value["full_name"]))
        if value["short_name"] is not None:
            out += encode_tlv(0x45, _network_name_encode(value["short_name"]))
        return _pad("PNN", out, size)

    return Codec("pnn", decode, encode)


def _opl_codec(name: str, area: int) -> Codec:
    """EF.OPL (§4.2.59: PLMN, LAC range) / EF.OPL5G (§4.4.11.9: PLMN, TAC range), then the
    EF.PNN record number. Erased → None."""

    def decode(data: bytes) -> dict[str, Any] | None:
        if len(data) < 4 + 2 * area:
            raise BadInput(f"{name}: record shorter than {4 + 2 * area} bytes")
        if _erased(data):
            return None
        if len(data) < 4 + 2 * area:
            raise BadInput(f"{name}: a record of {len(data)} bytes, needs {4 + 2 * area}")
        return {
            "plmn": _plmn_decode(data[:3]),
            "area_min": data[3 : 3 + area].hex(),
            "area_max": data[3 + area : 3 + 2 * area].hex(),
            "pnn_record": data[3 + 2 * area],
        }

    def encode(value: dict[str, Any] | None, size: int) -> bytes:
        if value is None:
            return b"\xff" * size
        low, high = bytes.fromhex(value["area_min"]), bytes.fromhex(value["area_max"])
        if len(low) != area or len(high) != area or not 0 <= value["pnn_record"] <= 0xFF:
            raise BadInput(f"{name}: area codes of {area} bytes, PNN record 0…255")
        return _pad(
            name, _plmn_encode(value["plmn"]) + low + high + bytes([value["pnn_record"]]), size
        )

    return Codec(name, decode, encode)


def _tlv_record_codec(name: str, template: int, fields: dict[int, str]) -> Codec:
    """A record or file holding one constructed template of primitive TLVs (values as hex):
    e.g. a NAS security context (TS 31.102 §4.2.92, §4.4.11.4). Erased → None."""
    tags = {v: k for k, v in fields.items()}

    def decode(data: bytes) -> dict[str, str] | None:
        if _erased(data):
            return None
        outer = parse_tlvs(data)
        if len(outer) != 1 or outer[0][0] != template:
            raise BadInput(f"{name}: expected one template {template:02X}")
        out: dict[str, str] = {}
        for tag, value in parse_tlvs(outer[0][1]):
            if tag not in fields:
                raise BadInput(f"{name}: unknown tag {tag:02X}")
            out[fields[tag]] = value.hex()
        return out

    def encode(value: dict[str, str] | None, size: int) -> bytes:
        if value is None:
            return b"\xff" * size
        unknown = set(value) - set(tags)
        if unknown:
            raise BadInput(f"{name}: unknown field {sorted(unknown)[0]!r}")
        inner = b"".join(encode_tlv(tags[k], bytes.fromhex(v)) for k, v in value.items())
        return _pad(name, encode_tlv(template, inner), size)

    return Codec(name, decode, encode)


def _tlv_fields_codec(name: str, fields: dict[int, str], *, text: bool = False) -> Codec:
    """A file of primitive TLVs side by side (e.g. EF.5GAUTHKEYS '80' K_AUSF, '81' K_SEAF;
    EF.IMPI '80' NAI as text). Erased → None."""
    tags = {v: k for k, v in fields.items()}

    def decode(data: bytes) -> dict[str, str] | None:
        if _erased(data):
            return None
        out: dict[str, str] = {}
        for tag, value in parse_tlvs(data):
            if tag not in fields:
                raise BadInput(f"{name}: unknown tag {tag:02X}")
            if text:
                try:
                    out[fields[tag]] = value.decode("utf-8")
                except UnicodeDecodeError:
                    raise BadInput(f"{name}: not UTF-8") from None
            else:
                out[fields[tag]] = value.hex()
        return out

    def encode(value: dict[str, str] | None, size: int) -> bytes:
        if value is None:
            return b"\xff" * size
        unknown = set(value) - set(tags)
        if unknown:
            raise BadInput(f"{name}: unknown field {sorted(unknown)[0]!r}")
        parts = [
            encode_tlv(tags[k], v.encode("utf-8") if text else bytes.fromhex(v))
            for k, v in value.items()
        ]
        return _pad(name, b"".join(parts), size)

    return Codec(name, decode, encode)


# Access identities of EF.UAC_AIC (TS 31.102 §4.4.11.7): bit → access identity (TS 22.261)
_UAC_BITS = {1: 0x01, 2: 0x02, 11: 0x04, 12: 0x08, 13: 0x10, 14: 0x20, 15: 0x40}


def _uac_aic_codec() -> Codec:
    def decode(data: bytes) -> tuple[int, ...]:
        if len(data) < 4:
            raise BadInput("UAC_AIC: shorter than 4 bytes")
        value = data[3]
        return tuple(ai for ai, bit in _UAC_BITS.items() if value & bit)

    def encode(identities: tuple[int, ...], size: int) -> bytes:
        if not set(identities) <= set(_UAC_BITS):
            raise BadInput("UAC_AIC: access identities 1, 2, 11…15")
        return _pad("UAC_AIC", bytes(3) + bytes([sum(_UAC_BITS[a] for a in identities)]), size)

    return Codec("uac_aic", decode, encode)


SCHEME_IDS = {"null": 0, "A": 1, "B": 2}


def _suci_calc_info_codec() -> Codec:
    """EF.SUCI_Calc_Info (TS 31.102 §4.4.11.8): 'A0' protection scheme identifiers in priority
    order, each with the 1-based index of its key in 'A1' (0: none); 'A1' the home network
    public keys as '80' key identifier ‖ '81' key. Erased → None."""
    names = {v: k for k, v in SCHEME_IDS.items()}

    def decode(data: bytes) -> dict[str, Any] | None:
        if _erased(data):
            return None
        tlvs = parse_tlvs(data)
        if not tlvs or tlvs[0][0] != 0xA0 or len(tlvs[0][1]) % 2:
            raise BadInput("SUCI_Calc_Info: no protection scheme list ('A0')")
        raw = tlvs[0][1]
        schemes: list[dict[str, Any]] = []
        for i in range(0, len(raw), 2):
            if raw[i] not in names:
                raise BadInput(f"SUCI_Calc_Info: unknown protection scheme {raw[i]}")
            schemes.append({"scheme": names[raw[i]], "key_index": raw[i + 1]})
        keys: list[dict[str, Any]] = []
        rest = tlvs[1:]
        if rest:
            if len(rest) != 1 or rest[0][0] != 0xA1:
                raise BadInput("SUCI_Calc_Info: expected the key list ('A1') after 'A0'")
            items = parse_tlvs(rest[0][1])
            if len(items) % 2:
                raise BadInput("SUCI_Calc_Info: key list must pair '80' id with '81' key")
            for (t_id, v_id), (t_key, v_key) in zip(items[::2], items[1::2], strict=True):
                if t_id != 0x80 or t_key != 0x81 or len(v_id) != 1:
                    raise BadInput("SUCI_Calc_Info: key list must pair '80' id with '81' key")
                keys.append({"id": v_id[0], "public": v_key.hex()})
        for entry in schemes:
            if entry["key_index"] > len(keys):
                raise BadInput("SUCI_Calc_Info: a scheme points past the key list")
        return {"schemes": schemes, "keys": keys}

    def encode(value: dict[str, Any] | None, size: int) -> bytes:
        if value is None:
            return b"\xff" * size
        schemes = b"".join(
            bytes([SCHEME_IDS[s["scheme"]], s["key_index"]]) for s in value["schemes"]
        )
        keys = b"".join(
            encode_tlv(0x80, bytes([k["id"]])) + encode_tlv(0x81, bytes.fromhex(k["public"]))
            for k in value["keys"]
        )
        out = encode_tlv(0xA0, schemes) + (encode_tlv(0xA1, keys) if value["keys"] else b"")
        return _pad("SUCI_Calc_Info", out, size)

    return Codec("suci_calc_info", decode, encode)


def _routing_indicator_codec() -> Codec:
    """EF.Routing_Indicator (TS 31.102 §4.4.11.11): 1–4 BCD digits, F-filled, then 2 RFU bytes."""

    def decode(data: bytes) -> str:
        if len(data) < 2:
            raise BadInput("Routing_Indicator: shorter than 2 bytes")
        digits = decode_bcd_swapped(data[:2])
        if not digits:
            raise BadInput("Routing_Indicator: no digit")
        return digits

    def encode(value: str, size: int) -> bytes:
        if not 1 <= len(value) <= 4:
            raise BadInput("Routing_Indicator: 1 to 4 digits")
        return _pad("Routing_Indicator", encode_bcd_swapped(value, 2), size)

    return Codec("routing_indicator", decode, encode)


def _ad_isim_codec() -> Codec:
    return _struct_codec("ad", (("ue_operation_mode", 1, "int"), ("additional_info", 2, "hex")))


def _impu_codec() -> Codec:
    """EF.IMPU record (TS 31.103 §4.2.4): '80' URI (UTF-8). Erased → None."""

    def decode(data: bytes) -> str | None:
        if _erased(data):
            return None
        tlvs = parse_tlvs(data)
        if len(tlvs) != 1 or tlvs[0][0] != 0x80:
            raise BadInput("IMPU: expected one URI TLV ('80')")
        try:
            return tlvs[0][1].decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput("IMPU: not UTF-8") from None

    def encode(value: str | None, size: int) -> bytes:
        if value is None:
            return b"\xff" * size
        return _pad("IMPU", encode_tlv(0x80, value.encode("utf-8")), size)

    return Codec("impu", decode, encode)


def _pcscf_codec() -> Codec:
    """EF.PCSCF record (TS 31.103 §4.2.8): '80' { address type, address }; type 00 = FQDN,
    01 = IPv4, 02 = IPv6. Erased → None."""

    def decode(data: bytes) -> dict[str, str] | None:
        if _erased(data):
            return None
        tlvs = parse_tlvs(data)
        if len(tlvs) != 1 or tlvs[0][0] != 0x80 or not tlvs[0][1]:
            raise BadInput("PCSCF: expected one address TLV ('80')")
        kind, address = tlvs[0][1][0], tlvs[0][1][1:]
        if kind == 0x00:
            return {"type": "fqdn", "address": address.decode("ascii", "replace")}
        if kind == 0x01 and len(address) == 4:
            return {"type": "ipv4", "address": ".".join(map(str, address))}
        raise BadInput(f"PCSCF: address type {kind:02X} not supported here")

    def encode(value: dict[str, str] | None, size: int) -> bytes:
        if value is None:
            return b"\xff" * size
        if value["type"] == "fqdn":
            body = b"\x00" + value["address"].encode("ascii")
        elif value["type"] == "ipv4":
            parts = value["address"].split(".")
            if len(parts) != 4 or not all(
                is_decimal(p, max_digits=3) and int(p) < 256 for p in parts
            ):
                raise BadInput("PCSCF: IPv4 address as a.b.c.d")
            body = b"\x01" + bytes(int(p) for p in parts)
        else:
            raise BadInput("PCSCF: type fqdn or ipv4")
        return _pad("PCSCF", encode_tlv(0x80, body), size)

    return Codec("pcscf", decode, encode)


def _pbr_codec() -> Codec:
    """EF.PBR record (TS 31.102 §4.4.2.1): 'A8' type-1 files, each '<tag> 02 <FID>' (C0 = ADN).
    Erased → None; decoded as tag → FID (hex)."""

    def decode(data: bytes) -> dict[str, str] | None:
        if _erased(data):
            return None
        tlvs = parse_tlvs(data)
        if not tlvs or tlvs[0][0] != 0xA8:
            raise BadInput("PBR: expected a type-1 template ('A8')")
        return {f"{tag:02x}": value.hex() for tag, value in parse_tlvs(tlvs[0][1])}

    def encode(value: dict[str, str] | None, size: int) -> bytes:
        if value is None:
            return b"\xff" * size
        inner = b"".join(encode_tlv(int(t, 16), bytes.fromhex(f)) for t, f in value.items())
        return _pad("PBR", encode_tlv(0xA8, inner), size)

    return Codec("pbr", decode, encode)


def _arr_codec() -> Codec:
    """EF.ARR record (TS 102 221 §9.2.4, expanded format): access mode '80' followed by its
    security condition — '90' always, '97' never, 'A4' { '83' key reference, '95' usage }.
    Decoded as [{"am": hex, "sc": "always" | "never" | "key XX"}]; erased → None."""

    def decode(data: bytes) -> list[dict[str, str]] | None:
        if _erased(data):
            return None
        rules: list[dict[str, str]] = []
        am: bytes | None = None
        for tag, value in parse_tlvs(data):
            if tag == 0x80:
                am = value
                continue
            if am is None:
                raise BadInput(f"ARR: security condition {tag:02X} without an access mode")
            if tag == 0x90 and not value:
                sc = "always"
            elif tag == 0x97 and not value:
                sc = "never"
            elif tag == 0xA4:
                inner = parse_tlvs(value)
                if not inner or inner[0][0] != 0x83 or len(inner[0][1]) != 1:
                    raise BadInput("ARR: CRT 'A4' without a one-byte key reference")
                if inner[1:] not in ([], [(0x95, b"\x08")]):
                    raise BadInput("ARR: CRT 'A4' with a usage other than user verification")
                sc = f"key {inner[0][1][0]:02X}"
            else:
                raise BadInput(f"ARR: security condition {tag:02X} not supported here")
            rules.append({"am": am.hex(), "sc": sc})
            am = None
        if am is not None:
            raise BadInput("ARR: access mode without a security condition")
        return rules

    def encode(rules: list[dict[str, str]] | None, size: int) -> bytes:
        if rules is None:
            return b"\xff" * size
        out = b""
        for rule in rules:
            out += encode_tlv(0x80, bytes.fromhex(rule["am"]))
            sc = rule["sc"]
            if sc == "always":
                out += b"\x90\x00"
            elif sc == "never":
                out += b"\x97\x00"
            elif sc.startswith("key ") and len(sc) == 6:
                ref = bytes.fromhex(sc[4:])
                out += encode_tlv(0xA4, encode_tlv(0x83, ref) + b"\x95\x01\x08")
            else:
                raise BadInput("ARR: security condition always, never or 'key XX'")
        return _pad("ARR", out, size)

    return Codec("arr", decode, encode)


def _sc_bytes(access: Access) -> bytes:
    """Security condition of an EF.ARR rule: '90 00' always, '97 00' never, else a CRT 'A4'
    naming the key reference with usage qualifier 08 (user verification)."""
    if access is Access.ALW:
        return b"\x90\x00"
    if access is Access.NEV:
        return b"\x97\x00"
    key = bytes([KEY_REFERENCE[access]])
    return encode_tlv(0xA4, encode_tlv(0x83, key) + b"\x95\x01\x08")


def arr_record(read: Access, update: Access) -> bytes:
    """One EF.ARR record for a (read, update) pair, padded with FF to :data:`ARR_RECORD_LEN`."""
    if read is update:
        rule = encode_tlv(0x80, b"\x03") + _sc_bytes(read)
    else:
        rule = encode_tlv(0x80, b"\x01") + _sc_bytes(read)
        rule += encode_tlv(0x80, b"\x02") + _sc_bytes(update)
    return _pad("ARR", rule, ARR_RECORD_LEN)


def arr_record_number(read: Access, update: Access) -> int:
    """The EF.ARR record (from 1) that holds the rule (read, update).

    Raises:
        BadInput: no record holds it (a declaration outside :data:`ARR_RULES`).
    """
    try:
        return ARR_RULES.index((read, update)) + 1
    except ValueError:
        raise BadInput(f"ARR: no rule for read {read}, update {update}") from None


_KEY_NAMES = {f"key {ref:02X}": access.value for access, ref in KEY_REFERENCE.items()}


def describe_access_rule(rules: list[dict[str, str]]) -> dict[str, str]:
    """A decoded EF.ARR record (:func:`_arr_codec`'s form) as operation → condition, e.g.
    ``{"read": "PIN1", "update": "PIN2"}``; conditions are ``always``, ``never``, a key name
    (PIN1, PIN2, ADM1) or ``key XX``. Operations no rule names are never allowed."""
    out: dict[str, str] = {}
    for rule in rules:
        am = int(rule["am"], 16) if rule["am"] else 0
        if am & 0x80:  # proprietary or command-description access modes: not for EFs here
            continue
        condition = _KEY_NAMES.get(rule["sc"], rule["sc"])
        for bit, operation in enumerate(_AM_OPERATIONS):
            if am & (1 << bit):
                out[operation] = condition
    return out


def _spdi_codec() -> Codec:
    """EF.SPDI (TS 31.102 §4.2.66): 'A3' { '80' service provider PLMN list }. Erased → None."""

    def decode(data: bytes) -> tuple[str, ...] | None:
        if _erased(data):
            return None
        tlvs = parse_tlvs(data)
        if len(tlvs) != 1 or tlvs[0][0] != 0xA3:
            raise BadInput("SPDI: expected one display information template ('A3')")
        inner = parse_tlvs(tlvs[0][1])
        if len(inner) != 1 or inner[0][0] != 0x80 or len(inner[0][1]) % 3:
            raise BadInput("SPDI: expected one PLMN list ('80') of 3-byte entries")
        raw = inner[0][1]
        return tuple(
            _plmn_decode(raw[i : i + 3])
            for i in range(0, len(raw), 3)
            if not _erased(raw[i : i + 3])
        )

    def encode(plmns: tuple[str, ...] | None, size: int) -> bytes:
        if plmns is None:
            return b"\xff" * size
        body = encode_tlv(0x80, b"".join(_plmn_encode(p) for p in plmns))
        return _pad("SPDI", encode_tlv(0xA3, body), size)

    return Codec("spdi", decode, encode)


def _record_hex_codec(name: str) -> Codec:
    """Records nothing here interprets (as hex, trailing FF kept); an erased one → None."""

    def decode(data: bytes) -> str | None:
        return None if _erased(data) else data.hex()

    def encode(value: str | None, size: int) -> bytes:
        if value is None:
            return b"\xff" * size
        return _pad(name, bytes.fromhex(value), size)

    return Codec(name, decode, encode)


def _ber_tlv_codec(name: str) -> Codec:
    """A BER-TLV structured EF's data objects as [{"tag": hex, "value": hex}, …] in file order."""

    def decode(data: bytes) -> list[dict[str, str]]:
        return [{"tag": t.hex(), "value": v.hex()} for t, v in parse_ber_tlvs(data)]

    def encode(objects: list[dict[str, str]], size: int) -> bytes:
        try:
            raw = b"".join(
                encode_ber_tlv(bytes.fromhex(o["tag"]), bytes.fromhex(o["value"])) for o in objects
            )
        except (KeyError, ValueError):
            raise BadInput(f"{name}: objects need hex 'tag' and 'value'") from None
        if len(raw) > size:
            raise BadInput(f"{name}: {len(raw)} bytes of objects do not fit in {size}")
        parse_ber_tlvs(raw)  # every tag valid
        return raw

    return Codec(name, decode, encode)


# -- codecs of the files only the GSM SIM application has (TS 51.011 §10.3, §10.5) -------------
# CBS language codes of the data coding scheme's group 0000 (TS 23.038 §5), as ISO 639 codes;
# 0F is "language unspecified".
_CBS_LANGUAGES: tuple[str, ...] = (
    *("de", "en", "it", "fr", "es", "nl", "sv", "da", "pt", "fi", "no", "el", "tr", "hu", "pl"),
    "unspecified",
)


def _cbs_language_codec() -> Codec:
    """EF.LP (TS 51.011 §10.3.1): one CBS language code per byte in order of preference, FF
    unused. (The USIM's EF.LI at the same FID holds ISO 639 pairs instead.)"""

    def decode(data: bytes) -> tuple[str, ...]:
        codes = [b for b in data if b != 0xFF]
        if any(b >= len(_CBS_LANGUAGES) for b in codes):
            raise BadInput("LP: a language code outside TS 23.038's group 0000")
        return tuple(_CBS_LANGUAGES[b] for b in codes)

    def encode(languages: tuple[str, ...], size: int) -> bytes:
        if any(lang not in _CBS_LANGUAGES for lang in languages):
            raise BadInput(f"LP: languages are {', '.join(_CBS_LANGUAGES)}")
        return _pad("LP", bytes(_CBS_LANGUAGES.index(lang) for lang in languages), size)

    return Codec("lp", decode, encode)


def _puct_codec() -> Codec:
    """EF.PUCT (TS 51.011 §10.3.11, TS 31.102 §4.2.36): 3 currency characters, then the
    elementary price per unit EPPU (12 bits: byte 4, then b4–b1 of byte 5) and its decimal
    exponent EX (b8–b6 of byte 5, sign in b5); price = EPPU × 10^EX. Erased → None."""

    def decode(data: bytes) -> dict[str, Any] | None:
        if len(data) < 5:
            raise BadInput("PUCT: shorter than 5 bytes")
        if _erased(data[:5]):
            return None
        currency = data[:3]
        if not all(0x20 <= c < 0x7F for c in currency):
            raise BadInput("PUCT: currency code is not printable")
        exponent = data[4] >> 5
        return {
            "currency": currency.decode("ascii"),
            "eppu": data[3] << 4 | data[4] & 0x0F,
            "exponent": -exponent if data[4] & 0x10 else exponent,
        }

    def encode(value: dict[str, Any] | None, size: int) -> bytes:
        if value is None:
            return b"\xff" * size
        currency, eppu, exponent = value["currency"], value["eppu"], value["exponent"]
        if len(currency) != 3 or not all(0x20 <= ord(c) < 0x7F for c in currency):
            raise BadInput("PUCT: currency is 3 printable characters")
        if not 0 <= eppu < 1 << 12 or not -7 <= exponent <= 7:
            raise BadInput("PUCT: EPPU 0…4095, exponent −7…7")
        last = abs(exponent) << 5 | (0x10 if exponent < 0 else 0) | eppu & 0x0F
        return _pad("PUCT", currency.encode("ascii") + bytes([eppu >> 4, last]), size)

    return Codec("puct", decode, encode)


def _message_id_list_codec(name: str) -> Codec:
    """EF.CBMI (TS 51.011 §10.3.13, TS 31.102 §4.2.14): 2-byte cell broadcast message
    identifiers (TS 23.041 §9.4.1.2.2), FF FF unused."""

    def decode(data: bytes) -> tuple[int, ...]:
        pairs = (data[i : i + 2] for i in range(0, len(data) - 1, 2))
        return tuple(int.from_bytes(p, "big") for p in pairs if p != b"\xff\xff")

    def encode(ids: tuple[int, ...], size: int) -> bytes:
        if any(not 0 <= i < 0xFFFF for i in ids):
            raise BadInput(f"{name}: message identifiers 0…65534")
        return _pad(name, b"".join(i.to_bytes(2, "big") for i in ids), size)

    return Codec(name, decode, encode)


# -- declarations --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransparentEF:
    """A transparent EF: ``size`` bytes read and written with offsets."""

    fid: int
    name: str
    size: int
    codec: Codec
    sfid: int | None = None
    read: Access = Access.ALW
    update: Access = Access.ADM1
    default: bytes | None = None  # None: all FF
    samples: tuple[tuple[bytes, object], ...] = ()
    service: int | None = None  # the service table entry that offers this file, if any
    holds_keys: bool = False  # session keys: never read out by the host client

    structure = "transparent"

    def initial(self) -> bytes:
        return self.default if self.default is not None else b"\xff" * self.size


@dataclass(frozen=True)
class LinearFixedEF:
    """A linear fixed EF: ``records`` records of ``record_len`` bytes, numbered from 1."""

    fid: int
    name: str
    record_len: int
    records: int
    codec: Codec
    sfid: int | None = None
    read: Access = Access.ALW
    update: Access = Access.ADM1
    default: tuple[bytes, ...] = ()  # missing records: all FF
    samples: tuple[tuple[bytes, object], ...] = ()
    service: int | None = None  # the service table entry that offers this file, if any
    holds_keys: bool = False  # session keys: never read out by the host client

    structure = "linear-fixed"

    @property
    def size(self) -> int:
        return self.record_len * self.records

    def initial_records(self) -> tuple[bytes, ...]:
        blank = b"\xff" * self.record_len
        return tuple(
            self.default[i] if i < len(self.default) else blank for i in range(self.records)
        )


@dataclass(frozen=True)
class CyclicEF(LinearFixedEF):
    """A cyclic EF: record 1 is the most recently written (TS 102 221 §8.2.2.3)."""

    structure = "cyclic"


@dataclass(frozen=True)
class BerTlvEF:
    """A BER-TLV structured EF (TS 102 221 §8.2.2.4): data objects found by their tag, read
    with RETRIEVE DATA and written with SET DATA; ``size`` bytes are reserved for all of them.
    Its content is the objects one after the other (no padding)."""

    fid: int
    name: str
    size: int
    codec: Codec
    sfid: int | None = None
    read: Access = Access.ALW
    update: Access = Access.ADM1
    default: bytes | None = None  # None: no data object
    samples: tuple[tuple[bytes, object], ...] = ()
    service: int | None = None
    holds_keys: bool = False

    structure = "ber-tlv"

    def initial(self) -> bytes:
        return self.default if self.default is not None else b""


EF = TransparentEF | LinearFixedEF | BerTlvEF


@dataclass(frozen=True)
class DF:
    """A dedicated file (or the MF) with its children."""

    fid: int
    name: str
    children: tuple[EF | DF, ...] = ()


@dataclass(frozen=True)
class ADF:
    """An application DF, selected by AID (or 7FFF once active); children as for a DF."""

    aid: bytes
    name: str
    label: str
    children: tuple[EF | DF, ...] = ()
    fid: int = 0x7FFF
    listed: bool = True  # has a record in EF.DIR (a GlobalPlatform applet such as ARA-M: no)


USIM_AID = bytes.fromhex("a0000000871002ffffffff8907090000")

_PIN = Access.PIN1
_ADM = Access.ADM1

EF_DIR = LinearFixedEF(
    0x2F00,
    "EF.DIR",
    record_len=32,
    records=4,
    codec=_dir_record_codec(),
    sfid=0x1E,
    samples=(
        (
            bytes.fromhex("61184f10a0000000871002ffffffff890709000050045553494d") + b"\xff" * 6,
            {"aid": "a0000000871002ffffffff8907090000", "label": "USIM"},
        ),
        (b"\xff" * 32, None),
    ),
)
EF_ICCID = TransparentEF(
    0x2FE2,
    "EF.ICCID",
    10,
    _iccid_codec(),
    sfid=0x02,
    read=Access.ALW,
    update=Access.NEV,
    samples=((bytes.fromhex("981010000000000000f0"), "8901010000000000000"),),
)
EF_PL = TransparentEF(
    0x2F05,
    "EF.PL",
    10,
    _language_codec(),
    sfid=0x05,
    read=Access.ALW,
    update=_PIN,
    default=b"en" + b"\xff" * 8,
    samples=((b"ende" + b"\xff" * 6, ("en", "de")), (b"\xff" * 10, ())),
)
EF_IMSI = TransparentEF(
    0x6F07,
    "EF.IMSI",
    9,
    _imsi_codec(),
    sfid=0x07,
    read=_PIN,
    update=_ADM,
    samples=(
        (bytes.fromhex("080910101032547698"), "001010123456789"),
        (bytes.fromhex("080921436587092143"), "012345678901234"),
        (bytes.fromhex("0801214365870921f3"), "01234567890123"),
        (b"\xff" * 9, None),
    ),
)
EF_KEYS = TransparentEF(
    0x6F08,
    "EF.Keys",
    33,
    _struct_codec("keys", (("ksi", 1, "int"), ("ck", 16, "hex"), ("ik", 16, "hex"))),
    sfid=0x08,
    read=_PIN,
    update=_PIN,
    default=b"\x07" + b"\xff" * 32,
    samples=(
        (
            bytes([0x02]) + bytes(range(16)) + bytes(range(16, 32)),
            {"ksi": 2, "ck": bytes(range(16)).hex(), "ik": bytes(range(16, 32)).hex()},
        ),
    ),
    holds_keys=True,
)
EF_KEYSPS = TransparentEF(
    0x6F09,
    "EF.KeysPS",
    33,
    _struct_codec("keysps", (("ksi", 1, "int"), ("ck", 16, "hex"), ("ik", 16, "hex"))),
    sfid=0x09,
    read=_PIN,
    update=_PIN,
    default=b"\x07" + b"\xff" * 32,
    samples=((b"\x07" + b"\xff" * 32, {"ksi": 7, "ck": "ff" * 16, "ik": "ff" * 16}),),
    holds_keys=True,
)
EF_HPPLMN = TransparentEF(
    0x6F31,
    "EF.HPPLMN",
    1,
    _int_codec("hpplmn"),
    sfid=0x12,
    read=_PIN,
    update=_ADM,
    default=b"\x0a",
    samples=((b"\x0a", 10),),
)
EF_UST = TransparentEF(
    0x6F38,
    "EF.UST",
    19,  # services 1…152 (TS 31.102 §4.2.8, current release)
    _service_table_codec("ust"),
    sfid=0x04,
    read=_PIN,
    update=_ADM,
    samples=(
        # services 20 PLMNwAcT, 27 GSM access, 33 (shall be 1), 34 EST, 38 GSM security context,
        # 85 EPS mobility management information, 124 subscription identifier privacy
        # support, 125 SUCI calculation by the USIM (TS 31.102 §4.2.8)
        (
            bytes.fromhex("00000804230000000000100000000018000000"),
            (20, 27, 33, 34, 38, 85, 124, 125),
        ),
    ),
)
EF_SPN = TransparentEF(
    0x6F46,
    "EF.SPN",
    17,
    _spn_codec(),
    read=Access.ALW,
    update=_ADM,
    samples=((b"\x01trelab" + b"\xff" * 10, {"display_condition": 1, "name": "trelab"}),),
    service=19,
)
EF_EST = TransparentEF(
    0x6F56,
    "EF.EST",
    1,
    _service_table_codec("est"),
    sfid=0x05,
    read=_PIN,
    update=_PIN,
    default=b"\x00",
    samples=((b"\x00", ()), (b"\x05", (1, 3))),
    service=34,
)
EF_START_HFN = TransparentEF(
    0x6F5B,
    "EF.START-HFN",
    6,
    _struct_codec("start-hfn", (("start_cs", 3, "hex"), ("start_ps", 3, "hex"))),
    sfid=0x0F,
    read=_PIN,
    update=_PIN,
    default=bytes.fromhex("f00000f00000"),
    samples=((bytes.fromhex("f00000f00000"), {"start_cs": "f00000", "start_ps": "f00000"}),),
)
EF_THRESHOLD = TransparentEF(
    0x6F5C,
    "EF.THRESHOLD",
    3,
    _struct_codec("threshold", (("max_start", 3, "hex"),)),
    sfid=0x10,
    read=_PIN,
    update=_ADM,
    default=bytes.fromhex("ffffff"),
    samples=((bytes.fromhex("ffffff"), {"max_start": "ffffff"}),),
)
EF_PSLOCI = TransparentEF(
    0x6F73,
    "EF.PSLOCI",
    14,
    _struct_codec(
        "psloci",
        (
            ("p_tmsi", 4, "hex"),
            ("p_tmsi_signature", 3, "hex"),
            ("rai", 6, "hex"),
            ("status", 1, "int"),
        ),
    ),
    sfid=0x0C,
    read=_PIN,
    update=_PIN,
    default=bytes.fromhex("ffffffffffffff00f1100000ff01"),
    samples=(
        (
            bytes.fromhex("ffffffffffffff00f1100000ff01"),
            {
                "p_tmsi": "ffffffff",
                "p_tmsi_signature": "ffffff",
                "rai": "00f1100000ff",
                "status": 1,
            },
        ),
    ),
)
EF_ACC = TransparentEF(
    0x6F78,
    "EF.ACC",
    2,
    _acc_codec(),
    sfid=0x06,
    read=_PIN,
    update=_ADM,
    samples=((bytes.fromhex("0200"), (9,)), (bytes.fromhex("8001"), (0, 15))),
)
EF_FPLMN = TransparentEF(
    0x6F7B,
    "EF.FPLMN",
    12,
    _plmn_list_codec("fplmn"),
    sfid=0x0D,
    read=_PIN,
    update=_PIN,
    samples=(
        (bytes.fromhex("00f110") + b"\xff" * 9, ("00101",)),
        (bytes.fromhex("62f220130001") + b"\xff" * 6, ("26202", "310100")),
        (b"\xff" * 12, ()),
    ),
)
EF_LOCI = TransparentEF(
    0x6F7E,
    "EF.LOCI",
    11,
    _struct_codec(
        "loci", (("tmsi", 4, "hex"), ("lai", 5, "hex"), ("rfu", 1, "hex"), ("status", 1, "int"))
    ),
    sfid=0x0B,
    read=_PIN,
    update=_PIN,
    default=bytes.fromhex("ffffffff00f1100000ff01"),
    samples=(
        (
            bytes.fromhex("ffffffff00f1100000ff01"),
            {"tmsi": "ffffffff", "lai": "00f1100000", "rfu": "ff", "status": 1},
        ),
    ),
)
EF_AD = TransparentEF(
    0x6FAD,
    "EF.AD",
    4,
    _struct_codec(
        "ad",
        (("ue_operation_mode", 1, "int"), ("additional_info", 2, "hex"), ("mnc_length", 1, "int")),
    ),
    sfid=0x03,
    read=Access.ALW,
    update=_ADM,
    default=bytes.fromhex("00000002"),
    samples=(
        (
            bytes.fromhex("00000002"),
            {"ue_operation_mode": 0, "additional_info": "0000", "mnc_length": 2},
        ),
        (
            bytes.fromhex("80000003"),
            {"ue_operation_mode": 0x80, "additional_info": "0000", "mnc_length": 3},
        ),
    ),
)
EF_EPSLOCI = TransparentEF(
    0x6FE3,
    "EF.EPSLOCI",
    18,
    _struct_codec("epsloci", (("guti", 12, "hex"), ("tai", 5, "hex"), ("status", 1, "int"))),
    sfid=0x1E,
    read=_PIN,
    update=_PIN,
    default=bytes.fromhex("ffffffffffffffffffffffff00f1100000" + "01"),
    samples=(
        (
            bytes.fromhex("ffffffffffffffffffffffff00f110000001"),
            {"guti": "ff" * 12, "tai": "00f1100000", "status": 1},
        ),
    ),
    service=85,
)

EF_ICI = CyclicEF(
    0x6F80,
    "EF.ICI",
    record_len=30,  # X = 2 bytes of alpha identifier + 28 (TS 31.102 §4.2.33)
    records=5,
    codec=_hex_codec("ici"),
    sfid=0x14,
    read=_PIN,
    update=_PIN,
    samples=((bytes(range(30)), bytes(range(30)).hex()), (b"\xff" * 30, "ff" * 30)),
    service=9,
)

EF_ICT = CyclicEF(
    0x6F82,
    "EF.ICT",
    record_len=3,  # accumulated incoming call timer (TS 31.102 §4.2.34)
    records=1,
    codec=_hex_codec("ict"),
    read=_PIN,
    update=_PIN,
    default=(b"\x00\x00\x00",),
    samples=((b"\x00\x01\x2c", "00012c"),),
    service=9,
)

# -- the further files of ADF.USIM a commercial card carries (TS 31.102 §4.2) ------------------
_ARR_TABLE = tuple(arr_record(read, update) for read, update in ARR_RULES)
EF_LI = TransparentEF(
    0x6F05,
    "EF.LI",
    10,
    _language_codec(),
    sfid=0x02,
    read=Access.ALW,
    update=_PIN,
    default=b"en" + b"\xff" * 8,
    samples=((b"defr" + b"\xff" * 6, ("de", "fr")),),
)
EF_ARR = LinearFixedEF(
    0x6F06,
    "EF.ARR",
    record_len=ARR_RECORD_LEN,
    records=len(ARR_RULES),
    codec=_arr_codec(),
    sfid=0x17,
    read=Access.ALW,
    update=_ADM,
    # access rules in expanded format (TS 102 221 §9.2.4): 80 AM ‖ SC templates
    default=_ARR_TABLE,
    samples=(
        (
            bytes.fromhex("800101900080011ea40683010a950108") + b"\xff" * 8,
            [{"am": "01", "sc": "always"}, {"am": "1e", "sc": "key 0A"}],
        ),
        (b"\xff" * 24, None),
    ),
)
EF_ECC = LinearFixedEF(
    0x6FB7,
    "EF.ECC",
    record_len=20,  # 3 + X (16) + 1
    records=5,
    codec=_ecc_codec(),
    sfid=0x01,
    read=Access.ALW,
    update=_ADM,
    default=(
        bytes.fromhex("11f2ff") + b"\xff" * 16 + b"\x00",
        bytes.fromhex("19f1ff") + b"\xff" * 16 + b"\x00",
    ),
    samples=(
        (
            bytes.fromhex("11f2ff") + b"\xff" * 16 + b"\x00",
            {"number": "112", "alpha": "", "category": 0},
        ),
        (
            bytes.fromhex("19f1ff") + b"Police" + b"\xff" * 10 + b"\x01",
            {"number": "911", "alpha": "Police", "category": 1},
        ),
        (b"\xff" * 20, None),
    ),
)


def _dial_record(alpha: bytes, alpha_len: int, body: bytes, trailer: int = 0) -> bytes:
    return alpha.ljust(alpha_len, b"\xff") + body + b"\xff" * trailer


EF_MSISDN = LinearFixedEF(
    0x6F40,
    "EF.MSISDN",
    record_len=28,  # X (14) + 14
    records=2,
    codec=_dialling_codec("msisdn"),
    read=_PIN,
    update=_PIN,
    samples=(
        (
            _dial_record(b"Own", 14, bytes.fromhex("0791947132547698ffffffffffff")),
            {"alpha": "Own", "number": "+491723456789"},
        ),
        (b"\xff" * 28, None),
    ),
    service=21,
)
EF_FDN = LinearFixedEF(
    0x6F3B,
    "EF.FDN",
    record_len=28,
    records=10,
    codec=_dialling_codec("fdn"),
    read=_PIN,
    update=Access.PIN2,  # TS 31.102 §4.2.24: update PIN2
    samples=(
        (
            _dial_record(b"Home", 14, bytes.fromhex("058121436587ffffffffffffffff")),
            {"alpha": "Home", "number": "12345678"},
        ),
        (b"\xff" * 28, None),
    ),
    service=2,
)
EF_SMS = LinearFixedEF(
    0x6F3C,
    "EF.SMS",
    record_len=176,
    records=10,
    codec=_sms_codec(),
    read=_PIN,
    update=_PIN,
    default=tuple(b"\x00" + b"\xff" * 175 for _ in range(10)),
    samples=(
        (b"\x00" + b"\xff" * 175, None),
        (
            bytes.fromhex("0107919471325476f8040b91") + b"\xff" * 164,
            {"status": 1, "body": "07919471325476f8040b91"},
        ),
    ),
    service=10,
)
EF_SMSP = LinearFixedEF(
    0x6F42,
    "EF.SMSP",
    record_len=40,  # Y (12) + 28
    records=1,
    codec=_smsp_codec(),
    read=_PIN,
    update=_PIN,
    samples=(
        (
            b"SMSC".ljust(12, b"\xff")
            + b"\xfd"
            + b"\xff" * 12
            + bytes.fromhex("07919471325476f8ffffffff")
            + b"\x00\x00\xa7",
            {
                "alpha": "SMSC",
                "indicators": 0xFD,
                "destination": None,
                "service_centre": "+49172345678",
                "pid": 0,
                "dcs": 0,
                "validity": 0xA7,
            },
        ),
        (b"\xff" * 40, None),
    ),
    service=12,
)
EF_SMSS = TransparentEF(
    0x6F43,
    "EF.SMSS",
    2,
    _smss_codec(),
    read=_PIN,
    update=_PIN,
    default=b"\xff\xff",
    samples=(
        (b"\xff\xff", {"last_tp_mr": 255, "memory_available": True}),
        (b"\x07\xfe", {"last_tp_mr": 7, "memory_available": False}),
    ),
    service=10,
)
EF_SDN = LinearFixedEF(
    0x6F49,
    "EF.SDN",
    record_len=28,
    records=10,
    codec=_dialling_codec("sdn"),
    read=_PIN,
    update=_ADM,
    samples=(
        (
            _dial_record(b"Voicemail", 14, bytes.fromhex("0281f3ffffffffffffffffffffff")),
            {"alpha": "Voicemail", "number": "3"},
        ),
        (b"\xff" * 28, None),
    ),
    service=4,
)
EF_BDN = LinearFixedEF(
    0x6F4D,
    "EF.BDN",
    record_len=29,  # X (14) + 15: the comparison method pointer follows the extension id
    records=5,
    codec=_dialling_codec("bdn", trailer=3),
    read=_PIN,
    update=Access.PIN2,  # TS 31.102 §4.2.44: update PIN2
    samples=(
        (
            _dial_record(b"Premium", 14, bytes.fromhex("058190000000ffffffffffffffff"), 1),
            {"alpha": "Premium", "number": "09000000"},
        ),
        (b"\xff" * 29, None),
    ),
    service=6,
)
EF_PLMNWACT = TransparentEF(
    0x6F60,
    "EF.PLMNwAcT",
    40,  # 8 entries
    _plmn_act_codec("plmnwact"),
    sfid=0x0A,
    read=_PIN,
    update=_PIN,
    default=bytes.fromhex("ffffff0000") * 8,
    samples=(
        (
            bytes.fromhex("62f220c880") + bytes.fromhex("ffffff0000") * 7,
            ({"plmn": "26202", "act": ("UTRAN", "E-UTRAN", "NG-RAN", "GSM")},),
        ),
        (bytes.fromhex("ffffff0000") * 8, ()),
        (
            bytes.fromhex("136020700c") + bytes.fromhex("ffffff0000") * 7,
            (
                {
                    "plmn": "310026",
                    "act": (
                        "E-UTRAN",
                        "E-UTRAN WB-S1 qualifier",
                        "E-UTRAN NB-S1 qualifier",
                        "EC-GSM-IoT qualifier",
                        "GSM without EC-GSM-IoT qualifier",
                    ),
                },
            ),
        ),
    ),
    service=20,
)
EF_OPLMNWACT = TransparentEF(
    0x6F61,
    "EF.OPLMNwAcT",
    40,
    _plmn_act_codec("oplmnwact"),
    sfid=0x11,
    read=_PIN,
    update=_ADM,
    default=bytes.fromhex("ffffff0000") * 8,
    samples=(
        (
            bytes.fromhex("00f1104000") + bytes.fromhex("ffffff0000") * 7,
            ({"plmn": "00101", "act": ("E-UTRAN",)},),
        ),
    ),
    service=42,
)
EF_HPLMNWACT = TransparentEF(
    0x6F62,
    "EF.HPLMNwAcT",
    10,
    _plmn_act_codec("hplmnwact"),
    sfid=0x13,
    read=_PIN,
    update=_ADM,
    default=bytes.fromhex("ffffff0000") * 2,
    samples=(
        (
            bytes.fromhex("00f110c880ffffff0000"),
            ({"plmn": "00101", "act": ("UTRAN", "E-UTRAN", "NG-RAN", "GSM")},),
        ),
    ),
    service=43,
)
EF_NETPAR = TransparentEF(
    0x6FC4,
    "EF.NETPAR",
    16,
    _hex_codec("netpar"),  # cell information TLVs ('A0' GSM, 'A1' FDD, …, TS 31.102 §4.2.56)
    read=_PIN,
    update=_PIN,
    samples=((b"\xa0\x00" + b"\xff" * 14, "a000" + "ff" * 14),),
)
EF_PNN = LinearFixedEF(
    0x6FC5,
    "EF.PNN",
    record_len=32,
    records=4,
    codec=_pnn_codec(),
    sfid=0x19,
    read=_PIN,
    update=_ADM,
    samples=(
        # "trelab": 6 septets in 6 octets, 6 spare bits; "tre": 3 septets, 3 octets, 3 spare bits
        (
            bytes.fromhex("4307867479991d1603450483747919") + b"\xff" * 17,
            {"full_name": "trelab", "short_name": "tre"},
        ),
        (b"\xff" * 32, None),
    ),
    service=45,
)
EF_OPL = LinearFixedEF(
    0x6FC6,
    "EF.OPL",
    record_len=8,
    records=4,
    codec=_opl_codec("opl", 2),
    sfid=0x1A,
    read=_PIN,
    update=_ADM,
    samples=(
        (
            bytes.fromhex("00f1100000fffe01"),
            {"plmn": "00101", "area_min": "0000", "area_max": "fffe", "pnn_record": 1},
        ),
        (b"\xff" * 8, None),
    ),
    service=46,
)
EF_GID1 = TransparentEF(
    0x6F3E,
    "EF.GID1",
    8,
    _hex_codec("gid1"),  # group identifier level 1 (TS 31.102 §4.2.10): operator-defined
    read=_PIN,
    update=_ADM,
    samples=((bytes.fromhex("0a") + b"\xff" * 7, "0a" + "ff" * 7),),
    service=17,
)
EF_GID2 = TransparentEF(
    0x6F3F,
    "EF.GID2",
    8,
    _hex_codec("gid2"),  # group identifier level 2 (§4.2.11)
    read=_PIN,
    update=_ADM,
    samples=((b"\xff" * 8, "ff" * 8),),
    service=18,
)
EF_SPDI = TransparentEF(
    0x6FCD,
    "EF.SPDI",
    17,
    _spdi_codec(),
    read=_PIN,
    update=_ADM,
    samples=(
        (bytes.fromhex("a308800600f11062f220") + b"\xff" * 7, ("00101", "26202")),
        (b"\xff" * 17, None),
    ),
    service=51,
)
EF_MBDN = LinearFixedEF(
    0x6FC7,
    "EF.MBDN",
    record_len=28,  # X (14) + 14 (TS 31.102 §4.2.60)
    records=4,
    codec=_dialling_codec("mbdn"),
    read=_PIN,
    update=_PIN,
    samples=(
        (
            _dial_record(b"Voicemail", 14, bytes.fromhex("0381a310ffffffffffffffffffff")),
            {"alpha": "Voicemail", "number": "3*01"},
        ),
        (b"\xff" * 28, None),
    ),
    service=47,
)
EF_MBI = LinearFixedEF(
    0x6FC9,
    "EF.MBI",
    record_len=4,  # record numbers in EF.MBDN: voicemail, fax, e-mail, other (§4.2.61)
    records=1,
    codec=_struct_codec(
        "mbi",
        (("voicemail", 1, "int"), ("fax", 1, "int"), ("email", 1, "int"), ("other", 1, "int")),
    ),
    read=_PIN,
    update=_ADM,
    default=(bytes.fromhex("01000000"),),
    samples=((bytes.fromhex("01000000"), {"voicemail": 1, "fax": 0, "email": 0, "other": 0}),),
    service=47,
)
EF_MWIS = LinearFixedEF(
    0x6FCA,
    "EF.MWIS",
    record_len=5,  # indicator status, then waiting counts per type (§4.2.62)
    records=1,
    codec=_struct_codec(
        "mwis",
        (
            ("status", 1, "int"),
            ("voicemail", 1, "int"),
            ("fax", 1, "int"),
            ("email", 1, "int"),
            ("other", 1, "int"),
        ),
    ),
    read=_PIN,
    update=_PIN,
    default=(bytes(5),),
    samples=(
        (bytes(5), {"status": 0, "voicemail": 0, "fax": 0, "email": 0, "other": 0}),
        (
            bytes.fromhex("0102000000"),
            {"status": 1, "voicemail": 2, "fax": 0, "email": 0, "other": 0},
        ),
    ),
    service=48,
)
EF_EHPLMN = TransparentEF(
    0x6FD9,
    "EF.EHPLMN",
    12,
    _plmn_list_codec("ehplmn"),
    sfid=0x1D,
    read=_PIN,
    update=_ADM,
    samples=((bytes.fromhex("00f110") + b"\xff" * 9, ("00101",)),),
    service=71,
)
_NSC_FIELDS_EPS = {
    0x80: "ksi",
    0x81: "kasme",
    0x82: "uplink_count",
    0x83: "downlink_count",
    0x84: "algorithms",
}
EF_EPSNSC = LinearFixedEF(
    0x6FE4,
    "EF.EPSNSC",
    record_len=54,
    records=1,
    codec=_tlv_record_codec("epsnsc", 0xA0, _NSC_FIELDS_EPS),
    sfid=0x18,
    read=_PIN,
    update=_PIN,
    samples=(
        (
            bytes.fromhex("a0348001078120" + "00" * 32 + "820400000000830400000000840100"),
            {
                "ksi": "07",
                "kasme": "00" * 32,
                "uplink_count": "00000000",
                "downlink_count": "00000000",
                "algorithms": "00",
            },
        ),
        (b"\xff" * 54, None),
    ),
    service=85,
    holds_keys=True,
)

# DF.GSM-ACCESS (TS 31.102 §4.4.3): the GSM ciphering keys for service 27
EF_KC = TransparentEF(
    0x4F20,
    "EF.Kc",
    9,
    _struct_codec("kc", (("kc", 8, "hex"), ("cksn", 1, "int"))),
    sfid=0x01,
    read=_PIN,
    update=_PIN,
    default=b"\xff" * 8 + b"\x07",
    samples=((b"\xff" * 8 + b"\x07", {"kc": "ff" * 8, "cksn": 7}),),
    service=27,
    holds_keys=True,
)
EF_KCGPRS = TransparentEF(
    0x4F52,
    "EF.KcGPRS",
    9,
    _struct_codec("kcgprs", (("kc", 8, "hex"), ("cksn", 1, "int"))),
    sfid=0x02,
    read=_PIN,
    update=_PIN,
    default=b"\xff" * 8 + b"\x07",
    samples=((bytes(range(8)) + b"\x02", {"kc": bytes(range(8)).hex(), "cksn": 2}),),
    service=27,
    holds_keys=True,
)
DF_GSM_ACCESS = DF(0x5F3B, "DF.GSM-ACCESS", children=(EF_KC, EF_KCGPRS))

# -- DF.5GS (TS 31.102 §4.4.11) ------------------------------------------------------------------
_LOCI_5G = (("guti", 13, "hex"), ("tai", 6, "hex"), ("status", 1, "int"))
_LOCI_5G_DEFAULT = b"\xff" * 13 + bytes.fromhex("00f110000000") + b"\x01"
EF_5GS3GPPLOCI = TransparentEF(
    0x4F01,
    "EF.5GS3GPPLOCI",
    20,
    _struct_codec("5gs3gpploci", _LOCI_5G),
    sfid=0x01,
    read=_PIN,
    update=_PIN,
    default=_LOCI_5G_DEFAULT,
    samples=((_LOCI_5G_DEFAULT, {"guti": "ff" * 13, "tai": "00f110000000", "status": 1}),),
    service=122,
)
EF_5GSN3GPPLOCI = TransparentEF(
    0x4F02,
    "EF.5GSN3GPPLOCI",
    20,
    _struct_codec("5gsn3gpploci", _LOCI_5G),
    sfid=0x02,
    read=_PIN,
    update=_PIN,
    default=_LOCI_5G_DEFAULT,
    samples=((_LOCI_5G_DEFAULT, {"guti": "ff" * 13, "tai": "00f110000000", "status": 1}),),
    service=122,
)
_NSC_FIELDS_5G = {
    0x80: "ngksi",
    0x81: "kamf",
    0x82: "uplink_count",
    0x83: "downlink_count",
    0x84: "nas_algorithms",
    0x85: "eps_algorithms",
}
_NSC_5G_SAMPLE = bytes.fromhex(
    "a0378001078120" + "11" * 32 + "820400000001830400000002840121850111"
)
_NSC_5G_VALUE = {
    "ngksi": "07",
    "kamf": "11" * 32,
    "uplink_count": "00000001",
    "downlink_count": "00000002",
    "nas_algorithms": "21",
    "eps_algorithms": "11",
}
EF_5GS3GPPNSC = LinearFixedEF(
    0x4F03,
    "EF.5GS3GPPNSC",
    record_len=57,
    records=1,
    codec=_tlv_record_codec("5gs3gppnsc", 0xA0, _NSC_FIELDS_5G),
    sfid=0x03,
    read=_PIN,
    update=_PIN,
    samples=((_NSC_5G_SAMPLE, _NSC_5G_VALUE), (b"\xff" * 57, None)),
    service=122,
    holds_keys=True,
)
EF_5GSN3GPPNSC = LinearFixedEF(
    0x4F04,
    "EF.5GSN3GPPNSC",
    record_len=57,
    records=1,
    codec=_tlv_record_codec("5gsn3gppnsc", 0xA0, _NSC_FIELDS_5G),
    sfid=0x04,
    read=_PIN,
    update=_PIN,
    samples=((_NSC_5G_SAMPLE, _NSC_5G_VALUE), (b"\xff" * 57, None)),
    service=122,
    holds_keys=True,
)
EF_5GAUTHKEYS = TransparentEF(
    0x4F05,
    "EF.5GAUTHKEYS",
    68,
    _tlv_fields_codec("5gauthkeys", {0x80: "k_ausf", 0x81: "k_seaf"}),
    sfid=0x05,
    read=_PIN,
    update=_PIN,
    samples=(
        (
            bytes.fromhex("8020" + "22" * 32 + "8120" + "33" * 32),
            {"k_ausf": "22" * 32, "k_seaf": "33" * 32},
        ),
        (b"\xff" * 68, None),
    ),
    service=123,
    holds_keys=True,
)
EF_UAC_AIC = TransparentEF(
    0x4F06,
    "EF.UAC_AIC",
    4,
    _uac_aic_codec(),
    sfid=0x06,
    read=_PIN,
    update=_ADM,
    default=bytes(4),
    samples=((bytes(4), ()), (bytes.fromhex("00000003"), (1, 2))),
    service=126,
)
# TS 33.501 Annex C.4.3 Profile A home network public key as key id 27, then the null scheme
_SUCI_INFO_SAMPLE = bytes.fromhex(
    "a00401010000a12580011b81205a8d38864820197c3394b92613b20b91633cbd897119273bf8e4a6f4eec0a650"
)
EF_SUCI_CALC_INFO = TransparentEF(
    0x4F07,
    "EF.SUCI_Calc_Info",
    128,
    _suci_calc_info_codec(),
    sfid=0x07,
    read=_PIN,
    update=_ADM,
    samples=(
        (
            _SUCI_INFO_SAMPLE + b"\xff" * (128 - len(_SUCI_INFO_SAMPLE)),
            {
                "schemes": [{"scheme": "A", "key_index": 1}, {"scheme": "null", "key_index": 0}],
                "keys": [
                    {
                        "id": 27,
                        "public": "5a8d38864820197c3394b92613b20b91633cbd897119273bf8e4a6f4eec0a650",
                    }
                ],
            },
        ),
        (b"\xff" * 128, None),
    ),
    service=124,
)
EF_OPL5G = LinearFixedEF(
    0x4F08,
    "EF.OPL5G",
    record_len=10,
    records=4,
    codec=_opl_codec("opl5g", 3),
    sfid=0x08,
    read=_PIN,
    update=_ADM,
    samples=(
        (
            bytes.fromhex("00f110000000fffffe01"),
            {"plmn": "00101", "area_min": "000000", "area_max": "fffffe", "pnn_record": 1},
        ),
        (b"\xff" * 10, None),
    ),
    service=129,
)
EF_ROUTING_INDICATOR = TransparentEF(
    0x4F0A,
    "EF.Routing_Indicator",
    4,
    _routing_indicator_codec(),
    sfid=0x0A,
    read=_PIN,
    update=_ADM,
    default=bytes.fromhex("f0ffffff"),
    samples=((bytes.fromhex("f0ffffff"), "0"), (bytes.fromhex("2143ffff"), "1234")),
    service=124,
)


# -- DF.5GS files of Rel-16/17 (TS 31.102 §4.4.11.12–§4.4.11.21): what the ME keeps there;
# the card stores them (no command of its own uses them)
def _opaque_ef(
    fid: int,
    name: str,
    size: int,
    *,
    sfid: int | None = None,
    service: int | None = None,
    update: Access = Access.ADM1,
    records: int = 0,
) -> TransparentEF | LinearFixedEF:
    """A file whose inner structure nothing here interprets (hex both ways): transparent of
    ``size`` bytes, or with ``records`` linear fixed records of ``size`` bytes; read PIN1."""
    key = name.rsplit("/", 1)[-1].lower().removeprefix("ef.")
    sample = bytes(range(1, 5)) + b"\xff" * (size - 4)
    if records:
        return LinearFixedEF(
            fid,
            name,
            record_len=size,
            records=records,
            codec=_record_hex_codec(key),
            sfid=sfid,
            read=_PIN,
            update=update,
            samples=((sample, sample.hex()), (b"\xff" * size, None)),
            service=service,
        )
    return TransparentEF(
        fid,
        name,
        size,
        _hex_codec(key),
        sfid=sfid,
        read=_PIN,
        update=update,
        samples=((sample, sample.hex()),),
        service=service,
    )


EF_URSP = _opaque_ef(0x4F0B, "EF.URSP", 128, sfid=0x0B, service=132)  # UE route selection
EF_TN3GPPSNN = TransparentEF(
    0x4F0C,
    "EF.TN3GPPSNN",
    64,
    _tlv_fields_codec("tn3gppsnn", {0x80: "serving_network_name"}, text=True),
    sfid=0x0C,
    read=_PIN,
    update=_ADM,
    samples=(
        (
            encode_tlv(0x80, b"5G:mnc001.mcc001.3gppnetwork.org").ljust(64, b"\xff"),
            {"serving_network_name": "5G:mnc001.mcc001.3gppnetwork.org"},
        ),
        (b"\xff" * 64, None),
    ),
    service=133,
)
EF_CAG = _opaque_ef(0x4F0D, "EF.CAG", 32, sfid=0x0D, service=137)  # closed access groups
EF_SOR_CMCI = _opaque_ef(0x4F0E, "EF.SOR-CMCI", 32, sfid=0x0E, service=138)
EF_DRI = TransparentEF(
    0x4F0F,
    "EF.DRI",
    7,
    _struct_codec(
        "dri",
        (
            ("disaster_roaming_enabled", 1, "int"),
            ("parameters_indicator", 1, "int"),
            ("roaming_wait_range", 2, "hex"),
            ("return_wait_range", 2, "hex"),
            ("applicability_indicator", 1, "int"),
        ),
    ),
    sfid=0x0F,
    read=_PIN,
    update=_ADM,
    default=bytes(7),  # disaster roaming disabled
    samples=(
        (
            bytes.fromhex("01030010002000"),
            {
                "disaster_roaming_enabled": 1,
                "parameters_indicator": 3,
                "roaming_wait_range": "0010",
                "return_wait_range": "0020",
                "applicability_indicator": 0,
            },
        ),
    ),
    service=140,
)
EF_5GSEDRX = TransparentEF(
    0x4F10,
    "EF.5GSEDRX",
    2,
    _struct_codec("5gsedrx", (("rat_types", 1, "int"), ("edrx_value", 1, "int"))),
    sfid=0x10,
    read=_PIN,
    update=_ADM,
    default=bytes(2),  # no eDRX parameters
    samples=((bytes.fromhex("0105"), {"rat_types": 1, "edrx_value": 5}),),
    service=141,
)
# 5G NSWO: the file, but not service 142 (GET IDENTITY in the NSWO context is not implemented)
EF_5GNSWO_CONF = TransparentEF(
    0x4F11,
    "EF.5GNSWO_CONF",
    1,
    _struct_codec("5gnswo_conf", (("usage_indicator", 1, "int"),)),
    sfid=0x11,
    read=_PIN,
    update=_ADM,
    default=b"\x00",  # 5G NSWO disabled
    samples=((b"\x01", {"usage_indicator": 1}),),
)
EF_MCHPPLMN = TransparentEF(
    0x4F15,
    "EF.MCHPPLMN",
    1,
    _struct_codec("mchpplmn", (("multiplier_coefficient", 1, "int"),)),
    sfid=0x15,
    read=_PIN,
    update=_ADM,
    default=b"\x00",
    samples=((b"\x02", {"multiplier_coefficient": 2}),),
    service=144,
)
EF_KAUSF_DERIVATION = TransparentEF(
    0x4F16,
    "EF.KAUSF_DERIVATION",
    1,
    _struct_codec("kausf_derivation", (("configuration", 1, "int"),)),
    sfid=0x16,
    read=_PIN,
    update=_ADM,
    default=b"\x00",  # K_AUSF from CK', IK' (not from the MSK)
    samples=((b"\x01", {"configuration": 1}),),
    service=145,
)
DF_5GS = DF(
    0x5FC0,
    "DF.5GS",
    children=(
        EF_5GS3GPPLOCI,
        EF_5GSN3GPPLOCI,
        EF_5GS3GPPNSC,
        EF_5GSN3GPPNSC,
        EF_5GAUTHKEYS,
        EF_UAC_AIC,
        EF_SUCI_CALC_INFO,
        EF_OPL5G,
        EF_ROUTING_INDICATOR,
        EF_URSP,
        EF_TN3GPPSNN,
        EF_CAG,
        EF_SOR_CMCI,
        EF_DRI,
        EF_5GSEDRX,
        EF_5GNSWO_CONF,
        EF_MCHPPLMN,
        EF_KAUSF_DERIVATION,
    ),
)

# DF.SAIP (SIMalliance/TCA eUICC Profile Package, interoperable format): the home network keys
# the USIM itself uses for GET IDENTITY (service 125). Same coding as DF.5GS's file; the ME
# has no business reading it.
EF_SUCI_CALC_INFO_USIM = TransparentEF(
    0x4F01,
    "EF.SUCI_Calc_Info_USIM",
    256,
    _suci_calc_info_codec(),
    read=_ADM,
    update=_ADM,
    samples=((b"\xff" * 256, None),),
    service=125,
)
DF_SAIP = DF(0x5FD0, "DF.SAIP", children=(EF_SUCI_CALC_INFO_USIM,))

# -- DF.TELECOM (TS 31.102 §4.4, TS 51.011 §10.5) -----------------------------------------------
EF_TELECOM_ARR = LinearFixedEF(
    0x6F06,
    "DF.TELECOM/EF.ARR",
    record_len=ARR_RECORD_LEN,
    records=len(ARR_RULES),
    codec=_arr_codec(),
    read=Access.ALW,
    update=_ADM,
    default=_ARR_TABLE,
    samples=((b"\xff" * ARR_RECORD_LEN, None),),
)
EF_PBR = LinearFixedEF(
    0x4F30,
    "EF.PBR",
    record_len=16,
    records=1,
    codec=_pbr_codec(),
    read=_PIN,
    update=_ADM,
    default=(bytes.fromhex("a804c0024f3a") + b"\xff" * 10,),
    samples=((bytes.fromhex("a804c0024f3a") + b"\xff" * 10, {"c0": "4f3a"}),),
)
EF_ADN = LinearFixedEF(
    0x4F3A,
    "EF.ADN",
    record_len=28,
    records=20,
    codec=_dialling_codec("adn"),
    read=_PIN,
    update=_PIN,
    samples=(
        (
            _dial_record(b"Lab", 14, bytes.fromhex("0581214365f7ffffffffffffffff")),
            {"alpha": "Lab", "number": "1234567"},
        ),
    ),
)
DF_PHONEBOOK = DF(0x5F3A, "DF.PHONEBOOK", children=(EF_PBR, EF_ADN))
EF_IMG = LinearFixedEF(
    0x4F20,
    "EF.IMG",
    record_len=10,  # one image instance descriptor (9 bytes) and the count (TS 31.102 §4.6.1.1)
    records=1,
    codec=_record_hex_codec("img"),
    read=_PIN,
    update=_ADM,
    samples=((b"\xff" * 10, None),),
)
DF_GRAPHICS = DF(0x5F50, "DF.GRAPHICS", children=(EF_IMG,))
EF_MST = TransparentEF(
    0x4F01,
    "EF.MST",
    1,
    _service_table_codec("mst"),
    sfid=0x01,
    read=_PIN,
    update=_ADM,
    default=b"\x00",
    samples=((b"\x00", ()),),
)
DF_MCS = DF(0x5F3D, "DF.MCS", children=(EF_MST,))
# DF.MULTIMEDIA (TS 31.102 §4.6.3): EF.MML, the multimedia messages list, is a BER-TLV
# structured EF (§4.6.3.1); its objects are written and read whole with SET/RETRIEVE DATA.
EF_MML = BerTlvEF(
    0x4F47,
    "EF.MML",
    1024,
    _ber_tlv_codec("mml"),
    read=_PIN,
    update=_PIN,
    samples=(
        (b"", []),
        (
            bytes.fromhex("8003010203a1028100"),
            [{"tag": "80", "value": "010203"}, {"tag": "a1", "value": "8100"}],
        ),
    ),
)
DF_MULTIMEDIA = DF(0x5F3B, "DF.MULTIMEDIA", children=(EF_MML,))
# The files TS 51.011 §10.5 puts in DF.TELECOM for the GSM SIM application (TS 31.102 §4.4
# keeps several for the USIM). Those ADF.USIM also has are the USIM's declarations linked here:
# one content, as a dual-mode card links them; EF.ADN is DF.PHONEBOOK's, under the FID a SIM
# phone reads.
EF_TELECOM_ADN = replace(EF_ADN, fid=0x6F3A)
EF_CCP = LinearFixedEF(
    0x6F3D,
    "EF.CCP",
    record_len=14,  # a bearer capability element (10 bytes) and 4 RFU (TS 51.011 §10.5.4)
    records=2,
    codec=_record_hex_codec("ccp"),
    read=_PIN,
    update=_PIN,
    samples=((bytes.fromhex("0260a0") + b"\xff" * 11, "0260a0" + "ff" * 11), (b"\xff" * 14, None)),
)
EF_LND = CyclicEF(
    0x6F44,
    "EF.LND",
    record_len=28,  # X (14) + 14, as EF.ADN (TS 51.011 §10.5.6)
    records=5,
    codec=_dialling_codec("lnd"),
    read=_PIN,
    update=_PIN,
    samples=(
        (
            _dial_record(b"", 14, bytes.fromhex("0581214365f7ffffffffffffffff")),
            {"alpha": "", "number": "1234567"},
        ),
        (b"\xff" * 28, None),
    ),
)
EF_SMSR = LinearFixedEF(
    0x6F47,
    "EF.SMSR",
    record_len=30,  # the EF.SMS record it reports on, then the SMS-STATUS-REPORT (§10.5.9)
    records=10,
    codec=_struct_codec("smsr", (("sms_record", 1, "int"), ("report", 29, "hex"))),
    read=_PIN,
    update=_PIN,
    default=tuple(b"\x00" + b"\xff" * 29 for _ in range(10)),  # record 00: empty
    samples=(
        (b"\x00" + b"\xff" * 29, {"sms_record": 0, "report": "ff" * 29}),
        (
            b"\x03" + bytes.fromhex("0607") + b"\xff" * 27,
            {"sms_record": 3, "report": "0607" + "ff" * 27},
        ),
    ),
)


def _extension_ef(fid: int, name: str, update: Access) -> LinearFixedEF:
    """An extension file (TS 51.011 §10.5.10): records of a type byte (01 called party
    subaddress, 02 additional digits), 11 bytes of data and the next record's number."""
    return LinearFixedEF(
        fid,
        name,
        record_len=13,
        records=10,
        codec=_record_hex_codec(name.lower().removeprefix("ef.")),
        read=_PIN,
        update=update,
        samples=(
            (bytes.fromhex("02032143") + b"\xff" * 9, "02032143" + "ff" * 9),
            (b"\xff" * 13, None),
        ),
    )


EF_EXT1 = _extension_ef(0x6F4A, "EF.EXT1", _PIN)  # of EF.ADN and EF.MSISDN
EF_EXT2 = _extension_ef(0x6F4B, "EF.EXT2", Access.PIN2)  # of EF.FDN
EF_EXT3 = _extension_ef(0x6F4C, "EF.EXT3", _ADM)  # of EF.SDN
EF_EXT4 = _extension_ef(0x6F4E, "EF.EXT4", Access.PIN2)  # of EF.BDN
EF_ECCP = LinearFixedEF(
    0x6F4F,
    "EF.ECCP",
    record_len=15,  # X ≥ 15 bytes: an extended bearer capability element (TS 24.008)
    records=2,
    codec=_record_hex_codec("eccp"),
    read=_PIN,
    update=_PIN,
    samples=((b"\xff" * 15, None),),
)
EF_SUME = TransparentEF(
    0x6F54,
    "EF.SUME",
    32,
    # the SET UP MENU title: '85' alpha identifier, '9E' icon identifier
    _tlv_fields_codec("sume", {0x85: "alpha_identifier", 0x9E: "icon_identifier"}),
    read=_PIN,
    update=_ADM,
    samples=(
        (
            encode_tlv(0x85, b"trelab").ljust(32, b"\xff"),
            {"alpha_identifier": b"trelab".hex()},
        ),
        (b"\xff" * 32, None),
    ),
)
EF_ICE_DN = LinearFixedEF(
    0x6FE0,
    "EF.ICE_DN",
    record_len=28,  # in-case-of-emergency dialling numbers, coded as EF.ADN
    records=3,
    codec=_dialling_codec("ice_dn"),
    read=Access.ALW,  # readable without PIN1: that is its purpose
    update=_PIN,
    samples=(
        (
            _dial_record(b"ICE Home", 14, bytes.fromhex("058121436587ffffffffffffffff")),
            {"alpha": "ICE Home", "number": "12345678"},
        ),
        (b"\xff" * 28, None),
    ),
)
EF_ICE_FF = LinearFixedEF(
    0x6FE1,
    "EF.ICE_FF",
    record_len=32,  # in-case-of-emergency free format: BER-TLV objects
    records=2,
    codec=_record_hex_codec("ice_ff"),
    read=Access.ALW,
    update=_PIN,
    samples=((b"\xff" * 32, None),),
)
EF_PSISMSC = LinearFixedEF(
    0x6FE5,
    "EF.PSISMSC",
    record_len=64,  # '80' public service identity of the SM-SC, a SIP or tel URI
    records=1,
    codec=_tlv_fields_codec("psismsc", {0x80: "uri"}, text=True),
    read=_PIN,
    update=_ADM,
    samples=(
        (
            encode_tlv(0x80, b"sip:smsc@ims.mnc001.mcc001.3gppnetwork.org").ljust(64, b"\xff"),
            {"uri": "sip:smsc@ims.mnc001.mcc001.3gppnetwork.org"},
        ),
        (b"\xff" * 64, None),
    ),
)
DF_TELECOM = DF(
    0x7F10,
    "DF.TELECOM",
    children=(
        EF_TELECOM_ARR,
        EF_TELECOM_ADN,
        EF_FDN,
        EF_SMS,
        EF_CCP,
        EF_MSISDN,
        EF_SMSP,
        EF_SMSS,
        EF_LND,
        EF_SMSR,
        EF_SDN,
        EF_EXT1,
        EF_EXT2,
        EF_EXT3,
        EF_BDN,
        EF_EXT4,
        EF_ECCP,
        EF_SUME,
        EF_ICE_DN,
        EF_ICE_FF,
        EF_PSISMSC,
        DF_PHONEBOOK,
        DF_GRAPHICS,
        DF_MCS,
        DF_MULTIMEDIA,
    ),
)

# -- ADF.ISIM (TS 31.103 §4.2) ------------------------------------------------------------------
ISIM_AID = bytes.fromhex("a0000000871004ffffffff8907090000")
EF_IMPI = TransparentEF(
    0x6F02,
    "EF.IMPI",
    80,
    _tlv_fields_codec("impi", {0x80: "nai"}, text=True),
    sfid=0x02,
    read=_PIN,
    update=_ADM,
    samples=(
        (
            encode_tlv(0x80, b"001010123456789@ims.mnc001.mcc001.3gppnetwork.org").ljust(
                80, b"\xff"
            ),
            {"nai": "001010123456789@ims.mnc001.mcc001.3gppnetwork.org"},
        ),
    ),
)
EF_IMPU = LinearFixedEF(
    0x6F04,
    "EF.IMPU",
    record_len=64,
    records=2,
    codec=_impu_codec(),
    sfid=0x04,
    read=_PIN,
    update=_ADM,
    samples=(
        (
            encode_tlv(0x80, b"sip:+491723456789@ims.mnc001.mcc001.3gppnetwork.org").ljust(
                64, b"\xff"
            ),
            "sip:+491723456789@ims.mnc001.mcc001.3gppnetwork.org",
        ),
        (b"\xff" * 64, None),
    ),
)
EF_DOMAIN = TransparentEF(
    0x6F03,
    "EF.DOMAIN",
    48,
    _tlv_fields_codec("domain", {0x80: "domain"}, text=True),
    sfid=0x05,
    read=_PIN,
    update=_ADM,
    samples=(
        (
            encode_tlv(0x80, b"ims.mnc001.mcc001.3gppnetwork.org").ljust(48, b"\xff"),
            {"domain": "ims.mnc001.mcc001.3gppnetwork.org"},
        ),
    ),
)
EF_ISIM_AD = TransparentEF(
    0x6FAD,
    "ADF.ISIM/EF.AD",
    3,
    _ad_isim_codec(),
    sfid=0x03,
    read=Access.ALW,
    update=_ADM,
    default=bytes(3),
    samples=((bytes(3), {"ue_operation_mode": 0, "additional_info": "0000"}),),
)
EF_ISIM_ARR = LinearFixedEF(
    0x6F06,
    "ADF.ISIM/EF.ARR",
    record_len=ARR_RECORD_LEN,
    records=len(ARR_RULES),
    codec=_arr_codec(),
    sfid=0x06,
    read=Access.ALW,
    update=_ADM,
    default=_ARR_TABLE,
    samples=((b"\xff" * ARR_RECORD_LEN, None),),
)
EF_IST = TransparentEF(
    0x6F07,
    "EF.IST",
    2,
    _service_table_codec("ist"),
    sfid=0x07,
    read=_PIN,
    update=_ADM,
    samples=((bytes.fromhex("0100"), (1,)),),
)
EF_PCSCF = LinearFixedEF(
    0x6F09,
    "EF.PCSCF",
    record_len=64,
    records=1,
    codec=_pcscf_codec(),
    sfid=0x09,
    read=_PIN,
    update=_ADM,
    samples=(
        (
            encode_tlv(0x80, b"\x00pcscf.ims.mnc001.mcc001.3gppnetwork.org").ljust(64, b"\xff"),
            {"type": "fqdn", "address": "pcscf.ims.mnc001.mcc001.3gppnetwork.org"},
        ),
        (
            bytes.fromhex("800501c0a80001").ljust(64, b"\xff"),
            {"type": "ipv4", "address": "192.168.0.1"},
        ),
        (b"\xff" * 64, None),
    ),
    service=1,  # IST service 1: P-CSCF address (TS 31.103 §4.2.7)
)

# -- the tree ------------------------------------------------------------------------------------
EF_ARR_MF = LinearFixedEF(
    0x2F06,
    "MF/EF.ARR",
    record_len=ARR_RECORD_LEN,
    records=len(ARR_RULES),
    codec=_arr_codec(),
    sfid=0x06,
    read=Access.ALW,
    update=_ADM,
    default=_ARR_TABLE,
    samples=((b"\xff" * ARR_RECORD_LEN, None),),
)
# DF.GSM (TS 51.011 §10.3) of a dual-mode card: the files it shares with ADF.USIM are the same
# files (same FID, same content), as a real SIM/USIM links them; EF.SST, EF.Kc and EF.PHASE are
# the SIM's own.
# What the SIM offers (TS 51.011 §10.3.7), each service allocated and activated: 1 CHV1 disable
# function, 2 ADN, 3 FDN (enabled only while EF.ADN is invalidated), 4 SMS, 5 advice of charge,
# 6 CCP, 7 PLMN selector, 9 MSISDN, 10–11 EXT1–2, 12 SMSP, 13 LND, 14 CBMI, 15–16 GID1–2, 17 SPN,
# 18 SDN, 19 EXT3, 35 SMS status reports, 48 ECCP. BDN (31) stays off: allocated and activated
# it would bar calls, as EF.EST's BDN service does for the USIM.
_SIM_SERVICES = (1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 35, 48)
EF_SST = TransparentEF(
    0x6F38,
    "EF.SST",
    12,  # services 1…48
    _sim_service_table_codec(),
    read=_PIN,
    update=_ADM,
    default=_sim_service_table_codec().encode(_SIM_SERVICES, 12),
    samples=(
        (bytes.fromhex("ff3fffff3f000000300000c0"), _SIM_SERVICES),
        (bytes.fromhex("ff3fffff3f00000000000000"), _SIM_SERVICES[:-2]),
        (bytes.fromhex("0f0000000000000000000000"), (1, 2)),
    ),
)
# the SIM's EF.Kc is the USIM's (DF.GSM-ACCESS), linked: one content under two FIDs
EF_GSM_KC = replace(EF_KC, fid=0x6F20, sfid=None)
EF_PHASE = TransparentEF(
    0x6FAE,
    "EF.Phase",
    1,
    _int_codec("phase"),
    read=Access.ALW,
    update=_ADM,
    default=b"\x03",  # phase 2 and PROFILE DOWNLOAD required (TS 51.011 §10.3.19)
    samples=((b"\x03", 3),),
)
# the SIM's own files beside them (TS 51.011 §10.3); EF.ACM, EF.ACMmax, EF.PUCT and EF.CBMI
# have TS 31.102's coding at the same FIDs, so ADF.USIM can link the same declarations
EF_LP = TransparentEF(
    0x6F05,
    "EF.LP",
    4,
    _cbs_language_codec(),
    read=Access.ALW,
    update=_PIN,
    default=b"\x01" + b"\xff" * 3,  # English
    samples=((b"\x01\x00\xff\xff", ("en", "de")), (b"\xff" * 4, ())),
)
EF_PLMNSEL = TransparentEF(
    0x6F30,
    "EF.PLMNsel",
    24,  # 8 PLMNs in order of preference (TS 51.011 §10.3.4)
    _plmn_list_codec("plmnsel"),
    read=_PIN,
    update=_PIN,
    samples=((bytes.fromhex("62f220") + b"\xff" * 21, ("26202",)), (b"\xff" * 24, ())),
)
_UNITS = (("units", 3, "int"),)  # call meter units, most significant byte first
EF_ACMMAX = TransparentEF(
    0x6F37,
    "EF.ACMmax",
    3,
    _struct_codec("acmmax", _UNITS),
    read=_PIN,
    update=Access.PIN2,  # CHV2 (TS 51.011 §10.3.6, §10.3.11)
    default=bytes(3),  # 0: no maximum
    samples=((bytes(3), {"units": 0}), (bytes.fromhex("0001f4"), {"units": 500})),
)
EF_ACM = CyclicEF(
    0x6F39,
    "EF.ACM",
    record_len=3,
    records=2,
    codec=_struct_codec("acm", _UNITS),
    read=_PIN,
    update=_PIN,
    default=(bytes(3), bytes(3)),
    samples=((bytes(3), {"units": 0}), (bytes.fromhex("000102"), {"units": 258})),
)
EF_PUCT = TransparentEF(
    0x6F41,
    "EF.PUCT",
    5,
    _puct_codec(),
    read=_PIN,
    update=Access.PIN2,  # CHV2 (TS 51.011 §10.3.6, §10.3.11)
    samples=(
        (b"EUR" + bytes.fromhex("0152"), {"currency": "EUR", "eppu": 18, "exponent": -2}),
        (b"\xff" * 5, None),
    ),
)
EF_CBMI = TransparentEF(
    0x6F45,
    "EF.CBMI",
    10,
    _message_id_list_codec("cbmi"),
    read=_PIN,
    update=_PIN,
    samples=((bytes.fromhex("0032") + b"\xff" * 8, (50,)), (b"\xff" * 10, ())),
)
EF_BCCH = TransparentEF(
    0x6F74,
    "EF.BCCH",
    16,  # the BCCH allocation list of the last serving cell (TS 44.018 §10.5.2.1b)
    _hex_codec("bcch"),
    read=_PIN,
    update=_PIN,
    samples=((b"\xff" * 16, "ff" * 16),),
)
DF_GSM = DF(
    0x7F20,
    "DF.GSM",
    children=(
        EF_LP,
        EF_IMSI,
        EF_GSM_KC,
        EF_PLMNSEL,
        EF_HPPLMN,
        EF_ACMMAX,
        EF_SST,
        EF_ACM,
        EF_GID1,
        EF_GID2,
        EF_PUCT,
        EF_CBMI,
        EF_SPN,
        EF_BCCH,
        EF_ACC,
        EF_FPLMN,
        EF_LOCI,
        EF_AD,
        EF_PHASE,
    ),
)

# -- further optional files of ADF.USIM (TS 31.102 §4.2, §4.4.5, §4.4.6, §4.4.8) --------------
# Shared with DF.TELECOM / DF.GSM where a dual-mode card links them (same FID, same content).
USIM_EXT2 = replace(EF_EXT2, service=3)  # extension of EF.FDN: updated under PIN2
USIM_EXT3 = replace(EF_EXT3, service=5)  # of EF.SDN
USIM_EXT4 = replace(
    _extension_ef(0x6F55, "ADF.USIM/EF.EXT4", Access.PIN2), service=7
)  # of EF.BDN (in the USIM at 6F55; DF.TELECOM's 6F4E is the SIM's)
USIM_EXT5 = replace(_extension_ef(0x6F4E, "EF.EXT5", _PIN), service=44)  # of ICI/ICT, MSISDN
USIM_EXT6 = replace(_extension_ef(0x6FC8, "EF.EXT6", _PIN), service=47)  # of EF.MBDN
USIM_CBMI = replace(EF_CBMI, service=15)
EF_CBMIR = TransparentEF(
    0x6F50,
    "EF.CBMIR",
    8,
    _hex_codec("cbmir"),  # ranges: lower ‖ upper message identifier, 2 bytes each
    read=_PIN,
    update=_PIN,
    samples=((bytes.fromhex("00320064") + b"\xff" * 4, "00320064ffffffff"),),
    service=16,
)
# EF.CBMID: the file, not service 29 (data download via SMS-CB is not implemented)
EF_CBMID = TransparentEF(
    0x6F48,
    "EF.CBMID",
    10,
    _message_id_list_codec("cbmid"),
    sfid=0x0E,
    read=_PIN,
    update=_ADM,
    samples=((bytes.fromhex("1000") + b"\xff" * 8, (4096,)),),
)
# Advice of Charge (service 13; EF.ACM grows with INCREASE): the same files as DF.GSM's
USIM_ACM_FILES = tuple(replace(ef, service=13) for ef in (EF_ACMMAX, EF_ACM, EF_PUCT))
DF_WLAN = DF(
    0x5F40,
    "DF.WLAN",
    children=(
        _opaque_ef(0x4F41, "EF.Pseudo", 32, sfid=0x01, service=59, update=_PIN),
        _opaque_ef(0x4F42, "EF.UPLMNWLAN", 16, sfid=0x02, service=60, update=_PIN),
        _opaque_ef(0x4F43, "EF.OPLMNWLAN", 16, sfid=0x03, service=61),
        _opaque_ef(0x4F44, "EF.UWSIDL", 16, sfid=0x04, service=62, update=_PIN, records=2),
        _opaque_ef(0x4F45, "EF.OWSIDL", 16, sfid=0x05, service=63, records=2),
        _opaque_ef(0x4F46, "EF.WRI", 32, sfid=0x06, service=66, update=_PIN),
        _opaque_ef(0x4F47, "EF.HWSIDL", 16, sfid=0x07, service=81, records=2),
        _opaque_ef(0x4F48, "EF.WEHPLMNPI", 4, sfid=0x08, service=82),
        _opaque_ef(0x4F49, "EF.WHPI", 4, sfid=0x09, service=83),
        _opaque_ef(0x4F4A, "EF.WLRPLMN", 4, sfid=0x0A, service=84, update=_PIN),
        _opaque_ef(0x4F4B, "EF.HPLMNDAI", 4, sfid=0x0B, service=88),
    ),
)
DF_HNB = DF(
    0x5F50,
    "DF.HNB",
    children=(
        _opaque_ef(0x4F81, "EF.ACSGL", 16, sfid=0x01, service=86, update=_PIN, records=2),
        _opaque_ef(0x4F82, "EF.CSGT", 16, sfid=0x02, service=86, records=2),
        _opaque_ef(0x4F83, "EF.HNBN", 16, sfid=0x03, service=86, records=2),
        _opaque_ef(0x4F84, "EF.OCSGL", 16, sfid=0x04, service=90, records=2),
        _opaque_ef(0x4F85, "EF.OCSGT", 16, sfid=0x05, service=90, records=2),
        _opaque_ef(0x4F86, "EF.OHNBN", 16, sfid=0x06, service=90, records=2),
    ),
)
DF_PROSE = DF(
    0x5F90,
    "DF.ProSe",
    children=(
        _opaque_ef(0x4F01, "EF.PROSE_MON", 16, sfid=0x01, service=101, records=2),
        _opaque_ef(0x4F02, "EF.PROSE_ANN", 16, sfid=0x02, service=101, records=2),
        _opaque_ef(0x4F03, "EF.PROSEFUNC", 16, sfid=0x03, service=101, records=2),
        _opaque_ef(0x4F04, "EF.PROSE_RADIO_COM", 16, sfid=0x04, service=101),
        _opaque_ef(0x4F05, "EF.PROSE_RADIO_MON", 16, sfid=0x05, service=101),
        _opaque_ef(0x4F06, "EF.PROSE_RADIO_ANN", 16, sfid=0x06, service=101),
        _opaque_ef(0x4F07, "EF.PROSE_POLICY", 16, sfid=0x07, service=101, records=2),
        _opaque_ef(0x4F08, "EF.PROSE_PLMN", 16, sfid=0x08, service=101, records=2),
        _opaque_ef(0x4F09, "EF.PROSE_GC", 8, sfid=0x09, service=101, update=_PIN),
        _opaque_ef(0x4F10, "EF.PST", 4, sfid=0x10, service=101),
        _opaque_ef(0x4F11, "EF.UIRC", 16, sfid=0x11, service=101),
        _opaque_ef(0x4F12, "EF.PROSE_GM_DISCOVERY", 16, sfid=0x12, service=101, records=2),
        _opaque_ef(0x4F13, "EF.PROSE_RELAY", 16, sfid=0x13, service=101, records=2),
        _opaque_ef(0x4F14, "EF.PROSE_RELAY_DISCOVERY", 16, sfid=0x14, service=101),
    ),
)

MF = DF(0x3F00, "MF", children=(EF_DIR, EF_ICCID, EF_PL, EF_ARR_MF, DF_TELECOM, DF_GSM))
ADF_USIM = ADF(
    USIM_AID,
    "ADF.USIM",
    "USIM",
    children=(
        EF_LI,
        EF_ARR,
        EF_IMSI,
        EF_KEYS,
        EF_KEYSPS,
        EF_HPPLMN,
        EF_UST,
        EF_SPN,
        EF_EST,
        EF_START_HFN,
        EF_THRESHOLD,
        EF_PSLOCI,
        EF_ACC,
        EF_FPLMN,
        EF_LOCI,
        EF_AD,
        EF_EPSLOCI,
        EF_EPSNSC,
        EF_ICI,
        EF_ICT,
        EF_ECC,
        EF_MSISDN,
        EF_FDN,
        EF_SMS,
        EF_SMSP,
        EF_SMSS,
        EF_SDN,
        EF_BDN,
        EF_PLMNWACT,
        EF_OPLMNWACT,
        EF_HPLMNWACT,
        EF_NETPAR,
        EF_PNN,
        EF_OPL,
        EF_EHPLMN,
        EF_GID1,
        EF_GID2,
        EF_SPDI,
        EF_MBDN,
        EF_MBI,
        EF_MWIS,
        USIM_EXT2,
        USIM_EXT3,
        USIM_EXT4,
        USIM_EXT5,
        USIM_EXT6,
        USIM_CBMI,
        EF_CBMID,
        EF_CBMIR,
        *USIM_ACM_FILES,
        DF_GSM_ACCESS,
        DF_5GS,
        DF_SAIP,
        DF_WLAN,
        DF_HNB,
        DF_PROSE,
    ),
)
ADF_ISIM = ADF(
    ISIM_AID,
    "ADF.ISIM",
    "ISIM",
    children=(EF_IMPI, EF_DOMAIN, EF_IMPU, EF_ISIM_AD, EF_ISIM_ARR, EF_IST, EF_PCSCF),
)
# GlobalPlatform Secure Element Access Control (GP SEAC v1.1): the Access Rule Application
# Master; an applet, not a file-system application, so EF.DIR does not list it.
ARA_M_AID = bytes.fromhex("a00000015141434c00")
ADF_ARA_M = ADF(ARA_M_AID, "ARA-M", "ARA-M", listed=False)
APPLICATIONS: tuple[ADF, ...] = (ADF_USIM, ADF_ISIM, ADF_ARA_M)


# Declarations that show another file's content under a second FID (as a dual-mode card links
# them): the SIM's EF.Kc is DF.GSM-ACCESS's, DF.TELECOM's EF.ADN is DF.PHONEBOOK's.
_LINKS: tuple[EF, ...] = (EF_GSM_KC, EF_TELECOM_ADN)


def all_efs() -> Iterator[EF]:
    """Every declared EF once (MF level first, then each application, DF.GSM last): a file
    DF.GSM or DF.TELECOM shares with ADF.USIM or DF.PHONEBOOK is yielded as they declare it."""
    stack: list[DF | ADF] = [MF, *APPLICATIONS]
    seen: set[str] = set()
    while stack:
        node = stack.pop(0)
        for child in node.children:
            if isinstance(child, DF):
                if child is not DF_GSM:
                    stack.append(child)
            elif child not in _LINKS and child.name not in seen:
                seen.add(child.name)
                yield child
    for child in DF_GSM.children:
        if not isinstance(child, DF) and child.name not in seen:
            seen.add(child.name)
            yield child


def efs_under(root: DF | ADF) -> Iterator[EF]:
    """Every EF below ``root`` (its sub-DFs included)."""
    for child in root.children:
        if isinstance(child, DF):
            yield from efs_under(child)
        else:
            yield child


def declared_services(root: DF | ADF) -> frozenset[int]:
    """The service numbers the files below ``root`` are declared for: what its service table
    can truthfully offer as far as files go (commands add their own)."""
    return frozenset(ef.service for ef in efs_under(root) if ef.service is not None)
