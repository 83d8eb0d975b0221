"""Pure. The emulated USIM's over-the-air receiver (Alternative 3a): an SMS-PP data download
ENVELOPE (TS 31.111 §7.1.1) → secured packet checks (TS 102 225) → remote commands (TS 102 226
RFM; GlobalPlatform PUT KEY / DELETE for key sets) → proof of receipt (PoR).

Order of the checks, each answered by a PoR status (``uicc.ota.PorStatus``): header readable
(06) → TAR known (09) → SPI meets the minimum security level (0A: CC, ciphering and "counter
must be higher" are required) → key versions known and AES (06) → decipher (05) → CC (01) →
counter (02 low, 03 high, 04 blocked). Refusals before the CC verified go back in clear, with
no CC and CNTR 0 (the card cannot know whom it answers, nor read the counter); later ones
are secured as the SPI asks.

Crash safety: once a packet is authenticated, its counter is committed to the card store
*before* any command runs (a replay can never run twice, even across a kill -9); then the
script runs in a context of its own and everything it changed is committed in one atomic
write. A kill -9 between the two leaves the counter spent and nothing else changed: the sender
retries with a higher counter.

Applications by TAR: ``000000`` the issuer security domain (RAM: PUT KEY adds or replaces a
key set, DELETE removes one — not the one in use, not the last), ``B00000`` RFM of the UICC
(current DF: MF), ``B00010`` RFM of the USIM (current DF: ADF.USIM). RFM runs with PIN1 and
ADM1 granted (its access domain) and may use the proprietary AKA credentials command
(:func:`uicc.ota.build_set_credentials`). The ``tar`` of a profile's key set is not used: any
key set may address any of these applications, as on cards where the key sets belong to the
issuer security domain. Counters are kept per key version (that of KID).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal, Protocol

from trelab.errors import BadInput
from uicc import fs
from uicc.fs import ADF
from uicc.ota import (
    CPI_IEI,
    RAM_OUTGOING_INS,
    RFM_OUTGOING_INS,
    TAR_RAM_ISD,
    TAR_RFM_UICC,
    TAR_RFM_USIM,
    CommandHeader,
    Keyset,
    OtaRejected,
    PorStatus,
    Spi,
    build_response_packet,
    check_counter,
    encode_compact_response,
    encode_expanded_response,
    meets_security_level,
    open_command_packet,
    parse_command_header,
    parse_delete_keyset,
    parse_envelope_sms_pp,
    parse_expanded,
    parse_put_key,
    parse_sms_deliver,
    split_compact,
)

from .profile import CardProfile
from .state import CardState, OtaState

__all__ = [
    "APPLICATIONS",
    "MAX_COUNTER_STEP",
    "RFM_RIGHTS",
    "Application",
    "EnvelopeRefused",
    "OtaCard",
    "current_keysets",
    "process_envelope",
    "stored_counter",
]

#: The largest forward jump of CNTR the card accepts (a card policy, see uicc.ota).
MAX_COUNTER_STEP = 1 << 20
#: What the RFM applications may do: PIN1 and ADM1 count as verified (TS 102 226 access domain).
RFM_RIGHTS = frozenset({"pin1", "adm1"})

_SW_OK = b"\x90\x00"
_SW_INCORRECT_DATA = 0x6A80
_SW_NOT_FOUND = b"\x6a\x88"
_SW_CONDITIONS = b"\x69\x85"
_SW_INS = b"\x6d\x00"
_SW_CLA = b"\x6e\x00"
_SW_WRONG_DATA = b"\x6a\x80"
_PID_DATA_DOWNLOAD = 0x7F
_CONCATENATION_IEIS = (0x00, 0x08)


class EnvelopeRefused(Exception):
    """The ENVELOPE itself is unusable (not an SMS-PP download of a secured packet): answer
    with status word ``sw`` and no PoR."""

    def __init__(self, sw: int, reason: str) -> None:
        super().__init__(reason)
        self.sw = sw


class OtaCard(Protocol):
    """What the receiver needs of the card (:class:`~firmware_stubs.usim.engine.UsimEngine`)."""

    @property
    def profile(self) -> CardProfile: ...

    @property
    def state(self) -> CardState: ...

    def commit(self, state: CardState) -> None: ...

    def run_script(
        self, apdus: Sequence[bytes], *, application: ADF | None, granted: frozenset[str]
    ) -> tuple[list[bytes], CardState]: ...


@dataclass(frozen=True, slots=True)
class Application:
    """An OTA application on the card: RFM with its starting DF, or RAM (key management)."""

    name: str
    kind: Literal["rfm", "ram"]
    start: ADF | None = None


APPLICATIONS: Mapping[bytes, Application] = MappingProxyType(
    {
        TAR_RAM_ISD: Application("RAM (issuer security domain)", "ram"),
        TAR_RFM_UICC: Application("RFM UICC", "rfm"),
        TAR_RFM_USIM: Application("RFM USIM", "rfm", fs.ADF_USIM),
    }
)


def current_keysets(profile: CardProfile, state: CardState) -> tuple[Keyset, ...]:
    """The key sets in force: those set over the air, else the profile's."""
    if state.ota.keysets is not None:
        return state.ota.keysets
    return tuple(Keyset(ks.kvn, ks.kic, ks.kid) for ks in profile.ota_keysets)


