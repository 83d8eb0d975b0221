"""tpm.marshal's lean half held byte for byte to tpm2-pytss: public areas, names, sensitive
areas, NV names, the duplication and MakeCredential outer wrapper (same seed → same bytes;
tpm2-pytss' unwrap reads what the lean side wrapped), and the parser (whatever it accepts,
tpm2-pytss reads as the same structure with the same name).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tpm2_pytss import (
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_NAME,
    TPM2B_PRIVATE,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE,
    TPMT_PUBLIC,
)
from tpm2_pytss import utils as pytss_utils
from tpm2_pytss.constants import TPM2_ALG, TPMA_OBJECT

from tpm import marshal as lean
from tpm import nv
from tpm import package as pkg
from tpm import session_crypto as sc
from tpm.marshal import PublicArea, Scheme, SymDef
from trelab.errors import BadInput

HASHES = [0x0004, 0x000B, 0x000C, 0x000D]
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u16 = st.integers(0, 0xFFFF)
digests = st.binary(max_size=64)
symdefs = st.one_of(
    st.just(SymDef()),
    st.builds(SymDef, st.sampled_from([0x0006, 0x0013, 0x0026]), u16, u16),
)


def _schemes(known: dict[int, int]) -> st.SearchStrategy[Scheme]:
    return st.sampled_from(sorted(known)).flatmap(
        lambda s: st.tuples(*[u16] * known[s]).map(lambda d, s=s: Scheme(s, d))
    )


common = {
    "name_alg": st.sampled_from(HASHES),
    "attributes": st.integers(0, 0xFFFFFFFF),
    "auth_policy": digests,
}
areas = st.one_of(
    st.builds(
        PublicArea,
        type=st.just(lean.ALG_KEYEDHASH),
        scheme=_schemes(lean._KEYEDHASH_SCHEMES),
        unique=st.tuples(digests),
        **common,
    ),
    st.builds(
        PublicArea,
        type=st.just(lean.ALG_SYMCIPHER),
        symmetric=symdefs,
        unique=st.tuples(digests),
        **common,
    ),
    st.builds(
        PublicArea,
        type=st.just(lean.ALG_RSA),
        symmetric=symdefs,
        scheme=_schemes(lean._ASYM_SCHEMES),
        key_bits=u16,
        exponent=st.integers(0, 0xFFFFFFFF),
        unique=st.tuples(st.binary(max_size=512)),
        **common,
    ),
    st.builds(
        PublicArea,
        type=st.just(lean.ALG_ECC),
        symmetric=symdefs,
        scheme=_schemes(lean._ASYM_SCHEMES),
        curve=u16,
        kdf=_schemes(lean._KDF_SCHEMES),
        unique=st.tuples(st.binary(max_size=128), st.binary(max_size=128)),
        **common,
    ),
)


def _pytss_sym(target: Any, sym: SymDef) -> None:
    target.algorithm = sym.algorithm
    if sym.algorithm != lean.ALG_NULL:
        target.keyBits.sym = sym.key_bits
        target.mode.sym = sym.mode


def _pytss_scheme(target: Any, scheme: Scheme, details: str) -> None:
    target.scheme = scheme.scheme
    if scheme.scheme == lean.ALG_ECDAA:
        target.details.ecdaa.hashAlg, target.details.ecdaa.count = scheme.details
    elif scheme.scheme == lean.ALG_XOR:
        target.details.exclusiveOr.hashAlg, target.details.exclusiveOr.kdf = scheme.details
    elif scheme.details:
        getattr(target.details, details).hashAlg = scheme.details[0]


def pytss_public(area: PublicArea) -> TPM2B_PUBLIC:
    """The same public area built field by field through tpm2-pytss."""
    public = TPMT_PUBLIC(type=area.type, nameAlg=area.name_alg, objectAttributes=area.attributes)
    public.authPolicy = area.auth_policy
    params = public.parameters
    if area.type == lean.ALG_KEYEDHASH:
        _pytss_scheme(params.keyedHashDetail.scheme, area.scheme, "hmac")
        public.unique.keyedHash = area.unique[0]
    elif area.type == lean.ALG_SYMCIPHER:
        _pytss_sym(params.symDetail.sym, area.symmetric)
        public.unique.sym = area.unique[0]
    elif area.type == lean.ALG_RSA:
        _pytss_sym(params.rsaDetail.symmetric, area.symmetric)
        _pytss_scheme(params.rsaDetail.scheme, area.scheme, "anySig")
        params.rsaDetail.keyBits = area.key_bits
        params.rsaDetail.exponent = area.exponent
        public.unique.rsa = area.unique[0]
    else:
        _pytss_sym(params.eccDetail.symmetric, area.symmetric)
        _pytss_scheme(params.eccDetail.scheme, area.scheme, "anySig")
        params.eccDetail.curveID = area.curve
        _pytss_scheme(params.eccDetail.kdf, area.kdf, "mgf1")
        public.unique.ecc.x, public.unique.ecc.y = area.unique
    return TPM2B_PUBLIC(publicArea=public)


@SETTINGS
@given(areas)
def test_public_areas_and_names_match_tpm2_pytss(area: PublicArea) -> None:
    theirs = pytss_public(area)
    assert area.marshal_sized() == bytes(theirs.marshal())
    assert area.name() == bytes(theirs.get_name())
    assert PublicArea.parse(area.marshal_sized(), "area") == area
    assert lean.name_of_public(area.marshal_sized(), "area") == area.name()


@SETTINGS
@given(areas, st.data())
def test_whatever_the_parser_accepts_tpm2_pytss_reads_alike(area: PublicArea, data: Any) -> None:
    """Flip, cut or extend a valid blob: an accepted one is canonical for tpm2-pytss too."""
    blob = bytearray(area.marshal_sized())
    position = data.draw(st.integers(0, len(blob) - 1))
    how = data.draw(st.sampled_from(["flip", "cut", "extend"]))
    if how == "flip":
        blob[position] ^= data.draw(st.integers(1, 255))
    elif how == "cut":
        del blob[position:]
    else:
        blob += data.draw(st.binary(min_size=1, max_size=4))
    try:
        mine = PublicArea.parse(bytes(blob), "mutated")
    except BadInput:
        return
    theirs, used = TPM2B_PUBLIC.unmarshal(bytes(blob))
    assert used == len(blob) and bytes(theirs.marshal()) == bytes(blob)
    assert mine.marshal_sized() == bytes(blob)
    if mine.name_alg in HASHES:
        assert mine.name() == bytes(theirs.get_name())


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"\x00", "truncated"),
        (b"\x00\x09\x00\x08\x00\x0b\x00", "size prefix"),
        (PublicArea(lean.ALG_KEYEDHASH, 0x000B, 0).marshal_sized() + b"\x00", "size prefix"),
        (b"\x00\x0a\x00\x99" + bytes(8), "unknown public area type"),
        (b"\x00\x0e\x00\x08\x00\x0b\x00\x00\x00\x00\x00\x00\x00\x18\x00\x00", "unknown scheme"),
        (b"\x00\x06\x00\x08\x00\x0b\x00\x00", "truncated"),
    ],
)
def test_malformed_public_areas_are_bad_input(blob: bytes, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        PublicArea.parse(blob, "area")


def test_unknown_name_algorithm_is_bad_input() -> None:
    with pytest.raises(BadInput, match="nameAlg 0x0099"):
        PublicArea(lean.ALG_KEYEDHASH, 0x0099, 0).name()


@SETTINGS
@given(
    st.sampled_from([lean.ALG_KEYEDHASH, lean.ALG_SYMCIPHER, lean.ALG_ECC]),
    st.binary(min_size=1, max_size=32),
    st.binary(max_size=32),
    st.binary(max_size=32),
)
def test_sensitive_areas_match_tpm2_pytss(
    kind: int, secret: bytes, auth: bytes, seed: bytes
) -> None:
    theirs = TPM2B_SENSITIVE()
    theirs.sensitiveArea.sensitiveType = kind
    theirs.sensitiveArea.authValue = auth
    theirs.sensitiveArea.seedValue = seed
    if kind == lean.ALG_ECC:
        theirs.sensitiveArea.sensitive.ecc = secret
    else:
        theirs.sensitiveArea.sensitive.bits = secret
    assert lean.sensitive(kind, secret, auth_value=auth, seed_value=seed) == bytes(theirs.marshal())


@SETTINGS
@given(st.binary(min_size=16, max_size=32), st.binary(min_size=32, max_size=32))
def test_keyed_hash_objects_match_tpm2_pytss(secret: bytes, seed: bytes) -> None:
    attrs = int(TPMA_OBJECT.ADMINWITHPOLICY | TPMA_OBJECT.NODA)
    sens, pub = TPM2B_SENSITIVE.keyedhash_from_secret(secret, objectAttributes=attrs, seed=seed)
    area = PublicArea(
        lean.ALG_KEYEDHASH, lean.ALG_SHA256, attrs, unique=(lean.sym_unique(0x000B, secret, seed),)
    )
    assert area.marshal_sized() == bytes(pub.marshal())
    assert lean.sensitive(lean.ALG_KEYEDHASH, secret, seed_value=seed) == bytes(sens.marshal())


@SETTINGS
@given(
    st.integers(0, 7),
    st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=32),
    st.booleans(),
)
def test_nv_names_match_tpm2_pytss(slot: int, attributes: int, ref: bytes, written: bool) -> None:
    index = nv.LifecycleIndex(slot, b"\x00\x0b" + bytes(32), ref or b"r")
    public = index.public(written=written)
    area = public.nvPublic
    mine = lean.nv_name(
        int(area.nvIndex),
        int(area.nameAlg),
        int(area.attributes),
        bytes(area.authPolicy),
        int(area.dataSize),
    )
    assert mine == bytes(public.get_name().marshal())[2:] == index.name(written=written)
    other = lean.nv_name(0x01000000 + slot, 0x000B, attributes, ref, 8)
    theirs = type(public)(
        nvPublic=type(area)(
            nvIndex=0x01000000 + slot,
            nameAlg=TPM2_ALG.SHA256,
            attributes=attributes,
            authPolicy=ref,
            dataSize=8,
        )
    )
    assert other == bytes(theirs.get_name().marshal())[2:]


# ---- the outer wrapper -----------------------------------------------------------------------

RSA_KEY = rsa.generate_private_key(65537, 2048)


def _storage_public(key: Any) -> tuple[PublicArea, Any]:
    """A restricted-decrypt storage key with AES-128-CFB: the lean area and tpm2-pytss'."""
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    attrs = TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT
    theirs = TPM2B_PUBLIC.from_pem(pem, objectAttributes=attrs, symmetric="aes128cfb")
    mine = PublicArea.parse(bytes(theirs.marshal()), "parent")
    return mine, theirs


