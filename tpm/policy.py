"""Off-TPM policy digests (TPM 2.0 Part 3 §23): the authPolicy a MID object must carry.

The operator computes them before wrapping K; the device recomputes them before importing, to
refuse a package whose objects do not carry the policy its manifest claims. No TPM I/O here
(no clock, no randomness either); tpm2-pytss is imported only to marshal TPML_PCR_SELECTION,
so this module is not "Pure." by the import rule. The same step objects drive the on-TPM
execution in :mod:`tpm.policy_session`, so digest and session cannot drift apart.

Digests (hash H = the policy session's hash, SHA-256 here; ``old`` starts as zeros):

- PolicyPCR = H(old ‖ CC ‖ TPML_PCR_SELECTION ‖ H(PCR values in selection order)) (§23.7)
- PolicyNV = H(old ‖ CC ‖ H(operandB ‖ u16 offset ‖ u16 operation) ‖ nvIndexName) (§23.9)
- PolicyAuthValue = H(old ‖ CC) (§23.17); PolicyCommandCode = H(old ‖ CC ‖ u32 code) (§23.11)
- PolicySecret = H(H(old ‖ CC ‖ authObjectName) ‖ policyRef) (§23.4, PolicyUpdate)
- PolicyAuthorize = H(H(0 ‖ CC ‖ keySignName) ‖ policyRef): it *replaces* the old digest (§23.16)
- approval hash aHash = H(approvedPolicy ‖ policyRef), what the authorising key signs (§23.16)
- PolicyCpHash = H(old ‖ CC ‖ cpHashA) (§23.13), with cpHash = H(CC ‖ names ‖ parameters)
  (Part 1 §16.7): the session then authorises exactly one command with those parameters
- PolicyNvWritten = H(old ‖ CC ‖ writtenSet) (§23.22): the index must (not) be written yet
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tpm.pcrsel import parse_selection
from trelab.errors import BadInput

__all__ = [
    "CC_DUPLICATE",
    "CC_ENCRYPT_DECRYPT",
    "CC_ENCRYPT_DECRYPT2",
    "CC_HMAC",
    "CC_NV_WRITE",
    "CC_UNSEAL",
    "EO_EQ",
    "PolicyAuthValue",
    "PolicyAuthorize",
    "PolicyCommandCode",
    "PolicyCpHash",
    "PolicyNv",
    "PolicyNvWritten",
    "PolicyPcr",
    "PolicySecret",
    "PolicyStep",
    "approval_hash",
    "command_parameter_hash",
    "format_pcr_selection",
    "marshal_pcr_selection",
    "parse_pcr_selection",
    "pcr_digest",
    "policy_digest",
]

HASH = "sha256"
DIGEST_SIZE = 32

# Command codes (TPM 2.0 Part 2 §6.5.2)
CC_POLICY_SECRET = 0x151
CC_POLICY_NV = 0x149
CC_POLICY_AUTHORIZE = 0x16A
CC_POLICY_AUTH_VALUE = 0x16B
CC_POLICY_COMMAND_CODE = 0x16C
CC_POLICY_PCR = 0x17F
CC_POLICY_CP_HASH = 0x16E
CC_POLICY_NV_WRITTEN = 0x18F
CC_NV_WRITE = 0x137
CC_DUPLICATE = 0x14B
CC_UNSEAL = 0x15E
CC_HMAC = 0x155
CC_ENCRYPT_DECRYPT = 0x164
CC_ENCRYPT_DECRYPT2 = 0x193
EO_EQ = 0x0000  # TPM_EO_EQ (Part 2 §6.8)

_BANKS = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
POLICY_MAX_PCR = 23  # PC Client TPMs have PCRs 0…23


def _h(*parts: bytes) -> bytes:
    return hashlib.new(HASH, b"".join(parts)).digest()


def _u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def parse_pcr_selection(text: str, *, field: str = "pcrs") -> tuple[str, tuple[int, ...]]:
    """``"sha256:0,1,2,16"`` → ("sha256", (0, 1, 2, 16)): the syntax and rules of
    :func:`tpm.pcrsel.parse_selection` (the one PCR selection parser), plus what a MID policy
    needs: one bank (the lab's swtpm has only sha256) and PCRs a PC Client TPM has (0…23).

    Raises:
        BadInput: naming ``field``: not ``bank:list``, unknown bank, no or repeated PCRs, more
            than one bank, a PCR outside 0…23.
    """
    selection = parse_selection(text, what=field)
    if len(selection) != 1:
        raise BadInput(f"{text!r}: a MID policy binds one bank", field=field)
    bank, pcrs = selection[0]
    if bank not in _BANKS:
        raise BadInput(f"{text!r}: bank {bank} cannot be used in a MID policy", field=field)
    if pcrs[-1] > POLICY_MAX_PCR:
        raise BadInput(f"{text!r}: PCRs are numbered 0…{POLICY_MAX_PCR}", field=field)
    return bank, pcrs


def format_pcr_selection(bank: str, pcrs: Iterable[int]) -> str:
    """Inverse of :func:`parse_pcr_selection` (canonical spelling)."""
    return f"{bank}:{','.join(str(p) for p in sorted(set(pcrs)))}"


@functools.lru_cache(maxsize=64)
def marshal_pcr_selection(selection: str) -> bytes:
    """The marshaled TPML_PCR_SELECTION (tpm2-pytss) for ``bank:list``; a pure function of
    the text, remembered (every MID policy the operator builds hashes it).

    Raises:
        BadInput: malformed selection.
    """
    from tpm.tss import TPML_PCR_SELECTION

    bank, pcrs = parse_pcr_selection(selection)
    return bytes(TPML_PCR_SELECTION.parse(format_pcr_selection(bank, pcrs)).marshal())


def pcr_digest(values: Sequence[bytes]) -> bytes:
    """H(PCR values concatenated in selection order): PolicyPCR's pcrDigest (§23.7).

    Raises:
        BadInput: no values, or values of unequal size.
    """
    if not values or len({len(v) for v in values}) != 1 or len(values[0]) not in _BANKS.values():
        raise BadInput("PCR values: need one or more digests of one bank's size")
    return _h(*values)


# ---- the steps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyPcr:
    """TPM2_PolicyPCR: the selected PCRs must hold the values whose hash is ``digest``."""

    selection: str
    digest: bytes

    def extend(self, old: bytes) -> bytes:
        if len(self.digest) != DIGEST_SIZE:
            raise BadInput(f"PolicyPCR digest: {len(self.digest)} bytes, expected {DIGEST_SIZE}")
        return _h(old, _u32(CC_POLICY_PCR), marshal_pcr_selection(self.selection), self.digest)


@dataclass(frozen=True)
class PolicyNv:
    """TPM2_PolicyNV: ``operand`` compared (``operation``) with NV ``index`` at ``offset``.

    ``nv_name`` is the index's name, which covers its attributes (including WRITTEN).
    """

    index: int
    nv_name: bytes
    operand: bytes
    offset: int = 0
    operation: int = EO_EQ

    def extend(self, old: bytes) -> bytes:
        if not 0 <= self.offset <= 0xFFFF or not 0 <= self.operation <= 0xFFFF:
            raise BadInput("PolicyNV: offset and operation must fit 16 bits")
        args = _h(self.operand, _u16(self.offset), _u16(self.operation))
        return _h(old, _u32(CC_POLICY_NV), args, self.nv_name)


@dataclass(frozen=True)
class PolicyAuthValue:
    """TPM2_PolicyAuthValue: the object's authValue (the PIN) goes into the session HMAC."""

    def extend(self, old: bytes) -> bytes:
        return _h(old, _u32(CC_POLICY_AUTH_VALUE))


@dataclass(frozen=True)
class PolicyCommandCode:
    """TPM2_PolicyCommandCode: the session authorises only command ``code``."""

    code: int

    def extend(self, old: bytes) -> bytes:
        return _h(old, _u32(CC_POLICY_COMMAND_CODE), _u32(self.code))


@dataclass(frozen=True)
class PolicySecret:
    """TPM2_PolicySecret: proof of the authValue of the object named ``auth_name``."""

    auth_name: bytes
    policy_ref: bytes = b""

    def extend(self, old: bytes) -> bytes:
        return _h(_h(old, _u32(CC_POLICY_SECRET), self.auth_name), self.policy_ref)


@dataclass(frozen=True)
class PolicyAuthorize:
    """TPM2_PolicyAuthorize: any policy signed by the key named ``key_name`` (with
    ``policy_ref``) is accepted in place of the steps before it (§23.16)."""

    key_name: bytes
    policy_ref: bytes = b""

    def extend(self, old: bytes) -> bytes:
        del old  # PolicyAuthorize resets the digest before extending
        return _h(_h(bytes(DIGEST_SIZE), _u32(CC_POLICY_AUTHORIZE), self.key_name), self.policy_ref)


@dataclass(frozen=True)
class PolicyCpHash:
    """TPM2_PolicyCpHash: the session authorises only the command whose cpHash is ``cp_hash``
    (:func:`command_parameter_hash`)."""

    cp_hash: bytes

    def extend(self, old: bytes) -> bytes:
        if len(self.cp_hash) != DIGEST_SIZE:
            raise BadInput(f"PolicyCpHash: {len(self.cp_hash)} bytes, expected {DIGEST_SIZE}")
        return _h(old, _u32(CC_POLICY_CP_HASH), self.cp_hash)


@dataclass(frozen=True)
class PolicyNvWritten:
    """TPM2_PolicyNvWritten: the NV index the session authorises must (``written``) or must not
    have been written: a first write can happen once only."""

    written: bool

    def extend(self, old: bytes) -> bytes:
        return _h(old, _u32(CC_POLICY_NV_WRITTEN), bytes((int(self.written),)))


PolicyStep = (
    PolicyPcr
    | PolicyNv
    | PolicyAuthValue
    | PolicyCommandCode
    | PolicySecret
    | PolicyAuthorize
    | PolicyCpHash
    | PolicyNvWritten
)


def command_parameter_hash(code: int, names: Sequence[bytes], parameters: bytes) -> bytes:
    """cpHash = H(u32 commandCode ‖ name of each handle ‖ marshaled parameters) (Part 1 §16.7).
    ``names`` are the raw names (no TPM2B size)."""
    return _h(_u32(code), *names, parameters)


def policy_digest(steps: Iterable[PolicyStep]) -> bytes:
    """The session digest after running ``steps`` in order from a fresh session (SHA-256).

    Raises:
        BadInput: a step holds a malformed value.
    """
    digest = bytes(DIGEST_SIZE)
    for step in steps:
        digest = step.extend(digest)
    return digest


def approval_hash(approved_policy: bytes, policy_ref: bytes = b"") -> bytes:
    """aHash = H(approvedPolicy ‖ policyRef): the digest the authorising key signs (§23.16)."""
    return _h(approved_policy, policy_ref)
