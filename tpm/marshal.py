"""Edge: tpm2-pytss marshaling only (no TPM, no I/O). TPM wire structures ↔ the plain
dataclasses of :mod:`tpm.verify`, so the verifier stays pure and nothing here hand-parses TPM
bytes (TPM 2.0 Part 2: TPMS_ATTEST §10.12.12, TPMT_SIGNATURE §11.3.4, TPM2B_PUBLIC §12.2.5,
TPML_PCR_SELECTION §10.9.7).

Malformed input (truncated, trailing bytes, unknown selector) is :class:`BadInput`.

Fields are read from the tpm2-tss C structures (``tss2_tpm2_types.h``) that tpm2-pytss'
``unmarshal`` fills, through cffi: the same bytes as its attribute wrappers, without building a
Python wrapper object per field access (that made one parse cost ~0.5 ms, a third of a quote).
"""

from __future__ import annotations

import functools
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tpm.pcrsel import PcrSelection, selection_from_bitmaps, selection_to_bitmaps
from tpm.tss import (
    TPM2_ALG,
    TPM2_ST,
    TPM2B_PUBLIC,
    TPML_PCR_SELECTION,
    TPMS_PCR_SELECTION,
    TSS2_Exception,
    ffi,
    lib,
)
from tpm.verify import AkPublic, Attest, ClockInfo, Signature, spki
from trelab.errors import BadInput

__all__ = [
    "HASH_ALGS",
    "ak_public_from_blob",
    "ak_public_from_pem",
    "hash_name",
    "parse_attest",
    "parse_signature",
    "public_name",
    "selection_from_tpml",
    "tpml_from_selection",
    "unmarshal_exact",
]

HASH_ALGS = {
    "sha1": TPM2_ALG.SHA1,
    "sha256": TPM2_ALG.SHA256,
    "sha384": TPM2_ALG.SHA384,
    "sha512": TPM2_ALG.SHA512,
    "sm3_256": TPM2_ALG.SM3_256,
}
_ST_ATTEST_QUOTE = int(TPM2_ST.ATTEST_QUOTE)
_SIG_NAMES = {
    int(TPM2_ALG.ECDSA): "ecdsa",
    int(TPM2_ALG.RSASSA): "rsassa",
    int(TPM2_ALG.RSAPSS): "rsapss",
}


_HASH_NAMES = {int(value): name for name, value in HASH_ALGS.items()}


def hash_name(alg: int) -> str:
    """``TPM2_ALG.SHA256`` → ``"sha256"``; unknown ids as ``0x000b``-style hex."""
    code = int(alg)
    name = _HASH_NAMES.get(code)
    return name if name is not None else f"0x{code:04x}"


def unmarshal_exact(kind: Any, data: bytes, what: str) -> Any:
    """One ``kind`` (a tpm2-pytss type) made of exactly ``data``: every byte used and, for a
    TPM2B, a size prefix that agrees with what follows. tpm2-pytss reads a sized structure
    (TPM2B_PUBLIC) without holding it to its prefix, which would give one public area 65,536
    encodings, and a name-bound protocol as many identities for one key.

    Raises:
        BadInput: truncated, malformed, trailing bytes, or a size prefix that disagrees.
    """
    try:
        value, used = kind.unmarshal(data)
    except (TSS2_Exception, ValueError, TypeError, IndexError):
        raise BadInput(f"{what}: not a complete {kind.__name__} (truncated or malformed)") from None
    if used != len(data):
        raise BadInput(f"{what}: {len(data) - used} trailing bytes after the {kind.__name__}")
    if kind.__name__.startswith("TPM2B_") and int.from_bytes(data[:2], "big") != len(data) - 2:
        raise BadInput(
            f"{what}: the {kind.__name__} size prefix says {int.from_bytes(data[:2], 'big')} "
            f"bytes, {len(data) - 2} follow"
        )
    return value


def public_name(public: Any, what: str) -> bytes:
    """The TPM name (nameAlg ‖ H(TPMT_PUBLIC), Part 1 §16) of a public area from outside.

    Raises:
        BadInput: its nameAlg is not a hash this side can compute (tpm2-pytss says ValueError).
    """
    try:
        return bytes(public.get_name())
    except (ValueError, TypeError, TSS2_Exception):
        alg = hash_name(public.publicArea.nameAlg)
        raise BadInput(f"{what}: nameAlg {alg} is not a hash algorithm known here") from None


def _bytes(tpm2b: Any, field: str = "buffer") -> bytes:
    """The used part of a TPM2B's C array."""
    return bytes(ffi.buffer(getattr(tpm2b, field), tpm2b.size))


def _selection_from_c(tpml: Any) -> PcrSelection:
    banks = []
    for i in range(tpml.count):
        sel = tpml.pcrSelections[i]
        name = hash_name(sel.hash)
        if name.startswith("0x"):
            raise BadInput(f"PCR selection: unknown bank hash {name}")
        banks.append((name, bytes(ffi.buffer(sel.pcrSelect, sel.sizeofSelect))))
    return selection_from_bitmaps(banks)


def selection_from_tpml(tpml: Any) -> PcrSelection:
    """TPML_PCR_SELECTION → :data:`~tpm.pcrsel.PcrSelection` (bitmaps trimmed to sizeofSelect).

    Raises:
        BadInput: a bank's hash is unknown.
    """
    banks = []
    for sel in tpml:
        name = hash_name(sel.hash)
        if name.startswith("0x"):
            raise BadInput(f"PCR selection: unknown bank hash {name}")
        banks.append((name, bytes(sel.pcrSelect)[: int(sel.sizeofSelect)]))
    return selection_from_bitmaps(banks)


