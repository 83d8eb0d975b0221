"""Pure. The PVA's quote verifier (TR 33.812 §7.1.2.1 "remote validation"; docs/provisioning.md M4;
TPM 2.0 Part 2 §10.12 TPMS_ATTEST, Part 3 §18.4 TPM2_Quote).

Input is already-unmarshaled evidence (:mod:`tpm.marshal` turns tpm2-tools files into these
dataclasses with tpm2-pytss); this module only decides. Checks, in order, each naming itself
in :class:`~tpm.errors.QuoteRejected`:

``signature``      the AK signed exactly the quote.msg bytes (ECDSA / RSASSA / RSAPSS)
``ak``             the AK is pinned (the activated AK's public key or name) and the quote's
                   signer is that key; ak.pub, when present, says restricted, TPM-fixed
                   signing key. Without a pin nothing ties the signer to a TPM: ak.pub is
                   written by the sender and a software key can claim any attributes
``magic``          TPM_GENERATED_VALUE: the TPM made the structure (a restricted key only
                   signs TPM-generated data starting with it)
``type``           TPM_ST_ATTEST_QUOTE: not an NV or key certification passed off as a quote
``nonce``          extraData == the verifier's own nonce (freshness); the evidence's nonce
                   file is the sender's claim and never stands in for it
``pcr-selection``  the selection *in the signed structure* == the claimed pcrlist
                   (CVE-2024-29038: tpm2_checkquote took it from the unsigned file)
``pcr-digest``     pcrDigest == H(claimed PCR values), H = the signature's hash
``reference``      every reference PCR is quoted and equal
``clock``          resetCount/restartCount/clock not behind a previous quote of the same AK

Returns a :class:`Verdict` or raises; messages name the check, never key material.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tpm.errors import QuoteRejected
from tpm.pcrsel import DIGEST_SIZES, PcrSelection, format_selection, normalise, values_digest
from trelab.errors import BadInput

__all__ = [
    "AK_REQUIRED_ATTRIBUTES",
    "ATTEST_TYPES",
    "TPM_GENERATED_VALUE",
    "TPM_ST_ATTEST_QUOTE",
    "AkPublic",
    "Attest",
    "ClockInfo",
    "Evidence",
    "Signature",
    "Verdict",
    "check_clock",
    "spki",
    "split_pcr_values",
    "verify_quote",
    "verify_signature",
]

TPM_GENERATED_VALUE = 0xFF544347  # Part 2 §6.2
TPM_ST_ATTEST_QUOTE = 0x8018  # Part 2 §6.9
ATTEST_TYPES = {
    0x8014: "nv-certify",
    0x8015: "command-audit",
    0x8016: "session-audit",
    0x8017: "certify",
    0x8018: "quote",
    0x8019: "time",
    0x801A: "creation",
    0x801C: "nv-digest",
}
# TPMA_OBJECT bits (Part 2 §8.3): fixedTPM, fixedParent, sensitiveDataOrigin, restricted, sign.
AK_REQUIRED_ATTRIBUTES = {
    "fixedTPM": 0x00000002,
    "fixedParent": 0x00000010,
    "sensitiveDataOrigin": 0x00000020,
    "restricted": 0x00010000,
    "sign": 0x00040000,
}
_AK_ATTRIBUTES = sum(AK_REQUIRED_ATTRIBUTES.values())
# the accepted signature hashes, and ECDSA with each: descriptors without state, made once
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}
_ECDSA = {name: ec.ECDSA(algorithm) for name, algorithm in _HASHES.items()}


@dataclass(frozen=True)
class ClockInfo:
    """TPMS_CLOCK_INFO (Part 2 §10.11.1)."""

    clock: int
    reset_count: int
    restart_count: int
    safe: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "clock": self.clock,
            "resetCount": self.reset_count,
            "restartCount": self.restart_count,
            "safe": self.safe,
        }


@dataclass(frozen=True)
class Attest:
    """TPMS_ATTEST's fields the verifier uses; ``pcr_select``/``pcr_digest`` only for quotes."""

    magic: int
    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock_info: ClockInfo
    firmware_version: int
    pcr_select: PcrSelection | None = None
    pcr_digest: bytes | None = None


@dataclass(frozen=True)
class Signature:
    """TPMT_SIGNATURE: ``alg`` is ecdsa, rsassa, rsapss or the hex of another TPM_ALG_ID."""

    alg: str
    hash: str
    ecdsa_r: int = 0
    ecdsa_s: int = 0
    rsa_signature: bytes = b""


@dataclass(frozen=True)
class AkPublic:
    """The AK as the evidence presents it: the key (from ak.pub.pem), and from ak.pub (the
    TPM2B_PUBLIC) its name and TPMA_OBJECT attributes when present."""

    key: Any
    name: bytes | None = None
    attributes: int | None = None
    blob_key_spki: bytes | None = None  # SPKI of the key inside ak.pub, to match ak.pub.pem

    @functools.cached_property
    def key_spki(self) -> bytes:
        """SPKI DER of :attr:`key`, computed once per (memoised) AK."""
        return spki(self.key)

    @functools.cached_property
    def key_sha256(self) -> str:
        """Hex SHA-256 of :attr:`key_spki`: how a verdict names the AK."""
        return hashlib.sha256(self.key_spki).hexdigest()


