"""Edge: marshaling only (no TPM, no I/O). Two halves.

Lean (end of the module): the structures the operator server builds and reads on every
provisioning — TPM2B_PUBLIC (:class:`PublicArea`), TPM2B_SENSITIVE, names, the duplication and
MakeCredential outer wrapper — on plain bytes with ``struct``, the keyed parts through
:mod:`tpm.session_crypto`; tests hold them byte for byte to tpm2-pytss.

tpm2-pytss: TPM wire structures ↔ the plain dataclasses of :mod:`tpm.verify`, so the
verifier stays pure (TPM 2.0 Part 2: TPMS_ATTEST §10.12.12, TPMT_SIGNATURE §11.3.4, TPM2B_PUBLIC §12.2.5,
TPML_PCR_SELECTION §10.9.7).

Malformed input (truncated, trailing bytes, unknown selector) is :class:`BadInput`.

Fields are read from the tpm2-tss C structures (``tss2_tpm2_types.h``) that tpm2-pytss'
``unmarshal`` fills, through cffi: the same bytes as its attribute wrappers, without building a
Python wrapper object per field access (that made one parse cost ~0.5 ms, a third of a quote).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tpm import session_crypto as sc
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
    "AES128_CFB",
    "HASH_ALGS",
    "NO_SYMMETRIC",
    "NULL_SCHEME",
    "NvCertified",
    "PublicArea",
    "Scheme",
    "SymDef",
    "ak_public_from_blob",
    "ak_public_from_pem",
    "duplicate",
    "hash_name",
    "make_credential",
    "name_of_public",
    "nv_name",
    "object_name",
    "parse_attest",
    "parse_receipt_attest",
    "parse_signature",
    "public_name",
    "selection_from_tpml",
    "sensitive",
    "sym_unique",
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
_ST_ATTEST_NV = int(TPM2_ST.ATTEST_NV)
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
    A quote is read by offsets (:func:`_quote_attest`); other attestations by tpm2-tss.

    Raises:
        BadInput: truncated, trailing bytes, or an unknown attestation type.
    """
    quoted = _quote_attest(data, what)
    if quoted is not None:
        return quoted
    return _attest_from_c(_unmarshal_c("TPMS_ATTEST", data, what))


# What tpm2-tss' unmarshalling accepts (tss2_tpm2_types.h): each TPM2B at most its C buffer,
# at most TPM2_NUM_PCR_BANKS banks of at most TPM2_PCR_SELECT_MAX select bytes.
_NAME_MAX = 68  # sizeof(TPMU_NAME)
_DATA_MAX = 64  # sizeof(TPMU_HA)
_DIGEST_MAX = 64  # sizeof(TPMU_HA)
_PCR_BANKS_MAX = 16
_PCR_SELECT_MAX = 4
_ATTEST_HEAD = struct.Struct(">IHH")  # magic, type, qualifiedSigner size
_CLOCK_FIRMWARE = struct.Struct(">QIIBQI")  # clockInfo, firmwareVersion, pcrSelect count


