"""Pure. OTA secured packets for the UICC (TS 102 225, SMS dialect of TS 31.115), the remote
command scripts they carry (TS 102 226 RFM/RAM), and the SMS-PP data download that delivers
them (TS 23.040 SMS-DELIVER in a TS 31.111 §7.1.1 ENVELOPE).

Both ends use this module: the operator (SHO) builds command packets and reads proofs of
receipt (PoR); the emulated card (:mod:`firmware_stubs.usim.ota`) opens command packets and
builds PoRs. Cryptography: AES-CBC with a zero initial chaining value under KIc for ciphering
(TS 102 225 §5.1.2), AES-CMAC (NIST SP 800-38B) truncated to 8 bytes under KID for the
cryptographic checksum (§5.1.3.1), both from ``cryptography``. DES/3DES, RC (CRC) and DS are
not implemented: they are refused with a typed error (see "Simplifications" below).

Byte layout (the SMS dialect; it matches osmocom pySim, whose AES vectors from sysmoISIM-SJA5
cards are a known-answer test in ``tests/unit/uicc/test_ota.py``)::

    command:  UDH 02 70 00 | CPL(2) CHL(1) SPI(2) KIc KID TAR(3) | [CNTR(5) PCNTR CC(8) data pad]
              CPL counts from CHL to the end; CHL from SPI to the end of CC (13 + 8);
              the bracket is AES-CBC ciphered when SPI asks; padding (zeros, PCNTR of them) makes
              the ciphered part a multiple of 16; CC = CMAC over CPL…PCNTR ‖ data ‖ pad.
    response: UDH 02 71 00 | RPL(2) RHL(1) TAR(3) | [CNTR(5) PCNTR STS CC(8) data pad]
              RHL = 10 + len(CC); CC over UDH ‖ RPL … STS ‖ data ‖ pad; ciphering as above.

Counter (TS 102 225 §5.1.1): SPI b5b4 = 10 "process if and only if CNTR is higher than the
receiving entity's", 11 "… exactly one higher"; 5 bytes, it never wraps: at FFFFFFFFFF the key
set is blocked (status 04). The card also refuses a jump larger than ``max_step`` as
"CNTR high" (03): without it, anyone holding the keys (an old operator, threat 3a) could spend
the whole counter space in one packet and block the key set for good.

Simplifications (said plainly): single-SMS packets only (no concatenation, ≤ 140 octets of user
data); AES only (KIc/KID algorithm nibble 0010 or "implicit"); CC only (no RC/DS); the PoR is
always returned in the ENVELOPE response data (the ME would put it in the SMS-DELIVER-REPORT),
never by SMS-SUBMIT; PUT KEY (GlobalPlatform Card Spec §11.8) encrypts the new key values
under the command key set's DEK, and under its KIc when the key set has no DEK (personalisation
card profiles carry no DEK). The AKA credential command (:func:`build_set_credentials`) is
a proprietary extension of this emulated card; real USIMs keep K/OPc in ADM-protected
proprietary files (e.g. sysmoISIM's EF.USIM_AUTH_KEY) and most cannot re-key K over the air.
"""

from __future__ import annotations

import datetime
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from trelab.errors import BadInput, CheckFailed, MacMismatch, RemoteProtocolError

__all__ = [
    "CC_LENGTH",
    "CPI_IEI",
    "CREDENTIALS_P1P2",
    "DEFAULT_SPI",
    "MAX_COUNTER",
    "MAX_SMS_USER_DATA",
    "MIN_SECURITY_LEVEL",
    "RAM_OUTGOING_INS",
    "RFM_OUTGOING_INS",
    "RPI_IEI",
    "SMS_PP_TAG",
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
    "RemoteResult",
    "ResponsePacket",
    "SmsDeliver",
    "Spi",
    "build_command_packet",
    "build_delete_keyset",
    "build_envelope_sms_pp",
    "build_put_key",
    "build_response_packet",
    "build_set_credentials",
    "build_sms_deliver",
    "check_counter",
    "decode_tpdu_compact",
    "encode_compact",
    "encode_compact_response",
    "encode_expanded",
    "encode_expanded_response",
    "encode_scts",
    "key_check_value",
    "meets_security_level",
    "open_command_packet",
    "parse_command_header",
    "parse_delete_keyset",
    "parse_envelope_sms_pp",
    "parse_expanded",
    "parse_put_key",
    "parse_remote_response",
    "parse_response_packet",
    "parse_set_credentials",
    "parse_sms_deliver",
    "split_compact",
]