@pytest.fixture(params=["rsa", "ecc"])
def parent(request: Any) -> tuple[Any, PublicArea, Any]:
    key = RSA_KEY if request.param == "rsa" else ec.generate_private_key(ec.SECP256R1())
    mine, theirs = _storage_public(key)
    return key, mine, theirs


def _pinned_seed(monkeypatch: pytest.MonkeyPatch, parent: PublicArea, label: bytes) -> None:
    """Both sides use the one seed the lean side draws first (randomness is the only
    difference between them)."""
    pinned = sc.encrypt_salt(parent.salt_key("parent"), label=label)
    monkeypatch.setattr(sc, "encrypt_salt", lambda key, label: pinned)
    monkeypatch.setattr(pytss_utils, "_generate_seed", lambda public, label: pinned)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(secret=st.binary(min_size=1, max_size=32), auth=st.binary(max_size=16))
def test_duplicates_match_tpm2_pytss_and_unwrap(
    parent: tuple[Any, PublicArea, Any], secret: bytes, auth: bytes
) -> None:
    key, mine, theirs = parent
    seed_value = os.urandom(32)
    child = PublicArea(
        lean.ALG_KEYEDHASH,
        lean.ALG_SHA256,
        0x80,
        os.urandom(32),
        unique=(lean.sym_unique(0x000B, secret, seed_value),),
    )
    private = lean.sensitive(lean.ALG_KEYEDHASH, secret, auth_value=auth, seed_value=seed_value)
    with pytest.MonkeyPatch.context() as patch:
        _pinned_seed(patch, mine, b"DUPLICATE")
        duplicate, seed = lean.duplicate(mine, child.name(), private)
        child_theirs, _ = TPM2B_PUBLIC.unmarshal(child.marshal_sized())
        sens_theirs, _ = TPM2B_SENSITIVE.unmarshal(private)
        _, dup_theirs, seed_theirs = pytss_utils.wrap(theirs.publicArea, child_theirs, sens_theirs)
    assert duplicate == bytes(dup_theirs.marshal()) and seed == bytes(seed_theirs.marshal())
    # and unpinned: tpm2-pytss' unwrap, holding the parent's private key, reads it back
    duplicate, seed = lean.duplicate(mine, child.name(), private)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    parent_private = TPM2B_SENSITIVE.from_pem(pem).sensitiveArea
    unwrapped = pytss_utils.unwrap(
        theirs.publicArea,
        parent_private,
        child_theirs,
        TPM2B_PRIVATE.unmarshal(duplicate)[0],
        TPM2B_ENCRYPTED_SECRET.unmarshal(seed)[0],
    )
    assert bytes(unwrapped.marshal()) == private


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(credential=st.binary(min_size=1, max_size=32))
def test_make_credential_matches_tpm2_pytss(
    parent: tuple[Any, PublicArea, Any], credential: bytes
) -> None:
    _, mine, theirs = parent
    name = b"\x00\x0b" + os.urandom(32)
    with pytest.MonkeyPatch.context() as patch:
        _pinned_seed(patch, mine, b"IDENTITY")
        blob, secret = lean.make_credential(mine, credential, name)
        blob_theirs, secret_theirs = pytss_utils.make_credential(
            theirs, credential, TPM2B_NAME(name)
        )
    assert blob == bytes(blob_theirs.marshal()) and secret == bytes(secret_theirs.marshal())