def _quote_attest(data: bytes, what: str) -> Attest | None:
    """A TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE read by offsets, with exactly the limits
    tpm2-tss unmarshals it with (tests hold the two to each other on random and mutated
    input); None for another type. Quote evidence is parsed on every verification, and the
    C structure costs a cffi object per field.

    Raises:
        BadInput: truncated, a field over its limit, an unknown bank, or trailing bytes.
    """
    size = len(data)
    if size < 8:
        return None  # tpm2-tss says what is missing
    magic, kind, signer_size = _ATTEST_HEAD.unpack_from(data)
    if kind != _ST_ATTEST_QUOTE:
        return None
    signer_end = 8 + signer_size
    if signer_size > _NAME_MAX or signer_end + 2 > size:
        raise _malformed(what, "TPMS_ATTEST")
    extra_size = int.from_bytes(data[signer_end : signer_end + 2], "big")
    extra_end = signer_end + 2 + extra_size
    if extra_size > _DATA_MAX or extra_end + _CLOCK_FIRMWARE.size > size:
        raise _malformed(what, "TPMS_ATTEST")
    clock, resets, restarts, safe, firmware, banks = _CLOCK_FIRMWARE.unpack_from(data, extra_end)
    if banks > _PCR_BANKS_MAX:
        raise _malformed(what, "TPMS_ATTEST")
    start = cursor = extra_end + _CLOCK_FIRMWARE.size
    for _ in range(banks):  # TPMS_PCR_SELECTION: hash, sizeofSelect, pcrSelect
        if cursor + 3 > size:
            raise _malformed(what, "TPMS_ATTEST")
        select_size = data[cursor + 2]
        if select_size > _PCR_SELECT_MAX:
            raise _malformed(what, "TPMS_ATTEST")
        cursor += 3 + select_size
    if cursor + 2 > size:
        raise _malformed(what, "TPMS_ATTEST")
    digest_size = int.from_bytes(data[cursor : cursor + 2], "big")
    digest_end = cursor + 2 + digest_size
    if digest_size > _DIGEST_MAX or digest_end > size:
        raise _malformed(what, "TPMS_ATTEST")
    if digest_end != size:
        raise BadInput(f"{what}: {size - digest_end} trailing bytes after the TPMS_ATTEST")
    return Attest(
        magic=magic,
        type=kind,
        qualified_signer=data[8:signer_end],
        extra_data=data[signer_end + 2 : extra_end],
        clock_info=ClockInfo(
            clock=clock, reset_count=resets, restart_count=restarts, safe=bool(safe)
        ),
        firmware_version=firmware,
        pcr_select=_pcr_banks(data[start:cursor], banks),
        pcr_digest=data[cursor + 2 : digest_end],
    )


@functools.lru_cache(maxsize=64)
def _pcr_banks(banks: bytes, count: int) -> PcrSelection:
    """The selection of ``count`` marshalled TPMS_PCR_SELECTIONs whose sizes were checked:
    read once per spelling (a verifier sees one device's selection in quote after quote).

    Raises:
        BadInput: a bank's hash is unknown.
    """
    named = []
    cursor = 0
    for _ in range(count):
        alg, select_size = int.from_bytes(banks[cursor : cursor + 2], "big"), banks[cursor + 2]
        bank = _HASH_NAMES.get(alg)
        if bank is None:
            raise BadInput(f"PCR selection: unknown bank hash 0x{alg:04x}")
        named.append((bank, banks[cursor + 3 : cursor + 3 + select_size]))
        cursor += 3 + select_size
    return selection_from_bitmaps(named)


def _malformed(what: str, kind: str) -> BadInput:
    """The refusal tpm2-tss' unmarshalling gives (:func:`_unmarshal_c`)."""
    return BadInput(f"{what}: not a complete {kind} (truncated or malformed)")


def _attest_from_c(c: Any) -> Attest:
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


@dataclass(frozen=True)
class NvCertified:
    """What a TPM2_NV_Certify attestation (TPMS_NV_CERTIFY_INFO) shows: the index's name and
    ``contents`` read at ``offset``."""

    index_name: bytes
    offset: int
    contents: bytes


def parse_receipt_attest(data: bytes, *, what: str) -> tuple[Attest, NvCertified | None]:
    """Marshaled TPMS_ATTEST of a receipt → (:class:`Attest`, the NV facts it shows when it is
    an NV_Certify), in one unmarshal.

    Raises:
        BadInput: truncated, trailing bytes, or an unknown attestation type.
    """
    c = _unmarshal_c("TPMS_ATTEST", data, what)
    attest = _attest_from_c(c)
    if attest.type != _ST_ATTEST_NV:
        return attest, None
    nv = c.attested.nv
    return attest, NvCertified(_bytes(nv.indexName, "name"), int(nv.offset), _bytes(nv.nvContents))


def parse_signature(data: bytes, *, what: str = "quote.sig") -> Signature:
    """Marshaled TPMT_SIGNATURE → :class:`Signature`.

    Raises:
        BadInput: truncated or trailing bytes.
    """
    fast = _signature_by_offsets(data, what)
    if fast is not None:
        return fast
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


_ECC_PARAMETER_MAX = 128  # sizeof(TPM2B_ECC_PARAMETER.buffer)
_RSA_SIGNATURE_MAX = 512  # sizeof(TPM2B_PUBLIC_KEY_RSA.buffer)
_ALG_ECDSA, _ALG_RSASSA, _ALG_RSAPSS = (
    int(TPM2_ALG.ECDSA),
    int(TPM2_ALG.RSASSA),
    int(TPM2_ALG.RSAPSS),
)


