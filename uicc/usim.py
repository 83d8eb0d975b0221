"""Pure. The host's USIM client: TS 102 221 / TS 31.102 operations over any :class:`Link`.

Select the MF and the USIM application (its AID found in EF.DIR), read EF.ICCID and EF.IMSI,
query and verify the PIN, and run AUTHENTICATE in 3G and GSM context. Results reuse the AKA
core's types (:class:`aka.usim.AkaSuccess` …) so a card, a TPM and the software USIM print the
same JSON. A status word that means "no" becomes :class:`uicc.errors.CardRefused`; spec
outcomes (synchronisation failure, MAC failure) are results. No I/O here: the link does it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from aka.usim import AkaMacFailure, AkaResult, AkaSuccess, AkaSyncFailure, GsmResult
from trelab.errors import BadInput, RemoteProtocolError

from . import fs
from .apdu import (
    CLA_GSM,
    PIN1,
    PIN2,
    SW_AUTH_MAC_FAILURE,
    SW_BLOCKED,
    USIM_AID_PREFIX,
    Auth3gSync,
    CommandApdu,
    ResponseApdu,
    build_authenticate_3g,
    build_authenticate_gsm,
    build_change_pin,
    build_disable_pin,
    build_enable_pin,
    build_get_identity_suci,
    build_read_binary,
    build_read_record,
    build_select_aid,
    build_select_fid,
    build_select_path,
    build_unblock_pin,
    build_verify_pin,
    build_verify_query,
    encode_authenticate_3g,
    is_success,
    parse_auth_3g_response,
    parse_auth_gsm_response,
    parse_response,
    pin_tries,
)
from .errors import CardRefused, NoUsimApplication
from .links.base import Link

__all__ = [
    "FID_DIR",
    "FID_ICCID",
    "FID_IMSI",
    "FID_MF",
    "Application",
    "CardInfo",
    "GsmClass",
    "PinStatus",
    "UsimClient",
]

FID_MF = 0x3F00
FID_DIR = 0x2F00  # EF.DIR (TS 102 221 §13.1)
FID_ICCID = 0x2FE2  # EF.ICCID (TS 102 221 §13.2)
FID_IMSI = 0x6F07  # EF.IMSI under ADF.USIM (TS 31.102 §4.2.2)
ISIM_AID_PREFIX = bytes.fromhex("A0000000871004")  # RID 3GPP + ISIM app code (TS 31.103)
_SW_REFERENCE_INVALIDATED = 0x6984
_SW_RECORD_NOT_FOUND = 0x6A83
_SW_NO_SUCH_KEY = (0x6A88, 0x6A86)  # referenced data not found; P2 (the key) not supported


# ---- decoding (the codecs of uicc.fs; a card's bad bytes are its protocol error) ------------


_T = TypeVar("_T")


def _decoded(what: str, decode: Callable[[bytes], _T], data: bytes) -> _T:
    try:
        return decode(data)
    except BadInput as exc:
        raise RemoteProtocolError(f"{what}: {exc}") from None


def _fcp(what: str, data: bytes) -> fs.Fcp | None:
    return _decoded(f"FCP of {what}", fs.parse_fcp, data) if data else None


# ---- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Application:
    """One EF.DIR record: application template ``61`` with AID (``4F``) and label (``50``)."""

    aid: bytes
    label: str

    @property
    def is_usim(self) -> bool:
        return self.aid.startswith(USIM_AID_PREFIX)


PinState = Literal["enabled", "disabled", "blocked"]


@dataclass(frozen=True, slots=True)
class PinStatus:
    """A PIN's state as the card reports it: VERIFY without data (TS 102 221 §11.1.9) says
    verified (9000), tries left (63Cx) or blocked (6983); the ADF's PS_DO says enabled."""

    ref: int
    state: PinState
    verified: bool
    tries_left: int | None

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "verified": self.verified, "tries_left": self.tries_left}


