"""Pure. UICC status words (TS 102 221 §10.2, TS 31.102 §7.3, ISO/IEC 7816-4 §5.6): names and meaning.

The emulated USIM answers with these constants; the host client explains a refusal with
:func:`explain_sw` so a user sees ``6982 security status not satisfied`` rather than bare hex.
"""

from __future__ import annotations

__all__ = [
    "SW_AUTH_CONTEXT_NOT_SUPPORTED",
    "SW_CHANNEL_NOT_SUPPORTED",
    "SW_CLA_NOT_SUPPORTED",
    "SW_CONDITIONS_NOT_SATISFIED",
    "SW_CONFLICTING_RULE",
    "SW_END_OF_FILE",
    "SW_FILE_NOT_FOUND",
    "SW_FUNCTION_NOT_SUPPORTED",
    "SW_GSM_ACCESS_NOT_FULFILLED",
    "SW_GSM_CHV_BLOCKED",
    "SW_GSM_CHV_CONTRADICTION",
    "SW_GSM_FILE_INCONSISTENT",
    "SW_GSM_NOT_FOUND",
    "SW_GSM_NO_CHV",
    "SW_GSM_NO_EF",
    "SW_GSM_OUT_OF_RANGE",
    "SW_INCOMPATIBLE_FILE",
    "SW_INCORRECT_DATA",
    "SW_INS_NOT_SUPPORTED",
    "SW_MAC_FAILURE",
    "SW_MAX_VALUE_REACHED",
    "SW_MORE_DATA_AVAILABLE",
    "SW_MORE_DATA_EXPECTED",
    "SW_NOT_ENOUGH_MEMORY",
    "SW_NO_EF_SELECTED",
    "SW_OK",
    "SW_PIN_BLOCKED",
    "SW_RECORD_NOT_FOUND",
    "SW_REFERENCED_DATA_INVALIDATED",
    "SW_REFERENCED_DATA_NOT_FOUND",
    "SW_SECURE_MESSAGING_NOT_SUPPORTED",
    "SW_SECURITY_NOT_SATISFIED",
    "SW_TECHNICAL_PROBLEM",
    "SW_WRONG_LENGTH",
    "SW_WRONG_OFFSET",
    "SW_WRONG_P1P2",
    "explain_sw",
    "is_valid_sw",
    "sw_bytes",
]

SW_OK = 0x9000
SW_MORE_DATA_AVAILABLE = 0x62F1
SW_END_OF_FILE = 0x6282  # fewer bytes than Le: end of file or record reached
SW_MORE_DATA_EXPECTED = 0x63F1
SW_WRONG_LENGTH = 0x6700
SW_CHANNEL_NOT_SUPPORTED = 0x6881
SW_SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
SW_INCOMPATIBLE_FILE = 0x6981
SW_SECURITY_NOT_SATISFIED = 0x6982
SW_PIN_BLOCKED = 0x6983
SW_REFERENCED_DATA_INVALIDATED = 0x6984
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_NO_EF_SELECTED = 0x6986
SW_INCORRECT_DATA = 0x6A80
SW_FUNCTION_NOT_SUPPORTED = 0x6A81
SW_FILE_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_NOT_ENOUGH_MEMORY = 0x6A84
SW_WRONG_P1P2 = 0x6A86
SW_REFERENCED_DATA_NOT_FOUND = 0x6A88
SW_MAX_VALUE_REACHED = 0x9850  # INCREASE: the record would overflow (TS 102 221 §10.2.1.5)
SW_CONFLICTING_RULE = 0x6A89  # GP SEAC: an access rule with that REF-DO already exists
SW_WRONG_OFFSET = 0x6B00
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_TECHNICAL_PROBLEM = 0x6F00
SW_MAC_FAILURE = 0x9862
SW_AUTH_CONTEXT_NOT_SUPPORTED = 0x9864

# The GSM SIM class (TS 51.011 §9.4): its own status words for the same situations.
SW_GSM_NO_EF = 0x9400
SW_GSM_OUT_OF_RANGE = 0x9402
SW_GSM_NOT_FOUND = 0x9404
SW_GSM_FILE_INCONSISTENT = 0x9408
SW_GSM_NO_CHV = 0x9802
SW_GSM_ACCESS_NOT_FULFILLED = 0x9804
SW_GSM_CHV_CONTRADICTION = 0x9808
SW_GSM_CHV_BLOCKED = 0x9840