# ---- constants ----------------------------------------------------------------------------------

CPI_IEI = 0x70  # Command Packet Identifier in the SMS user data header (TS 31.115 §4.2)
RPI_IEI = 0x71  # Response Packet Identifier (TS 31.115 §4.4)
SMS_PP_TAG = 0xD1  # SMS-PP download BER-TLV tag (TS 101 220 §7.2, TS 31.111 §7.1.1.2)
CC_LENGTH = 8  # AES-CMAC truncated to 8 bytes (TS 102 225 §5.1.3.1)
MAX_COUNTER = (1 << 40) - 1  # 5-byte CNTR; reaching it blocks the key set
MAX_SMS_USER_DATA = 140  # octets of TP-UD in one SMS (TS 23.040 §9.2.3.16), UDH included
_HEADER_FIXED = 13  # SPI(2) KIc KID TAR(3) CNTR(5) PCNTR: CHL without the checksum
_BLOCK = 16
_ZERO_IV = bytes(_BLOCK)
_PID_DATA_DOWNLOAD = 0x7F  # TP-PID "(U)SIM data download" (TS 23.040 §9.2.3.9)
_DCS_CLASS2_8BIT = 0xF6  # TP-DCS: 8-bit data, class 2 (SIM-specific) (TS 23.038 §4)

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


def _aes_cbc(key: bytes, data: bytes, *, decrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(_ZERO_IV))
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx.update(data) + ctx.finalize()


def _cmac8(key: bytes, data: bytes) -> bytes:
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()[:CC_LENGTH]


def _padding(length: int) -> int:
    return -length % _BLOCK


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
        secured = _aes_cbc(keyset.kic, secured, decrypt=False)
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
        if not secured or len(secured) % _BLOCK:
            raise OtaRejected(PorStatus.CIPHERING_ERROR, "ciphered part not a multiple of 16")
        secured = _aes_cbc(kic, secured, decrypt=True)
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
    if pad > len(padded) or (header.spi.ciphered and pad >= _BLOCK):
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
        secured = _aes_cbc(keyset.kic, secured, decrypt=False)
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
    ciphered = spi.por_ciphered and len(secured) >= _BLOCK and len(secured) % _BLOCK == 0
    if ciphered:
        secured = _aes_cbc(keyset.kic, secured, decrypt=True)
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


# ---- remote command scripts (TS 102 226 §5) -----------------------------------------------------

#: INS whose P3 is Le (data flows card → terminal) in a compact RFM script (TS 102 221 READ
#: BINARY/RECORD, GET RESPONSE, STATUS, GET DATA, FETCH): no data follows them. Which INS are
#: "outgoing" depends on the application (GlobalPlatform's F2 is GET STATUS, with data).
RFM_OUTGOING_INS = frozenset({0xB0, 0xB2, 0xC0, 0xF2, 0xCA, 0x12})
RAM_OUTGOING_INS = frozenset({0xC0, 0xCA})


def encode_compact(apdus: Sequence[bytes], *, outgoing: frozenset[int] = RFM_OUTGOING_INS) -> bytes:
    """Compact format (TS 102 226 §5.1.1): the command TPDUs one after the other.

    Raises: BadInput: an APDU that is not a T=0 TPDU (header + P3 + P3 data bytes, or P3 = Le).
    """
    out = b""
    for apdu in apdus:
        if decode_tpdu_compact(apdu, outgoing=outgoing) != len(apdu):
            raise BadInput("compact script: a command is not one TPDU (P3 and data disagree)")
        out += apdu
    return out


