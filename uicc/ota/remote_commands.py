"""Pure. Remote command scripts (TS 102 226 §5): the APDUs an OTA command packet carries to RFM or
RAM, in compact or expanded format, and the responses they produce."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from trelab.errors import BadInput, RemoteProtocolError
from uicc.ota.ber_tlv import tlv, tlvs

__all__ = [
    "RAM_OUTGOING_INS",
    "RFM_OUTGOING_INS",
    "RemoteResult",
    "decode_tpdu_compact",
    "encode_compact",
    "encode_compact_response",
    "encode_expanded",
    "encode_expanded_response",
    "parse_expanded",
    "parse_remote_response",
    "split_compact",
]


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


_SCRIPT_TAG = 0xAA  # Command Scripting template, definite length (TS 102 226 §5.2.1)
_RESPONSE_SCRIPT_TAG = 0xAB  # Response Scripting template (§5.2.2)
_C_APDU_TAG = 0x22
_R_APDU_TAG = 0x23
_EXECUTED_TAG = 0x80  # Number of executed C-APDUs


def encode_expanded(apdus: Sequence[bytes]) -> bytes:
    """Expanded format, definite length (TS 102 226 §5.2.1): ``AA { 22 C-APDU }…``."""
    return tlv(_SCRIPT_TAG, b"".join(tlv(_C_APDU_TAG, apdu) for apdu in apdus))


def parse_expanded(script: bytes) -> list[bytes]:
    """The C-APDUs of an expanded command script.

    Raises: BadInput: not one AA template of 22 TLVs.
    """
    outer = tlvs(script, "expanded script")
    if len(outer) != 1 or outer[0][0] != _SCRIPT_TAG:
        raise BadInput("expanded script: expected one AA template")
    inner = tlvs(outer[0][1], "expanded script")
    if not inner or any(tag != _C_APDU_TAG for tag, _ in inner):
        raise BadInput("expanded script: expected C-APDU TLVs (tag 22)")
    if any(len(value) < 4 for _, value in inner):  # CLA INS P1 P2 at least (ISO 7816-3 §12.1)
        raise BadInput("expanded script: a C-APDU shorter than its 4-byte header")
    return [value for _, value in inner]


def encode_compact_response(executed: int, last: bytes) -> bytes:
    """Compact additional response data: executed count ‖ SW of the last ‖ its data (§5.1.2)."""
    return bytes([executed]) + last[-2:] + last[:-2]


def encode_expanded_response(responses: Sequence[bytes]) -> bytes:
    """``AB { 80 number-executed, 23 R-APDU … }`` (TS 102 226 §5.2.2)."""
    body = tlv(_EXECUTED_TAG, bytes([len(responses)]))
    body += b"".join(tlv(_R_APDU_TAG, r) for r in responses)
    return tlv(_RESPONSE_SCRIPT_TAG, body)


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
        outer = tlvs(data, "PoR data")
        if len(outer) != 1 or outer[0][0] != _RESPONSE_SCRIPT_TAG:
            raise BadInput("PoR data: expected one AB template")
        executed, responses = None, []
        for tag, value in tlvs(outer[0][1], "PoR data"):
            if tag == _EXECUTED_TAG and len(value) == 1:
                executed = value[0]
            elif tag == _R_APDU_TAG and len(value) >= 2:
                responses.append(value)
            else:
                raise BadInput(f"PoR data: unexpected TLV {tag:02X}")
    except BadInput as exc:
        raise RemoteProtocolError(str(exc)) from None
    return RemoteResult(len(responses) if executed is None else executed, tuple(responses))