@dataclass(frozen=True, slots=True)
class CardInfo:
    """``trelab card info``: ATR, ICCID, IMSI (None when the card wants the PIN first), PIN1
    and PIN2 (None: the card has no second application PIN)."""

    atr: bytes | None
    iccid: str
    imsi: str | None
    imsi_error: str | None
    pin: PinStatus
    usim_aid: bytes
    pin2: PinStatus | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "atr": self.atr.hex() if self.atr is not None else None,
            "iccid": self.iccid,
            "imsi": self.imsi,
            **({"imsi_error": self.imsi_error} if self.imsi_error else {}),
            "pin": self.pin.to_json(),
            "pin2": self.pin2.to_json() if self.pin2 is not None else None,
            "usim_aid": self.usim_aid.hex(),
        }


@dataclass(frozen=True)
class GsmClass:
    """How the card answers the GSM SIM class (TS 51.011), the first thing SIM tooling and many
    modems send: SELECT MF with CLA A0 (``9Fxx`` and 22+ bytes: a SIM), then DF.GSM."""

    answers: bool
    sw: int  # the status word of SELECT MF (after GET RESPONSE when it said 9Fxx)
    df_gsm: bool
    chv1_enabled: bool | None  # MF response byte 14, b8 (CHV1 disabled when set)

    def to_json(self) -> dict[str, Any]:
        return {
            "answers": self.answers,
            "sw": f"{self.sw:04X}",
            "df_gsm": self.df_gsm,
            "chv1_enabled": self.chv1_enabled,
        }


# ---- the client ----------------------------------------------------------------------------