# Exact status words (TS 102 221 §10.2.1 tables, TS 31.102 §7.3 for AUTHENTICATE).
_EXACT: dict[int, str] = {
    0x9000: "normal ending of the command",
    0x9300: "SIM Application Toolkit is busy; command cannot be executed at present",
    0x6200: "warning: no information given, state of non-volatile memory unchanged",
    0x6281: "warning: part of returned data may be corrupted",
    0x6282: "warning: end of file or record reached before reading Le bytes",
    0x6283: "warning: selected file invalidated",
    0x6285: "warning: selected file in termination state",
    0x62F1: "warning: more data available",
    0x62F2: "warning: more data available and proactive command pending",
    0x62F3: "warning: response data available",
    0x63F1: "warning: more data expected",
    0x63F2: "warning: more data expected and proactive command pending",
    0x6400: "execution error: no information given, state of non-volatile memory unchanged",
    0x6500: "execution error: no information given, state of non-volatile memory changed",
    0x6581: "execution error: memory problem",
    0x6700: "wrong length (Lc or data length)",
    0x6800: "functions in CLA not supported",
    0x6881: "logical channel not supported",
    0x6882: "secure messaging not supported",
    0x6900: "command not allowed: no information given",
    0x6981: "command incompatible with file structure",
    0x6982: "security status not satisfied (PIN or ADM not verified)",
    0x6983: "authentication/PIN method blocked",
    0x6984: "referenced data invalidated (e.g. PIN disabled)",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no EF selected)",
    0x6989: "command not allowed: secure channel security not satisfied",
    0x6A80: "incorrect parameters in the data field",
    0x6A81: "function not supported",
    0x6A82: "file or application not found",
    0x6A83: "record not found",
    0x6A84: "not enough memory space",
    0x6A86: "incorrect parameters P1 to P2",
    0x6A87: "Lc inconsistent with P1 to P2",
    0x6A88: "referenced data not found",
    0x6A89: "access rule with this reference already stored (GP SEAC)",
    0x6B00: "wrong parameter(s) P1-P2 (offset outside the EF)",
    0x6D00: "instruction code not supported or invalid",
    0x6E00: "class not supported",
    0x6F00: "technical problem, no precise diagnosis",
    0x9400: "no EF selected (GSM SIM, TS 51.011)",
    0x9402: "out of range: invalid address or record (GSM SIM, TS 51.011)",
    0x9404: "file or pattern not found (GSM SIM, TS 51.011)",
    0x9408: "file inconsistent with the command (GSM SIM, TS 51.011)",
    0x9802: "no CHV initialised (GSM SIM, TS 51.011)",
    0x9804: "access condition not fulfilled, or CHV/UNBLOCK CHV wrong with tries left (GSM SIM)",
    0x9808: "in contradiction with CHV status (GSM SIM, TS 51.011)",
    0x9810: "in contradiction with invalidation status (GSM SIM, TS 51.011)",
    0x9840: "CHV or UNBLOCK CHV blocked, or wrong with no try left (GSM SIM, TS 51.011)",
    0x9850: "INCREASE cannot be performed, maximum value reached",
    0x9862: "authentication error, incorrect MAC",
    0x9863: "security session or association expired",
    0x9864: "authentication error, security context not supported",
    0x9865: "key freshness failure",
    0x9866: "authentication error, no memory space available",
    0x9867: "authentication error, no memory space available in EF.MUK",
}


def is_valid_sw(sw: int) -> bool:
    """Whether ``sw`` has the form of a status word: SW1 in 6X or 9X, not 60 (ISO 7816-3 §10.3.3)."""
    return 0 <= sw <= 0xFFFF and (sw >> 12) in (6, 9) and (sw >> 8) != 0x60


def sw_bytes(sw: int) -> bytes:
    """SW1 ‖ SW2 as two bytes."""
    return sw.to_bytes(2, "big")


def explain_sw(sw: int) -> str:
    """One line saying what ``sw`` means (TS 102 221 §10.2.1); never raises."""
    if not 0 <= sw <= 0xFFFF:
        return "not a status word"
    if sw in _EXACT:
        return _EXACT[sw]
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return f"{sw2 or 256} response bytes still available (GET RESPONSE)"
    if sw1 == 0x6C:
        return f"wrong length Le: exact length is {sw2 or 256}"
    if sw1 == 0x91:
        return f"normal ending, proactive command of {sw2} bytes pending (FETCH)"
    if sw1 == 0x92:
        return f"normal ending, {sw2} bytes of extra data-transfer information"
    if sw1 == 0x9F:
        return f"{sw2} response bytes available (GSM SIM, TS 51.011)"
    if sw1 == 0x63 and sw2 >> 4 == 0xC:
        return f"verification failed, {sw2 & 0x0F} retries remaining"
    if sw1 == 0x67:
        return "wrong length (Lc or data length)"
    if sw1 == 0x6F:
        return "technical problem (proprietary diagnosis)"
    if sw1 == 0x98:
        return "security management error"
    return "unknown status word"