def decode_tpdu_compact(script: bytes, *, outgoing: frozenset[int] = RFM_OUTGOING_INS) -> int:
    """Length of the first TPDU of ``script`` (P3 is Le for ``outgoing`` INS, else Lc).

    Raises: BadInput: truncated.
    """
    if len(script) < 5:
        raise BadInput("compact script: truncated command header")
    length = 5 if script[1] in outgoing else 5 + script[4]
    if len(script) < length:
        raise BadInput("compact script: command data truncated")
    return length


def split_compact(script: bytes, *, outgoing: frozenset[int] = RFM_OUTGOING_INS) -> list[bytes]:
    """The TPDUs of a compact script.

    Raises: BadInput: empty or truncated.
    """
    if not script:
        raise BadInput("compact script: empty")
    out: list[bytes] = []
    while script:
        length = decode_tpdu_compact(script, outgoing=outgoing)
        out.append(script[:length])
        script = script[length:]
    return out


def _ber_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    if length <= 0xFF:
        return bytes([0x81, length])
    if length <= 0xFFFF:
        return bytes([0x82]) + length.to_bytes(2, "big")
    raise BadInput("BER-TLV: value longer than 65535 bytes")


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _ber_length(len(value)) + value


def _tlvs(data: bytes, what: str) -> list[tuple[int, bytes]]:
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


_SCRIPT_TAG = 0xAA  # Command Scripting template, definite length (TS 102 226 §5.2.1)
_RESPONSE_SCRIPT_TAG = 0xAB  # Response Scripting template (§5.2.2)
_C_APDU_TAG = 0x22
_R_APDU_TAG = 0x23
_EXECUTED_TAG = 0x80  # Number of executed C-APDUs


def encode_expanded(apdus: Sequence[bytes]) -> bytes:
    """Expanded format, definite length (TS 102 226 §5.2.1): ``AA { 22 C-APDU }…``."""
    return _tlv(_SCRIPT_TAG, b"".join(_tlv(_C_APDU_TAG, apdu) for apdu in apdus))


def parse_expanded(script: bytes) -> list[bytes]:
    """The C-APDUs of an expanded command script.

    Raises: BadInput: not one AA template of 22 TLVs.
    """
    outer = _tlvs(script, "expanded script")
    if len(outer) != 1 or outer[0][0] != _SCRIPT_TAG:
        raise BadInput("expanded script: expected one AA template")
    inner = _tlvs(outer[0][1], "expanded script")
    if not inner or any(tag != _C_APDU_TAG for tag, _ in inner):
        raise BadInput("expanded script: expected C-APDU TLVs (tag 22)")
    return [value for _, value in inner]


def encode_compact_response(executed: int, last: bytes) -> bytes:
    """Compact additional response data: executed count ‖ SW of the last ‖ its data (§5.1.2)."""
    return bytes([executed]) + last[-2:] + last[:-2]


def encode_expanded_response(responses: Sequence[bytes]) -> bytes:
    """``AB { 80 number-executed, 23 R-APDU … }`` (TS 102 226 §5.2.2)."""
    body = _tlv(_EXECUTED_TAG, bytes([len(responses)]))
    body += b"".join(_tlv(_R_APDU_TAG, r) for r in responses)
    return _tlv(_RESPONSE_SCRIPT_TAG, body)


@dataclass(frozen=True, slots=True)
class RemoteResult:
    """What the remote commands did: how many ran, and the R-APDUs known (compact: the last)."""

    executed: int
    responses: tuple[bytes, ...]  # data ‖ SW1 SW2

    @property
    def last_sw(self) -> int | None:
        return int.from_bytes(self.responses[-1][-2:], "big") if self.responses else None

    @property
    def last_data(self) -> bytes:
        return self.responses[-1][:-2] if self.responses else b""

    def to_json(self) -> dict[str, object]:
        return {
            "executed": self.executed,
            "last_sw": f"{self.last_sw:04X}" if self.last_sw is not None else None,
            "responses": [r.hex() for r in self.responses],
        }