def stored_counter(profile: CardProfile, state: CardState, kvn: int) -> int:
    """The last counter accepted for key version ``kvn`` (the profile's initial value before)."""
    if kvn in state.ota.counters:
        return state.ota.counters[kvn]
    initial = next((ks.counter for ks in profile.ota_keysets if ks.kvn == kvn), bytes(5))
    return int.from_bytes(initial, "big")


def process_envelope(card: OtaCard, data: bytes) -> bytes:
    """Handle one SMS-PP download ENVELOPE; returns the PoR (UDH ``02 71 00`` ‖ response
    packet) or ``b""`` when the SPI asked for none.

    Raises:
        EnvelopeRefused: not a D1 SMS-PP download, not an SMS-DELIVER for (U)SIM data download
            (PID 7F, 8-bit), no command packet identifier in its header, or a concatenated SMS.
    """
    try:
        sms = parse_sms_deliver(parse_envelope_sms_pp(data))
    except BadInput as exc:
        raise EnvelopeRefused(_SW_INCORRECT_DATA, str(exc)) from None
    if sms.pid != _PID_DATA_DOWNLOAD:
        raise EnvelopeRefused(_SW_INCORRECT_DATA, "SMS is not a (U)SIM data download")
    ieis = [iei for iei, _ in sms.header]
    if any(iei in _CONCATENATION_IEIS for iei in ieis):
        raise EnvelopeRefused(_SW_INCORRECT_DATA, "concatenated SMS are not supported")
    if (CPI_IEI, b"") not in sms.header:
        raise EnvelopeRefused(_SW_INCORRECT_DATA, "no command packet identifier (IEI 70)")
    return _secured_packet(card, sms.payload)


def _clear_por(tar: bytes, counter: int, status: PorStatus, spi: Spi | None) -> bytes:
    """A refusal the card cannot secure (no CC, not ciphered); none if the SPI asked for none."""
    if spi is not None and spi.por == "none":
        return b""
    return build_response_packet(
        tar=tar, counter=counter, status=status, data=b"", spi=spi or Spi(), keyset=None
    )


def _secured_packet(card: OtaCard, packet: bytes) -> bytes:
    try:
        header = parse_command_header(packet)
    except OtaRejected as rejected:
        tar = packet[7:10] if len(packet) >= 10 else bytes(3)
        return _clear_por(tar, 0, rejected.status, None)
    app = APPLICATIONS.get(header.tar)
    if app is None:
        return _clear_por(header.tar, 0, PorStatus.TAR_UNKNOWN, header.spi)
    if not meets_security_level(header.spi):
        return _clear_por(header.tar, 0, PorStatus.INSUFFICIENT_SECURITY, header.spi)
    keysets = {ks.kvn: ks for ks in current_keysets(card.profile, card.state)}
    try:
        kic_set, kid_set = _keys_for(header, keysets)
        opened = open_command_packet(header, kic=kic_set.kic, kid=kid_set.kid)
    except OtaRejected as rejected:
        return _clear_por(header.tar, 0, rejected.status, header.spi)
    responder = Keyset(kid_set.kvn, kic_set.kic, kid_set.kid)  # PoR keys: KIc and KID used
    spi = header.spi
    stored = stored_counter(card.profile, card.state, kid_set.kvn)
    status = check_counter(spi.counter, stored, opened.counter, max_step=MAX_COUNTER_STEP)
    if status is not PorStatus.OK:
        return _por(spi, header.tar, opened.counter, status, b"", responder)
    # The counter is spent before anything runs: a replay can never run twice; it never goes
    # down (modes without a replay check are refused by the security level anyway).
    spent = card.state.ota.with_counter(kid_set.kvn, max(stored, opened.counter))
    card.commit(card.state.with_ota(spent))
    expanded = opened.data[:1] == b"\xaa"
    try:
        outgoing = RAM_OUTGOING_INS if app.kind == "ram" else RFM_OUTGOING_INS
        apdus = (
            parse_expanded(opened.data)
            if expanded
            else split_compact(opened.data, outgoing=outgoing)
        )
    except BadInput:
        result = [_SW_WRONG_DATA]
        executed = 0
    else:
        if app.kind == "ram":
            result, ota = _run_ram(apdus, card.state.ota, keysets, kic_set, kid_set)
            after = card.state.with_ota(ota)
        else:
            result, after = card.run_script(apdus, application=app.start, granted=RFM_RIGHTS)
        executed = len(result)
        if after != card.state:
            card.commit(after)  # the whole script in one atomic write
    if expanded:
        data = encode_expanded_response(result)
    else:
        data = encode_compact_response(executed, result[-1])
    return _por(spi, header.tar, opened.counter, PorStatus.OK, data, responder)