def tpml_from_selection(selection: PcrSelection) -> Any:
    """:data:`~tpm.pcrsel.PcrSelection` → TPML_PCR_SELECTION for TPM2_Quote / PCR_Read."""
    return TPML_PCR_SELECTION(
        [
            TPMS_PCR_SELECTION(hash=HASH_ALGS[bank], sizeofSelect=len(bitmap), pcrSelect=bitmap)
            for bank, bitmap in selection_to_bitmaps(selection)
        ]
    )


def _unmarshal_c(kind: str, data: bytes, what: str) -> Any:
    """The C structure ``kind`` (a tpm2-tss type without a size prefix) unmarshalled by
    tpm2-tss from exactly ``data``: :func:`unmarshal_exact` without building the tpm2-pytss
    wrapper object (its fields are read from the C structure anyway).

    Raises:
        BadInput: truncated, malformed or trailing bytes.
    """
    cdata = ffi.new(f"{kind} *")
    used = ffi.new("size_t *")
    if _MU[kind](data, len(data), used, cdata) != 0:
        raise BadInput(f"{what}: not a complete {kind} (truncated or malformed)")
    if used[0] != len(data):
        raise BadInput(f"{what}: {len(data) - used[0]} trailing bytes after the {kind}")
    return cdata


_MU = {
    kind: getattr(lib, f"Tss2_MU_{kind}_Unmarshal") for kind in ("TPMS_ATTEST", "TPMT_SIGNATURE")
}


def parse_attest(data: bytes, *, what: str = "quote.msg") -> Attest:
    """Marshaled TPMS_ATTEST (tpm2-tools quote.msg: no TPM2B size prefix) → :class:`Attest`.

    Raises:
        BadInput: truncated, trailing bytes, or an unknown attestation type.
    """
    c = _unmarshal_c("TPMS_ATTEST", data, what)
    clock = c.clockInfo
    info = ClockInfo(
        clock=int(clock.clock),
        reset_count=int(clock.resetCount),
        restart_count=int(clock.restartCount),
        safe=bool(clock.safe),
    )
    select: PcrSelection | None = None
    digest: bytes | None = None
    if c.type == _ST_ATTEST_QUOTE:
        select = _selection_from_c(c.attested.quote.pcrSelect)
        digest = _bytes(c.attested.quote.pcrDigest)
    return Attest(
        magic=int(c.magic),
        type=int(c.type),
        qualified_signer=_bytes(c.qualifiedSigner, "name"),
        extra_data=_bytes(c.extraData),
        clock_info=info,
        firmware_version=int(c.firmwareVersion),
        pcr_select=select,
        pcr_digest=digest,
    )


def parse_signature(data: bytes, *, what: str = "quote.sig") -> Signature:
    """Marshaled TPMT_SIGNATURE → :class:`Signature`.

    Raises:
        BadInput: truncated or trailing bytes.
    """
    c = _unmarshal_c("TPMT_SIGNATURE", data, what)
    alg = int(c.sigAlg)
    name = _SIG_NAMES.get(alg, f"0x{alg:04x}")
    if name == "ecdsa":
        ecdsa = c.signature.ecdsa
        return Signature(
            alg=name,
            hash=hash_name(ecdsa.hash),
            ecdsa_r=int.from_bytes(_bytes(ecdsa.signatureR), "big"),
            ecdsa_s=int.from_bytes(_bytes(ecdsa.signatureS), "big"),
        )
    if name in ("rsassa", "rsapss"):
        body = c.signature.rsassa if name == "rsassa" else c.signature.rsapss
        return Signature(alg=name, hash=hash_name(body.hash), rsa_signature=_bytes(body.sig))
    return Signature(alg=name, hash="")


def _checked_key(key: Any, what: str) -> Any:
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise BadInput(f"{what}: neither an RSA nor an ECC public key")
    return key


@functools.lru_cache(maxsize=64)
def ak_public_from_pem(data: bytes, *, what: str = "ak.pub.pem") -> Any:
    """A PEM SubjectPublicKeyInfo → cryptography key.

    Raises:
        BadInput: not a PEM public key.
    """
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # unknown SPKI algorithm OID
        raise BadInput(f"{what}: not a PEM public key") from None
    return _checked_key(key, what)


@functools.lru_cache(maxsize=64)
def ak_public_from_blob(blob: bytes, pem: bytes | None = None, *, what: str = "ak.pub") -> AkPublic:
    """Marshaled TPM2B_PUBLIC (tpm2-tools ak.pub), optionally with the PEM next to it →
    :class:`AkPublic` carrying the name and attributes (the PEM's key is the one used to verify;
    the verifier checks that both hold the same key). Memoised on the bytes: a PVA sees the
    same AK in every quote of a device.

    Raises:
        BadInput: malformed.
    """
    public = unmarshal_exact(TPM2B_PUBLIC, blob, what)
    try:
        blob_key = _checked_key(serialization.load_pem_public_key(bytes(public.to_pem())), what)
        name = bytes(public.get_name())
    except (ValueError, TypeError, TSS2_Exception, UnsupportedAlgorithm):
        raise BadInput(f"{what}: public area holds no usable key") from None
    key = ak_public_from_pem(pem) if pem is not None else blob_key
    return AkPublic(
        key=key,
        name=name,
        attributes=int(public.publicArea.objectAttributes),
        blob_key_spki=spki(blob_key),
    )
