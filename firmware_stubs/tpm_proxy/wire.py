"""Pure. The TPM proxy's core: what a named part answers where it differs from swtpm.

Bytes in, a decision out (sans-I/O: the TCP server in :mod:`firmware_stubs.tpm_proxy.server`
does the moving). For each TPM command from the client, :meth:`PartFilter.on_command` says
either *answer* (the part refuses it itself: TPM_RC_COMMAND_CODE for a command it does not
implement, an unmarshalling error for an algorithm, mode or curve it lacks, TPM_RC_FAILURE in
failure mode) or *forward* (possibly rewritten: a GetCapability for commands, algorithms or
curves asks swtpm for everything so the part's subset can be cut from it), or *drop* (an
erratum where the part never answers: the client sees an I/O error). Then
:meth:`PartFilter.on_response` turns swtpm's answer into the part's: filtered lists with the
``moreData`` flag recomputed, fixed properties (vendor, firmware, sizes) replaced.

Numbers are TPM 2.0 Part 2 constants (TPM_CC, TPM_ALG_ID, TPM_ECC_CURVE, TPM_PT, TPM_RC).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ALGORITHMS",
    "COMMANDS",
    "CURVES",
    "FIXED_PROPERTIES",
    "RC_COMMAND_CODE",
    "RC_COMMAND_SIZE",
    "RC_FAILURE",
    "Decision",
    "Erratum",
    "PartFilter",
    "PartRules",
    "WireError",
    "command_code",
    "error_response",
    "frame_size",
    "response_code",
]

HEADER = 10  # tag (2) ‖ size (4) ‖ command code / response code (4)
ST_NO_SESSIONS, ST_SESSIONS = 0x8001, 0x8002
RC_SUCCESS = 0x000
RC_FAILURE = 0x101
RC_COMMAND_SIZE = 0x142
RC_COMMAND_CODE = 0x143
# Format-1 codes (Part 2 §6.6.3) with TPM_RC_P and the parameter number in bits 8..11.
_RC_FMT1, _RC_P = 0x080, 0x040
RC_HASH, RC_MODE, RC_KEY_SIZE, RC_TYPE = 0x003, 0x009, 0x007, 0x00A
RC_SCHEME, RC_SYMMETRIC, RC_CURVE = 0x012, 0x016, 0x026

CAP_ALGS, CAP_COMMANDS, CAP_TPM_PROPERTIES, CAP_ECC_CURVES = 0x0, 0x2, 0x6, 0x8

#: TPM_CC values (Part 2 Table 12) by the name TPM2_<name> has in Part 3.
COMMANDS: Mapping[str, int] = {
    "NV_UndefineSpaceSpecial": 0x11F, "EvictControl": 0x120, "HierarchyControl": 0x121,
    "NV_UndefineSpace": 0x122, "ChangeEPS": 0x124, "ChangePPS": 0x125, "Clear": 0x126,
    "ClearControl": 0x127, "ClockSet": 0x128, "HierarchyChangeAuth": 0x129,
    "NV_DefineSpace": 0x12A, "PCR_Allocate": 0x12B, "PCR_SetAuthPolicy": 0x12C,
    "PP_Commands": 0x12D, "SetPrimaryPolicy": 0x12E, "FieldUpgradeStart": 0x12F,
    "ClockRateAdjust": 0x130, "CreatePrimary": 0x131, "NV_GlobalWriteLock": 0x132,
    "GetCommandAuditDigest": 0x133, "NV_Increment": 0x134, "NV_SetBits": 0x135,
    "NV_Extend": 0x136, "NV_Write": 0x137, "NV_WriteLock": 0x138,
    "DictionaryAttackLockReset": 0x139, "DictionaryAttackParameters": 0x13A,
    "NV_ChangeAuth": 0x13B, "PCR_Event": 0x13C, "PCR_Reset": 0x13D, "SequenceComplete": 0x13E,
    "SetAlgorithmSet": 0x13F, "SetCommandCodeAuditStatus": 0x140, "FieldUpgradeData": 0x141,
    "IncrementalSelfTest": 0x142, "SelfTest": 0x143, "Startup": 0x144, "Shutdown": 0x145,
    "StirRandom": 0x146, "ActivateCredential": 0x147, "Certify": 0x148, "PolicyNV": 0x149,
    "CertifyCreation": 0x14A, "Duplicate": 0x14B, "GetTime": 0x14C,
    "GetSessionAuditDigest": 0x14D, "NV_Read": 0x14E, "NV_ReadLock": 0x14F,
    "ObjectChangeAuth": 0x150, "PolicySecret": 0x151, "Rewrap": 0x152, "Create": 0x153,
    "ECDH_ZGen": 0x154, "HMAC": 0x155, "Import": 0x156, "Load": 0x157, "Quote": 0x158,
    "RSA_Decrypt": 0x159, "HMAC_Start": 0x15B, "SequenceUpdate": 0x15C, "Sign": 0x15D,
    "Unseal": 0x15E, "PolicySigned": 0x160, "ContextLoad": 0x161, "ContextSave": 0x162,
    "ECDH_KeyGen": 0x163, "EncryptDecrypt": 0x164, "FlushContext": 0x165,
    "LoadExternal": 0x167, "MakeCredential": 0x168, "NV_ReadPublic": 0x169,
    "PolicyAuthorize": 0x16A, "PolicyAuthValue": 0x16B, "PolicyCommandCode": 0x16C,
    "PolicyCounterTimer": 0x16D, "PolicyCpHash": 0x16E, "PolicyLocality": 0x16F,
    "PolicyNameHash": 0x170, "PolicyOR": 0x171, "PolicyTicket": 0x172, "ReadPublic": 0x173,
    "RSA_Encrypt": 0x174, "StartAuthSession": 0x176, "VerifySignature": 0x177,
    "ECC_Parameters": 0x178, "FirmwareRead": 0x179, "GetCapability": 0x17A,
    "GetRandom": 0x17B, "GetTestResult": 0x17C, "Hash": 0x17D, "PCR_Read": 0x17E,
    "PolicyPCR": 0x17F, "PolicyRestart": 0x180, "ReadClock": 0x181, "PCR_Extend": 0x182,
    "PCR_SetAuthValue": 0x183, "NV_Certify": 0x184, "EventSequenceComplete": 0x185,
    "HashSequenceStart": 0x186, "PolicyPhysicalPresence": 0x187,
    "PolicyDuplicationSelect": 0x188, "PolicyGetDigest": 0x189, "TestParms": 0x18A,
    "Commit": 0x18B, "PolicyPassword": 0x18C, "ZGen_2Phase": 0x18D, "EC_Ephemeral": 0x18E,
    "PolicyNvWritten": 0x18F, "PolicyTemplate": 0x190, "CreateLoaded": 0x191,
    "PolicyAuthorizeNV": 0x192, "EncryptDecrypt2": 0x193, "AC_GetCapability": 0x194,
    "AC_Send": 0x195, "Policy_AC_SendSelect": 0x196, "CertifyX509": 0x197,
    "ACT_SetTimeout": 0x198,
}  # fmt: skip

#: TPM_ALG_ID values (Part 2 Table 9) by the lower-case names tpm2-tools prints.
ALGORITHMS: Mapping[str, int] = {
    "rsa": 0x01, "tdes": 0x03, "sha1": 0x04, "hmac": 0x05, "aes": 0x06, "mgf1": 0x07,
    "keyedhash": 0x08, "xor": 0x0A, "sha256": 0x0B, "sha384": 0x0C, "sha512": 0x0D,
    "null": 0x10, "sm3_256": 0x12, "sm4": 0x13, "rsassa": 0x14, "rsaes": 0x15,
    "rsapss": 0x16, "oaep": 0x17, "ecdsa": 0x18, "ecdh": 0x19, "ecdaa": 0x1A, "sm2": 0x1B,
    "ecschnorr": 0x1C, "ecmqv": 0x1D, "kdf1_sp800_56a": 0x20, "kdf2": 0x21,
    "kdf1_sp800_108": 0x22, "ecc": 0x23, "symcipher": 0x25, "camellia": 0x26,
    "sha3_256": 0x27, "sha3_384": 0x28, "sha3_512": 0x29, "cmac": 0x3F, "ctr": 0x40,
    "ofb": 0x41, "cbc": 0x42, "cfb": 0x43, "ecb": 0x44,
}  # fmt: skip

#: TPM_ECC_CURVE values (Part 2 Table 10).
CURVES: Mapping[str, int] = {
    "nist_p192": 0x01, "nist_p224": 0x02, "nist_p256": 0x03, "nist_p384": 0x04,
    "nist_p521": 0x05, "bn_p256": 0x10, "bn_p638": 0x11, "sm2_p256": 0x20,
}  # fmt: skip

#: TPM_PT fixed properties (Part 2 Table 23, PT_FIXED = 0x100) by their name without TPM_PT_.
FIXED_PROPERTIES: Mapping[str, int] = {
    name: 0x100 + i
    for i, name in enumerate(
        (
            "FAMILY_INDICATOR", "LEVEL", "REVISION", "DAY_OF_YEAR", "YEAR", "MANUFACTURER",
            "VENDOR_STRING_1", "VENDOR_STRING_2", "VENDOR_STRING_3", "VENDOR_STRING_4",
            "VENDOR_TPM_TYPE", "FIRMWARE_VERSION_1", "FIRMWARE_VERSION_2", "INPUT_BUFFER",
            "HR_TRANSIENT_MIN", "HR_PERSISTENT_MIN", "HR_LOADED_MIN", "ACTIVE_SESSIONS_MAX",
            "PCR_COUNT", "PCR_SELECT_MIN", "CONTEXT_GAP_MAX", "_RESERVED_115",
            "NV_COUNTERS_MAX", "NV_INDEX_MAX", "MEMORY", "CLOCK_UPDATE", "CONTEXT_HASH",
            "CONTEXT_SYM", "CONTEXT_SYM_SIZE", "ORDERLY_COUNT", "MAX_COMMAND_SIZE",
            "MAX_RESPONSE_SIZE", "MAX_DIGEST", "MAX_OBJECT_CONTEXT", "MAX_SESSION_CONTEXT",
            "PS_FAMILY_INDICATOR", "PS_LEVEL", "PS_REVISION", "PS_DAY_OF_YEAR", "PS_YEAR",
            "SPLIT_MAX", "TOTAL_COMMANDS", "LIBRARY_COMMANDS", "VENDOR_COMMANDS",
            "NV_BUFFER_MAX", "MODES", "MAX_CAP_BUFFER",
        )
    )
    if not name.startswith("_")
}  # fmt: skip
_PT_TOTAL = FIXED_PROPERTIES["TOTAL_COMMANDS"]
_PT_LIBRARY = FIXED_PROPERTIES["LIBRARY_COMMANDS"]
_PT_VENDOR = FIXED_PROPERTIES["VENDOR_COMMANDS"]
_TPMA_CC_V = 1 << 29  # a vendor-specific command

_PASSWORD_SESSION = 0x40000009
_HMAC_SESSION_TYPE, _POLICY_SESSION_TYPE = 0x02, 0x03
_TPM_ALG_NULL = 0x10
#: Handles before the authorisation area, for the commands an erratum may name (Part 3).
_ERRATUM_HANDLES = {"PolicySecret": 2, "LoadExternal": 0, "EncryptDecrypt2": 1,
                    "EncryptDecrypt": 1, "Load": 1, "Unseal": 1}  # fmt: skip
_OBJECT_TYPES = {0x01: "rsa", 0x08: "keyedhash", 0x23: "ecc", 0x25: "symcipher"}


class WireError(ValueError):
    """Bytes that are not a TPM command or response (the proxy closes that connection)."""


def frame_size(header: bytes) -> int:
    """The total size a command or response announces in its first 10 bytes.

    Raises:
        WireError: shorter than a header, or a size below the header's own.
    """
    if len(header) < HEADER:
        raise WireError(f"{len(header)} bytes: a TPM header has {HEADER}")
    _, size, _ = struct.unpack(">HII", header[:HEADER])
    if size < HEADER:
        raise WireError(f"announced size {size} is below the header size")
    return int(size)


def command_code(command: bytes) -> int:
    return int(struct.unpack(">I", command[6:10])[0])


def response_code(response: bytes) -> int:
    return int(struct.unpack(">I", response[6:10])[0])


def error_response(rc: int) -> bytes:
    """A response carrying only ``rc`` (TPM 2.0 Part 1 §18.6: errors have no sessions)."""
    return struct.pack(">HII", ST_NO_SESSIONS, HEADER, rc)


def _parameter_rc(rc: int, number: int) -> int:
    return _RC_FMT1 | rc | _RC_P | (number & 0xF) << 8


@dataclass(frozen=True)
class Erratum:
    """A documented misbehaviour of the part, in terms the proxy can act on.

    ``trigger``: ``"any"`` (every use of ``command``) or ``"hmac-session"`` (``command``
    authorised by an HMAC session). ``effect``: ``"failure-mode"`` (the part answers
    TPM_RC_FAILURE to everything but GetCapability and GetTestResult until it is restarted)
    or ``"no-response"`` (the part never answers; the client's transport reports an I/O
    error).
    """

    name: str
    command: str
    trigger: Literal["any", "hmac-session"]
    effect: Literal["failure-mode", "no-response"]


@dataclass(frozen=True)
class PartRules:
    """What the part has, as the proxy needs it: numbers, not names."""

    absent_commands: frozenset[int]
    absent_algorithms: frozenset[int]
    absent_curves: frozenset[int]
    fixed: Mapping[int, int]
    errata: tuple[Erratum, ...] = ()
    rsa_key_bits: frozenset[int] | None = None  # None: whatever swtpm takes
    aes_key_bits: frozenset[int] | None = None

    @classmethod
    def from_names(
        cls,
        *,
        absent_commands: Iterable[str] = (),
        absent_algorithms: Iterable[str] = (),
        absent_curves: Iterable[str] = (),
        fixed: Mapping[str, int] | None = None,
        errata: Iterable[Erratum] = (),
        rsa_key_bits: Iterable[int] | None = None,
        aes_key_bits: Iterable[int] | None = None,
    ) -> PartRules:
        """Raises: KeyError for a name the tables above do not know."""
        return cls(
            absent_commands=frozenset(COMMANDS[n] for n in absent_commands),
            absent_algorithms=frozenset(ALGORITHMS[n] for n in absent_algorithms),
            absent_curves=frozenset(CURVES[n] for n in absent_curves),
            fixed={FIXED_PROPERTIES[n]: v for n, v in (fixed or {}).items()},
            errata=tuple(errata),
            rsa_key_bits=frozenset(rsa_key_bits) if rsa_key_bits is not None else None,
            aes_key_bits=frozenset(aes_key_bits) if aes_key_bits is not None else None,
        )


@dataclass(frozen=True)
class Decision:
    """``forward`` these bytes to swtpm, ``answer`` these bytes to the client, or ``drop``
    (answer nothing and close the client's connection)."""

    action: Literal["forward", "answer", "drop"]
    data: bytes = b""
    reason: str = ""


@dataclass
class _Pending:
    capability: int
    first: int
    count: int


@dataclass
class PartFilter:
    """One part's behaviour over one swtpm. ``failed`` is the part's failure mode (set by an
    erratum; only a restart of the proxy — the part's power cycle — clears it). ``refused``
    counts the commands the part answered itself, by reason, for the proxy's log."""

    rules: PartRules
    failed: str | None = None
    refused: dict[str, int] = field(default_factory=dict)
    fixed: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.fixed = {**self.rules.fixed, **self.fixed}

    def _refuse(self, rc: int, reason: str) -> Decision:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        return Decision("answer", error_response(rc), reason)

    # ---- commands -----------------------------------------------------------------------

    def on_command(self, command: bytes) -> tuple[Decision, _Pending | None]:
        """Decide on one complete command. The second item goes back to :meth:`on_response`
        with swtpm's answer to a forwarded command.

        Raises:
            WireError: not a complete TPM command.
        """
        if len(command) < HEADER or frame_size(command) != len(command):
            raise WireError("incomplete TPM command")
        tag = struct.unpack(">H", command[:2])[0]
        code = command_code(command)
        if self.failed is not None and code not in (COMMANDS["GetCapability"],
                                                    COMMANDS["GetTestResult"]):  # fmt: skip
            return self._refuse(RC_FAILURE, f"failure mode ({self.failed})"), None
        for erratum in self.rules.errata:
            if COMMANDS[erratum.command] != code:
                continue
            handles = _ERRATUM_HANDLES.get(erratum.command, 1)
            if erratum.trigger == "hmac-session" and not _first_session_is_hmac(
                command, tag, handles
            ):
                continue
            if erratum.effect == "no-response":
                self.refused[erratum.name] = self.refused.get(erratum.name, 0) + 1
                return Decision("drop", reason=erratum.name), None
            self.failed = erratum.name
            return self._refuse(RC_FAILURE, f"erratum {erratum.name}: failure mode"), None
        if code in self.rules.absent_commands:
            return self._refuse(RC_COMMAND_CODE, f"command 0x{code:03x} not implemented"), None
        max_command = self.fixed.get(FIXED_PROPERTIES["MAX_COMMAND_SIZE"])
        if max_command is not None and len(command) > max_command:
            return self._refuse(RC_COMMAND_SIZE, "command larger than MAX_COMMAND_SIZE"), None
        try:
            refusal = self._check_parameters(code, command, tag)
        except (struct.error, IndexError):
            refusal = None  # malformed: swtpm gives the precise unmarshalling error
        if refusal is not None:
            return self._refuse(*refusal), None
        if code == COMMANDS["GetCapability"] and len(command) == HEADER + 12:
            capability, first, count = struct.unpack(">III", command[HEADER:])
            if capability in (CAP_ALGS, CAP_COMMANDS, CAP_ECC_CURVES):
                # Ask for everything from `first` on, so the part's subset can be cut.
                wide = command[:HEADER] + struct.pack(">III", capability, first, 0x1000)
                return Decision("forward", wide), _Pending(capability, first, count)
            if capability == CAP_TPM_PROPERTIES:
                return Decision("forward", command), _Pending(capability, first, count)
        return Decision("forward", command), None

    def _check_parameters(self, code: int, command: bytes, tag: int) -> tuple[int, str] | None:
        """An algorithm, mode or curve the part lacks, where the part's unmarshalling would
        stop: TestParms (parameter 1), CreatePrimary / Create / CreateLoaded (inPublic,
        parameter 2), EncryptDecrypt2 (mode, parameter 3), EncryptDecrypt (mode, 2)."""
        rules = self.rules
        if not (rules.absent_algorithms or rules.absent_curves or rules.rsa_key_bits
                or rules.aes_key_bits):  # fmt: skip
            return None
        if code == COMMANDS["TestParms"]:
            return self._check_public(command, HEADER, 1, with_header=False)
        handles = {COMMANDS["CreatePrimary"]: 1, COMMANDS["Create"]: 1,
                   COMMANDS["CreateLoaded"]: 1}.get(code)  # fmt: skip
        if handles is not None:
            offset = _parameters_offset(command, tag, handles)
            (sensitive,) = struct.unpack(">H", command[offset : offset + 2])
            offset += 2 + sensitive
            return self._check_public(command, offset + 2, 2, with_header=True)
        if code == COMMANDS["EncryptDecrypt2"]:
            offset = _parameters_offset(command, tag, 1)
            (size,) = struct.unpack(">H", command[offset : offset + 2])
            offset += 2 + size + 1  # inData, decrypt
            return self._check_mode(command, offset, 3)
        if code == COMMANDS["EncryptDecrypt"]:
            return self._check_mode(command, _parameters_offset(command, tag, 1) + 1, 2)
        return None

    def _check_mode(self, command: bytes, offset: int, number: int) -> tuple[int, str] | None:
        (mode,) = struct.unpack(">H", command[offset : offset + 2])
        if mode in self.rules.absent_algorithms:
            return _parameter_rc(RC_MODE, number), f"cipher mode 0x{mode:04x} not implemented"
        return None

    def _check_public(
        self, command: bytes, offset: int, number: int, *, with_header: bool
    ) -> tuple[int, str] | None:
        absent, curves = self.rules.absent_algorithms, self.rules.absent_curves

        def take(n: int = 2) -> int:
            nonlocal offset
            value = int.from_bytes(command[offset : offset + n], "big")
            if offset + n > len(command):
                raise IndexError("short parameter")
            offset += n
            return value

        def refuse(rc: int, what: str, value: int) -> tuple[int, str]:
            return _parameter_rc(rc, number), f"{what} 0x{value:04x} not implemented"

        kind = take()
        if kind in absent or kind not in _OBJECT_TYPES:
            return refuse(RC_TYPE, "object type", kind)
        if with_header:
            name_alg = take()
            if name_alg in absent:
                return refuse(RC_HASH, "name algorithm", name_alg)
            take(4)  # objectAttributes
            take(take())  # authPolicy
        if _OBJECT_TYPES[kind] == "keyedhash":
            scheme = take()
            if scheme in absent:
                return refuse(RC_SCHEME, "scheme", scheme)
            if scheme != _TPM_ALG_NULL:
                digest = take()
                if digest in absent:
                    return refuse(RC_HASH, "hash", digest)
            return None
        symmetric = take()
        if symmetric != _TPM_ALG_NULL:
            if symmetric in absent:
                return refuse(RC_SYMMETRIC, "symmetric algorithm", symmetric)
            bits = take()
            allowed = self.rules.aes_key_bits
            if symmetric == ALGORITHMS["aes"] and allowed is not None and bits not in allowed:
                return refuse(RC_KEY_SIZE, "AES key size", bits)
            mode = take()
            if mode in absent:
                return refuse(RC_MODE, "cipher mode", mode)
        if _OBJECT_TYPES[kind] == "symcipher":
            return None
        scheme = take()
        if scheme in absent:
            return refuse(RC_SCHEME, "scheme", scheme)
        if scheme != _TPM_ALG_NULL:
            digest = take()
            if digest in absent:
                return refuse(RC_HASH, "hash", digest)
            if scheme == ALGORITHMS["ecdaa"]:
                take()
        if _OBJECT_TYPES[kind] == "ecc":
            curve = take()  # TPMS_ECC_PARMS: symmetric, scheme, curveID, kdf
            if curve in curves:
                return refuse(RC_CURVE, "curve", curve)
        elif _OBJECT_TYPES[kind] == "rsa":
            bits = take()  # TPMS_RSA_PARMS: symmetric, scheme, keyBits, exponent
            allowed = self.rules.rsa_key_bits
            if allowed is not None and bits not in allowed:
                return refuse(RC_KEY_SIZE, "RSA key size", bits)
        return None

    # ---- responses ------------------------------------------------------------------------

    def on_response(self, pending: _Pending | None, response: bytes) -> bytes:
        """swtpm's answer, as the part gives it."""
        if pending is None or len(response) < HEADER or response_code(response) != RC_SUCCESS:
            return response
        try:
            if pending.capability == CAP_TPM_PROPERTIES:
                return self._properties(response)
            return self._list(pending, response)
        except (struct.error, IndexError):
            return response  # not what swtpm sends: pass it on untouched

    def _list(self, pending: _Pending, response: bytes) -> bytes:
        body = response[HEADER:]
        more, capability, count = struct.unpack(">BII", body[:9])
        width = {CAP_ALGS: 6, CAP_COMMANDS: 4, CAP_ECC_CURVES: 2}[pending.capability]
        raw = [body[9 + i * width : 9 + (i + 1) * width] for i in range(count)]
        if pending.capability == CAP_COMMANDS:
            keep = [r for r in raw if int.from_bytes(r, "big") & 0xFFFF not in
                    self.rules.absent_commands]  # fmt: skip
        elif pending.capability == CAP_ALGS:
            keep = [r for r in raw if int.from_bytes(r[:2], "big") not in
                    self.rules.absent_algorithms]  # fmt: skip
        else:
            keep = [r for r in raw if int.from_bytes(r, "big") not in self.rules.absent_curves]
        wanted = max(0, pending.count)
        shown = keep[:wanted]
        more_data = 1 if (len(keep) > len(shown) or more) else 0
        out = struct.pack(">BII", more_data, capability, len(shown)) + b"".join(shown)
        return struct.pack(">HII", ST_NO_SESSIONS, HEADER + len(out), RC_SUCCESS) + out

    def _properties(self, response: bytes) -> bytes:
        body = bytearray(response[HEADER:])
        _, _, count = struct.unpack(">BII", body[:9])
        for i in range(count):
            at = 9 + i * 8
            prop, value = struct.unpack(">II", body[at : at + 8])
            if prop in self.fixed:
                value = self.fixed[prop]
            struct.pack_into(">II", body, at, prop, value)
        return response[:HEADER] + bytes(body)

    def command_counts(self, implemented: Iterable[int]) -> dict[int, int]:
        """TOTAL/LIBRARY/VENDOR_COMMANDS consistent with the filtered command list (TPMA_CC
        values as swtpm lists them): the part's published counts describe its own list,
        which swtpm cannot reproduce exactly."""
        attrs = [a for a in implemented if a & 0xFFFF not in self.rules.absent_commands]
        vendor = sum(1 for a in attrs if a & _TPMA_CC_V)
        return {_PT_TOTAL: len(attrs), _PT_LIBRARY: len(attrs) - vendor, _PT_VENDOR: vendor}

    def set_command_counts(self, implemented: Iterable[int]) -> None:
        """Replace the part's published command counts with :meth:`command_counts`."""
        self.fixed.update(self.command_counts(implemented))


def _parameters_offset(command: bytes, tag: int, handles: int) -> int:
    offset = HEADER + 4 * handles
    if tag == ST_SESSIONS:
        (auth_size,) = struct.unpack(">I", command[offset : offset + 4])
        offset += 4 + auth_size
    return offset


def _first_session_is_hmac(command: bytes, tag: int, handles: int) -> bool:
    """True if the command's first authorisation is an HMAC session (handle 0x02xxxxxx)."""
    if tag != ST_SESSIONS:
        return False
    offset = HEADER + 4 * handles
    if len(command) < offset + 8:
        return False
    session = int.from_bytes(command[offset + 4 : offset + 8], "big")
    return session >> 24 == _HMAC_SESSION_TYPE and session != _PASSWORD_SESSION