def parse_remote_response(data: bytes, *, expanded: bool) -> RemoteResult:
    """The additional response data of a PoR OK.

    Raises: RemoteProtocolError: malformed.
    """
    if not expanded:
        if len(data) < 3:
            raise RemoteProtocolError("PoR data: compact response shorter than 3 bytes")
        return RemoteResult(data[0], (data[3:] + data[1:3],))
    try:
        outer = _tlvs(data, "PoR data")
        if len(outer) != 1 or outer[0][0] != _RESPONSE_SCRIPT_TAG:
            raise BadInput("PoR data: expected one AB template")
        executed, responses = None, []
        for tag, value in _tlvs(outer[0][1], "PoR data"):
            if tag == _EXECUTED_TAG and len(value) == 1:
                executed = value[0]
            elif tag == _R_APDU_TAG and len(value) >= 2:
                responses.append(value)
            else:
                raise BadInput(f"PoR data: unexpected TLV {tag:02X}")
    except BadInput as exc:
        raise RemoteProtocolError(str(exc)) from None
    return RemoteResult(len(responses) if executed is None else executed, tuple(responses))


# ---- SMS-PP data download (TS 23.040, TS 31.111 §7.1.1) -----------------------------------------


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
    if not digits.isdigit() or not 1 <= len(digits) <= 20:
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


_DEVICE_IDENTITIES = bytes([0x82, 0x02, 0x83, 0x81])  # source: network, destination: UICC
_TAG_DEVICE_IDENTITIES = 0x02
_TAG_ADDRESS = 0x06
_TAG_SMS_TPDU = 0x0B


def build_envelope_sms_pp(tpdu: bytes) -> bytes:
    """The ENVELOPE (SMS-PP DOWNLOAD) command APDU: ``80 C2 00 00 Lc D1{82 83 81, 8B TPDU} 00``
    (TS 31.111 §7.1.1.2; TS 102 221 §10.1.1 CLA 80).

    Raises: BadInput: the BER-TLV would not fit a short APDU.
    """
    body = _tlv(SMS_PP_TAG, _DEVICE_IDENTITIES + _tlv(0x80 | _TAG_SMS_TPDU, tpdu))
    if len(body) > 255:
        raise BadInput("ENVELOPE data longer than 255 bytes")
    return bytes([0x80, 0xC2, 0x00, 0x00, len(body)]) + body + b"\x00"


def parse_envelope_sms_pp(data: bytes) -> bytes:
    """The SMS-TPDU of an SMS-PP download ENVELOPE's data (device identities network → UICC).

    Raises: BadInput: not a D1 template, or device identities / TPDU missing or wrong.
    """
    outer = _tlvs(data, "ENVELOPE")
    if len(outer) != 1 or outer[0][0] != SMS_PP_TAG:
        raise BadInput("ENVELOPE: not an SMS-PP download (tag D1)")
    tpdu = None
    identities = None
    for tag, value in _tlvs(outer[0][1], "ENVELOPE"):
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


# ---- RAM: key set management (GlobalPlatform Card Spec v2.3 §11.8 PUT KEY, §11.2 DELETE) ----------

_AES_KEY_TYPE = 0x88
_KEY_INDICES = ("kic", "kid", "dek")  # key identifiers 1, 2, 3 of an OTA key set


def key_check_value(key: bytes) -> bytes:
    """AES KCV: the first 3 bytes of AES_K(01…01) (GlobalPlatform Amendment D §7.2)."""
    return _aes_cbc(key, b"\x01" * _BLOCK, decrypt=False)[:3]  # one block: CBC, zero IV = ECB