@dataclass(frozen=True)
class Evidence:
    """One quote as delivered: the signed bytes, their parse, and the unsigned claims."""

    message: bytes
    attest: Attest
    signature: Signature
    ak: AkPublic
    pcr_values: bytes
    claimed: PcrSelection
    nonce: bytes | None = None


@dataclass(frozen=True)
class Verdict:
    """A verified quote: what a PVA may now rely on."""

    selection: PcrSelection
    pcrs: dict[str, dict[int, bytes]]
    nonce: bytes
    clock_info: ClockInfo
    firmware_version: int
    ak_sha256: str
    ak_name: bytes | None
    reference_checked: int
    previous_checked: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "verified": True,
            "reason": None,
            "pcrlist": format_selection(self.selection),
            "pcrs": {
                bank: {str(i): v.hex() for i, v in values.items()}
                for bank, values in self.pcrs.items()
            },
            "nonce": self.nonce.hex(),
            "clock": self.clock_info.to_json(),
            "firmware_version": f"0x{self.firmware_version:016x}",
            "ak_sha256": self.ak_sha256,
            "ak_name": self.ak_name.hex() if self.ak_name is not None else None,
            "reference_pcrs_checked": self.reference_checked,
            "previous_checked": self.previous_checked,
        }


def spki(key: Any) -> bytes:
    """DER SubjectPublicKeyInfo of a cryptography public key: how AKs are compared."""
    der: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def verify_signature(message: bytes, signature: Signature, key: Any) -> None:
    """The AK's signature over ``message`` (the TPM signs H(quote.msg) with the scheme's hash).

    Raises:
        QuoteRejected("signature"): wrong scheme for the key, weak hash, or invalid.
    """
    algorithm = _HASHES.get(signature.hash)
    if algorithm is None:
        raise QuoteRejected("signature", f"hash {signature.hash} is not accepted")
    try:
        if signature.alg == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            der = encode_dss_signature(signature.ecdsa_r, signature.ecdsa_s)
            key.verify(der, message, _ECDSA[signature.hash])
        elif signature.alg == "rsassa" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature.rsa_signature, message, padding.PKCS1v15(), algorithm)
        elif signature.alg == "rsapss" and isinstance(key, rsa.RSAPublicKey):
            pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.AUTO)
            key.verify(signature.rsa_signature, message, pss, algorithm)
        else:
            raise QuoteRejected(
                "signature", f"scheme {signature.alg} does not fit the AK's key type"
            )
    except InvalidSignature:
        raise QuoteRejected("signature", "the AK's signature does not verify") from None


def split_pcr_values(selection: PcrSelection, values: bytes) -> dict[str, dict[int, bytes]]:
    """Cut the concatenated ``pcrs`` bytes into per-bank, per-index digests.

    Raises:
        BadInput: the length does not fit the selection.
    """
    need = sum(DIGEST_SIZES[bank] * len(pcrs) for bank, pcrs in selection)
    if len(values) != need:
        raise BadInput(f"pcrs: {len(values)} bytes, the pcrlist needs {need}")
    out: dict[str, dict[int, bytes]] = {}
    offset = 0
    for bank, pcrs in selection:
        size = DIGEST_SIZES[bank]
        out[bank] = {}
        for i in pcrs:
            out[bank][i] = values[offset : offset + size]
            offset += size
    return out


def check_clock(previous: ClockInfo, current: ClockInfo) -> None:
    """Clock monotonicity (Part 1 §36.7): resetCount never decreases, restartCount not within
    one reset, clock never goes back — except after an unorderly reset (resetCount advanced,
    ``safe`` = NO), where the TPM may resume from an older saved clock.

    Raises:
        QuoteRejected("clock")
    """
    if current.reset_count < previous.reset_count:
        raise QuoteRejected(
            "clock",
            f"resetCount went back ({current.reset_count} < {previous.reset_count}):"
            " TPM cleared or state rolled back",
        )
    same_reset = current.reset_count == previous.reset_count
    if same_reset and current.restart_count < previous.restart_count:
        raise QuoteRejected(
            "clock",
            f"restartCount went back ({current.restart_count} < {previous.restart_count})",
        )
    if current.clock < previous.clock and (same_reset or current.safe):
        raise QuoteRejected(
            "clock", f"clock went back ({current.clock} < {previous.clock} ms): stale quote"
        )


