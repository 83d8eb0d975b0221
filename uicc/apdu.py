"""Pure. Command and response APDUs of a UICC (ISO/IEC 7816-4, TS 102 221 §10), the USIM
commands the host client sends, and the data of AUTHENTICATE (TS 31.102 §7.1.2).

Bytes inside; an APDU is parsed into :class:`CommandApdu` (short form only: a UICC on T=0
knows no extended lengths) and turned into a T=0 TPDU when the link needs one (case 4 loses
its Le; the card then answers ``61xx`` and the data comes with GET RESPONSE, TS 102 221 §7.3.1).
Status words are ints (``0x9000``); TLV and file codecs live in :mod:`uicc.fs`.
"""

from __future__ import annotations

from dataclasses import dataclass

from trelab.digits import is_decimal
from trelab.errors import BadInput, RemoteProtocolError

__all__ = [
    "AUTH_CONTEXT_3G",
    "AUTH_CONTEXT_GSM",
    "CLA_GSM",
    "CLA_UICC",
    "PIN1",
    "PIN2",
    "SW_AUTH_MAC_FAILURE",
    "SW_BLOCKED",
    "SW_OK",
    "SW_SECURITY_NOT_SATISFIED",
    "USIM_AID_PREFIX",
    "Auth3gSuccess",
    "Auth3gSync",
    "CommandApdu",
    "ResponseApdu",
    "build_authenticate_3g",
    "build_authenticate_gsm",
    "build_change_pin",
    "build_disable_pin",
    "build_enable_pin",
    "build_get_response",
    "build_read_binary",
    "build_read_record",
    "build_select_aid",
    "build_select_fid",
    "build_select_path",
    "build_status",
    "build_unblock_pin",
    "build_verify_pin",
    "build_verify_query",
    "encode_authenticate_3g",
    "encode_pin",
    "is_success",
    "more_data",
    "parse_auth_3g_response",
    "parse_auth_gsm_response",
    "parse_command",
    "parse_response",
    "pin_tries",
    "to_t0",
    "wrong_le",
]

CLA_UICC = 0x00  # TS 102 221 §10.1.1: interindustry class, basic channel
CLA_GSM = 0xA0  # TS 51.011: the 2G SIM class a few modems still use
PIN1 = 0x01  # key reference of the application PIN (TS 102 221 §9.5.1, table 9.3)
PIN2 = 0x81  # … of the second application PIN (local to the application)
USIM_AID_PREFIX = bytes.fromhex("A0000000871002")  # RID 3GPP + USIM app code (TS 31.102 A.1)
AUTH_CONTEXT_GSM = 0x80  # AUTHENTICATE P2 (TS 31.102 §7.1.2.1)
AUTH_CONTEXT_3G = 0x81

SW_OK = 0x9000
SW_SECURITY_NOT_SATISFIED = 0x6982
SW_BLOCKED = 0x6983
SW_AUTH_MAC_FAILURE = 0x9862  # TS 31.102 §7.3: authentication error, incorrect MAC