def test_rsa_seeds_are_oaep_with_the_label() -> None:
    mine, _ = _storage_public(RSA_KEY)
    _, encrypted = lean.duplicate(mine, b"\x00\x0b" + bytes(32), b"\x00\x02\x00\x08")
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), b"DUPLICATE\x00")
    assert len(RSA_KEY.decrypt(encrypted[2:], oaep)) == 32


def test_wrapping_needs_an_aes_cfb_parent() -> None:
    mine, _ = _storage_public(RSA_KEY)
    no_cipher = PublicArea(**{**mine.__dict__, "symmetric": SymDef()})
    with pytest.raises(BadInput, match="AES-CFB"):
        lean.duplicate(no_cipher, b"\x00\x0b" + bytes(32), b"\x00\x00")
    keyed = PublicArea(lean.ALG_KEYEDHASH, 0x000B, 0, symmetric=lean.AES128_CFB)
    with pytest.raises(BadInput, match="neither an RSA nor"):
        lean.make_credential(keyed, b"c", b"\x00\x0b" + bytes(32))


# ---- what tpm.package builds -----------------------------------------------------------------


@SETTINGS
@given(st.integers(1, 2**256 - 1), st.integers(1, 2**256 - 1))
def test_operator_public_matches_the_tpm2_pytss_construction(x: int, y: int) -> None:
    """Any coordinates, even off the curve: the structure is what is compared."""
    scheme_area = PublicArea(
        lean.ALG_ECC,
        0x000B,
        int(TPMA_OBJECT.SIGN_ENCRYPT | TPMA_OBJECT.USERWITHAUTH),
        scheme=Scheme(lean.ALG_ECDSA, (0x000B,)),
        curve=lean.ECC_NIST_P256,
        unique=(x.to_bytes(32, "big"), y.to_bytes(32, "big")),
    )
    theirs = TPMT_PUBLIC.from_pem(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        objectAttributes=TPMA_OBJECT.SIGN_ENCRYPT | TPMA_OBJECT.USERWITHAUTH,
        scheme="ecdsa",
    )
    theirs.unique.ecc.x, theirs.unique.ecc.y = x.to_bytes(32, "big"), y.to_bytes(32, "big")
    assert pkg._ecdsa_public(x, y) == scheme_area.marshal_sized()
    assert pkg._ecdsa_public(x, y) == bytes(TPM2B_PUBLIC(publicArea=theirs).marshal())
