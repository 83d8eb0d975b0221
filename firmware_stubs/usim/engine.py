"""Pure. The emulated USIM: one command APDU in, one response out (TS 102 221 §10–11, TS 31.102 §7).

Sans-I/O like h11: the vpcd card link, the pty modem and unit tests all feed bytes to
:meth:`UsimEngine.process` and send back what it returns. Files come from the declarations of
:mod:`uicc.fs`; commands come from one INS table per class. The ATR offers T=0 and T=1: a
case-4 command sent the T=0 way (no Le) answers ``61xx`` and its data is fetched with GET
RESPONSE; sent with Le (T=1) it is answered at once; a wrong Le gives ``6Cxx``.

The card is dual mode: the GSM SIM class ``A0`` (TS 51.011) runs on the same file system and
PINs as the UICC classes, with its own SELECT response, status words (``9Fxx``, ``98xx``,
``94xx``) and RUN GSM ALGORITHM. Logical channels 1–19 (MANAGE CHANNEL) each keep their own
current file and application; PIN verification is per card. Non-volatile state goes through an injected :class:`CardStore`, committed
*before* the response that depends on it is returned (TS 33.102 Annex C: no SQN rollback).

Over-the-air management (Alternative 3a): ENVELOPE (``80 C2``) carrying an SMS-PP data download
goes to :mod:`firmware_stubs.usim.ota`, which checks the secured packet and runs its remote
commands through :meth:`UsimEngine.run_script` — the same command table, in a file context of
its own with the rights the RFM application grants (TS 102 226). K/OPc can be replaced by a
proprietary PUT DATA (``80 DA DF 01``, ADM1 only; see :func:`uicc.ota.build_set_credentials`).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from aka.algorithm import AkaAlgorithm
from aka.suci import EphemeralAgreement, SoftwareAgreement
from aka.usim import AkaMacFailure, AkaSyncFailure, gsm_authenticate, usim_authenticate
from trelab.digits import is_decimal
from trelab.errors import BadInput
from uicc import fs, seac
from uicc.fs import (
    ADF,
    DF,
    EF,
    Access,
    BerTlvEF,
    CyclicEF,
    LinearFixedEF,
    TransparentEF,
    encode_ber_length,
    encode_ber_tlv,
    encode_tlv,
    parse_ber_tlvs,
    read_ber_length,
    read_ber_tag,
)
from uicc.ota import CREDENTIALS_P1P2, parse_set_credentials
from uicc.sw import (
    SW_CHANNEL_NOT_SUPPORTED,
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_CONFLICTING_RULE,
    SW_END_OF_FILE,
    SW_FILE_NOT_FOUND,
    SW_FUNCTION_NOT_SUPPORTED,
    SW_GSM_ACCESS_NOT_FULFILLED,
    SW_GSM_CHV_BLOCKED,
    SW_GSM_CHV_CONTRADICTION,
    SW_GSM_FILE_INCONSISTENT,
    SW_GSM_NO_CHV,
    SW_GSM_NO_EF,
    SW_GSM_NOT_FOUND,
    SW_GSM_OUT_OF_RANGE,
    SW_INCOMPATIBLE_FILE,
    SW_INCORRECT_DATA,
    SW_INS_NOT_SUPPORTED,
    SW_MAC_FAILURE,
    SW_MAX_VALUE_REACHED,
    SW_MORE_DATA_AVAILABLE,
    SW_MORE_DATA_EXPECTED,
    SW_NO_EF_SELECTED,
    SW_NOT_ENOUGH_MEMORY,
    SW_OK,
    SW_PIN_BLOCKED,
    SW_RECORD_NOT_FOUND,
    SW_REFERENCED_DATA_INVALIDATED,
    SW_REFERENCED_DATA_NOT_FOUND,
    SW_SECURE_MESSAGING_NOT_SUPPORTED,
    SW_SECURITY_NOT_SATISFIED,
    SW_TECHNICAL_PROBLEM,
    SW_WRONG_LENGTH,
    SW_WRONG_OFFSET,
    SW_WRONG_P1P2,
)

from .contents import initial_files
from .profile import CardProfile, load_profile, make_algorithm
from .state import AkaCredentials, CardState, CardStore, FileContent, PinState

__all__ = [
    "ATR",
    "CHANNELS",
    "CLA_GSM",
    "HISTORICAL_BYTES",
    "MAX_EXTENDED_LC",
    "MAX_TRIES",
    "UsimEngine",
    "initial_state",
    "open_card",
]


def _with_tck(atr: bytes) -> bytes:
    """Append TCK: the XOR of T0 … TCK is zero (ISO/IEC 7816-3 §8.2.5)."""
    tck = 0
    for byte in atr[1:]:
        tck ^= byte
    return atr + bytes([tck])


# Historical bytes (ISO/IEC 7816-4 §8.1.1), category 80 then COMPACT-TLV:
#   31 E0 card service data: selection by full and by partial DF name, BER-TLV data objects
#         in EF.DIR, EF.DIR read with READ RECORD, a card with an MF;
#   73 FE A1 5F card capabilities: selection by DF name, partial name, path, FID, implicit DF,
#         SFI and record number; BER-TLV EFs, 1-byte data unit; no command chaining, extended
#         Lc and Le fields (b7 of the third byte; READ/UPDATE BINARY, RETRIEVE/SET DATA);
#         logical channels assigned by the card and by the terminal, 8 or more.
HISTORICAL_BYTES = bytes.fromhex("8031e073fea15f")
# TS 102 221 §6.3 / ISO/IEC 7816-3 §8.2: TS 3B; T0 (TA1, TD1, K historical bytes); TA1 96
# (Fi/Di 512/32); TD1 80: T=0 first (the default), TD2 follows; TD2 B1: T=1 with TA3 FE (IFSC
# 254) and TB3 45 (BWI 4, CWI 5), TD3 follows; TD3 1F: T=15 global TA4 C7 (clock stop without
# preference, classes A, B and C); historical bytes; TCK (present since T=1 is offered).
ATR = _with_tck(
    bytes([0x3B, 0x90 | len(HISTORICAL_BYTES), 0x96, 0x80, 0xB1, 0xFE, 0x45, 0x1F, 0xC7])
    + HISTORICAL_BYTES
)
CHANNELS = 20  # the basic channel and channels 1…19 (TS 102 221 §10.1.1, extended ones 4…19)
CLA_GSM = 0xA0  # the GSM SIM class (TS 51.011 §9)

# Retry counters (TS 102 221 §9.5.1): 3 for the PINs and ADM1, 10 for the PUKs.
MAX_TRIES = {"pin1": 3, "puk1": 10, "pin2": 3, "puk2": 10, "adm1": 3}

# Key references (TS 102 221 §9.5.1 Table 9.3) → PIN names in the card state. A PUK has no
# reference of its own: UNBLOCK PIN names the PIN it unblocks.
_KEY_REFS = {
    fs.KEY_REFERENCE[Access.PIN1]: "pin1",
    fs.KEY_REFERENCE[Access.PIN2]: "pin2",
    fs.KEY_REFERENCE[Access.ADM1]: "adm1",
}
_PUK_OF = {"pin1": "puk1", "pin2": "puk2"}
_ACCESS_KEY = {Access.PIN1: "pin1", Access.PIN2: "pin2", Access.ADM1: "adm1"}

_CONTEXT_GSM = 0x80  # AUTHENTICATE P2, TS 31.102 §7.1.1: specific reference data, GSM context
_CONTEXT_3G = 0x81  # … 3G (UMTS/EPS) context


class _Refuse(Exception):
    """Internal: answer with this status word (and no data)."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