# ---- command APDUs -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandApdu:
    """A short command APDU: CLA INS P1 P2 [Lc data] [Le] (ISO/IEC 7816-3 §12.1.3).

    ``le`` is None for cases 1 and 3; 1…256 otherwise (256 is coded ``00``).
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise BadInput(f"APDU: {name.upper()} must be one byte")
        if len(self.data) > 255:
            raise BadInput(f"APDU: {len(self.data)} data bytes, a short APDU carries ≤ 255")
        if self.le is not None and not 1 <= self.le <= 256:
            raise BadInput(f"APDU: Le {self.le} not in 1…256")

    @property
    def case(self) -> int:
        """ISO 7816-3 case: 1 (no data), 2 (Le), 3 (data), 4 (data and Le)."""
        return (3 if self.data else 1) + (1 if self.le is not None else 0)

    def encode(self) -> bytes:
        """The APDU bytes (Le 256 coded as ``00``)."""
        out = bytes((self.cla, self.ins, self.p1, self.p2))
        if self.data:
            out += bytes((len(self.data),)) + self.data
        if self.le is not None:
            out += bytes((self.le & 0xFF,))
        return out

    def with_le(self, le: int) -> CommandApdu:
        """The same command with another Le (the resend after ``6Cxx``)."""
        return CommandApdu(self.cla, self.ins, self.p1, self.p2, self.data, le)


def parse_command(raw: bytes) -> CommandApdu:
    """Split a short command APDU into its fields (ISO/IEC 7816-3 §12.1.3).

    Raises:
        BadInput: fewer than 4 bytes, an extended-length APDU, or Lc that does not match.
    """
    n = len(raw)
    if n < 4:
        raise BadInput(f"APDU: {n} bytes, a header needs 4")
    cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
    if n == 4:
        return CommandApdu(cla, ins, p1, p2)
    p3 = raw[4]
    if n == 5:
        return CommandApdu(cla, ins, p1, p2, le=p3 or 256)
    if p3 == 0:
        raise BadInput("APDU: extended length (Lc = 00) is not supported by a UICC")
    if n == 5 + p3:
        return CommandApdu(cla, ins, p1, p2, raw[5:])
    if n == 6 + p3:
        return CommandApdu(cla, ins, p1, p2, raw[5:-1], raw[-1] or 256)
    raise BadInput(f"APDU: Lc {p3} but {n - 5} bytes follow it")


def to_t0(apdu: CommandApdu) -> bytes:
    """The T=0 TPDU for ``apdu``: case 4 is sent as case 3 (the card answers ``61xx``, TS 102 221
    §7.3.1.1.4); case 1 gets P3 = 00 (§7.3.1.1.1)."""
    header = bytes((apdu.cla, apdu.ins, apdu.p1, apdu.p2))
    if apdu.data:
        return header + bytes((len(apdu.data),)) + apdu.data
    if apdu.le is not None:
        return header + bytes((apdu.le & 0xFF,))
    return header + b"\x00"


# ---- responses and status words ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseApdu:
    """Response data and the status word SW1 SW2."""

    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        return is_success(self.sw)


def parse_response(raw: bytes) -> ResponseApdu:
    """data ‖ SW1 SW2 → :class:`ResponseApdu`.

    Raises:
        RemoteProtocolError: fewer than 2 bytes (no status word).
    """
    if len(raw) < 2:
        raise RemoteProtocolError(f"card response of {len(raw)} bytes has no status word")
    return ResponseApdu(bytes(raw[:-2]), (raw[-2] << 8) | raw[-1])


def is_success(sw: int) -> bool:
    """Normal processing (TS 102 221 §10.2.1.1): 9000, 91xx (proactive command pending),
    92xx (after internal retries)."""
    return sw == SW_OK or sw >> 8 in (0x91, 0x92)


def more_data(sw: int) -> int | None:
    """Bytes waiting for GET RESPONSE: ``61xx`` (UICC) or ``9Fxx`` (2G SIM); xx = 00 means 256."""
    if sw >> 8 in (0x61, 0x9F):
        return (sw & 0xFF) or 256
    return None


def wrong_le(sw: int) -> int | None:
    """``6Cxx``: wrong Le, resend with Le = xx (TS 102 221 §10.2.1.3); 00 means 256."""
    if sw >> 8 == 0x6C:
        return (sw & 0xFF) or 256
    return None


def pin_tries(sw: int) -> int | None:
    """Tries left from ``63Cx`` (verification failed / not verified, TS 102 221 §10.2.1.2)."""
    if sw & 0xFFF0 == 0x63C0:
        return sw & 0x0F
    return None


# ---- builders ------------------------------------------------------------------------------


def build_select_fid(fid: int, *, return_fcp: bool = True) -> CommandApdu:
    """SELECT by file identifier (TS 102 221 §11.1.1, P1 = 00); P2 04 asks for the FCP."""
    if not 0 <= fid <= 0xFFFF:
        raise BadInput(f"FID {fid:#x} is not two bytes")
    p2 = 0x04 if return_fcp else 0x0C
    return CommandApdu(
        CLA_UICC, 0xA4, 0x00, p2, fid.to_bytes(2, "big"), 256 if return_fcp else None
    )


def build_select_aid(aid: bytes, *, return_fcp: bool = True) -> CommandApdu:
    """SELECT by DF name, i.e. the application's AID (P1 = 04), first or only occurrence."""
    if not 1 <= len(aid) <= 16:
        raise BadInput(f"AID: {len(aid)} bytes, expected 1…16")
    p2 = 0x04 if return_fcp else 0x0C
    return CommandApdu(CLA_UICC, 0xA4, 0x04, p2, aid, 256 if return_fcp else None)


def build_select_path(path: bytes, *, from_mf: bool = True) -> CommandApdu:
    """SELECT by path (P1 = 08 from the MF, 09 from the current DF), MF's 3F00 left out."""
    if not path or len(path) % 2:
        raise BadInput("path: an even, non-zero number of bytes (FIDs)")
    return CommandApdu(CLA_UICC, 0xA4, 0x08 if from_mf else 0x09, 0x04, path, 256)