def _signature_by_offsets(data: bytes, what: str) -> Signature | None:
    """An ECDSA, RSASSA or RSAPSS TPMT_SIGNATURE read by offsets, with the limits tpm2-tss
    unmarshals it with (tests hold the two to each other); None for other schemes.

    Raises:
        BadInput: truncated, a field over its limit, or trailing bytes.
    """
    size = len(data)
    if size < 6:
        return None  # tpm2-tss says what is missing
    alg, hash_alg, first = struct.unpack_from(">HHH", data)
    if alg == _ALG_ECDSA:
        r_end = 6 + first
        if first > _ECC_PARAMETER_MAX or r_end + 2 > size:
            raise _malformed(what, "TPMT_SIGNATURE")
        s_size = int.from_bytes(data[r_end : r_end + 2], "big")
        s_end = r_end + 2 + s_size
        if s_size > _ECC_PARAMETER_MAX or s_end > size:
            raise _malformed(what, "TPMT_SIGNATURE")
        if s_end != size:
            raise BadInput(f"{what}: {size - s_end} trailing bytes after the TPMT_SIGNATURE")
        return Signature(
            alg="ecdsa",
            hash=hash_name(hash_alg),
            ecdsa_r=int.from_bytes(data[6:r_end], "big"),
            ecdsa_s=int.from_bytes(data[r_end + 2 : s_end], "big"),
        )
    if alg in (_ALG_RSASSA, _ALG_RSAPSS):
        end = 6 + first
        if first > _RSA_SIGNATURE_MAX or end > size:
            raise _malformed(what, "TPMT_SIGNATURE")
        if end != size:
            raise BadInput(f"{what}: {size - end} trailing bytes after the TPMT_SIGNATURE")
        name = "rsassa" if alg == _ALG_RSASSA else "rsapss"
        return Signature(alg=name, hash=hash_name(hash_alg), rsa_signature=data[6:end])
    return None


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


# ---- lean: TPM structures as plain bytes ---------------------------------------------------------
#
# Building a MID package and checking what devices send are on the operator server's hot path;
# through tpm2-pytss each structure costs a cffi object per field (a package took ~10 ms of
# marshalling for ~1 ms of cryptography). These build and read the same bytes with ``struct``
# (cross-checked against tpm2-pytss in tests/unit/tpm/test_marshal_lean.py); the keyed parts
# (KDFa, KDFe, the seed's encryption) are :mod:`tpm.session_crypto`'s.

ALG_RSA = 0x0001
ALG_HMAC = 0x0005
ALG_AES = 0x0006
ALG_KEYEDHASH = 0x0008
ALG_XOR = 0x000A
ALG_SHA256 = 0x000B
ALG_NULL = 0x0010
ALG_ECDSA = 0x0018
ALG_ECDAA = 0x001A
ALG_ECC = 0x0023
ALG_SYMCIPHER = 0x0025
ALG_CFB = 0x0043
ECC_NIST_P256 = 0x0003

_HASHLIB = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}
_SYM_CIPHERS = frozenset({ALG_AES, 0x0013, 0x0026})  # AES, SM4, Camellia
# scheme selector → how many 16-bit detail fields follow it (TPM 2.0 Part 2 §11.1.x, §11.2.x)
_KEYEDHASH_SCHEMES = {ALG_NULL: 0, ALG_HMAC: 1, ALG_XOR: 2}
_ASYM_SCHEMES = {
    ALG_NULL: 0,
    0x0014: 1,  # RSASSA
    0x0015: 0,  # RSAES
    0x0016: 1,  # RSAPSS
    0x0017: 1,  # OAEP
    ALG_ECDSA: 1,
    0x0019: 1,  # ECDH
    ALG_ECDAA: 2,  # hashAlg, count
    0x001B: 1,  # SM2
    0x001C: 1,  # ECSCHNORR
    0x001D: 1,  # ECMQV
}
# MGF1, KDF1_SP800_56A, KDF1_SP800_108 (the TSS marshals no KDF2 details)
_KDF_SCHEMES = {ALG_NULL: 0, 0x0007: 1, 0x0020: 1, 0x0022: 1}
# the largest TPM2B of each kind the TSS accepts (sizeof the C buffer)
_MAX_DIGEST = 64
_MAX_ECC_PARAMETER = 128
_MAX_RSA_KEY = 512
_ECC_CURVES: dict[int, ec.EllipticCurve] = {
    0x0003: ec.SECP256R1(),
    0x0004: ec.SECP384R1(),
    0x0005: ec.SECP521R1(),
}