class UsimClient:
    """USIM operations over one link. Remembers which application it selected, so repeated
    AUTHENTICATEs cost one APDU exchange each; :meth:`forget_selection` after someone else
    (a host behind AT+CSIM) may have moved the card's current file."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._usim: bytes | None = None
        self._usim_fcp: fs.Fcp | None = None
        self._in_usim = False

    def forget_selection(self) -> None:
        """Assume nothing about the current file (the AID found in EF.DIR is kept)."""
        self._in_usim = False

    # -- plumbing --

    def send(self, command: CommandApdu) -> ResponseApdu:
        """One command; the response as the card gave it (status words are not checked)."""
        return parse_response(self.link.transmit(command.encode()))

    _send = send

    def _ok(self, operation: str, command: CommandApdu) -> ResponseApdu:
        resp = self._send(command)
        if not is_success(resp.sw):
            raise CardRefused(operation, resp.sw)
        return resp

    def _select(self, fid: int, name: str) -> fs.Fcp | None:
        resp = self._ok(f"SELECT {name}", build_select_fid(fid))
        if fid == FID_MF:
            self._in_usim = False
        return _fcp(name, resp.data)

    def _read_transparent(self, fcp: fs.Fcp | None, default: int, name: str) -> bytes:
        size = fcp.size if fcp is not None and fcp.size else default
        return self._ok(f"READ BINARY {name}", build_read_binary(0, min(size, 256))).data

    # -- selection --

    def select_mf(self) -> fs.Fcp | None:
        """SELECT the MF (``3F00``)."""
        return self._select(FID_MF, "MF")

    def applications(self) -> list[Application]:
        """The records of EF.DIR (linear fixed, one application template each).

        Raises:
            CardRefused: MF or EF.DIR cannot be selected or read.
            RemoteProtocolError: EF.DIR's FCP or records do not decode.
        """
        self.select_mf()
        fcp = self._select(FID_DIR, "EF.DIR")
        if fcp is None or not fcp.records or not fcp.record_length:
            raise RemoteProtocolError("EF.DIR: FCP without record length and count")
        apps: list[Application] = []
        for number in range(1, fcp.records + 1):
            resp = self._send(build_read_record(number, min(fcp.record_length, 256)))
            if resp.sw == _SW_RECORD_NOT_FOUND:
                break
            if not is_success(resp.sw):
                raise CardRefused(f"READ RECORD EF.DIR #{number}", resp.sw)
            record = _decoded(f"EF.DIR record {number}", fs.EF_DIR.codec.decode, resp.data)
            if record is not None:
                apps.append(Application(bytes.fromhex(record["aid"]), record["label"]))
        return apps

    def select_usim(self) -> bytes:
        """SELECT ADF.USIM by the AID EF.DIR gives (TS 102 221 §8.1); returns that AID.

        Raises:
            NoUsimApplication: EF.DIR lists no USIM.
            CardRefused: the card refuses a SELECT or READ.
        """
        if self._usim is not None and self._in_usim:
            return self._usim
        if self._usim is not None:
            aid = self._usim  # found in EF.DIR before: select it again directly
        else:
            usims = [app for app in self.applications() if app.is_usim]
            if not usims:
                raise NoUsimApplication(f"{self.link.name}: EF.DIR lists no USIM application")
            aid = usims[0].aid
        resp = self._ok("SELECT ADF.USIM", build_select_aid(aid))
        self._usim_fcp = _fcp("ADF.USIM", resp.data)
        self._usim, self._in_usim = aid, True
        return aid

    # -- files --

    def read_iccid(self) -> str:
        """EF.ICCID under the MF."""
        self.select_mf()
        fcp = self._select(FID_ICCID, "EF.ICCID")
        data = self._read_transparent(fcp, 10, "EF.ICCID")
        return _decoded("EF.ICCID", fs.decode_iccid, data)

    def read_imsi(self) -> str:
        """EF.IMSI under ADF.USIM (readable after PIN verification on most cards).

        Raises:
            CardRefused: e.g. ``6982`` while the PIN is enabled and not verified.
            RemoteProtocolError: the file is erased or does not decode.
        """
        self.select_usim()
        fcp = self._select(FID_IMSI, "EF.IMSI")
        imsi = _decoded("EF.IMSI", fs.decode_imsi, self._read_transparent(fcp, 9, "EF.IMSI"))
        if imsi is None:
            raise RemoteProtocolError("EF.IMSI: erased (no IMSI personalised)")
        return imsi

    # -- PIN --

    def pin_status(self, ref: int = PIN1) -> PinStatus:
        """Ask without spending a try: VERIFY with no data, and the PS_DO of ADF.USIM."""
        self.select_usim()
        sw = self._send(build_verify_query(ref)).sw
        fcp = self._usim_fcp
        enabled = fcp.key_enabled(ref) if fcp is not None else None
        if sw == SW_BLOCKED:
            return PinStatus(ref, "blocked", False, 0)
        tries = pin_tries(sw)
        if enabled is False or sw == _SW_REFERENCE_INVALIDATED:
            # Disabled: nothing to verify; some cards still count tries for re-enabling.
            return PinStatus(ref, "disabled", False, tries)
        if tries is not None:
            return PinStatus(ref, "enabled", False, tries)
        if is_success(sw):
            return PinStatus(ref, "enabled", True, None)  # verified in this session
        raise CardRefused("VERIFY PIN (status)", sw)

    def verify_pin(self, pin: str, ref: int = PIN1) -> None:
        """VERIFY PIN.

        Raises:
            BadInput: the PIN is not 4…8 digits (nothing is sent).
            CardRefused: wrong PIN (``63Cx``, tries left in the message) or blocked (``6983``).
        """
        command = build_verify_pin(pin, ref)
        self.select_usim()
        self._ok("VERIFY PIN", command)

    def unblock_pin(self, puk: str, new_pin: str, ref: int = PIN1) -> None:
        """UNBLOCK PIN with the PUK, setting ``new_pin`` (the retry counter is reset)."""
        command = build_unblock_pin(puk, new_pin, ref)
        self.select_usim()
        self._ok("UNBLOCK PIN", command)

    def change_pin(self, old: str, new: str, ref: int = PIN1) -> None:
        """CHANGE PIN."""
        command = build_change_pin(old, new, ref)
        self.select_usim()
        self._ok("CHANGE PIN", command)

    def disable_pin(self, pin: str, ref: int = PIN1) -> None:
        """DISABLE PIN: EF.IMSI and AUTHENTICATE no longer wait for a VERIFY."""
        command = build_disable_pin(pin, ref)
        self.select_usim()
        self._ok("DISABLE PIN", command)

    def enable_pin(self, pin: str, ref: int = PIN1) -> None:
        """ENABLE PIN."""
        command = build_enable_pin(pin, ref)
        self.select_usim()
        self._ok("ENABLE PIN", command)

    # -- AKA --

    def authenticate(self, rand: bytes, autn: bytes) -> AkaResult:
        """AUTHENTICATE in 3G context (TS 31.102 §7.1.2.1) → success, sync failure or MAC
        failure, as :func:`aka.usim.usim_authenticate` returns them.

        Raises:
            BadInput: RAND or AUTN of the wrong length (nothing is sent).
            CardRefused: any other refusal (``6982`` PIN not verified, ``9864`` context…).
            RemoteProtocolError: a response that does not decode.
        """
        command = encode_authenticate_3g(rand, autn)
        self.select_usim()
        return _aka_answer(parse_response(self.link.transmit(command)), "AUTHENTICATE", "card")

    def authenticate_ims(self, rand: bytes, autn: bytes) -> AkaResult:
        """IMS AKA: AUTHENTICATE with the ISIM of EF.DIR selected (TS 31.103 §7.1.2) → RES, CK,
        IK (no Kc), a synchronisation failure or a MAC failure.

        Raises:
            BadInput: RAND or AUTN of the wrong length (nothing is sent).
            NoUsimApplication: EF.DIR lists no ISIM (the card is a USIM-only card).
            CardRefused: any other refusal.
        """
        command = build_authenticate_3g(rand, autn)
        isims = [app for app in self.applications() if app.aid.startswith(ISIM_AID_PREFIX)]
        if not isims:
            raise NoUsimApplication(f"{self.link.name}: EF.DIR lists no ISIM application")
        self._in_usim = False
        self._ok("SELECT ADF.ISIM", build_select_aid(isims[0].aid))
        return _aka_answer(self._send(command), "AUTHENTICATE (IMS AKA)", "ISIM")

    def authenticate_gsm(self, rand: bytes) -> GsmResult:
        """AUTHENTICATE in GSM context → SRES, Kc (TS 31.102 §7.1.2.1).

        Raises:
            CardRefused: the card refuses (``9864`` if it does not offer the GSM context).
        """
        command = build_authenticate_gsm(rand)
        self.select_usim()
        resp = self._ok("AUTHENTICATE (GSM context)", command)
        sres, kc = parse_auth_gsm_response(resp.data)
        return GsmResult(sres, kc)

    def get_identity(self) -> Any:
        """GET IDENTITY, SUCI context (TS 31.102 §7.5): the SUCI the USIM computed with its own
        ephemeral key, as an :class:`aka.suci.Suci`.

        Raises:
            CardRefused: the card refuses (``6985``: it does not calculate SUCIs; ``6982``: PIN).
            RemoteProtocolError: the answer is not an 'A1' SUCI object.
        """
        from aka.suci import Suci

        self.select_usim()
        resp = self._ok("GET IDENTITY", build_get_identity_suci())
        tlvs = fs.parse_tlvs(resp.data)
        if len(tlvs) != 1 or tlvs[0][0] != 0xA1:
            raise RemoteProtocolError("GET IDENTITY: expected one 'A1' SUCI object")
        try:
            return Suci.from_bytes(tlvs[0][1])
        except BadInput as exc:
            raise RemoteProtocolError(f"GET IDENTITY: {exc}") from None

    def read_suci_settings(self) -> dict[str, Any]:
        """What the ME conceals the SUPI with (TS 31.102 §4.4.11.8, §5.3.49): DF.5GS's
        EF.SUCI_Calc_Info (``info``: schemes and home network keys), EF.Routing_Indicator
        (``routing_indicator``, "0" when absent) and EF.AD's MNC length (``mnc_length``).

        Raises:
            CardRefused: the card lacks DF.5GS or EF.SUCI_Calc_Info, or wants the PIN.
            RemoteProtocolError: a file does not decode.
        """
        try:
            out: dict[str, Any] = {}
            for key, ef, path in (
                ("info", fs.EF_SUCI_CALC_INFO, b"\x5f\xc0\x4f\x07"),
                ("routing_indicator", fs.EF_ROUTING_INDICATOR, b"\x5f\xc0\x4f\x0a"),
                ("ad", fs.EF_AD, b"\x6f\xad"),
            ):
                self.forget_selection()
                self.select_usim()  # paths from the ADF
                resp = self._send(build_select_path(path, from_mf=False))
                if resp.sw == 0x6A82 and key == "routing_indicator":
                    out[key] = "0"
                    continue
                if not is_success(resp.sw):
                    raise CardRefused(f"SELECT {ef.name}", resp.sw)
                data = self._read_transparent(_fcp(ef.name, resp.data), ef.size, ef.name)
                out[key] = _decoded(ef.name, ef.codec.decode, data)
        finally:
            self.forget_selection()
        out["mnc_length"] = out.pop("ad")["mnc_length"]
        return out

    # -- everything for `card info` --

    def probe_gsm(self) -> GsmClass:
        """SELECT MF, then DF.GSM (7F20), in the GSM class. The basic channel's current file
        moves: the client forgets its selection."""
        self.forget_selection()
        try:
            mf = self._send(CommandApdu(CLA_GSM, 0xA4, 0x00, 0x00, FID_MF.to_bytes(2, "big")))
            if not is_success(mf.sw) or len(mf.data) < 22:
                return GsmClass(False, mf.sw, False, None)
            chv1_enabled = not mf.data[13] & 0x80
            df = self._send(CommandApdu(CLA_GSM, 0xA4, 0x00, 0x00, b"\x7f\x20"))
            return GsmClass(True, mf.sw, is_success(df.sw), chv1_enabled)
        finally:
            self.forget_selection()

    def info(self) -> CardInfo:
        """ATR, ICCID, USIM AID, PIN status and, if the card lets us, the IMSI."""
        iccid = self.read_iccid()
        aid = self.select_usim()
        pin = self.pin_status()
        try:
            pin2: PinStatus | None = self.pin_status(PIN2)
        except CardRefused as exc:
            if exc.sw not in _SW_NO_SUCH_KEY:
                raise
            pin2 = None  # no second application PIN on this card
        imsi: str | None = None
        imsi_error: str | None = None
        try:
            imsi = self.read_imsi()
        except CardRefused as exc:
            imsi_error = str(exc)
        return CardInfo(self.link.atr, iccid, imsi, imsi_error, pin, aid, pin2)


def _aka_answer(resp: ResponseApdu, operation: str, holder: str) -> AkaResult:
    """One AUTHENTICATE answer in the 3G context (USIM or ISIM): success, AUTS or MAC failure;
    any other status word is the card's refusal of ``operation``."""
    if resp.sw == SW_AUTH_MAC_FAILURE:
        return AkaMacFailure()
    if not is_success(resp.sw):
        raise CardRefused(operation, resp.sw)
    out = parse_auth_3g_response(resp.data)
    if isinstance(out, Auth3gSync):
        return AkaSyncFailure(out.auts, f"reported by the {holder}")
    return AkaSuccess(out.res, out.ck, out.ik)