def build_status() -> CommandApdu:
    """STATUS (TS 102 221 §11.1.2): FCP of the current application."""
    return CommandApdu(0x80, 0xF2, 0x00, 0x00, le=256)


def build_read_binary(offset: int, length: int) -> CommandApdu:
    """READ BINARY of ``length`` bytes (1…256) at ``offset`` (< 32768) of the current EF."""
    if not 0 <= offset < 0x8000:
        raise BadInput(f"READ BINARY offset {offset} not in 0…32767")
    return CommandApdu(CLA_UICC, 0xB0, offset >> 8, offset & 0xFF, le=length)


def build_read_record(record: int, length: int) -> CommandApdu:
    """READ RECORD ``record`` (1…254) in absolute mode (P2 = 04)."""
    if not 1 <= record <= 254:
        raise BadInput(f"record number {record} not in 1…254")
    return CommandApdu(CLA_UICC, 0xB2, record, 0x04, le=length)


def build_get_response(length: int, *, cla: int = CLA_UICC) -> CommandApdu:
    """GET RESPONSE for ``length`` waiting bytes (TS 102 221 §11.1.13)."""
    return CommandApdu(cla, 0xC0, 0x00, 0x00, le=length)


def encode_pin(pin: str) -> bytes:
    """PIN → 8 bytes: ASCII digits padded with ``FF`` (TS 102 221 §9.5.1).

    Raises:
        BadInput: not 4…8 decimal digits.
    """
    if not (is_decimal(pin) and 4 <= len(pin) <= 8):
        raise BadInput("PIN: 4 to 8 decimal digits")
    return pin.encode().ljust(8, b"\xff")


def _puk(puk: str) -> bytes:
    if not (is_decimal(puk) and len(puk) == 8):
        raise BadInput("PUK: 8 decimal digits")
    return puk.encode()


def build_verify_query(ref: int = PIN1) -> CommandApdu:
    """VERIFY PIN without data: asks for the PIN status (9000, or 63Cx tries left, §11.1.9)."""
    return CommandApdu(CLA_UICC, 0x20, 0x00, ref)


def build_verify_pin(pin: str, ref: int = PIN1) -> CommandApdu:
    """VERIFY PIN (TS 102 221 §11.1.9)."""
    return CommandApdu(CLA_UICC, 0x20, 0x00, ref, encode_pin(pin))


def build_change_pin(old: str, new: str, ref: int = PIN1) -> CommandApdu:
    """CHANGE PIN (TS 102 221 §11.1.10): old ‖ new, each padded to 8 bytes."""
    return CommandApdu(CLA_UICC, 0x24, 0x00, ref, encode_pin(old) + encode_pin(new))


def build_disable_pin(pin: str, ref: int = PIN1) -> CommandApdu:
    """DISABLE PIN (TS 102 221 §11.1.11)."""
    return CommandApdu(CLA_UICC, 0x26, 0x00, ref, encode_pin(pin))


def build_enable_pin(pin: str, ref: int = PIN1) -> CommandApdu:
    """ENABLE PIN (TS 102 221 §11.1.12)."""
    return CommandApdu(CLA_UICC, 0x28, 0x00, ref, encode_pin(pin))


def build_unblock_pin(puk: str, new_pin: str, ref: int = PIN1) -> CommandApdu:
    """UNBLOCK PIN (TS 102 221 §11.1.13): PUK (8 digits) ‖ new PIN padded to 8 bytes."""
    return CommandApdu(CLA_UICC, 0x2C, 0x00, ref, _puk(puk) + encode_pin(new_pin))


def build_authenticate_3g(rand: bytes, autn: bytes) -> CommandApdu:
    """AUTHENTICATE, 3G context (TS 31.102 §7.1.2.1): ``10 RAND L AUTN``, answer expected."""
    if len(rand) != 16:
        raise BadInput(f"RAND: {len(rand)} bytes, expected 16")
    if not 16 <= len(autn) <= 40:
        raise BadInput(f"AUTN: {len(autn)} bytes, expected 16 (or up to 40 for TUAK)")
    data = b"\x10" + rand + bytes((len(autn),)) + autn
    return CommandApdu(CLA_UICC, 0x88, 0x00, AUTH_CONTEXT_3G, data, 256)