def build_put_key(new: Keyset, *, kek: bytes, replace_kvn: int = 0) -> bytes:
    """PUT KEY (``80 D8 P1 81``): KIc, KID and DEK of ``new`` as key identifiers 1…3, each AES
    value encrypted with ``kek`` (AES-CBC, zero IV) and followed by its KCV. ``replace_kvn``
    0 adds a key set, else replaces that version. Returned as a compact-format TPDU.

    Raises: BadInput: ``new`` has no DEK, or keys that are not 16 or 32 bytes.
    """
    if new.dek is None:
        raise BadInput("PUT KEY: the new key set needs a DEK")
    fields = b""
    for key in (new.kic, new.kid, new.dek):
        if len(key) not in (16, 32):
            raise BadInput("PUT KEY: AES keys of 16 or 32 bytes only")
        component = bytes([len(key)]) + _aes_cbc(kek, key, decrypt=False)
        fields += bytes([_AES_KEY_TYPE, len(component)]) + component
        fields += bytes([3]) + key_check_value(key)
    data = bytes([new.kvn]) + fields
    return bytes([0x80, 0xD8, replace_kvn, 0x81, len(data)]) + data


def parse_put_key(p1: int, p2: int, data: bytes, *, kek: bytes) -> tuple[int, Keyset, bytes]:
    """(version replaced or 0, new key set, response data KVN ‖ KCVs) of a PUT KEY.

    Raises:
        BadInput: not three AES keys with identifiers 1…3, or a KCV that does not match (a key
            decrypted with the wrong KEK).
    """
    if p2 != 0x81:
        raise BadInput("PUT KEY: expected P2 81 (key identifier 1, several keys)")
    if not data or not 1 <= data[0] <= 15:
        raise BadInput("PUT KEY: new KVN must be 1…15")
    kvn, rest = data[0], data[1:]
    keys: list[bytes] = []
    kcvs = b""
    while rest:
        if len(rest) < 2 or rest[0] != _AES_KEY_TYPE:
            raise BadInput("PUT KEY: expected AES key data (type 88)")
        length = rest[1]
        component, rest = rest[2 : 2 + length], rest[2 + length :]
        if len(component) != length or length < 17 or component[0] != length - 1:
            raise BadInput("PUT KEY: key component malformed")
        if component[0] not in (16, 32):
            raise BadInput("PUT KEY: AES keys of 16 or 32 bytes only")
        key = _aes_cbc(kek, component[1:], decrypt=True)
        if len(rest) < 4 or rest[0] != 3:
            raise BadInput("PUT KEY: KCV missing")
        kcv, rest = rest[1:4], rest[4:]
        if not hmac.compare_digest(kcv, key_check_value(key)):
            raise BadInput("PUT KEY: key check value does not match")
        keys.append(key)
        kcvs += kcv
    if len(keys) != len(_KEY_INDICES):
        raise BadInput("PUT KEY: expected KIc, KID and DEK")
    return p1, Keyset(kvn, keys[0], keys[1], keys[2]), bytes([kvn]) + kcvs


def build_delete_keyset(kvn: int) -> bytes:
    """DELETE (``80 E4 00 00``) of every key of version ``kvn``: tag D2 (GP §11.2.2.3)."""
    if not 1 <= kvn <= 15:
        raise BadInput("KVN must be 1…15")
    return bytes([0x80, 0xE4, 0x00, 0x00, 0x03, 0xD2, 0x01, kvn])


def parse_delete_keyset(data: bytes) -> int:
    """The KVN a DELETE names. Raises: BadInput: not ``D2 01 kvn``."""
    if len(data) != 3 or data[:2] != b"\xd2\x01" or not 1 <= data[2] <= 15:
        raise BadInput("DELETE: expected D2 01 KVN")
    return data[2]


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
        raise BadInput("credentials: TUAK needs K (16 or 32) ‖ TOPc (32)")
    return data[:-32], data[-32:]
