"""Pure. OTA for the UICC, one module per specification, all re-exported here:

- :mod:`~uicc.ota.secured_packet` — secured packets and PoRs (TS 102 225, SMS dialect of
  TS 31.115), SPI, key sets;
- :mod:`~uicc.ota.remote_commands` — the remote command scripts they carry (TS 102 226
  RFM/RAM), over :mod:`~uicc.ota.ber_tlv`;
- :mod:`~uicc.ota.sms` — the SMS-DELIVER that delivers them (TS 23.040);
- :mod:`~uicc.ota.envelope` — the ENVELOPE (SMS-PP download) of TS 31.111 §7.1.1;
- :mod:`~uicc.ota.put_key` — key set management (GlobalPlatform PUT KEY, DELETE);
- :mod:`~uicc.ota.credentials` — the emulated card's proprietary AKA credential command.

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

from uicc.ota.credentials import (
    CREDENTIALS_P1P2,
    build_set_credentials,
    parse_set_credentials,
)
from uicc.ota.envelope import (
    SMS_PP_TAG,
    build_envelope_sms_pp,
    parse_envelope_sms_pp,
)
from uicc.ota.put_key import (
    build_delete_keyset,
    build_put_key,
    key_check_value,
    parse_delete_keyset,
    parse_put_key,
)
from uicc.ota.remote_commands import (
    RAM_OUTGOING_INS,
    RFM_OUTGOING_INS,
    RemoteResult,
    decode_tpdu_compact,
    encode_compact,
    encode_compact_response,
    encode_expanded,
    encode_expanded_response,
    parse_expanded,
    parse_remote_response,
    split_compact,
)
from uicc.ota.secured_packet import (
    CC_LENGTH,
    CPI_IEI,
    DEFAULT_SPI,
    MAX_COUNTER,
    MAX_SMS_USER_DATA,
    MIN_SECURITY_LEVEL,
    RPI_IEI,
    TAR_RAM_ISD,
    TAR_RFM_UICC,
    TAR_RFM_USIM,
    Checksum,
    CommandHeader,
    CommandPacket,
    CounterMode,
    Keyset,
    OtaRejected,
    PorMode,
    PorStatus,
    ResponsePacket,
    Spi,
    build_command_packet,
    build_response_packet,
    check_counter,
    meets_security_level,
    open_command_packet,
    parse_command_header,
    parse_response_packet,
)
from uicc.ota.sms import (
    SmsDeliver,
    build_sms_deliver,
    encode_scts,
    parse_sms_deliver,
)

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