def _check_ak(
    ak: AkPublic, expected_ak: bytes | None, expected_name: bytes | None
) -> tuple[str, bytes | None]:
    if expected_ak is None and expected_name is None:
        raise QuoteRejected(
            "ak",
            "no pinned AK (the activated AK's public key or name): the evidence's own AK"
            " files prove nothing about where the signing key lives",
        )
    key_spki = ak.key_spki
    if ak.blob_key_spki is not None and ak.blob_key_spki != key_spki:
        raise QuoteRejected("ak", "ak.pub and ak.pub.pem hold different keys")
    if ak.attributes is not None and ak.attributes & _AK_ATTRIBUTES != _AK_ATTRIBUTES:
        missing = [n for n, bit in AK_REQUIRED_ATTRIBUTES.items() if not ak.attributes & bit]
        if missing:
            raise QuoteRejected(
                "ak", f"the signing key is not an attestation key (lacks {', '.join(missing)})"
            )
    if expected_ak is not None and not hmac.compare_digest(expected_ak, key_spki):
        raise QuoteRejected("ak", "signed by an AK other than the expected (activated) one")
    if expected_name is not None:
        if ak.name is None:
            raise QuoteRejected("ak", "no ak.pub to compute the AK name from")
        if not hmac.compare_digest(expected_name, ak.name):
            raise QuoteRejected("ak", "AK name differs from the activated AK's name")
    return ak.key_sha256, ak.name


def verify_quote(
    evidence: Evidence,
    *,
    nonce: bytes | None = None,
    reference: Mapping[str, Mapping[int, bytes]] | None = None,
    previous: Evidence | None = None,
    expected_ak: bytes | None = None,
    expected_ak_name: bytes | None = None,
) -> Verdict:
    """Verify one quote against the verifier's own ``nonce`` and a pinned AK: ``expected_ak``
    (SPKI DER) and/or ``expected_ak_name``, of the AK bound to the EK by credential
    activation; ``previous`` a quote verified earlier from the same AK. Without a nonce or a
    pin the quote is rejected: freshness or the signer's home would be unproven.

    Raises:
        QuoteRejected: naming the failed check.
        BadInput: the PCR values do not fit the claimed selection.
    """
    attest = evidence.attest
    verify_signature(evidence.message, evidence.signature, evidence.ak.key)
    ak_sha256, ak_name = _check_ak(evidence.ak, expected_ak, expected_ak_name)
    if attest.magic != TPM_GENERATED_VALUE:
        raise QuoteRejected("magic", f"0x{attest.magic:08x} is not TPM_GENERATED_VALUE")
    if attest.type != TPM_ST_ATTEST_QUOTE:
        kind = ATTEST_TYPES.get(attest.type, f"0x{attest.type:04x}")
        raise QuoteRejected("type", f"signed structure is a {kind} attestation, not a quote")
    if nonce is None:
        raise QuoteRejected(
            "nonce",
            "no verifier nonce: freshness unproven (the evidence's own nonce file proves nothing)",
        )
    if not hmac.compare_digest(attest.extra_data, nonce):
        raise QuoteRejected("nonce", "extraData differs from the nonce: not a fresh quote")
    claimed = normalise(evidence.claimed)
    signed = attest.pcr_select or ()
    if signed != claimed and normalise(signed) != claimed:
        signed = normalise(signed)
        raise QuoteRejected(
            "pcr-selection",
            f"signed selection {format_selection(signed) or '(none)'} differs from the claimed"
            f" {format_selection(claimed) or '(none)'}",
        )
    values = split_pcr_values(claimed, evidence.pcr_values)
    digest = values_digest(evidence.signature.hash, evidence.pcr_values)
    if not hmac.compare_digest(digest, attest.pcr_digest or b""):
        raise QuoteRejected("pcr-digest", "pcrDigest differs from the hash of the PCR values")
    checked = 0
    for bank, wanted in (reference or {}).items():
        for index, value in wanted.items():
            quoted = values.get(bank, {}).get(index)
            if quoted is None:
                raise QuoteRejected(
                    "reference", f"{bank}:{index} has a reference but is not quoted"
                )
            if not hmac.compare_digest(quoted, value):
                raise QuoteRejected("reference", f"{bank}:{index} differs from its reference value")
            checked += 1
    if previous is not None:
        try:
            verify_signature(previous.message, previous.signature, previous.ak.key)
        except QuoteRejected:
            raise QuoteRejected("clock", "the previous quote does not verify") from None
        if previous.ak.key_spki != evidence.ak.key_spki:
            raise QuoteRejected("clock", "the previous quote is by another AK")
        if previous.attest.magic != TPM_GENERATED_VALUE:
            raise QuoteRejected("clock", "the previous quote is not TPM-generated")
        check_clock(previous.attest.clock_info, attest.clock_info)
    return Verdict(
        selection=claimed,
        pcrs=values,
        nonce=nonce,
        clock_info=attest.clock_info,
        firmware_version=attest.firmware_version,
        ak_sha256=ak_sha256,
        ak_name=ak_name,
        reference_checked=checked,
        previous_checked=previous is not None,
    )