@dataclass(frozen=True, slots=True)
class _Command:
    """A parsed command APDU (ISO/IEC 7816-3 §12.1, 7816-4 §5.1: cases 1, 2S/2E, 3S/3E,
    4S/4E)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None  # None: absent; 0 encodes the maximum (256, or 65536 when extended)
    extended: bool = False  # Lc/Le in the extended form (3 or 2 bytes)

    @property
    def has_data(self) -> bool:
        return bool(self.data)

    @property
    def max_le(self) -> int:
        """What Le 0 stands for: 256 in a short APDU, 65536 in an extended one."""
        return 65536 if self.extended else 256


def _parse(apdu: bytes) -> _Command:
    """Split CLA INS P1 P2 [Lc data] [Le], short or extended (a first length byte 00 followed
    by two more); any other layout is 6700."""
    if len(apdu) < 4:
        raise _Refuse(SW_WRONG_LENGTH)
    cla, ins, p1, p2 = apdu[:4]
    if len(apdu) == 4:
        return _Command(cla, ins, p1, p2, b"", None)
    if len(apdu) == 5:
        return _Command(cla, ins, p1, p2, b"", apdu[4])
    lc = apdu[4]
    if lc == 0:  # extended: 00 ‖ Le (2 bytes), or 00 ‖ Lc (2 bytes) ‖ data [‖ Le (2 bytes)]
        if len(apdu) == 7:
            return _Command(cla, ins, p1, p2, b"", int.from_bytes(apdu[5:7], "big"), True)
        if len(apdu) < 7:
            raise _Refuse(SW_WRONG_LENGTH)
        lc = int.from_bytes(apdu[5:7], "big")
        if not 1 <= lc <= MAX_EXTENDED_LC:
            raise _Refuse(SW_WRONG_LENGTH)
        if len(apdu) == 7 + lc:
            return _Command(cla, ins, p1, p2, apdu[7:], None, True)
        if len(apdu) == 9 + lc:
            le = int.from_bytes(apdu[-2:], "big")
            return _Command(cla, ins, p1, p2, apdu[7:-2], le, True)
        raise _Refuse(SW_WRONG_LENGTH)
    if len(apdu) == 5 + lc:
        return _Command(cla, ins, p1, p2, apdu[5:], None)
    if len(apdu) == 6 + lc:
        return _Command(cla, ins, p1, p2, apdu[5:-1], apdu[-1])
    raise _Refuse(SW_WRONG_LENGTH)


MAX_EXTENDED_LC = 4096  # the most command data this card takes in one extended APDU

# Commands that take extended Lc/Le (ISO/IEC 7816-4 §5.1), as the ATR's card capabilities say:
# READ/UPDATE BINARY and RETRIEVE/SET DATA, in the UICC classes; the others and the GSM class
# answer such an APDU 6700.
_EXTENDED_INS = frozenset({0xB0, 0xD6, 0xCB, 0xDB})


Family = Literal["iso", "uicc"]


def _check_class(cla: int, family: Family) -> int:
    """CLA coding (TS 102 221 §10.1.1): 0X/4X–7X interindustry, 8X/CX/EX UICC-specific (A0, the
    GSM class, has a table of its own). Returns the logical channel the class names."""
    if cla == 0xFF:
        raise _Refuse(SW_CLA_NOT_SUPPORTED)
    if cla & 0x40:  # further interindustry values: channels 4…19
        channel, secure, chaining = 4 + (cla & 0x0F), cla & 0x20, cla & 0x10
    elif cla & 0xE0 in (0x00, 0x80):
        channel, secure, chaining = cla & 0x03, cla & 0x0C, cla & 0x10
    else:  # 2X, 3X, AX (GSM SIM class), BX
        raise _Refuse(SW_CLA_NOT_SUPPORTED)
    if ("iso" if cla < 0x80 else "uicc") != family:
        raise _Refuse(SW_CLA_NOT_SUPPORTED)
    if chaining:
        raise _Refuse(SW_CLA_NOT_SUPPORTED)
    if secure:
        raise _Refuse(SW_SECURE_MESSAGING_NOT_SUPPORTED)
    return channel


# UICC status words → the GSM SIM's for the same situation (TS 51.011 §9.4). 63Cx becomes
# 9804 (9840 when no try is left: 6983); 61xx becomes 9Fxx and 6Cxx 67xx (P3 wrong, xx right).
_GSM_SW = {
    SW_INCOMPATIBLE_FILE: SW_GSM_FILE_INCONSISTENT,
    SW_SECURITY_NOT_SATISFIED: SW_GSM_ACCESS_NOT_FULFILLED,
    SW_PIN_BLOCKED: SW_GSM_CHV_BLOCKED,
    SW_REFERENCED_DATA_INVALIDATED: SW_GSM_CHV_CONTRADICTION,
    SW_CONDITIONS_NOT_SATISFIED: SW_GSM_CHV_CONTRADICTION,
    SW_NO_EF_SELECTED: SW_GSM_NO_EF,
    SW_FILE_NOT_FOUND: SW_GSM_NOT_FOUND,
    SW_RECORD_NOT_FOUND: SW_GSM_OUT_OF_RANGE,
    SW_WRONG_OFFSET: SW_GSM_OUT_OF_RANGE,
    SW_WRONG_P1P2: 0x6B00,
    SW_REFERENCED_DATA_NOT_FOUND: 0x6B00,
    SW_INCORRECT_DATA: 0x6B00,
}


def _to_gsm(response: bytes) -> bytes:
    """A response of the shared command code, with its status word as the GSM SIM says it."""
    sw1, sw2 = response[-2], response[-1]
    if sw1 == 0x61:
        return response[:-2] + bytes([0x9F, sw2])
    if sw1 == 0x6C:
        return response[:-2] + bytes([0x67, sw2])
    if sw1 == 0x63 and sw2 >> 4 == 0xC:
        return response[:-2] + _sw(SW_GSM_ACCESS_NOT_FULFILLED)
    sw = _GSM_SW.get(sw1 << 8 | sw2)
    return response if sw is None else response[:-2] + _sw(sw)


def _gsm_access(access: Access) -> int:
    """Access condition nibble of TS 51.011 §9.3: 0 ALW, 1 CHV1, 2 CHV2, A an ADM level, F NEV."""
    return {Access.ALW: 0x0, Access.PIN1: 0x1, Access.PIN2: 0x2, Access.ADM1: 0xA}.get(access, 0xF)


def _gsm_chv_status(pin: PinState | None) -> int:
    """CHV status byte (TS 51.011 §9.2.1): b8 secret code initialised, b4–b1 tries left; 00
    for a code the card does not have."""
    return 0x00 if pin is None else 0x80 | (pin.remaining & 0x0F)


def _sw(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


def _matching_records(
    records: Sequence[bytes],
    order: Sequence[int],
    pattern: bytes,
    *,
    anchored: bool,
    offset: int = 0,
    after: int | None = None,
) -> list[int]:
    """The record numbers in ``order`` whose content holds ``pattern``: at ``offset`` exactly
    when ``anchored`` (GSM SEEK: the record starts with it), else anywhere from ``offset`` on
    (SEARCH RECORD), or, with ``after`` set, anywhere after the first byte equal to ``after``
    (a record without that byte does not match)."""
    found: list[int] = []
    for number in order:
        record = records[number - 1]
        start = offset
        if after is not None:
            index = record.find(bytes([after]))
            if index < 0:
                continue
            start = index + 1
        if anchored:
            hit = record[start : start + len(pattern)] == pattern
        else:
            hit = record.find(pattern, start) >= 0
        if hit:
            found.append(number)
    return found


def _pin_block_ok(block: bytes) -> bool:
    """A new PIN: 4–8 ASCII digits padded with FF to 8 bytes (TS 102 221 §9.5.1)."""
    digits = block.rstrip(b"\xff")
    return len(block) == 8 and 4 <= len(digits) <= 8 and is_decimal(digits.decode("latin-1"))


def _initial_files(profile: CardProfile) -> dict[str, FileContent]:
    """File contents of a freshly personalised card (:mod:`.contents`)."""
    return initial_files(profile)


def initial_state(profile: CardProfile) -> CardState:
    """The non-volatile state of a card fresh from personalisation."""
    pins = {
        "pin1": PinState(
            profile.pin1_block, MAX_TRIES["pin1"], MAX_TRIES["pin1"], profile.pin1_enabled
        ),
        "puk1": PinState(profile.puk1_block, MAX_TRIES["puk1"], MAX_TRIES["puk1"]),
        "adm1": PinState(profile.adm1_block, MAX_TRIES["adm1"], MAX_TRIES["adm1"]),
    }
    if profile.pin2_block is not None and profile.puk2_block is not None:
        pins["pin2"] = PinState(profile.pin2_block, MAX_TRIES["pin2"], MAX_TRIES["pin2"])
        pins["puk2"] = PinState(profile.puk2_block, MAX_TRIES["puk2"], MAX_TRIES["puk2"])
    return CardState(
        iccid=profile.iccid,
        sqn=profile.initial_sqn_state(),
        pins=MappingProxyType(pins),
        files=MappingProxyType({}),
    )


def _build_parents() -> dict[str, DF | ADF]:
    """The parent of every DF and ADF (an EF may sit in two DFs: its parent is where it was
    selected, see :meth:`UsimEngine._by_fid`)."""
    parents: dict[str, DF | ADF] = {fs.MF.name: fs.MF}
    stack: list[DF | ADF] = [fs.MF, *fs.APPLICATIONS]
    for app in fs.APPLICATIONS:
        parents[app.name] = fs.MF
    while stack:
        node = stack.pop()
        for child in node.children:
            if isinstance(child, DF):
                parents[child.name] = node
                stack.append(child)
    return parents


_PARENTS = _build_parents()
Node = DF | ADF | TransparentEF | LinearFixedEF | BerTlvEF


@dataclass(slots=True)
class _Transfer:
    """A data object moving in blocks on one channel (TS 102 221 §11.3): what RETRIEVE DATA
    still has to send, or what SET DATA has gathered of an object of ``length`` bytes."""

    ef: BerTlvEF
    tag: bytes
    rest: bytes = b""  # RETRIEVE DATA: the object's bytes not sent yet
    length: int = 0  # SET DATA: the value's announced length …
    value: bytes = b""  # … and what of it has arrived


# what one logical channel remembers: current DF, current EF, active application, record pointer
_Selection = tuple[DF | ADF, EF | None, ADF | None, int]


class UsimEngine:
    """A dual-mode SIM/USIM (UICC with ADF.USIM and DF.GSM), T=0 and T=1, 20 logical channels.

    The constructor loads the card state from ``store`` (or personalises a fresh one from
    ``profile``) and powers the card on.

    Raises:
        BadInput: the store holds a malformed state or the state of another card (ICCID).
    """

    def __init__(self, profile: CardProfile, store: CardStore | None = None) -> None:
        self._profile = profile
        self._store = store if store is not None else CardStore(None)
        self._algorithms: tuple[AkaCredentials | None, AkaAlgorithm] = (
            None,
            profile.make_algorithm(),
        )
        self._deferred = False  # inside run_script: commits stay in memory until the caller's
        mac_len = 8 if profile.algorithm == "milenage" else profile.mac_bits // 8
        self._autn_len = 8 + mac_len
        self._base_files = _initial_files(profile)
        state = self._store.load()
        if state is None:
            state = initial_state(profile)
            self._store.save(state)
        elif state.iccid != profile.iccid:
            raise BadInput(f"card state belongs to ICCID {state.iccid}, not {profile.iccid}")
        elif profile.pin2 is not None and "pin2" not in state.pins:
            # a state written before the profile had a PIN2: personalise it now
            fresh = initial_state(profile).pins
            state = state.with_pin("pin2", fresh["pin2"]).with_pin("puk2", fresh["puk2"])
            self._store.save(state)
        self._state = state
        self.last_error: str | None = None  # type name of the last internal error (6F00)
        # GET IDENTITY's ephemeral keys: fresh each time; conformance tests pin one here
        self.suci_agreement: EphemeralAgreement = SoftwareAgreement()
        self._table: dict[int, tuple[Family, Callable[[_Command], bytes]]] = {
            0xA4: ("iso", self._select),
            0xB0: ("iso", self._read_binary),
            0xD6: ("iso", self._update_binary),
            0xB2: ("iso", self._read_record),
            0xA2: ("iso", self._search_record),
            0xDC: ("iso", self._update_record),
            0xC0: ("iso", self._get_response),
            0x20: ("iso", self._verify),
            0x24: ("iso", self._change),
            0x26: ("iso", self._disable),
            0x28: ("iso", self._enable),
            0x2C: ("iso", self._unblock),
            0x88: ("iso", self._authenticate),
            0x78: ("uicc", self._get_identity),
            0xCA: ("uicc", self._get_data),
            0xF2: ("uicc", self._status),
            0x10: ("uicc", self._terminal_profile),
            0xC2: ("uicc", self._envelope),
            0xDA: ("uicc", self._put_data),
            0x70: ("iso", self._manage_channel),
            0xCB: ("uicc", self._retrieve_data),
            0xDB: ("uicc", self._set_data),
            0xE2: ("uicc", self._store_data),
            0x32: ("uicc", self._increase),
        }
        # the GSM SIM class (TS 51.011 §9.2): commands over the same files and PINs
        self._gsm_table: dict[int, Callable[[_Command], bytes]] = {
            0xA4: self._gsm_select,
            0xF2: self._gsm_status,
            0xB0: self._gsm_read_binary,
            0xD6: self._gsm_update_binary,
            0xB2: self._gsm_read_record,
            0xDC: self._gsm_update_record,
            0xA2: self._gsm_seek,
            0xC0: self._gsm_get_response,
            0x20: self._gsm_verify,
            0x24: self._gsm_change,
            0x26: self._gsm_disable,
            0x28: self._gsm_enable,
            0x2C: self._gsm_unblock,
            0x88: self._run_gsm_algorithm,
            0x10: self._terminal_profile,
            0x32: self._increase,
        }
        self._powered = False
        self._pending: bytes | None = None
        self.power_on()

    def __repr__(self) -> str:
        return f"UsimEngine(iccid={self._profile.iccid}, algorithm={self._profile.algorithm})"

    # -- power -----------------------------------------------------------------------------------
    @property
    def atr(self) -> bytes:
        return ATR

    @property
    def powered(self) -> bool:
        return self._powered

    def power_on(self) -> bytes:
        """Cold start: MF selected, no PIN verified, no pending response. Returns the ATR."""
        self._powered = True
        self._df: DF | ADF = fs.MF
        self._ef: EF | None = None
        self._app: ADF | None = None
        self._record = 0
        self._channel = 0  # the channel whose selection is in _df/_ef/_app/_record
        self._channels: dict[int, _Selection] = {}  # the other open channels' selections
        self._verified: set[str] = set()
        self._pending = None
        self._pending_channel = 0
        self._offered: bytes | None = None
        self._offered_channel = 0
        self._le: int | None = None  # Le of the case-4 command being run (T=1), else None
        self._pending_sw = self._offered_sw = SW_OK  # the status after the last response byte
        self._transfers: dict[int, _Transfer] = {}  # BER-TLV block transfers, by channel
        self._rules_rest: dict[
            int, bytes
        ] = {}  # GET DATA 'FF40' still to send ('FF60'), by channel
        return ATR

    def reset(self) -> bytes:
        """Warm reset: same volatile reset as a cold start (TS 102 221 §6.2)."""
        return self.power_on()

    def power_off(self) -> None:
        self.power_on()
        self._powered = False

    # -- read-only views for links (AT+CIMI, AT+CPIN?) and tests -------------------------------
    @property
    def profile(self) -> CardProfile:
        return self._profile

    @property
    def state(self) -> CardState:
        return self._state

    @property
    def store(self) -> CardStore:
        return self._store

    @property
    def imsi(self) -> str | None:
        """The IMSI currently in EF.IMSI (it may have been rewritten with UPDATE BINARY)."""
        content = self._content(fs.EF_IMSI)
        assert isinstance(content, bytes)
        try:
            return fs.decode_imsi(content)
        except BadInput:
            return None

    def pin_status(self) -> dict[str, object]:
        """PIN1/PUK state as a modem needs it for AT+CPIN? (TS 27.007 §8.3)."""
        pin1, puk1 = self._state.pins["pin1"], self._state.pins["puk1"]
        return {
            "pin1_enabled": pin1.enabled,
            "pin1_verified": "pin1" in self._verified,
            "pin1_remaining": pin1.remaining,
            "puk1_remaining": puk1.remaining,
        }

    # -- the one entry point ---------------------------------------------------------------------
    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU with data ‖ SW1 SW2. Never raises.

        A card that is off is powered on first (a link may skip the explicit power-on).
        An internal error answers 6F00 and changes nothing (``last_error`` names it).
        """
        if not self._powered:
            self.power_on()
        # T=0: response data is offered to the next command only (if it is GET RESPONSE)
        self._offered, self._pending = self._pending, None
        self._offered_channel = self._pending_channel
        self._offered_sw, self._pending_sw = self._pending_sw, SW_OK
        return self._dispatch(apdu)

    def _dispatch(self, apdu: bytes) -> bytes:
        try:
            command = _parse(bytes(apdu))
            if command.extended and (command.cla == CLA_GSM or command.ins not in _EXTENDED_INS):
                raise _Refuse(SW_WRONG_LENGTH)
            self._le = command.le if command.data else None
            if self._le == 0:
                self._le = command.max_le
            if command.cla == CLA_GSM:
                return self._dispatch_gsm(command)
            entry = self._table.get(command.ins)
            if entry is None:
                _check_class(command.cla, "iso" if command.cla < 0x80 else "uicc")
                raise _Refuse(SW_INS_NOT_SUPPORTED)
            family, handler = entry
            channel = _check_class(command.cla, family)
            if channel != self._channel:
                self._use_channel(channel)
            return handler(command)
        except _Refuse as refusal:
            return _sw(refusal.sw)
        except Exception as exc:  # the card must answer; a bug shows as 6F00 + last_error
            self.last_error = type(exc).__name__
            return _sw(SW_TECHNICAL_PROBLEM)

    def _dispatch_gsm(self, command: _Command) -> bytes:
        """The GSM SIM class: always the basic channel, status words of TS 51.011 §9.4."""
        handler = self._gsm_table.get(command.ins)
        try:
            if handler is None:
                raise _Refuse(SW_INS_NOT_SUPPORTED)
            if self._channel:
                self._use_channel(0)
            return _to_gsm(handler(command))
        except _Refuse as refusal:
            return _to_gsm(_sw(refusal.sw))

    # -- logical channels (TS 102 221 §10.1.1, §11.1.17) -----------------------------------------
    def _use_channel(self, channel: int) -> None:
        """Make ``channel`` current: park this channel's selection, take up that one's."""
        if channel not in self._channels or (self._deferred and channel):
            raise _Refuse(SW_CHANNEL_NOT_SUPPORTED)
        self._channels[self._channel] = (self._df, self._ef, self._app, self._record)
        self._df, self._ef, self._app, self._record = self._channels.pop(channel)
        self._channel = channel

    @property
    def open_channels(self) -> tuple[int, ...]:
        """Logical channels open now, the basic channel 0 included."""
        return tuple(sorted((self._channel, *self._channels)))

    def _manage_channel(self, c: _Command) -> bytes:
        """MANAGE CHANNEL: open (P1 00; P2 00 lets the card choose, returned as one byte) or
        close (P1 80; P2 the channel, 00 the one the class names). A channel opened from the
        basic channel starts at the MF; from another one, at that channel's DF/application."""
        if c.data or self._deferred:
            raise _Refuse(SW_WRONG_LENGTH if c.data else SW_CONDITIONS_NOT_SATISFIED)
        if c.p1 == 0x80:
            target = c.p2 or self._channel
            if c.le or not 1 <= target < CHANNELS:  # P3 00 is case 1 over T=0
                raise _Refuse(SW_WRONG_LENGTH if c.le else SW_WRONG_P1P2)
            if target == self._channel:
                self._use_channel(0)
            if target not in self._channels:
                raise _Refuse(SW_CHANNEL_NOT_SUPPORTED)
            del self._channels[target]
            self._transfers.pop(target, None)
            return _sw(SW_OK)
        if c.p1 != 0x00 or c.p2 >= CHANNELS:
            raise _Refuse(SW_WRONG_P1P2)
        if c.p2:
            if c.p2 in self._channels or c.p2 == self._channel:
                raise _Refuse(SW_WRONG_P1P2)  # already open
            new = c.p2
            if c.le:
                raise _Refuse(SW_WRONG_LENGTH)
        else:
            if c.le not in (None, 1):
                raise _Refuse(SW_WRONG_LENGTH)
            free = [n for n in range(1, CHANNELS) if n not in self._channels and n != self._channel]
            if not free:
                raise _Refuse(SW_FUNCTION_NOT_SUPPORTED)  # no channel left
            new = free[0]
        if self._channel == 0:
            self._channels[new] = (fs.MF, None, None, 0)
        else:
            self._channels[new] = (self._df, None, self._app, 0)
        return bytes([new]) + _sw(SW_OK) if not c.p2 else _sw(SW_OK)

    # -- remote management (used by firmware_stubs.usim.ota) ----------------------------------------
    def commit(self, state: CardState) -> None:
        """Persist ``state``, then adopt it (the OTA receiver's counter and script results).

        Raises:
            OSError: the store could not write; the card state is unchanged.
        """
        self._store.save(state)
        self._state = state

    def run_script(
        self, apdus: Sequence[bytes], *, application: ADF | None, granted: frozenset[str]
    ) -> tuple[list[bytes], CardState]:
        """Run remote commands (TS 102 226 §5: RFM) as the card's own RFM application would:
        in a file context of their own (current DF: ``application`` or the MF), with the key
        references in ``granted`` counted as verified, stopping after the first command whose
        status is not 90xx/91xx/61xx. The terminal's selection, verified PINs and pending
        response are untouched.

        Returns the R-APDUs and the state they produced, *not* committed: the caller commits it
        (one atomic write for the whole script).
        """
        if self._channel:  # remote commands run beside the basic channel's context
            self._use_channel(0)
        saved = (self._df, self._ef, self._app, self._record, self._verified)
        pending = (self._pending, self._offered)
        transfers = dict(self._transfers)
        before = self._state
        self._deferred = True
        self._df, self._ef, self._app, self._record = application or fs.MF, None, application, 0
        self._verified = set(granted)
        self._pending = self._offered = None
        responses: list[bytes] = []
        try:
            for apdu in apdus:
                self._offered, self._pending = self._pending, None
                response = self._dispatch(apdu)
                responses.append(response)
                if response[-2] not in (0x90, 0x91, 0x61):
                    break
            return responses, self._state
        finally:
            self._deferred = False
            self._state = before
            self._df, self._ef, self._app, self._record, self._verified = saved
            self._pending, self._offered = pending
            self._transfers = transfers

    # -- helpers ---------------------------------------------------------------------------------
    def _commit(self, state: CardState) -> None:
        """Persist first, then adopt: if the store raises, the card state is unchanged. Inside
        :meth:`run_script` the state is only adopted (the script is committed as one)."""
        if not self._deferred:
            self._store.save(state)
        self._state = state

    @property
    def _algorithm(self) -> AkaAlgorithm:
        """f1…f5* with the profile's K/OPc, or those set over the air (cached per credentials)."""
        credentials = self._state.ota.credentials
        cached, algorithm = self._algorithms
        if credentials is not cached:
            if credentials is None:
                algorithm = self._profile.make_algorithm()
            elif self._profile.algorithm != "tuak":  # Milenage, HMAC-SHA-256: K ‖ OPc
                algorithm = make_algorithm(
                    replace(self._profile, k=credentials.k, opc=credentials.opc)
                )
            else:
                algorithm = make_algorithm(
                    replace(self._profile, k=credentials.k, topc=credentials.opc)
                )
            self._algorithms = (credentials, algorithm)
        return algorithm

    def _content(self, ef: EF) -> FileContent:
        return self._state.files.get(ef.name, self._base_files[ef.name])

    def _respond_later(self, data: bytes, final: int = SW_OK) -> bytes:
        """Case 4 the T=0 way (no Le): keep ``data`` for GET RESPONSE and announce its length
        with 61xx. Sent with Le (T=1): answer at once, up to Le bytes, 61xx for the rest.
        ``final`` is the status that goes with the last byte."""
        le = self._le
        if le is not None:
            self._le = None
            wanted = le or 256
            if len(data) <= wanted:
                return data + _sw(final)
            data, rest = data[:wanted], data[wanted:]
            self._pending, self._pending_channel = rest, self._channel
            self._pending_sw = final
            return data + bytes([0x61, len(rest) & 0xFF])
        self._pending, self._pending_channel, self._pending_sw = data, self._channel, final
        return bytes([0x61, len(data) & 0xFF])

    @staticmethod
    def _respond_now(data: bytes, le: int | None) -> bytes:
        """T=0 case 2: Le absent or 00 takes all (≤ 256); a different Le gets 6Cxx (exact length)."""
        if le is None or le == 0 or le == len(data):
            return data + _sw(SW_OK)
        return bytes([0x6C, len(data) & 0xFF])

    def _allowed(self, access: Access) -> bool:
        """ALW; a PIN verified or disabled (a card without PIN2 cannot satisfy PIN2); ADM1
        verified; never NEV."""
        if access is Access.ALW:
            return True
        name = _ACCESS_KEY.get(access)
        pin = self._state.pins.get(name) if name is not None else None
        if pin is None:
            return False
        return name in self._verified or (name != "adm1" and not pin.enabled)

    def _require(self, access: Access) -> None:
        if not self._allowed(access):
            raise _Refuse(SW_SECURITY_NOT_SATISFIED)

    # -- SELECT (TS 102 221 §11.1.1) -------------------------------------------------------------
    def _child(self, df: DF | ADF, fid: int) -> Node | None:
        return next((c for c in df.children if c.fid == fid), None)

    def _by_fid(self, fid: int) -> tuple[Node, DF | ADF]:
        """Search order of TS 102 221 §8.4.1: children of the current DF, the DF itself, its
        parent and the parent's children, the MF; 7FFF is the current application. Returns the
        file and the DF it was found in (an EF may sit in two, as DF.GSM shares ADF.USIM's)."""
        if fid == 0x3F00:
            return fs.MF, fs.MF
        if fid == 0x7FFF:
            if self._app is None:
                raise _Refuse(SW_FILE_NOT_FOUND)
            return self._app, fs.MF
        current = self._df
        parent = _PARENTS[current.name]
        found = self._child(current, fid)
        if found is not None:
            return found, current
        if current.fid == fid and not isinstance(current, ADF):
            return current, parent
        if parent.fid == fid:
            return parent, _PARENTS[parent.name]
        found = self._child(parent, fid)
        if found is None:
            raise _Refuse(SW_FILE_NOT_FOUND)
        return found, parent

    def _by_path(self, start: DF | ADF, path: bytes) -> tuple[Node, DF | ADF]:
        if not path or len(path) % 2:
            raise _Refuse(SW_WRONG_LENGTH)
        fids = [int.from_bytes(path[i : i + 2], "big") for i in range(0, len(path), 2)]
        if start is fs.MF and fids[0] == 0x3F00:  # tolerate an explicit MF at the start
            fids = fids[1:]
        node: Node = start
        holder: DF | ADF = start
        for index, fid in enumerate(fids):
            if not isinstance(node, DF | ADF):
                raise _Refuse(SW_FILE_NOT_FOUND)
            holder = node
            if fid == 0x7FFF and index == 0 and self._app is not None:
                node = self._app
                continue
            child = self._child(node, fid)
            if child is None:
                raise _Refuse(SW_FILE_NOT_FOUND)
            node = child
        return node, holder

    def _by_aid(self, aid: bytes) -> ADF:
        """Right-truncated AIDs match by prefix (ISO 7816-4 §5.3.1.2)."""
        if not 1 <= len(aid) <= 16:
            raise _Refuse(SW_WRONG_LENGTH)
        for app in fs.APPLICATIONS:
            if app.aid.startswith(aid):
                return app
        raise _Refuse(SW_FILE_NOT_FOUND)

    def _select(self, c: _Command) -> bytes:
        if c.p2 not in (0x00, 0x04, 0x0C):
            raise _Refuse(SW_WRONG_P1P2)
        if not c.data and c.le:
            raise _Refuse(SW_WRONG_LENGTH)  # P3 announced data that never came
        holder: DF | ADF = self._df
        if c.p1 == 0x00:
            if not c.data:
                target: Node = fs.MF
            elif len(c.data) != 2:
                raise _Refuse(SW_WRONG_LENGTH)
            else:
                target, holder = self._by_fid(int.from_bytes(c.data, "big"))
        elif c.p1 == 0x01:
            if len(c.data) != 2:
                raise _Refuse(SW_WRONG_LENGTH)
            child = self._child(self._df, int.from_bytes(c.data, "big"))
            if not isinstance(child, DF):
                raise _Refuse(SW_FILE_NOT_FOUND)
            target = child
        elif c.p1 == 0x03:
            if c.data:
                raise _Refuse(SW_WRONG_LENGTH)
            target = _PARENTS[self._df.name]
        elif c.p1 == 0x04:
            target = self._by_aid(c.data)
        elif c.p1 == 0x08:
            target, holder = self._by_path(fs.MF, c.data)
        elif c.p1 == 0x09:
            target, holder = self._by_path(self._df, c.data)
        else:
            raise _Refuse(SW_WRONG_P1P2)
        self._take(target, holder)
        if c.p2 == 0x0C:
            return _sw(SW_OK)
        return self._respond_later(self._fcp(target))

    def _take(self, target: Node, holder: DF | ADF) -> None:
        """Make ``target`` current (an EF: with ``holder`` as the current DF). A data object
        transfer on this channel ends with it (TS 102 221 §11.3)."""
        self._transfers.pop(self._channel, None)
        if isinstance(target, DF | ADF):
            self._df, self._ef = target, None
            if isinstance(target, ADF):
                self._app = target
        else:
            self._df, self._ef = holder, target
        self._record = 0

    def _fcp(self, node: Node) -> bytes:
        """FCP template (TS 102 221 §11.1.1.3): 82, 83, [84], [A5], 8A, 8C, [C6], [80, 88]."""
        parts: list[bytes] = []
        if isinstance(node, DF | ADF):
            parts.append(encode_tlv(0x82, b"\x78\x21"))  # DF/ADF, shareable
            parts.append(encode_tlv(0x83, node.fid.to_bytes(2, "big")))
            if isinstance(node, ADF):
                parts.append(encode_tlv(0x84, node.aid))
            if node is fs.MF:  # UICC characteristics: clock stop allowed, class A/B/C
                parts.append(encode_tlv(0xA5, encode_tlv(0x80, b"\x71")))
            parts.append(encode_tlv(0x8A, b"\x05"))  # operational, activated
            parts.append(encode_tlv(0x8C, b"\x00"))
            parts.append(encode_tlv(0xC6, self._pin_status_template(node)))
            return encode_tlv(0x62, b"".join(parts))
        if isinstance(node, LinearFixedEF):
            kind = 0x46 if isinstance(node, CyclicEF) else 0x42
            descriptor = (
                bytes([kind, 0x21]) + node.record_len.to_bytes(2, "big") + bytes([node.records])
            )
        elif isinstance(node, BerTlvEF):
            descriptor = b"\x79\x21"  # shareable, BER-TLV structure (TS 102 221 Table 11.5)
        else:
            descriptor = b"\x41\x21"
        parts.append(encode_tlv(0x82, descriptor))
        parts.append(encode_tlv(0x83, node.fid.to_bytes(2, "big")))
        parts.append(encode_tlv(0x8A, b"\x05"))
        # security attributes referenced to expanded format (§11.1.1.4.7.3): the EF.ARR that
        # rules this DF and the record of the file's (read, update) rule
        arr = _arr_of(self._df)
        record = fs.arr_record_number(node.read, node.update)
        parts.append(encode_tlv(0x8B, arr.fid.to_bytes(2, "big") + bytes([record])))
        parts.append(encode_tlv(0x80, node.size.to_bytes(2, "big")))
        parts.append(encode_tlv(0x88, bytes([node.sfid << 3]) if node.sfid is not None else b""))
        return encode_tlv(0x62, b"".join(parts))

    def _pin_status_template(self, node: DF | ADF) -> bytes:
        """C6 (TS 102 221 §9.5.2): the PS_DO (one bit per key reference listed after it, set
        while its verification is enabled) and the key references: PIN1 everywhere, the
        second application PIN (81) in ADF.USIM when the card has one."""
        pins = self._state.pins
        listed = [("pin1", 0x01)]
        if node is fs.ADF_USIM and "pin2" in pins:
            listed.append(("pin2", fs.KEY_REFERENCE[Access.PIN2]))
        ps_do = 0
        for index, (name, _) in enumerate(listed):
            if pins[name].enabled:
                ps_do |= 0x80 >> index
        refs = b"".join(encode_tlv(0x83, bytes([ref])) for _, ref in listed)
        return encode_tlv(0x90, bytes([ps_do])) + refs

    # -- STATUS (§11.1.2) -------------------------------------------------------------------------
    def _status(self, c: _Command) -> bytes:
        if c.p1 not in (0x00, 0x01, 0x02) or c.p2 not in (0x00, 0x01, 0x0C):
            raise _Refuse(SW_WRONG_P1P2)
        if c.data:
            raise _Refuse(SW_WRONG_LENGTH)
        if c.p2 == 0x0C:
            return _sw(SW_OK)
        if c.p2 == 0x01:
            if self._app is None:
                raise _Refuse(SW_CONDITIONS_NOT_SATISFIED)
            return self._respond_now(encode_tlv(0x84, self._app.aid), c.le)
        return self._respond_now(self._fcp(self._df), c.le)

    def _terminal_profile(self, c: _Command) -> bytes:
        """TERMINAL PROFILE (TS 102 221 §11.2.1): accepted and ignored (no proactive UICC)."""
        if c.p1 or c.p2:
            raise _Refuse(SW_WRONG_P1P2)
        return _sw(SW_OK)

    # -- GET RESPONSE (§11.1.13, T=0 of §7.3.1.1.4) -----------------------------------------------
    def _get_response(self, c: _Command) -> bytes:
        pending = self._offered if self._offered_channel == self._channel else None
        if c.p1 or c.p2:
            raise _Refuse(SW_WRONG_P1P2)
        if c.data:
            raise _Refuse(SW_WRONG_LENGTH)
        if pending is None:
            raise _Refuse(SW_CONDITIONS_NOT_SATISFIED)
        wanted = c.le or 256  # absent or 00: 256
        self._pending_channel, self._pending_sw = self._channel, self._offered_sw
        if wanted > len(pending):
            self._pending = pending
            return bytes([0x6C, len(pending) & 0xFF])
        if wanted < len(pending):
            self._pending = pending[wanted:]
            return pending[:wanted] + bytes([0x61, len(self._pending) & 0xFF])
        self._pending_sw = SW_OK
        return pending + _sw(self._offered_sw)

    # -- READ / UPDATE BINARY (§11.1.3, §11.1.4) -------------------------------------------------
    def _by_sfi(self, sfi: int) -> EF:
        for child in self._df.children:
            if not isinstance(child, DF) and child.sfid == sfi:
                if child is not self._ef:
                    self._transfers.pop(self._channel, None)
                self._ef, self._record = child, 0
                return child
        raise _Refuse(SW_FILE_NOT_FOUND)

    def _binary_target(self, c: _Command) -> tuple[TransparentEF, int]:
        if c.p1 & 0x80:
            if c.p1 & 0x60:
                raise _Refuse(SW_WRONG_P1P2)
            ef: EF | None = self._by_sfi(c.p1 & 0x1F)
            offset = c.p2
        else:
            ef = self._ef
            offset = c.p1 << 8 | c.p2
        if ef is None:
            raise _Refuse(SW_NO_EF_SELECTED)
        if not isinstance(ef, TransparentEF):
            raise _Refuse(SW_INCOMPATIBLE_FILE)
        return ef, offset

    def _read_binary(self, c: _Command) -> bytes:
        if c.data:
            raise _Refuse(SW_WRONG_LENGTH)
        ef, offset = self._binary_target(c)
        self._require(ef.read)
        if offset >= ef.size:
            raise _Refuse(SW_WRONG_OFFSET)
        content = self._content(ef)
        assert isinstance(content, bytes)
        available = ef.size - offset
        wanted = min(available, c.max_le) if not c.le else c.le
        if wanted > available:
            if c.extended:  # ISO/IEC 7816-4: what there is, with end of file reached
                return content[offset:] + _sw(SW_END_OF_FILE)
            return bytes([0x6C, available])
        return content[offset : offset + wanted] + _sw(SW_OK)

    def _update_binary(self, c: _Command) -> bytes:
        if not c.data or c.le is not None:
            raise _Refuse(SW_WRONG_LENGTH)
        ef, offset = self._binary_target(c)
        self._require(ef.update)
        if offset >= ef.size:
            raise _Refuse(SW_WRONG_OFFSET)
        if offset + len(c.data) > ef.size:
            raise _Refuse(SW_WRONG_LENGTH)
        content = self._content(ef)
        assert isinstance(content, bytes)
        updated = content[:offset] + c.data + content[offset + len(c.data) :]
        self._commit(self._state.with_file(ef.name, updated))
        return _sw(SW_OK)

    # -- READ / UPDATE RECORD (§11.1.5, §11.1.6) -------------------------------------------------
    def _record_target(self, c: _Command) -> LinearFixedEF:
        sfi = c.p2 >> 3
        ef = self._by_sfi(sfi) if sfi else self._ef
        if ef is None:
            raise _Refuse(SW_NO_EF_SELECTED)
        if not isinstance(ef, LinearFixedEF):
            raise _Refuse(SW_INCOMPATIBLE_FILE)
        return ef

    def _record_number(self, ef: LinearFixedEF, mode: int, p1: int) -> int:
        """Modes (P2 b3–b1): 2 next, 3 previous, 4 absolute/current (P1 = 0: current)."""
        cyclic = isinstance(ef, CyclicEF)
        count = ef.records
        if mode == 0x04:
            number = p1 or self._record
            if not 1 <= number <= count:
                raise _Refuse(SW_RECORD_NOT_FOUND)
            return number
        if p1:
            raise _Refuse(SW_WRONG_P1P2)
        current = self._record
        if mode == 0x02:
            number = current + 1 if current else 1
            if number > count:
                if not cyclic:
                    raise _Refuse(SW_RECORD_NOT_FOUND)
                number = 1
        elif mode == 0x03:
            number = current - 1 if current else count
            if number < 1:
                if not cyclic:
                    raise _Refuse(SW_RECORD_NOT_FOUND)
                number = count
        else:
            raise _Refuse(SW_WRONG_P1P2)
        return number

    def _read_record(self, c: _Command) -> bytes:
        if c.data:
            raise _Refuse(SW_WRONG_LENGTH)
        mode = c.p2 & 0x07
        if mode not in (0x02, 0x03, 0x04):
            raise _Refuse(SW_WRONG_P1P2)
        ef = self._record_target(c)
        self._require(ef.read)
        number = self._record_number(ef, mode, c.p1)
        if c.le and c.le != ef.record_len:
            return bytes([0x6C, ef.record_len & 0xFF])
        if mode != 0x04:
            self._record = number
        records = self._content(ef)
        assert isinstance(records, tuple)
        return records[number - 1] + _sw(SW_OK)

    def _update_record(self, c: _Command) -> bytes:
        mode = c.p2 & 0x07
        if mode not in (0x02, 0x03, 0x04):
            raise _Refuse(SW_WRONG_P1P2)
        ef = self._record_target(c)
        if len(c.data) != ef.record_len or c.le is not None:
            raise _Refuse(SW_WRONG_LENGTH)
        self._require(ef.update)
        records = self._content(ef)
        assert isinstance(records, tuple)
        if isinstance(ef, CyclicEF):
            if mode != 0x03 or c.p1:  # cyclic files: PREVIOUS only, the oldest becomes record 1
                raise _Refuse(SW_WRONG_P1P2)
            updated = (c.data, *records[:-1])
            number = 1
        else:
            number = self._record_number(ef, mode, c.p1)
            updated = (*records[: number - 1], c.data, *records[number:])
        self._commit(self._state.with_file(ef.name, updated))
        if mode != 0x04 or isinstance(ef, CyclicEF):
            self._record = number
        return _sw(SW_OK)

    # -- INCREASE (§11.1.8; TS 51.011 §9.2.8) ----------------------------------------------------
    def _increase(self, c: _Command) -> bytes:
        """Add the data (a big-endian number) to the most recent record of the current cyclic
        EF and write the sum as the new most recent record (the oldest one goes); answers the
        new record ‖ the value added. A sum that does not fit the record is 9850 and changes
        nothing. The file's update condition applies (EF.ACM: PIN1)."""
        if c.p1 or c.p2:
            raise _Refuse(SW_WRONG_P1P2)
        ef = self._ef
        if ef is None:
            raise _Refuse(SW_NO_EF_SELECTED)
        if not isinstance(ef, CyclicEF):
            raise _Refuse(SW_INCOMPATIBLE_FILE)
        if not 1 <= len(c.data) <= ef.record_len:
            raise _Refuse(SW_WRONG_LENGTH)
        self._require(ef.update)
        records = self._content(ef)
        assert isinstance(records, tuple)
        total = int.from_bytes(records[0], "big") + int.from_bytes(c.data, "big")
        if total >= 1 << (8 * ef.record_len):
            raise _Refuse(SW_MAX_VALUE_REACHED)
        record = total.to_bytes(ef.record_len, "big")
        self._commit(self._state.with_file(ef.name, (record, *records[:-1])))
        self._record = 1
        return self._respond_later(record + c.data)

    # -- SEARCH RECORD (§11.1.7) ------------------------------------------------------------------
    def _search_record(self, c: _Command) -> bytes:
        """SEARCH RECORD in the current (or SFI-named) record EF: P2 b3–b1 4 simple search
        forward from record P1, 5 backward from P1 (P1 00: the current record, or the first /
        last without one), 6 enhanced search (search indication, offset or value, pattern).
        Answers the numbers of all matching records in search order and makes the first one
        current; no match answers no data and changes nothing."""
        mode = c.p2 & 0x07
        if mode not in (0x04, 0x05, 0x06):
            raise _Refuse(SW_WRONG_P1P2)
        if not c.data:
            raise _Refuse(SW_WRONG_LENGTH)
        ef = self._record_target(c)
        count, current = ef.records, self._record
        offset, after, pattern = 0, None, c.data
        if mode == 0x06:  # enhanced search (§11.1.7.1, Table 11.12)
            if len(c.data) < 3:
                raise _Refuse(SW_WRONG_LENGTH)
            indication, parameter, pattern = c.data[0], c.data[1], c.data[2:]
            direction = indication & 0x07
            if indication & 0xF0 or direction < 0x04:
                raise _Refuse(SW_INCORRECT_DATA)
            if indication & 0x08:
                after = parameter  # start after the first occurrence of this byte
            else:
                offset = parameter
            if direction in (0x06, 0x07):  # from the next / previous record: P1 must be 00
                if c.p1:
                    raise _Refuse(SW_WRONG_P1P2)
                start = current + 1 if direction == 0x06 else (current - 1 if current else count)
                if direction == 0x06 and not current:
                    start = 1
                forward = direction == 0x06
            else:
                forward = direction == 0x04
                start = c.p1 or current or (1 if forward else count)
        else:
            forward = mode == 0x04
            start = c.p1 or current or (1 if forward else count)
        if c.p1 > count or not 0 <= start <= count + 1:
            raise _Refuse(SW_RECORD_NOT_FOUND)
        if len(pattern) > ef.record_len:
            raise _Refuse(SW_WRONG_LENGTH)
        self._require(ef.read)
        order = range(start, count + 1) if forward else range(start, 0, -1)
        records = self._content(ef)
        assert isinstance(records, tuple)
        found = _matching_records(
            records, order, pattern, anchored=False, offset=offset, after=after
        )
        if not found:
            self._le = None
            return _sw(SW_OK)
        self._record = found[0]
        return self._respond_later(bytes(found))

    # -- PIN commands (§11.1.9–§11.1.13) ---------------------------------------------------------
    def _key(self, c: _Command, *, allowed: tuple[str, ...] = ("pin1", "pin2", "adm1")) -> str:
        """The PIN the command's P2 names; 6A88 for one this card does not have (PIN2 when the
        profile has none) or that the command does not apply to."""
        if c.p1:
            raise _Refuse(SW_WRONG_P1P2)
        name = _KEY_REFS.get(c.p2)
        if name is None or name not in allowed or name not in self._state.pins:
            raise _Refuse(SW_REFERENCED_DATA_NOT_FOUND)
        return name

    def _attempt(self, name: str, block: bytes) -> PinState:
        """Compare ``block`` with key ``name`` in constant time; on a mismatch commit the
        decremented counter and refuse (63Cx, or 6983 at zero). Returns the reset key on a match."""
        pin = self._state.pins[name]
        if pin.blocked:
            raise _Refuse(SW_PIN_BLOCKED)
        if hmac.compare_digest(block, pin.value):
            return replace(pin, remaining=pin.max_tries)
        failed = replace(pin, remaining=pin.remaining - 1)
        self._commit(self._state.with_pin(name, failed))
        self._verified.discard(name)
        raise _Refuse(SW_PIN_BLOCKED if failed.blocked else 0x63C0 | failed.remaining)

    def _query(self, name: str) -> bytes:
        pin = self._state.pins[name]
        if pin.blocked:
            return _sw(SW_PIN_BLOCKED)
        if name in self._verified:
            return _sw(SW_OK)
        return _sw(0x63C0 | pin.remaining)

    def _verify(self, c: _Command) -> bytes:
        name = self._key(c)
        if not c.data:
            if c.le:
                raise _Refuse(SW_WRONG_LENGTH)  # P3 announced data that never came
            return self._query(name)
        if len(c.data) != 8:
            raise _Refuse(SW_WRONG_LENGTH)
        pin = self._attempt(name, c.data)
        if pin != self._state.pins[name]:
            self._commit(self._state.with_pin(name, pin))
        self._verified.add(name)
        return _sw(SW_OK)

    def _change(self, c: _Command) -> bytes:
        name = self._key(c, allowed=("pin1", "pin2"))
        if len(c.data) != 16:
            raise _Refuse(SW_WRONG_LENGTH)
        current = self._state.pins[name]
        if current.blocked:
            raise _Refuse(SW_PIN_BLOCKED)
        if not current.enabled:
            raise _Refuse(SW_REFERENCED_DATA_INVALIDATED)
        if not _pin_block_ok(c.data[8:]):
            raise _Refuse(SW_INCORRECT_DATA)
        pin = self._attempt(name, c.data[:8])
        self._commit(self._state.with_pin(name, replace(pin, value=c.data[8:])))
        self._verified.add(name)
        return _sw(SW_OK)

    def _set_enabled(self, c: _Command, enabled: bool) -> bytes:
        name = self._key(c, allowed=("pin1", "pin2"))
        if len(c.data) != 8:
            raise _Refuse(SW_WRONG_LENGTH)
        current = self._state.pins[name]
        if current.blocked:
            raise _Refuse(SW_PIN_BLOCKED)
        if current.enabled == enabled:
            raise _Refuse(SW_CONDITIONS_NOT_SATISFIED)
        pin = self._attempt(name, c.data)
        self._commit(self._state.with_pin(name, replace(pin, enabled=enabled)))
        self._verified.add(name)
        return _sw(SW_OK)

    def _disable(self, c: _Command) -> bytes:
        return self._set_enabled(c, False)

    def _enable(self, c: _Command) -> bytes:
        return self._set_enabled(c, True)

    def _unblock(self, c: _Command) -> bytes:
        """UNBLOCK PIN: PUK ‖ new PIN; P2 names the PIN (01 PIN1 with PUK1, 81 PIN2 with PUK2).
        A good PUK resets, enables and verifies that PIN (§11.1.13)."""
        name = self._key(c, allowed=("pin1", "pin2"))
        puk_name = _PUK_OF[name]
        if not c.data:
            if c.le:
                raise _Refuse(SW_WRONG_LENGTH)  # P3 announced data that never came
            puk = self._state.pins[puk_name]
            return _sw(SW_PIN_BLOCKED if puk.blocked else 0x63C0 | puk.remaining)
        if len(c.data) != 16:
            raise _Refuse(SW_WRONG_LENGTH)
        if self._state.pins[puk_name].blocked:
            raise _Refuse(SW_PIN_BLOCKED)
        if not _pin_block_ok(c.data[8:]):
            raise _Refuse(SW_INCORRECT_DATA)
        puk = self._attempt(puk_name, c.data[:8])
        pin = self._state.pins[name]
        pin = replace(pin, value=c.data[8:], remaining=pin.max_tries, enabled=True)
        self._commit(self._state.with_pin(puk_name, puk).with_pin(name, pin))
        self._verified.add(name)
        return _sw(SW_OK)

    # -- ENVELOPE (TS 102 221 §11.2.2): SMS-PP data download → OTA ------------------------------
    def _envelope(self, c: _Command) -> bytes:
        """An SMS-PP download carrying a secured packet (TS 31.111 §7.1.1.2): the PoR comes back
        as response data (61xx, GET RESPONSE); a malformed envelope is refused with a status."""
        if c.p1 or c.p2:
            raise _Refuse(SW_WRONG_P1P2)
        if not c.data:
            raise _Refuse(SW_WRONG_LENGTH)
        if self._deferred:  # an ENVELOPE inside a remote script: not allowed
            raise _Refuse(SW_CONDITIONS_NOT_SATISFIED)
        from .ota import EnvelopeRefused, process_envelope  # ota uses this module's engine

        try:
            por = process_envelope(self, c.data)
        except EnvelopeRefused as refused:
            raise _Refuse(refused.sw) from None
        return self._respond_later(por) if por else _sw(SW_OK)

    # -- PUT DATA 'DF01' (proprietary): new AKA credentials --------------------------------------
    def _put_data(self, c: _Command) -> bytes:
        """K ‖ OPc (or K ‖ TOPc) for ADF.USIM; ADM1 only (granted to the RFM application).
        Proprietary to this emulated card, see :func:`uicc.ota.build_set_credentials`."""
        if (c.p1, c.p2) != CREDENTIALS_P1P2:
            raise _Refuse(SW_REFERENCED_DATA_NOT_FOUND)
        if not c.data or c.le is not None:
            raise _Refuse(SW_WRONG_LENGTH)
        if self._app is not fs.ADF_USIM:
            raise _Refuse(SW_CONDITIONS_NOT_SATISFIED)
        self._require(Access.ADM1)
        try:
            k, opc = parse_set_credentials(c.data, algorithm=self._profile.algorithm)
        except BadInput:
            raise _Refuse(SW_WRONG_LENGTH) from None
        if self._profile.algorithm == "tuak" and len(k) != len(self._profile.k):
            raise _Refuse(SW_INCORRECT_DATA)  # TUAK's key length is part of its parameters
        ota = replace(self._state.ota, credentials=AkaCredentials(k, opc))
        self._commit(self._state.with_ota(ota))
        return _sw(SW_OK)

    # -- AUTHENTICATE (TS 31.102 §7.1.2) ---------------------------------------------------------
    def _authenticate(self, c: _Command) -> bytes:
        if c.p1 != 0x00 or c.p2 not in (_CONTEXT_GSM, _CONTEXT_3G):
            raise _Refuse(SW_WRONG_P1P2)
        if not c.data:
            raise _Refuse(SW_WRONG_LENGTH)
        if self._app not in (fs.ADF_USIM, fs.ADF_ISIM):  # USIM or ISIM (IMS AKA) must be active
            raise _Refuse(SW_CONDITIONS_NOT_SATISFIED)
        ims = self._app is fs.ADF_ISIM
        if ims and c.p2 != _CONTEXT_3G:  # TS 31.103 §7.1.2: IMS AKA only (no GBA, no digest)
            raise _Refuse(SW_WRONG_P1P2)
        self._require(Access.PIN1)
        data = c.data
        rand_len = data[0]
        rand = data[1 : 1 + rand_len]
        if len(rand) != rand_len:
            raise _Refuse(SW_WRONG_LENGTH)
        if c.p2 == _CONTEXT_GSM:
            if len(data) != 1 + rand_len:
                raise _Refuse(SW_WRONG_LENGTH)
            if rand_len != 16:
                raise _Refuse(SW_INCORRECT_DATA)
            if not self._gsm_capable():
                raise _Refuse(SW_CONDITIONS_NOT_SATISFIED)
            gsm = gsm_authenticate(self._algorithm, rand)
            # L ‖ SRES ‖ L ‖ Kc (TS 31.102 §7.1.2.2)
            return self._respond_later(
                bytes([len(gsm.sres)]) + gsm.sres + bytes([len(gsm.kc)]) + gsm.kc
            )
        rest = data[1 + rand_len :]
        if not rest or len(rest) != 1 + rest[0]:
            raise _Refuse(SW_WRONG_LENGTH)
        autn = rest[1:]
        if rand_len != 16 or len(autn) != self._autn_len:
            raise _Refuse(SW_INCORRECT_DATA)
        result, sqn_state = usim_authenticate(self._algorithm, self._state.sqn, rand, autn)
        if isinstance(result, AkaMacFailure):
            return _sw(SW_MAC_FAILURE)
        if isinstance(result, AkaSyncFailure):
            return self._respond_later(b"\xdc" + bytes([len(result.auts)]) + result.auts)
        state = replace(self._state, sqn=sqn_state)
        if not ims and len(result.ck) == 16 == len(
            result.ik
        ):  # EF.Keys = KSI ‖ CK ‖ IK (TS 31.102 §4.2.4)
            keys = self._content(fs.EF_KEYS)
            assert isinstance(keys, bytes)
            state = state.with_file(fs.EF_KEYS.name, keys[:1] + result.ck + result.ik)
        self._commit(state)  # before RES leaves the card
        out = b"\xdb"
        # IMS AKA answers RES, CK, IK (TS 31.103 §7.1.2.1); no Kc in the ISIM context
        for value in (result.res, result.ck, result.ik, b"" if ims else result.kc):
            if value:
                out += bytes([len(value)]) + value
        return self._respond_later(out)

    # -- GET IDENTITY (TS 31.102 §7.5, TS 102 221 §11.1.23) --------------------------------------
    def _get_identity(self, c: _Command) -> bytes:
        """The SUCI computed in the card when EF.UST offers services 124 and 125: the IMSI of
        EF.IMSI concealed with the first scheme of DF.SAIP's EF.SUCI_Calc_Info_USIM, EF.AD's MNC
        length and EF.Routing_Indicator, a fresh ephemeral key each time; 'A1' ‖ L ‖ SUCI."""
        from aka.suci import conceal

        if c.p1 != 0x00 or c.p2 & 0x0F != 0x01:  # identity context: SUCI
            raise _Refuse(SW_WRONG_P1P2)
        if self._app is not fs.ADF_USIM:
            raise _Refuse(SW_CONDITIONS_NOT_SATISFIED)
        self._require(Access.PIN1)
        try:
            services = set(fs.EF_UST.codec.decode(self._bytes(fs.EF_UST)))
            info = fs.EF_SUCI_CALC_INFO_USIM.codec.decode(self._bytes(fs.EF_SUCI_CALC_INFO_USIM))
            imsi = fs.decode_imsi(self._bytes(fs.EF_IMSI))
            mnc_length = fs.EF_AD.codec.decode(self._bytes(fs.EF_AD))["mnc_length"]
            ri = fs.EF_ROUTING_INDICATOR.codec.decode(self._bytes(fs.EF_ROUTING_INDICATOR))
        except BadInput:  # files rewritten into something that does not decode
            raise _Refuse(SW_CONDITIONS_NOT_SATISFIED) from None
        if not {124, 125} <= services or info is None or imsi is None or not info["schemes"]:
            raise _Refuse(SW_CONDITIONS_NOT_SATISFIED)  # the USIM does not calculate SUCIs
        first = info["schemes"][0]
        key = info["keys"][first["key_index"] - 1] if first["key_index"] else None
        if (first["scheme"] != "null") != (key is not None):
            raise _Refuse(SW_CONDITIONS_NOT_SATISFIED)
        try:
            suci = conceal(
                f"imsi-{imsi}",
                first["scheme"],
                hn_public=bytes.fromhex(key["public"]) if key is not None else b"",
                key_id=key["id"] if key is not None else 0,
                mnc_length=mnc_length,
                routing_indicator=ri,
                agreement=self.suci_agreement,
            )
        except BadInput:  # a key in the file that is not a point of its profile
            raise _Refuse(SW_CONDITIONS_NOT_SATISFIED) from None
        return self._respond_later(encode_tlv(0xA1, suci.to_bytes()))

    def _bytes(self, ef: TransparentEF) -> bytes:
        content = self._content(ef)
        assert isinstance(content, bytes)
        return content

    # -- GET DATA and STORE DATA of the ARA-M (GlobalPlatform SEAC v1.1 §3.4, §3.5) ------------
    def _get_data(self, c: _Command) -> bytes:
        """'FF40' all rules (Response-ALL-REF-AR-DO; past 256 bytes the rest with 'FF60',
        Get-Next), 'DF20' the refresh tag. Only while ARA-M is the selected application."""
        if self._app is not fs.ADF_ARA_M:
            raise _Refuse(SW_CONDITIONS_NOT_SATISFIED)
        if c.data:
            raise _Refuse(SW_WRONG_LENGTH)
        tag = c.p1 << 8 | c.p2
        if tag == 0xFF40:
            whole = seac.all_rules(self._state.access_rules)
            self._rules_rest.pop(self._channel, None)
            if len(whole) <= 256:
                return self._respond_now(whole, c.le)
            self._rules_rest[self._channel] = whole[256:]
            return whole[:256] + _sw(SW_OK)
        if tag == 0xFF60:
            rest = self._rules_rest.pop(self._channel, None)
            if rest is None:
                raise _Refuse(SW_CONDITIONS_NOT_SATISFIED)
            if len(rest) > 256:
                self._rules_rest[self._channel] = rest[256:]
            return rest[:256] + _sw(SW_OK)
        if tag == 0xDF20:
            return self._respond_now(seac.refresh_tag(self._state.access_rules_version), c.le)
        raise _Refuse(SW_REFERENCED_DATA_NOT_FOUND)

    def _store_data(self, c: _Command) -> bytes:
        """STORE DATA to the ARA-M: one block (P1 '90' or '80': last block; P2 00) holding one
        command (Command-Store-REF-AR-DO, Command-Delete, Command-UpdateRefreshTag). This card
        has no GlobalPlatform secure channel, so ADM1 stands in for it: 6982 without."""
        if self._app is not fs.ADF_ARA_M:
            raise _Refuse(SW_CONDITIONS_NOT_SATISFIED)
        if c.p1 not in (0x80, 0x90) or c.p2:
            raise _Refuse(SW_WRONG_P1P2)
        if not c.data:
            raise _Refuse(SW_WRONG_LENGTH)
        self._require(Access.ADM1)
        try:
            rules = seac.apply_store(self._state.access_rules, c.data)
        except seac.RuleConflict:
            raise _Refuse(SW_CONFLICTING_RULE) from None
        except seac.RuleNotFound:
            raise _Refuse(SW_REFERENCED_DATA_NOT_FOUND) from None
        except BadInput:
            raise _Refuse(SW_INCORRECT_DATA) from None
        self._commit(self._state.with_access_rules(rules))
        self._rules_rest.clear()
        self._le = None
        return _sw(SW_OK)

    # -- RETRIEVE DATA / SET DATA (TS 102 221 §11.3.1, §11.3.2): BER-TLV structured EFs ------------
    def _ber_target(self, c: _Command, access: str) -> BerTlvEF:
        if c.p1 or c.p2 not in (0x00, 0x80):  # P2: 80 first block, 00 next block
            raise _Refuse(SW_WRONG_P1P2)
        ef = self._ef
        if ef is None:
            raise _Refuse(SW_NO_EF_SELECTED)
        if not isinstance(ef, BerTlvEF):
            raise _Refuse(SW_INCOMPATIBLE_FILE)
        self._require(ef.read if access == "read" else ef.update)
        return ef

    def _objects(self, ef: BerTlvEF) -> list[tuple[bytes, bytes]]:
        content = self._content(ef)
        assert isinstance(content, bytes)
        return parse_ber_tlvs(content)

    def _retrieve_data(self, c: _Command) -> bytes:
        """The object with the tag in the data (first block: its tag, length and value from the
        start), then the rest in further blocks (next block, no data) while the card answers
        62F1. Tag 5C gives the list of the file's tags."""
        ef = self._ber_target(c, "read")
        if c.p2 == 0x80:
            try:
                tag, end = read_ber_tag(c.data)
            except BadInput:
                raise _Refuse(SW_WRONG_LENGTH if not c.data else SW_INCORRECT_DATA) from None
            if end != len(c.data):
                raise _Refuse(SW_INCORRECT_DATA)
            objects = self._objects(ef)
            if tag == b"\x5c":
                whole = encode_ber_tlv(tag, b"".join(t for t, _ in objects))
            else:
                value = next((v for t, v in objects if t == tag), None)
                if value is None:
                    raise _Refuse(SW_REFERENCED_DATA_NOT_FOUND)
                whole = encode_ber_tlv(tag, value)
        else:
            transfer = self._transfers.get(self._channel)
            if c.data:
                raise _Refuse(SW_WRONG_LENGTH)
            if transfer is None or transfer.ef is not ef or not transfer.rest:
                raise _Refuse(SW_CONDITIONS_NOT_SATISFIED)
            tag, whole = transfer.tag, transfer.rest
        size = (c.le or c.max_le) if c.le is not None else 256
        block, rest = whole[:size], whole[size:]
        if rest:
            self._transfers[self._channel] = _Transfer(ef, tag, rest=rest)
        else:
            self._transfers.pop(self._channel, None)
        final = SW_MORE_DATA_AVAILABLE if rest else SW_OK
        if c.p2 == 0x80 and c.le is None:  # case 4 the T=0 way: 61xx, GET RESPONSE
            return self._respond_later(block, final)
        self._le = None
        return block + _sw(final)

    def _set_data(self, c: _Command) -> bytes:
        """First block: tag ‖ length ‖ the value or its start (the tag alone deletes the
        object); next blocks: more of the value, answered 63F1 until it is complete. The file
        changes only when the whole object has arrived."""
        ef = self._ber_target(c, "update")
        if not c.data or c.le is not None:
            raise _Refuse(SW_WRONG_LENGTH)
        if c.p2 == 0x80:
            self._transfers.pop(self._channel, None)
            try:
                tag, i = read_ber_tag(c.data)
                if tag == b"\x5c":  # the tag list is the card's, not an object
                    raise BadInput("tag 5C is reserved")
                if i == len(c.data):
                    return self._store_object(ef, tag, None)
                length, i = read_ber_length(c.data, i)
            except BadInput:
                raise _Refuse(SW_INCORRECT_DATA) from None
            transfer = _Transfer(ef, tag, length=length)
            self._fits(ef, tag, length)
            part = c.data[i:]
        else:
            found = self._transfers.get(self._channel)
            if found is None or found.ef is not ef or found.rest:
                raise _Refuse(SW_CONDITIONS_NOT_SATISFIED)
            transfer, part = found, c.data
        if len(transfer.value) + len(part) > transfer.length:
            self._transfers.pop(self._channel, None)
            raise _Refuse(SW_WRONG_LENGTH)  # more than the object's announced length
        value = transfer.value + part
        if len(value) < transfer.length:
            self._transfers[self._channel] = replace(transfer, value=value)
            return _sw(SW_MORE_DATA_EXPECTED)
        self._transfers.pop(self._channel, None)
        return self._store_object(ef, transfer.tag, value)

    def _fits(self, ef: BerTlvEF, tag: bytes, length: int) -> None:
        """Refuse (6A84) an object the file cannot hold beside its others."""
        others = sum(len(encode_ber_tlv(t, v)) for t, v in self._objects(ef) if t != tag)
        if others + len(tag) + len(encode_ber_length(length)) + length > ef.size:
            raise _Refuse(SW_NOT_ENOUGH_MEMORY)

    def _store_object(self, ef: BerTlvEF, tag: bytes, value: bytes | None) -> bytes:
        """Create, replace (in place) or, with ``value`` None, delete the object ``tag``."""
        objects = self._objects(ef)
        index = next((n for n, (t, _) in enumerate(objects) if t == tag), None)
        if value is None:
            if index is None:
                raise _Refuse(SW_REFERENCED_DATA_NOT_FOUND)
            del objects[index]
        elif index is None:
            objects.append((tag, value))
        else:
            objects[index] = (tag, value)
        content = b"".join(encode_ber_tlv(t, v) for t, v in objects)
        self._commit(self._state.with_file(ef.name, content))
        return _sw(SW_OK)

    # -- the GSM SIM class, TS 51.011 §9.2 -------------------------------------------------------
    def _gsm_capable(self) -> bool:
        """c2 takes a RES of 32…128 bits and c3 128-bit CK and IK (TS 33.102 §6.8.1.2); a
        profile with other lengths has no GSM algorithm."""
        p = self._profile
        return p.res_bits <= 128 and p.ck_bits == 128 and p.ik_bits == 128

    def _gsm_response(self, node: Node) -> bytes:
        """The SELECT/STATUS response of TS 51.011 §9.2.1: 22 bytes for the MF or a DF (memory,
        FID, type, characteristics, children, CHV states), 15 for an EF (size, FID, access
        conditions, status, structure, record length)."""
        fid = node.fid.to_bytes(2, "big")
        if isinstance(node, DF | ADF):
            pins = self._state.pins
            pin1 = pins["pin1"]
            dfs = sum(1 for child in node.children if isinstance(child, DF))
            codes = 5 if "pin2" in pins else 3  # CHV1, [CHV2], UNBLOCK CHV1, [UNBLOCK CHV2], ADM
            efs = len(node.children) - dfs
            # b1 clock stop allowed, b5 b6 3 V and 1.8 V technology, b8 CHV1 disabled
            characteristics = 0x31 | (0x00 if pin1.enabled else 0x80)
            return (
                bytes(4)  # RFU, memory not allocated to any file
                + fid
                + bytes([0x01 if node is fs.MF else 0x02])
                + bytes(5)
                + bytes([9])  # length of what follows
                + bytes([characteristics, dfs, efs, codes, 0])
                + bytes([_gsm_chv_status(pin1), _gsm_chv_status(pins["puk1"])])
                + bytes([_gsm_chv_status(pins.get("pin2")), _gsm_chv_status(pins.get("puk2"))])
            )
        if isinstance(node, LinearFixedEF):
            structure = 0x03 if isinstance(node, CyclicEF) else 0x01
            record_len = node.record_len
        else:
            structure, record_len = 0x00, 0
        # READ|UPDATE; INCREASE (a cyclic EF's, under its update condition) else never; RFU;
        # REHABILITATE|INVALIDATE never
        increase = _gsm_access(node.update) if isinstance(node, CyclicEF) else 0xF
        access = bytes(
            [_gsm_access(node.read) << 4 | _gsm_access(node.update), increase << 4, 0xFF]
        )
        return (
            bytes(2)
            + node.size.to_bytes(2, "big")
            + fid
            + b"\x04"  # EF
            + (b"\x40" if isinstance(node, CyclicEF) else b"\x00")  # b7: INCREASE allowed
            + access
            + b"\x01\x02"  # not invalidated; 2 bytes follow
            + bytes([structure, record_len])
        )

    def _gsm_select(self, c: _Command) -> bytes:
        """SELECT by FID only (P1 P2 = 00 00); applications are not reachable in this class."""
        if c.p1 or c.p2:
            raise _Refuse(SW_WRONG_P1P2)
        if len(c.data) != 2:
            raise _Refuse(SW_WRONG_LENGTH)
        fid = int.from_bytes(c.data, "big")
        if fid == 0x7FFF:
            raise _Refuse(SW_FILE_NOT_FOUND)
        target, holder = self._by_fid(fid)
        if isinstance(target, ADF | BerTlvEF):  # no such files in a SIM
            raise _Refuse(SW_FILE_NOT_FOUND)
        self._take(target, holder)
        return self._respond_later(self._gsm_response(target))

    def _gsm_status(self, c: _Command) -> bytes:
        """STATUS: the current directory's response; P3 shorter than it takes the first bytes."""
        if c.p1 or c.p2:
            raise _Refuse(SW_WRONG_P1P2)
        if c.data:
            raise _Refuse(SW_WRONG_LENGTH)
        data = self._gsm_response(self._df)
        wanted = c.le or len(data)
        if wanted > len(data):
            return bytes([0x6C, len(data)])
        return data[:wanted] + _sw(SW_OK)

    def _gsm_get_response(self, c: _Command) -> bytes:
        if self._offered is None or self._offered_channel:
            raise _Refuse(SW_TECHNICAL_PROBLEM)  # TS 102 221 §12.1.1.1: out of sequence
        return self._get_response(c)

    def _gsm_read_binary(self, c: _Command) -> bytes:
        if c.p1 & 0x80:  # no SFI in this class: the offset is 15 bits
            raise _Refuse(SW_WRONG_OFFSET)
        return self._read_binary(c)

    def _gsm_update_binary(self, c: _Command) -> bytes:
        if c.p1 & 0x80:
            raise _Refuse(SW_WRONG_OFFSET)
        return self._update_binary(c)

    def _gsm_read_record(self, c: _Command) -> bytes:
        if c.p2 & 0xF8:  # no SFI in this class
            raise _Refuse(SW_WRONG_P1P2)
        return self._read_record(c)

    def _gsm_update_record(self, c: _Command) -> bytes:
        if c.p2 & 0xF8:
            raise _Refuse(SW_WRONG_P1P2)
        return self._update_record(c)

    def _gsm_seek(self, c: _Command) -> bytes:
        """SEEK (TS 51.011 §9.2.7): the first record that starts with the pattern; P2 high
        nibble 0 type 1, 1 type 2 (the record number is returned); low nibble 0 from the
        beginning forward, 1 from the end backward, 2 next forward, 3 previous backward."""
        kind, mode = c.p2 >> 4, c.p2 & 0x0F
        if c.p1 or kind > 1 or mode > 3:
            raise _Refuse(SW_WRONG_P1P2)
        if not 1 <= len(c.data) <= 16 or c.le is not None:
            raise _Refuse(SW_WRONG_LENGTH)
        ef = self._ef
        if ef is None:
            raise _Refuse(SW_NO_EF_SELECTED)
        if not isinstance(ef, LinearFixedEF) or isinstance(ef, CyclicEF):
            raise _Refuse(SW_INCOMPATIBLE_FILE)
        if len(c.data) > ef.record_len:
            raise _Refuse(SW_WRONG_LENGTH)
        self._require(ef.read)
        count, current = ef.records, self._record
        order = {
            0: range(1, count + 1),
            1: range(count, 0, -1),
            2: range(current + 1, count + 1),
            3: range(current - 1 if current else count, 0, -1),
        }[mode]
        records = self._content(ef)
        assert isinstance(records, tuple)
        found = _matching_records(records, order, c.data, anchored=True)
        if not found:
            raise _Refuse(SW_FILE_NOT_FOUND)  # 9404: pattern not found, pointer unchanged
        number = self._record = found[0]
        return self._respond_later(bytes([number])) if kind else _sw(SW_OK)

    def _gsm_chv(self, c: _Command, length: int, *, unblock: bool = False) -> _Command:
        """The same command with the UICC key reference: CHV1 is PIN1 (P2 01; UNBLOCK CHV
        names it 00 or 01), CHV2 the second application PIN (P2 02 → 81), ADM1 keeps 0A. A
        card without PIN2 answers 9802 for CHV2."""
        if c.p1:
            raise _Refuse(SW_WRONG_P1P2)
        pin2 = fs.KEY_REFERENCE[Access.PIN2]
        refs = (
            {0x00: 0x01, 0x01: 0x01, 0x02: pin2}
            if unblock
            else {0x01: 0x01, 0x02: pin2, 0x0A: 0x0A}
        )
        if c.p2 not in refs:
            raise _Refuse(SW_WRONG_P1P2)
        if c.p2 == 0x02 and "pin2" not in self._state.pins:
            raise _Refuse(SW_GSM_NO_CHV)
        if len(c.data) != length or c.le is not None:
            raise _Refuse(SW_WRONG_LENGTH)
        return replace(c, p2=refs[c.p2])

    def _gsm_verify(self, c: _Command) -> bytes:
        return self._verify(self._gsm_chv(c, 8))

    def _gsm_change(self, c: _Command) -> bytes:
        return self._change(self._gsm_chv(c, 16))

    def _gsm_disable(self, c: _Command) -> bytes:
        return self._disable(self._gsm_chv(c, 8))

    def _gsm_enable(self, c: _Command) -> bytes:
        return self._enable(self._gsm_chv(c, 8))

    def _gsm_unblock(self, c: _Command) -> bytes:
        return self._unblock(self._gsm_chv(c, 16, unblock=True))

    def _run_gsm_algorithm(self, c: _Command) -> bytes:
        """RUN GSM ALGORITHM (TS 51.011 §9.2.16): RAND in, SRES ‖ Kc out (9F0C, GET RESPONSE),
        computed as a USIM does in its GSM context: SRES = c2(RES), Kc = c3(CK, IK). DF.GSM
        must be the current directory and CHV1 satisfied."""
        if c.p1 or c.p2:
            raise _Refuse(SW_WRONG_P1P2)
        if len(c.data) != 16 or c.le is not None:
            raise _Refuse(SW_WRONG_LENGTH)
        if not self._gsm_capable():
            raise _Refuse(SW_INS_NOT_SUPPORTED)  # no GSM algorithm on this card
        if self._df is not fs.DF_GSM:
            raise _Refuse(SW_SECURITY_NOT_SATISFIED)  # 9804: not in DF.GSM
        self._require(Access.PIN1)
        gsm = gsm_authenticate(self._algorithm, c.data)
        return self._respond_later(gsm.sres + gsm.kc)


def _arr_of(df: DF | ADF) -> LinearFixedEF:
    """The EF.ARR that rules the files of ``df``: its own, else its nearest ancestor's."""
    node: DF | ADF = df
    while True:
        arr = next(
            (c for c in node.children if isinstance(c, LinearFixedEF) and c.codec.name == "arr"),
            None,
        )
        if arr is not None:
            return arr
        node = _PARENTS[node.name]


def open_card(profile_path: Path, state_path: Path | None) -> UsimEngine:
    """A USIM from a profile file and its state file (created on first use).

    Raises:
        BadInput: bad profile, or a state file that is malformed or belongs to another ICCID.
    """
    return UsimEngine(load_profile(profile_path), CardStore(state_path))
