"""Pure. The UICC/USIM file system as data (TS 102 221 §8, TS 31.102 §4): declarations, codecs, FCP.

Each elementary file is a frozen declaration (FID, SFI, structure, size, access conditions,
codec, samples); the emulated USIM (``firmware_stubs/usim``) runs its commands over these
declarations and the host client (``uicc/``) decodes what it reads with the same codecs.
Codecs turn file bytes into plain Python values and back; every declared sample must
round-trip (one test runs them all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from trelab.digits import is_decimal
from trelab.errors import BadInput

__all__ = [
    "ADF",
    "ADF_USIM",
    "APPLICATIONS",
    "DF",
    "DF_5GS",
    "DF_GSM",
    "EF",
    "EF_ACC",
    "EF_AD",
    "EF_DIR",
    "EF_EPSLOCI",
    "EF_EST",
    "EF_FPLMN",
    "EF_GSM_KC",
    "EF_HPPLMN",
    "EF_ICCID",
    "EF_ICI",
    "EF_IMSI",
    "EF_KEYS",
    "EF_KEYSPS",
    "EF_LOCI",
    "EF_PHASE",
    "EF_PL",
    "EF_PSLOCI",
    "EF_ROUTING_INDICATOR",
    "EF_SPN",
    "EF_SST",
    "EF_START_HFN",
    "EF_SUCI_CALC_INFO",
    "EF_THRESHOLD",
    "EF_UST",
    "KEY_REFERENCE",
    "MF",
    "USIM_AID",
    "Access",
    "Codec",
    "CyclicEF",
    "Fcp",
    "LinearFixedEF",
    "TransparentEF",
    "all_efs",
    "decode_bcd_swapped",
    "decode_iccid",
    "decode_imsi",
    "encode_bcd_swapped",
    "encode_iccid",
    "encode_imsi",
    "encode_tlv",
    "parse_fcp",
    "parse_tlvs",
]


class Access(StrEnum):
    """Access condition of one operation (TS 102 221 §9.2, simplified to the key references used)."""

    ALW = "ALW"  # always
    PIN1 = "PIN1"  # PIN1 verified, or PIN1 disabled
    ADM1 = "ADM1"  # administrative key 1 verified
    NEV = "NEV"  # never


# Key references of TS 102 221 §9.5.1 Table 9.3: global PIN1 = 01, ADM1 = 0A.
KEY_REFERENCE: dict[Access, int] = {Access.PIN1: 0x01, Access.ADM1: 0x0A}


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
        return bool(self.descriptor) and self.descriptor[0] & 0x38 == 0x38

    @property
    def structure(self) -> str:
        """``"df"``, ``"transparent"``, ``"linear-fixed"``, ``"cyclic"`` or ``"unknown"``."""
        if self.is_df:
            return "df"
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
    def pin1_enabled(self) -> bool | None:
        """From the PIN status template C6: PS_DO bit for the first key reference (§9.5.2)."""
        if self.pin_status is None:
            return None
        tlvs = parse_tlvs(self.pin_status)
        ps_do = next((v for t, v in tlvs if t == 0x90), b"")
        refs = [v[0] for t, v in tlvs if t == 0x83 and v]
        if KEY_REFERENCE[Access.PIN1] not in refs or not ps_do:
            return None
        index = refs.index(KEY_REFERENCE[Access.PIN1])
        return bool(ps_do[index // 8] & (0x80 >> (index % 8))) if index // 8 < len(ps_do) else None


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
        return {"aid": inner[0x4F].hex(), "label": inner.get(0x50, b"").decode("ascii", "replace")}

    def encode(value: dict[str, str] | None, size: int) -> bytes:
        if value is None:
            return b"\xff" * size
        aid = bytes.fromhex(value["aid"])
        if not 5 <= len(aid) <= 16:
            raise BadInput("EF.DIR: AID must be 5 to 16 bytes")
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


EF = TransparentEF | LinearFixedEF


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


USIM_AID = bytes.fromhex("a0000000871002ffffffff8907090000")

_PIN = Access.PIN1
_ADM = Access.ADM1

EF_DIR = LinearFixedEF(
    0x2F00,
    "EF.DIR",
    record_len=32,
    records=2,
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
    16,
    _service_table_codec("ust"),
    sfid=0x04,
    read=_PIN,
    update=_ADM,
    samples=(
        # services 20 SPN, 27 GSM access, 33 (shall be 1), 34 EST, 38 GSM security context,
        # 85 EPS mobility management information, 124 subscription identifier privacy
        # support, 125 SUCI calculation by the USIM (TS 31.102 §4.2.8)
        (
            bytes.fromhex("00000804230000000000100000000018"),
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
)

# DF.5GS (TS 31.102 §4.4.11): what subscription identifier privacy needs
EF_SUCI_CALC_INFO = TransparentEF(
    0x4F07,
    "EF.SUCI_Calc_Info",
    128,
    _hex_codec("suci_calc_info"),
    read=_PIN,
    update=_ADM,
    samples=((b"\xa0\x02\x00\x00" + b"\xff" * 124, "a0020000" + "ff" * 124),),
)
EF_ROUTING_INDICATOR = TransparentEF(
    0x4F0A,
    "EF.Routing_Indicator",
    4,
    _hex_codec("routing_indicator"),
    read=_PIN,
    update=_ADM,
    default=bytes.fromhex("f0ffffff"),
    samples=((bytes.fromhex("f0ffffff"), "f0ffffff"),),
)
DF_5GS = DF(0x5FC0, "DF.5GS", children=(EF_SUCI_CALC_INFO, EF_ROUTING_INDICATOR))

# DF.GSM (TS 51.011 §10.3) of a dual-mode card: the files it shares with ADF.USIM are the same
# files (same FID, same content), as a real SIM/USIM links them; EF.SST, EF.Kc and EF.PHASE are
# the SIM's own.
EF_SST = TransparentEF(
    0x6F38,
    "EF.SST",
    5,
    _sim_service_table_codec(),
    read=_PIN,
    update=_ADM,
    # services 1 CHV1 disable function, 17 service provider name (TS 51.011 §10.3.7)
    default=bytes.fromhex("0300000003"),
    samples=((bytes.fromhex("0300000003"), (1, 17)), (bytes.fromhex("0f00000000"), (1, 2))),
)
EF_GSM_KC = TransparentEF(
    0x6F20,
    "EF.Kc",
    9,
    _struct_codec("kc", (("kc", 8, "hex"), ("cksn", 1, "int"))),
    read=_PIN,
    update=_PIN,
    default=b"\xff" * 8 + b"\x07",  # CKSN 7: no key available (TS 24.008 §10.5.1.2)
    samples=((b"\xff" * 8 + b"\x07", {"kc": "ff" * 8, "cksn": 7}),),
)
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
DF_GSM = DF(
    0x7F20,
    "DF.GSM",
    children=(
        EF_IMSI,
        EF_GSM_KC,
        EF_HPPLMN,
        EF_SST,
        EF_SPN,
        EF_ACC,
        EF_FPLMN,
        EF_LOCI,
        EF_AD,
        EF_PHASE,
    ),
)

MF = DF(0x3F00, "MF", children=(EF_DIR, EF_ICCID, EF_PL, DF_GSM))
ADF_USIM = ADF(
    USIM_AID,
    "ADF.USIM",
    "USIM",
    children=(
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
        EF_ICI,
        DF_5GS,
    ),
)
APPLICATIONS: tuple[ADF, ...] = (ADF_USIM,)


def all_efs() -> Iterator[EF]:
    """Every declared EF once (MF level first, then each application); a file that appears
    in two DFs (DF.GSM shares ADF.USIM's) is yielded where it is first met."""
    stack: list[DF | ADF] = [MF, *APPLICATIONS]
    seen: set[str] = set()
    while stack:
        node = stack.pop(0)
        for child in node.children:
            if isinstance(child, DF):
                stack.append(child)
            elif child.name not in seen:
                seen.add(child.name)
                yield child