@dataclass(frozen=True)
class SymDef:
    """TPMT_SYM_DEF_OBJECT: an algorithm, and for a block cipher its key size and mode."""

    algorithm: int = ALG_NULL
    key_bits: int = 0
    mode: int = 0


@dataclass(frozen=True)
class Scheme:
    """A TPMT_*_SCHEME: the selector and its details (hashAlg; ECDAA's count, XOR's kdf)."""

    scheme: int = ALG_NULL
    details: tuple[int, ...] = ()


AES128_CFB = SymDef(ALG_AES, 128, ALG_CFB)
NO_SYMMETRIC = SymDef()
NULL_SCHEME = Scheme()


@dataclass(frozen=True)
class PublicArea:
    """A TPMT_PUBLIC (Part 2 §12.2.4). ``symmetric`` is the RSA/ECC key's symmetric
    definition or a SYMCIPHER's cipher; ``scheme`` the RSA/ECC/KEYEDHASH scheme; ``unique``
    (n,) for RSA, (x, y) for ECC, (digest,) otherwise."""

    type: int
    name_alg: int
    attributes: int
    auth_policy: bytes = b""
    symmetric: SymDef = NO_SYMMETRIC
    scheme: Scheme = NULL_SCHEME
    key_bits: int = 0
    exponent: int = 0
    curve: int = 0
    kdf: Scheme = NULL_SCHEME
    unique: tuple[bytes, ...] = (b"",)

    def marshal(self) -> bytes:
        """The TPMT_PUBLIC (what the name hashes).

        Raises:
            BadInput: a type this layer does not build, or ``unique`` of the wrong shape.
        """
        parts = [struct.pack(">HHI", self.type, self.name_alg, self.attributes)]
        parts.append(_sized(self.auth_policy))
        if self.type == ALG_KEYEDHASH:
            parts.append(_scheme_bytes(self.scheme))
        elif self.type == ALG_SYMCIPHER:
            parts.append(_sym_bytes(self.symmetric))
        elif self.type == ALG_RSA:
            parts += [_sym_bytes(self.symmetric), _scheme_bytes(self.scheme)]
            parts.append(struct.pack(">HI", self.key_bits, self.exponent))
        elif self.type == ALG_ECC:
            parts += [_sym_bytes(self.symmetric), _scheme_bytes(self.scheme)]
            parts += [struct.pack(">H", self.curve), _scheme_bytes(self.kdf)]
        else:
            raise BadInput(f"public area: type 0x{self.type:04x} is not RSA, ECC or symmetric")
        if len(self.unique) != (2 if self.type == ALG_ECC else 1):
            raise BadInput("public area: unique does not fit the key type")
        parts.extend(_sized(value) for value in self.unique)
        return b"".join(parts)

    def marshal_sized(self) -> bytes:
        """The TPM2B_PUBLIC."""
        return _sized(self.marshal())

    def name(self) -> bytes:
        """nameAlg ‖ H(TPMT_PUBLIC) (Part 1 §16).

        Raises:
            BadInput: a nameAlg that is not a hash known here.
        """
        return object_name(self.name_alg, self.marshal())

    def sized_and_name(self) -> tuple[bytes, bytes]:
        """(TPM2B_PUBLIC, name), marshaling once."""
        body = self.marshal()
        return _sized(body), object_name(self.name_alg, body)

    @classmethod
    def parse(cls, blob: bytes, what: str) -> PublicArea:
        """A marshaled TPM2B_PUBLIC, all of it: a size prefix that agrees with what follows,
        no trailing bytes, known selectors only (so it has exactly one encoding).

        Raises:
            BadInput: truncated, malformed, trailing bytes or an unknown selector.
        """
        reader = _Reader(blob, what)
        size = reader.u16()
        if size != len(blob) - 2:
            raise BadInput(
                f"{what}: the TPM2B_PUBLIC size prefix says {size} bytes, {len(blob) - 2} follow"
            )
        kind, name_alg, attributes = reader.u16(), reader.u16(), reader.u32()
        policy = reader.sized(_MAX_DIGEST)
        fields: dict[str, Any] = {}
        if kind == ALG_KEYEDHASH:
            fields["scheme"] = reader.scheme(_KEYEDHASH_SCHEMES)
            unique: tuple[bytes, ...] = (reader.sized(_MAX_DIGEST),)
        elif kind == ALG_SYMCIPHER:
            fields["symmetric"] = reader.sym()
            unique = (reader.sized(_MAX_DIGEST),)
        elif kind == ALG_RSA:
            fields["symmetric"], fields["scheme"] = reader.sym(), reader.scheme(_ASYM_SCHEMES)
            fields["key_bits"], fields["exponent"] = reader.u16(), reader.u32()
            unique = (reader.sized(_MAX_RSA_KEY),)
        elif kind == ALG_ECC:
            fields["symmetric"], fields["scheme"] = reader.sym(), reader.scheme(_ASYM_SCHEMES)
            fields["curve"], fields["kdf"] = reader.u16(), reader.scheme(_KDF_SCHEMES)
            unique = (reader.sized(_MAX_ECC_PARAMETER), reader.sized(_MAX_ECC_PARAMETER))
        else:
            raise BadInput(f"{what}: unknown public area type 0x{kind:04x}")
        reader.end()
        return cls(kind, name_alg, attributes, policy, unique=unique, **fields)

    def salt_key(self, what: str) -> sc.SaltKey:
        """This key as one a secret is encrypted to (a duplication or credential seed).

        Raises:
            BadInput: not an RSA or NIST-curve ECC key, or a key its numbers do not make.
        """
        try:
            if self.type == ALG_RSA:
                exponent = self.exponent or 65537
                modulus = int.from_bytes(self.unique[0], "big")
                key = rsa.RSAPublicNumbers(exponent, modulus).public_key()
                return sc.RsaSaltKey(key, self.name_alg)
            if self.type == ALG_ECC and self.curve in _ECC_CURVES:
                x, y = self.unique
                return sc.EccSaltKey(_ECC_CURVES[self.curve], x, y, self.name_alg)
        except ValueError:
            raise BadInput(f"{what}: its public key is not a valid key") from None
        raise BadInput(f"{what}: neither an RSA nor a NIST-curve ECC key")