def encode_authenticate_3g(rand: bytes, autn: bytes) -> bytes:
    """The bytes of :func:`build_authenticate_3g`'s APDU, made directly: the AKA path sends one
    per authentication and needs no :class:`CommandApdu` for it.

    Raises:
        BadInput: RAND or AUTN of the wrong length.
    """
    if len(rand) != 16:
        raise BadInput(f"RAND: {len(rand)} bytes, expected 16")
    if not 16 <= len(autn) <= 40:
        raise BadInput(f"AUTN: {len(autn)} bytes, expected 16 (or up to 40 for TUAK)")
    return (
        bytes((CLA_UICC, 0x88, 0x00, AUTH_CONTEXT_3G, 18 + len(autn), 0x10))
        + rand
        + bytes((len(autn),))
        + autn
        + b"\x00"
    )


def build_get_identity_suci() -> CommandApdu:
    """GET IDENTITY in SUCI context (TS 31.102 §7.5, TS 102 221 §11.1.23): the USIM computes
    the SUCI; a UICC-specific command (CLA 8X)."""
    return CommandApdu(0x80, 0x78, 0x00, 0x01, le=256)


def build_authenticate_gsm(rand: bytes) -> CommandApdu:
    """AUTHENTICATE, GSM context (TS 31.102 §7.1.2.1): ``10 RAND``."""
    if len(rand) != 16:
        raise BadInput(f"RAND: {len(rand)} bytes, expected 16")
    return CommandApdu(CLA_UICC, 0x88, 0x00, AUTH_CONTEXT_GSM, b"\x10" + rand, 256)


# ---- AUTHENTICATE responses ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Auth3gSuccess:
    """``DB`` response: RES, CK, IK and, when the card sends it, Kc (TS 31.102 §7.1.2.1)."""

    res: bytes
    ck: bytes
    ik: bytes
    kc: bytes | None

    def __repr__(self) -> str:  # session keys never reach logs
        return "Auth3gSuccess(<hidden>)"


@dataclass(frozen=True, slots=True)
class Auth3gSync:
    """``DC`` response: synchronisation failure carrying AUTS."""

    auts: bytes


def _lv_items(data: bytes, what: str) -> list[bytes]:
    items: list[bytes] = []
    i = 0
    while i < len(data):
        length = data[i]
        if i + 1 + length > len(data):
            raise RemoteProtocolError(f"{what}: item {len(items) + 1} runs past the data")
        items.append(data[i + 1 : i + 1 + length])
        i += 1 + length
    return items


def parse_auth_3g_response(data: bytes) -> Auth3gSuccess | Auth3gSync:
    """Decode the data of a successful 3G AUTHENTICATE (the tag says which outcome).

    ``DB L RES L CK L IK [L Kc]`` or ``DC L AUTS``.

    Raises:
        RemoteProtocolError: unknown tag or malformed lengths.
    """
    if not data:
        raise RemoteProtocolError("AUTHENTICATE: empty response data")
    tag, body = data[0], data[1:]
    items = _lv_items(body, "AUTHENTICATE response")
    if tag == 0xDB:
        if len(items) not in (3, 4):
            raise RemoteProtocolError(f"AUTHENTICATE: DB with {len(items)} items, expected 3 or 4")
        res, ck, ik = items[0], items[1], items[2]
        if not 4 <= len(res) <= 32 or len(ck) not in (16, 32) or len(ik) not in (16, 32):
            raise RemoteProtocolError("AUTHENTICATE: RES, CK or IK of an impossible length")
        kc = items[3] if len(items) == 4 else None
        if kc is not None and len(kc) != 8:
            raise RemoteProtocolError(f"AUTHENTICATE: Kc of {len(kc)} bytes")
        return Auth3gSuccess(res, ck, ik, kc)
    if tag == 0xDC:
        if len(items) != 1 or len(items[0]) < 14:
            raise RemoteProtocolError("AUTHENTICATE: DC without a 14-byte AUTS")
        return Auth3gSync(items[0])
    raise RemoteProtocolError(f"AUTHENTICATE: unknown response tag {tag:02X}")


def parse_auth_gsm_response(data: bytes) -> tuple[bytes, bytes]:
    """GSM-context response ``04 SRES 08 Kc`` → (SRES, Kc).

    Raises:
        RemoteProtocolError: not two items of 4 and 8 bytes.
    """
    items = _lv_items(data, "GSM AUTHENTICATE response")
    if len(items) != 2 or len(items[0]) != 4 or len(items[1]) != 8:
        raise RemoteProtocolError("GSM AUTHENTICATE: expected 04 SRES 08 Kc")
    return items[0], items[1]
