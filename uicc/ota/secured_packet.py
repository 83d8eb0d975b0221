"""Pure. OTA secured packets (TS 102 225, SMS dialect of TS 31.115): SPI, key sets, command
packets and proofs of receipt (PoR). See :mod:`uicc.ota` for the byte layout and what is simplified."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from trelab.errors import BadInput, CheckFailed, MacMismatch, RemoteProtocolError

__all__ = [
    "CC_LENGTH",
    "CPI_IEI",
    "DEFAULT_SPI",
    "MAX_COUNTER",
    "MAX_SMS_USER_DATA",
    "MIN_SECURITY_LEVEL",
    "RPI_IEI",
    "TAR_RAM_ISD",
    "TAR_RFM_UICC",
    "TAR_RFM_USIM",
    "Checksum",
    "CommandHeader",
    "CommandPacket",
    "CounterMode",
    "Keyset",
    "OtaRejected",
    "PorMode",
    "PorStatus",
    "ResponsePacket",
    "Spi",
    "build_command_packet",
    "build_response_packet",
    "check_counter",
    "meets_security_level",
    "open_command_packet",
    "parse_command_header",
    "parse_response_packet",
]


# ---- constants ----------------------------------------------------------------------------------

CPI_IEI = 0x70  # Command Packet Identifier in the SMS user data header (TS 31.115 §4.2)
RPI_IEI = 0x71  # Response Packet Identifier (TS 31.115 §4.4)
CC_LENGTH = 8  # AES-CMAC truncated to 8 bytes (TS 102 225 §5.1.3.1)
MAX_COUNTER = (1 << 40) - 1  # 5-byte CNTR; reaching it blocks the key set
MAX_SMS_USER_DATA = 140  # octets of TP-UD in one SMS (TS 23.040 §9.2.3.16), UDH included
_HEADER_FIXED = 13  # SPI(2) KIc KID TAR(3) CNTR(5) PCNTR: CHL without the checksum
BLOCK = 16
_ZERO_IV = bytes(BLOCK)

# Well-known TARs (TS 101 220 Annex D): the issuer security domain (RAM, GlobalPlatform), remote
# file management of the UICC (MF) and of the USIM. The USIM RFM TAR follows the design note;
# sysmocom cards use B00011 for USIM RFM and B00010 for SIM RFM.
TAR_RAM_ISD = bytes.fromhex("000000")
TAR_RFM_UICC = bytes.fromhex("b00000")
TAR_RFM_USIM = bytes.fromhex("b00010")

# Algorithm nibbles of KIc/KID (TS 102 225 §5.1.2, §5.1.3.1): b2b1 = 10 AES, b4b3 = 00 CBC/CMAC.
_ALG_IMPLICIT = 0x0
_ALG_AES = 0x2

Checksum = Literal["none", "rc", "cc", "ds"]
CounterMode = Literal["none", "available", "higher", "one-higher"]
PorMode = Literal["none", "required", "on-error"]
_CHECKSUMS: tuple[Checksum, ...] = ("none", "rc", "cc", "ds")
_COUNTERS: tuple[CounterMode, ...] = ("none", "available", "higher", "one-higher")
_PORS: tuple[PorMode, ...] = ("none", "required", "on-error")


class PorStatus(IntEnum):
    """Response status codes of the PoR (TS 102 225 §5.2.2 table 5, TS 31.115 §7)."""

    OK = 0x00
    CC_FAILED = 0x01  # RC/CC/DS failed
    CNTR_LOW = 0x02
    CNTR_HIGH = 0x03
    CNTR_BLOCKED = 0x04
    CIPHERING_ERROR = 0x05
    SECURITY_ERROR = 0x06  # unidentified security error
    INSUFFICIENT_MEMORY = 0x07
    MORE_TIME = 0x08
    TAR_UNKNOWN = 0x09
    INSUFFICIENT_SECURITY = 0x0A
    SMS_SUBMIT = 0x0B  # actual response sent by SMS-SUBMIT (TS 31.115)
    USSD = 0x0C

    @property
    def text(self) -> str:
        return _STATUS_TEXT[self]


_STATUS_TEXT = {
    PorStatus.OK: "PoR OK",
    PorStatus.CC_FAILED: "RC/CC/DS failed",
    PorStatus.CNTR_LOW: "CNTR low",
    PorStatus.CNTR_HIGH: "CNTR high",
    PorStatus.CNTR_BLOCKED: "CNTR blocked",
    PorStatus.CIPHERING_ERROR: "ciphering error",
    PorStatus.SECURITY_ERROR: "unidentified security error",
    PorStatus.INSUFFICIENT_MEMORY: "insufficient memory",
    PorStatus.MORE_TIME: "more time needed",
    PorStatus.TAR_UNKNOWN: "TAR unknown",
    PorStatus.INSUFFICIENT_SECURITY: "insufficient security level",
    PorStatus.SMS_SUBMIT: "response sent by SMS-SUBMIT",
    PorStatus.USSD: "response sent by USSD",
}


class OtaRejected(CheckFailed):
    """A secured packet was refused: ``status`` is the PoR status code that says why.

    Raised on the card side while opening a command packet (the card turns it into a PoR), and
    on the operator side when a PoR reports anything but "PoR OK".
    """

    def __init__(self, status: PorStatus, detail: str = "") -> None:
        self.status = status
        self.detail = detail
        extra = f": {detail}" if detail else ""
        super().__init__(f"OTA packet refused, status {status:02X} ({status.text}){extra}")


# ---- SPI (TS 102 225 §5.1.1; TS 31.115 §4.2) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spi:
    """Security Parameter Indicator, 2 bytes.

    First byte: b2b1 checksum (00 none, 01 RC, 10 CC, 11 DS), b3 ciphering, b5b4 counter
    (00 none, 01 available without check, 10 must be higher, 11 must be one higher).
    Second byte: b2b1 PoR (00 none, 01 required, 10 on error only), b4b3 PoR checksum,
    b5 PoR ciphered, b6 PoR by SMS-SUBMIT (else in the SMS-DELIVER-REPORT).
    """

    checksum: Checksum = "cc"
    ciphered: bool = True
    counter: CounterMode = "higher"
    por: PorMode = "required"
    por_checksum: Checksum = "cc"
    por_ciphered: bool = True
    por_via_submit: bool = False

    def encode(self) -> bytes:
        first = _CHECKSUMS.index(self.checksum) | self.ciphered << 2
        first |= _COUNTERS.index(self.counter) << 3
        second = _PORS.index(self.por) | _CHECKSUMS.index(self.por_checksum) << 2
        second |= self.por_ciphered << 4 | self.por_via_submit << 5
        return bytes([first, second])

    @classmethod
    def parse(cls, raw: bytes) -> Spi:
        """Raises: BadInput: not 2 bytes, reserved bits set or the reserved PoR value 11."""
        if len(raw) != 2:
            raise BadInput("SPI: expected 2 bytes")
        first, second = raw
        if first & 0xE0 or second & 0xC0:
            raise BadInput(f"SPI {raw.hex()}: reserved bits set")
        if second & 0x03 == 0x03:
            raise BadInput(f"SPI {raw.hex()}: reserved PoR value")
        return cls(
            checksum=_CHECKSUMS[first & 0x03],
            ciphered=bool(first & 0x04),
            counter=_COUNTERS[first >> 3 & 0x03],
            por=_PORS[second & 0x03],
            por_checksum=_CHECKSUMS[second >> 2 & 0x03],
            por_ciphered=bool(second & 0x10),
            por_via_submit=bool(second & 0x20),
        )


#: CC + ciphering + "counter must be higher", PoR required, with CC, ciphered: SPI 16 19.
DEFAULT_SPI = Spi()

#: The minimum security level the emulated card demands of every OTA application (MSL,
#: TS 102 226 §8.2.1.3.2.4, coded like SPI byte 1): CC, ciphering, counter higher = 16.
MIN_SECURITY_LEVEL = 0x16


def meets_security_level(spi: Spi, msl: int = MIN_SECURITY_LEVEL) -> bool:
    """Does ``spi`` give at least what ``msl`` asks (checksum strength, ciphering, counter)?"""
    want_checksum, want_cipher, want_counter = msl & 0x03, bool(msl & 0x04), msl >> 3 & 0x03
    have_checksum = _CHECKSUMS.index(spi.checksum)
    have_counter = _COUNTERS.index(spi.counter)
    checksum_ok = have_checksum >= want_checksum if want_checksum else True
    counter_ok = have_counter >= want_counter if want_counter >= 2 else True
    return checksum_ok and (spi.ciphered or not want_cipher) and counter_ok


# ---- key sets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keyset:
    """One OTA key set (TS 102 225 §5.1.2/§5.1.3): key version number 1…15, KIc (ciphering),
    KID (checksum), optional DEK (key encryption for PUT KEY). Keys are AES-128/192/256."""

    kvn: int
    kic: bytes = field(repr=False)
    kid: bytes = field(repr=False)
    dek: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.kvn, bool) or not isinstance(self.kvn, int) or not 1 <= self.kvn <= 15:
            raise BadInput("key set: KVN must be 1…15")
        for name, key in (("KIc", self.kic), ("KID", self.kid), ("DEK", self.dek)):
            if key is not None and len(key) not in (16, 24, 32):
                raise BadInput(f"key set {self.kvn}: {name} must be 16, 24 or 32 bytes")

    @property
    def kic_byte(self) -> int:
        """KIc coding: KVN in b8–b5, AES in CBC mode (TS 102 225 §5.1.2)."""
        return self.kvn << 4 | _ALG_AES

    @property
    def kid_byte(self) -> int:
        """KID coding: KVN in b8–b5, AES in CMAC mode (TS 102 225 §5.1.3.1)."""
        return self.kvn << 4 | _ALG_AES

    @property
    def kek(self) -> bytes:
        """The key that protects new key values in PUT KEY: the DEK, else KIc (simplification)."""
        return self.dek if self.dek is not None else self.kic


def aes_cbc(key: bytes, data: bytes, *, decrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(_ZERO_IV))
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx.update(data) + ctx.finalize()


def _cmac8(key: bytes, data: bytes) -> bytes:
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()[:CC_LENGTH]


def _padding(length: int) -> int:
    return -length % BLOCK


def _kvn_of(byte: int, what: str) -> int:
    """KVN of a KIc/KID byte whose algorithm is AES (or implicit).

    Raises: OtaRejected(SECURITY_ERROR): another algorithm (DES/3DES/proprietary).
    """
    if byte & 0x0F not in (_ALG_IMPLICIT, _ALG_AES):
        raise OtaRejected(PorStatus.SECURITY_ERROR, f"{what} {byte:02X}: algorithm not supported")
    return byte >> 4


# ---- command packets ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandHeader:
    """The clear part of a command packet (what the card reads before any key): SPI, KIc, KID,
    TAR, and the still secured rest (CNTR … padding)."""

    spi: Spi
    kic: int
    kid: int
    tar: bytes
    secured: bytes
    head: bytes  # CPL ‖ CHL ‖ SPI ‖ KIc ‖ KID ‖ TAR as received (inside the CC)
    cc_length: int

    @property
    def kic_kvn(self) -> int:
        return _kvn_of(self.kic, "KIc")

    @property
    def kid_kvn(self) -> int:
        return _kvn_of(self.kid, "KID")


@dataclass(frozen=True, slots=True)
class CommandPacket:
    """An opened (deciphered, checked) command packet: the counter and the secured data."""

    header: CommandHeader
    counter: int
    data: bytes = field(repr=False)

    @property
    def tar(self) -> bytes:
        return self.header.tar

    @property
    def spi(self) -> Spi:
        return self.header.spi


def build_command_packet(
    keyset: Keyset,
    *,
    tar: bytes,
    counter: int,
    data: bytes,
    spi: Spi = DEFAULT_SPI,
) -> bytes:
    """CPL … end of a command packet (the SMS user data after the UDH ``02 70 00``).

    ``keyset`` gives KIc and KID (same KVN). The CC covers CPL to PCNTR, data and padding;
    then CNTR, PCNTR, CC, data and padding are AES-CBC ciphered if ``spi`` says so.

    Raises:
        BadInput: TAR not 3 bytes, counter outside 0…2⁴⁰−1, RC/DS asked for (not supported),
            or a packet that does not fit in one SMS.
    """
    if len(tar) != 3:
        raise BadInput("TAR must be 3 bytes")
    if not 0 <= counter <= MAX_COUNTER:
        raise BadInput("CNTR must fit in 5 bytes")
    if spi.checksum not in ("none", "cc"):
        raise BadInput(f"checksum {spi.checksum!r} is not supported (CC or none)")
    cc_len = CC_LENGTH if spi.checksum == "cc" else 0
    pad = _padding(6 + cc_len + len(data)) if spi.ciphered else 0
    padded = data + bytes(pad)
    chl = _HEADER_FIXED + cc_len
    clear_head = bytes([chl]) + spi.encode() + bytes([keyset.kic_byte, keyset.kid_byte]) + tar
    cpl = len(clear_head) + 6 + cc_len + len(padded)
    counter_part = counter.to_bytes(5, "big") + bytes([pad])
    head = cpl.to_bytes(2, "big") + clear_head
    cc = _cmac8(keyset.kid, head + counter_part + padded) if cc_len else b""
    secured = counter_part + cc + padded
    if spi.ciphered:
        secured = aes_cbc(keyset.kic, secured, decrypt=False)
    packet = head + secured
    if 3 + len(packet) > MAX_SMS_USER_DATA:
        raise BadInput(
            f"command packet of {len(packet)} bytes does not fit in one SMS "
            f"(at most {MAX_SMS_USER_DATA - 3}); split the script"
        )
    return packet


def parse_command_header(packet: bytes) -> CommandHeader:
    """Read CPL, CHL, SPI, KIc, KID and TAR of a command packet.

    Raises:
        OtaRejected(SECURITY_ERROR): lengths that do not add up, reserved SPI bits, or a
            checksum length this card does not use (the header cannot be interpreted).
    """
    if len(packet) < 2 + _HEADER_FIXED:
        raise OtaRejected(PorStatus.SECURITY_ERROR, "command packet too short")
    cpl = int.from_bytes(packet[:2], "big")
    if cpl != len(packet) - 2:
        raise OtaRejected(PorStatus.SECURITY_ERROR, f"CPL {cpl} but {len(packet) - 2} bytes")
    chl = packet[2]
    try:
        spi = Spi.parse(packet[3:5])
    except BadInput as exc:
        raise OtaRejected(PorStatus.SECURITY_ERROR, str(exc)) from None
    cc_length = chl - _HEADER_FIXED
    expected = {"none": (0,), "cc": (CC_LENGTH,), "rc": (2, 4), "ds": tuple(range(1, 256))}
    if cc_length not in expected[spi.checksum] or 1 + chl > cpl:
        raise OtaRejected(PorStatus.SECURITY_ERROR, f"CHL {chl} does not fit SPI {spi}")
    return CommandHeader(
        spi=spi,
        kic=packet[5],
        kid=packet[6],
        tar=packet[7:10],
        secured=packet[10:],
        head=packet[:10],
        cc_length=cc_length,
    )


def open_command_packet(
    header: CommandHeader, *, kic: bytes | None, kid: bytes | None
) -> CommandPacket:
    """Decipher (KIc) and check the CC (KID) of a command packet; the counter is not judged
    here (:func:`check_counter`), the caller knows the stored value.

    Raises:
        OtaRejected: CIPHERING_ERROR (length not a multiple of 16, or bad padding count),
            CC_FAILED (checksum mismatch, compared in constant time), SECURITY_ERROR (the
            key the SPI needs is missing, or RC/DS which this card does not check).
    """
    secured = header.secured
    if header.spi.ciphered:
        if kic is None:
            raise OtaRejected(PorStatus.SECURITY_ERROR, "no KIc for this key version")
        if not secured or len(secured) % BLOCK:
            raise OtaRejected(PorStatus.CIPHERING_ERROR, "ciphered part not a multiple of 16")
        secured = aes_cbc(kic, secured, decrypt=True)
    cc_len = header.cc_length
    if len(secured) < 6 + cc_len:
        raise OtaRejected(PorStatus.CIPHERING_ERROR, "secured part too short")
    counter_part, cc, padded = secured[:6], secured[6 : 6 + cc_len], secured[6 + cc_len :]
    if header.spi.checksum == "cc":
        if kid is None:
            raise OtaRejected(PorStatus.SECURITY_ERROR, "no KID for this key version")
        expected = _cmac8(kid, header.head + counter_part + padded)
        if not hmac.compare_digest(cc, expected):
            raise OtaRejected(PorStatus.CC_FAILED, "cryptographic checksum does not verify")
    elif header.spi.checksum != "none":
        raise OtaRejected(PorStatus.SECURITY_ERROR, f"{header.spi.checksum} is not supported")
    pad = counter_part[5]
    if pad > len(padded) or (header.spi.ciphered and pad >= BLOCK):
        raise OtaRejected(PorStatus.CIPHERING_ERROR, "padding counter larger than the data")
    data = padded[: len(padded) - pad]
    return CommandPacket(header, int.from_bytes(counter_part[:5], "big"), data)


def check_counter(mode: CounterMode, stored: int, received: int, *, max_step: int) -> PorStatus:
    """The replay check of TS 102 225 §5.1.1 for one received CNTR against the stored one.

    ``higher``: accept only a CNTR above the stored value (and at most ``max_step`` above);
    ``one-higher``: exactly stored + 1. A stored value of 2⁴⁰−1 blocks the key set. ``none``
    and ``available`` accept anything (the minimum security level refuses them first).
    """
    if mode in ("none", "available"):
        return PorStatus.OK
    if stored >= MAX_COUNTER:
        return PorStatus.CNTR_BLOCKED
    if received <= stored:
        return PorStatus.CNTR_LOW
    limit = 1 if mode == "one-higher" else max_step
    if received - stored > limit:
        return PorStatus.CNTR_HIGH
    return PorStatus.OK


# ---- response packets (PoR) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponsePacket:
    """A proof of receipt: the TAR and counter it answers, its status and additional data.
    ``authenticated`` says whether its CC was present and verified."""

    tar: bytes
    counter: int
    status: PorStatus
    data: bytes
    authenticated: bool
    ciphered: bool


_RESPONSE_UDH = bytes([0x02, RPI_IEI, 0x00])


def build_response_packet(
    *,
    tar: bytes,
    counter: int,
    status: PorStatus,
    data: bytes,
    spi: Spi,
    keyset: Keyset | None,
) -> bytes:
    """UDH ‖ response packet as the card returns it in the ENVELOPE response (TS 31.115 §4.4).

    With ``keyset`` None (a packet the card could not authenticate) the PoR carries no CC and
    is not ciphered, whatever the SPI asked (TS 102 225: status 06 and friends go in clear).
    """
    secure = keyset is not None
    use_cc = secure and spi.por_checksum == "cc"
    cipher = secure and spi.por_ciphered
    cc_len = CC_LENGTH if use_cc else 0
    pad = _padding(7 + cc_len + len(data)) if cipher else 0
    padded = data + bytes(pad)
    rhl = 10 + cc_len
    rpl = 1 + 3 + 7 + cc_len + len(padded)
    head = rpl.to_bytes(2, "big") + bytes([rhl]) + tar
    counter_part = counter.to_bytes(5, "big") + bytes([pad, int(status)])
    cc = b""
    if use_cc:
        assert keyset is not None
        cc = _cmac8(keyset.kid, _RESPONSE_UDH + head + counter_part + padded)
    secured = counter_part + cc + padded
    if cipher:
        assert keyset is not None
        secured = aes_cbc(keyset.kic, secured, decrypt=False)
    return _RESPONSE_UDH + head + secured


def parse_response_packet(raw: bytes, *, spi: Spi, keyset: Keyset) -> ResponsePacket:
    """Read a PoR (UDH ``02 71 00`` first) with the key set the command used.

    A PoR whose secured part is not a multiple of 16 was sent in clear (the card's refusals
    of packets it could not authenticate); one with RHL 10 carries no CC.

    Raises:
        RemoteProtocolError: malformed (UDH, lengths).
        MacMismatch: a CC is present and wrong, or a "PoR OK" lacks the CC the SPI asked for.
    """
    if len(raw) < 3 + 3 + 3 + 7 or raw[:3] != _RESPONSE_UDH:
        raise RemoteProtocolError(f"PoR: expected UDH 027100 and a header, got {raw[:8].hex()}")
    body = raw[3:]
    rpl = int.from_bytes(body[:2], "big")
    if rpl != len(body) - 2:
        raise RemoteProtocolError(f"PoR: RPL {rpl} but {len(body) - 2} bytes")
    rhl, tar, secured = body[2], body[3:6], body[6:]
    cc_len = rhl - 10
    if cc_len not in (0, CC_LENGTH):
        raise RemoteProtocolError(f"PoR: RHL {rhl} unsupported")
    ciphered = spi.por_ciphered and len(secured) >= BLOCK and len(secured) % BLOCK == 0
    if ciphered:
        secured = aes_cbc(keyset.kic, secured, decrypt=True)
    if len(secured) < 7 + cc_len:
        raise RemoteProtocolError("PoR: secured part too short")
    counter_part, cc, padded = secured[:7], secured[7 : 7 + cc_len], secured[7 + cc_len :]
    try:
        status = PorStatus(counter_part[6])
    except ValueError:
        raise RemoteProtocolError(f"PoR: unknown status {counter_part[6]:02X}") from None
    authenticated = False
    if cc_len:
        expected = _cmac8(keyset.kid, _RESPONSE_UDH + body[:6] + counter_part + padded)
        if not hmac.compare_digest(cc, expected):
            raise MacMismatch("PoR: cryptographic checksum does not verify")
        authenticated = True
    if status is PorStatus.OK and spi.por_checksum == "cc" and not authenticated:
        raise MacMismatch("PoR: 'PoR OK' without the checksum the SPI asked for")
    pad = counter_part[5]
    if pad > len(padded):
        raise RemoteProtocolError("PoR: padding counter larger than the data")
    return ResponsePacket(
        tar=tar,
        counter=int.from_bytes(counter_part[:5], "big"),
        status=status,
        data=padded[: len(padded) - pad],
        authenticated=authenticated,
        ciphered=ciphered,
    )