class _Reader:
    __slots__ = ("data", "offset", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.offset, self.what = data, 0, what

    def take(self, count: int) -> bytes:
        end = self.offset + count
        if end > len(self.data):
            raise BadInput(f"{self.what}: truncated")
        piece = self.data[self.offset : end]
        self.offset = end
        return piece

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def sized(self, limit: int) -> bytes:
        size = self.u16()
        if size > limit:
            raise BadInput(f"{self.what}: a {size}-byte field where at most {limit} fit")
        return self.take(size)

    def sym(self) -> SymDef:
        algorithm = self.u16()
        if algorithm == ALG_NULL:
            return SymDef()
        if algorithm not in _SYM_CIPHERS:
            raise BadInput(f"{self.what}: unknown symmetric algorithm 0x{algorithm:04x}")
        return SymDef(algorithm, self.u16(), self.u16())

    def scheme(self, known: dict[int, int]) -> Scheme:
        selector = self.u16()
        if selector not in known:
            raise BadInput(f"{self.what}: unknown scheme 0x{selector:04x}")
        return Scheme(selector, tuple(self.u16() for _ in range(known[selector])))

    def end(self) -> None:
        if self.offset != len(self.data):
            raise BadInput(f"{self.what}: {len(self.data) - self.offset} trailing bytes")


def _sized(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def _sym_bytes(sym: SymDef) -> bytes:
    if sym.algorithm == ALG_NULL:
        return b"\x00\x10"
    return struct.pack(">HHH", sym.algorithm, sym.key_bits, sym.mode)


def _scheme_bytes(scheme: Scheme) -> bytes:
    return struct.pack(f">{1 + len(scheme.details)}H", scheme.scheme, *scheme.details)


def object_name(name_alg: int, marshaled: bytes) -> bytes:
    """nameAlg ‖ H(``marshaled``): the name of the public area (or NV public) marshaled.

    Raises:
        BadInput: a nameAlg that is not a hash known here.
    """
    if name_alg == ALG_SHA256:
        return b"\x00\x0b" + hashlib.sha256(marshaled).digest()
    algorithm = _HASHLIB.get(name_alg)
    if algorithm is None:
        raise BadInput(f"nameAlg 0x{name_alg:04x} is not a hash algorithm known here")
    return name_alg.to_bytes(2, "big") + hashlib.new(algorithm, marshaled).digest()


def name_of_public(blob: bytes, what: str) -> bytes:
    """The name of a marshaled TPM2B_PUBLIC, after parsing it whole (:meth:`PublicArea.parse`).

    Raises:
        BadInput: malformed, or a nameAlg that is not a hash known here.
    """
    area = PublicArea.parse(blob, what)
    return object_name(area.name_alg, blob[2:])


def nv_name(index: int, name_alg: int, attributes: int, auth_policy: bytes, size: int) -> bytes:
    """The name of an NV index: nameAlg ‖ H(TPMS_NV_PUBLIC) (Part 1 §16, Part 2 §13.5)."""
    marshaled = struct.pack(">IHI", index, name_alg, attributes)
    return object_name(name_alg, marshaled + _sized(auth_policy) + struct.pack(">H", size))


def sensitive(
    kind: int, secret: bytes, *, auth_value: bytes = b"", seed_value: bytes = b""
) -> bytes:
    """A TPM2B_SENSITIVE (Part 2 §12.3.2.5): type, authValue, seedValue, the private part."""
    area = struct.pack(">H", kind) + _sized(auth_value) + _sized(seed_value) + _sized(secret)
    return _sized(area)


def sym_unique(name_alg: int, secret: bytes, seed_value: bytes) -> bytes:
    """A symmetric or keyed-hash object's unique field: H(seedValue ‖ secret) (Part 1 §27.7.3)."""
    return object_name(name_alg, seed_value + secret)[2:]


def _outer(
    parent: PublicArea, label: bytes, name: bytes, plain: bytes, what: str
) -> tuple[bytes, bytes]:
    """The outer wrapper (Part 1 §24.4): a seed encrypted to ``parent``; ``plain`` under
    AES-CFB with KDFa(seed, "STORAGE", name) and an HMAC with KDFa(seed, "INTEGRITY") over
    the ciphertext and ``name``. Returns (HMAC TPM2B ‖ ciphertext, encrypted seed)."""
    if parent.symmetric.algorithm != ALG_AES or parent.symmetric.mode != ALG_CFB:
        raise BadInput(f"{what}: its symmetric definition is not AES-CFB")
    seed, encrypted_seed = sc.encrypt_salt(parent.salt_key(what), label=label)
    size = sc.DIGEST_SIZE[parent.name_alg]
    storage = sc.kdfa(parent.name_alg, seed, b"STORAGE", name, b"", parent.symmetric.key_bits)
    ciphertext = sc.encrypt_cfb(storage, bytes(16), plain)
    integrity = sc.kdfa(parent.name_alg, seed, b"INTEGRITY", b"", b"", size * 8)
    outer_hmac = hmac.new(integrity, ciphertext + name, _HASHLIB[parent.name_alg]).digest()
    return _sized(outer_hmac) + ciphertext, encrypted_seed


def duplicate(parent: PublicArea, name: bytes, sensitive_area: bytes) -> tuple[bytes, bytes]:
    """TPM2_Duplicate's output made off-TPM for ``parent`` with the outer wrapper only:
    (TPM2B_PRIVATE, TPM2B_ENCRYPTED_SECRET), ``sensitive_area`` a TPM2B_SENSITIVE.

    Raises:
        BadInput: a parent that is not an RSA/ECC key with AES-CFB and SHA-256.
    """
    wrapped, seed = _outer(parent, b"DUPLICATE", name, sensitive_area, "new parent")
    return _sized(wrapped), _sized(seed)


def make_credential(ek: PublicArea, credential: bytes, name: bytes) -> tuple[bytes, bytes]:
    """TPM2_MakeCredential off-TPM (Part 3 §12.6): ``credential`` for the key ``ek``, bound
    to ``name``: (TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET).

    Raises:
        BadInput: an EK that is not an RSA/ECC key with AES-CFB and SHA-256.
    """
    wrapped, seed = _outer(ek, b"IDENTITY", name, _sized(credential), "EK public")
    return _sized(wrapped), _sized(seed)