def _keys_for(header: CommandHeader, keysets: Mapping[int, Keyset]) -> tuple[Keyset, Keyset]:
    """The key sets KIc and KID name.

    Raises: OtaRejected(SECURITY_ERROR): an algorithm other than AES, or an unknown version.
    """
    kic_set = keysets.get(header.kic_kvn)
    kid_set = keysets.get(header.kid_kvn)
    if kic_set is None or kid_set is None:
        raise OtaRejected(PorStatus.SECURITY_ERROR, "no key set with that version")
    return kic_set, kid_set


def _por(
    spi: Spi, tar: bytes, counter: int, status: PorStatus, data: bytes, keyset: Keyset
) -> bytes:
    if spi.por == "none" or (spi.por == "on-error" and status is PorStatus.OK):
        return b""
    return build_response_packet(
        tar=tar, counter=counter, status=status, data=data, spi=spi, keyset=keyset
    )


def _run_ram(
    apdus: Sequence[bytes],
    ota: OtaState,
    keysets: Mapping[int, Keyset],
    command_keys: Keyset,
    checksum_keys: Keyset,
) -> tuple[list[bytes], OtaState]:
    """Key set management of the issuer security domain: PUT KEY and DELETE (GlobalPlatform
    Card Spec v2.3 §11.8, §11.2), stopping at the first error. New key values arrive encrypted
    under the commanding key set's KEK (its DEK, else KIc)."""
    current = dict(keysets)
    in_use = {command_keys.kvn, checksum_keys.kvn}
    responses: list[bytes] = []
    for apdu in apdus:
        cla, ins, p1, p2 = apdu[:4]
        data = apdu[5:]
        if cla != 0x80:
            response = _SW_CLA
        elif ins == 0xD8:
            response = _put_key(current, p1, p2, data, command_keys.kek)
        elif ins == 0xE4:
            response = _delete(current, data, in_use)
        else:
            response = _SW_INS
        responses.append(response)
        if response[-2:] != _SW_OK:
            break
    if current != dict(keysets):
        ota = replace(ota, keysets=tuple(current[k] for k in sorted(current)))
    return responses, ota


def _put_key(current: dict[int, Keyset], p1: int, p2: int, data: bytes, kek: bytes) -> bytes:
    try:
        replaced, new, answer = parse_put_key(p1, p2, data, kek=kek)
    except BadInput:
        return _SW_WRONG_DATA
    if replaced:
        if replaced not in current:
            return _SW_NOT_FOUND
        if new.kvn != replaced and new.kvn in current:
            return _SW_WRONG_DATA
        del current[replaced]
    elif new.kvn in current and current[new.kvn] != new:
        return _SW_WRONG_DATA  # adding a version that exists with other keys
    current[new.kvn] = new  # adding the same keys again is a retry: accepted
    return answer + _SW_OK


def _delete(current: dict[int, Keyset], data: bytes, in_use: set[int]) -> bytes:
    try:
        kvn = parse_delete_keyset(data)
    except BadInput:
        return _SW_WRONG_DATA
    if kvn not in current:
        return _SW_NOT_FOUND
    if kvn in in_use or len(current) == 1:
        return _SW_CONDITIONS  # never the key set this packet came with, never the last one
    del current[kvn]
    return _SW_OK
