"""The quote verifier's decisions on software-made evidence: TPMS_ATTEST / TPMT_SIGNATURE /
TPM2B_PUBLIC built and marshaled with tpm2-pytss, signed with cryptography keys (no TPM), so
every check can be made to fail on its own (TPM 2.0 Part 2 §10.12, Part 3 §18.4)."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from tpm2_pytss import (
    TPM2B_PUBLIC,
    TPMS_ATTEST,
    TPMS_CLOCK_INFO,
    TPMS_NV_CERTIFY_INFO,
    TPMS_QUOTE_INFO,
    TPMS_SIGNATURE_ECC,
    TPMS_SIGNATURE_RSA,
    TPMT_SIGNATURE,
    TPMU_ATTEST,
    TPMU_SIGNATURE,
)
from tpm2_pytss.constants import TPM2_ALG, TPM2_ST, TPMA_OBJECT

from tpm.errors import QuoteRejected
from tpm.evidence import QuoteFiles, evidence_from_files
from tpm.marshal import parse_attest, parse_signature, tpml_from_selection
from tpm.pcrsel import parse_selection
from tpm.verify import ClockInfo, check_clock, verify_quote
from trelab.errors import BadInput

AK_ATTRS = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.SIGN_ENCRYPT
)
SEL = parse_selection("sha256:0,1,16")
VALUES = b"".join(hashlib.sha256(bytes([i])).digest() for i in (0, 1, 16))
NONCE = bytes.fromhex("00112233445566778899aabbccddeeff")


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _attest(
    *,
    magic=0xFF544347,
    st=TPM2_ST.ATTEST_QUOTE,
    nonce=NONCE,
    selection=SEL,
    values=VALUES,
    clock=(1000, 5, 1),
):
    info = TPMS_CLOCK_INFO(clock=clock[0], resetCount=clock[1], restartCount=clock[2], safe=1)
    if st == TPM2_ST.ATTEST_QUOTE:
        attested = TPMU_ATTEST(
            quote=TPMS_QUOTE_INFO(
                pcrSelect=tpml_from_selection(selection), pcrDigest=hashlib.sha256(values).digest()
            )
        )
    else:
        attested = TPMU_ATTEST(
            nv=TPMS_NV_CERTIFY_INFO(
                indexName=b"\x00\x0b" + bytes(32), offset=0, nvContents=b"x" * 8
            )
        )
    return TPMS_ATTEST(
        magic=magic,
        type=st,
        qualifiedSigner=b"\x00\x0b" + bytes(32),
        extraData=nonce,
        clockInfo=info,
        firmwareVersion=0x1234,
        attested=attested,
    ).marshal()


def _sign(key, message: bytes, scheme: str = "ecdsa") -> bytes:
    if scheme == "ecdsa":
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        sig = TPMT_SIGNATURE(
            sigAlg=TPM2_ALG.ECDSA,
            signature=TPMU_SIGNATURE(
                ecdsa=TPMS_SIGNATURE_ECC(
                    hash=TPM2_ALG.SHA256,
                    signatureR=r.to_bytes(32, "big"),
                    signatureS=s.to_bytes(32, "big"),
                )
            ),
        )
    else:
        pad = (
            padding.PKCS1v15()
            if scheme == "rsassa"
            else padding.PSS(padding.MGF1(hashes.SHA256()), 32)
        )
        raw = key.sign(message, pad, hashes.SHA256())
        body = TPMS_SIGNATURE_RSA(hash=TPM2_ALG.SHA256, sig=raw)
        alg = TPM2_ALG.RSASSA if scheme == "rsassa" else TPM2_ALG.RSAPSS
        union = TPMU_SIGNATURE(rsassa=body) if scheme == "rsassa" else TPMU_SIGNATURE(rsapss=body)
        sig = TPMT_SIGNATURE(sigAlg=alg, signature=union)
    return bytes(sig.marshal())


def _files(
    key, message=None, *, scheme="ecdsa", attrs=AK_ATTRS, claimed=SEL, values=VALUES, **kw
) -> QuoteFiles:
    message = message if message is not None else _attest(**kw)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    blob = TPM2B_PUBLIC.from_pem(pem, objectAttributes=attrs).marshal()
    return QuoteFiles(
        message=message,
        signature=_sign(key, message, scheme),
        ak_pem=pem,
        pcrs=values,
        selection=claimed,
        ak_blob=bytes(blob),
        nonce=NONCE,
    )


def _pinned(evidence, **kw):
    """verify_quote with the evidence's own key pinned, as a verifier that activated it would;
    tests of the pin itself pass ``expected_ak``/``expected_ak_name`` explicitly."""
    if "expected_ak" not in kw and "expected_ak_name" not in kw:
        kw["expected_ak"] = evidence.ak.key_spki
    return verify_quote(evidence, **kw)


def _check(files: QuoteFiles, **kw) -> str:
    with pytest.raises(QuoteRejected) as info:
        _pinned(evidence_from_files(files), **kw)
    return info.value.code


def test_good_quote_verifies_with_each_scheme(ec_key) -> None:
    verdict = _pinned(evidence_from_files(_files(ec_key)), nonce=NONCE)
    assert verdict.pcrs["sha256"][16] == hashlib.sha256(bytes([16])).digest()
    assert verdict.clock_info == ClockInfo(1000, 5, 1, True)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for scheme in ("rsassa", "rsapss"):
        _pinned(evidence_from_files(_files(rsa_key, scheme=scheme)), nonce=NONCE)


def test_parse_reads_what_was_marshaled(ec_key) -> None:
    attest = parse_attest(_attest())
    assert attest.magic == 0xFF544347 and attest.type == 0x8018
    assert attest.extra_data == NONCE and attest.firmware_version == 0x1234
    assert attest.pcr_select == SEL and attest.pcr_digest == hashlib.sha256(VALUES).digest()
    sig = parse_signature(_sign(ec_key, b"m"))
    assert sig.alg == "ecdsa" and sig.hash == "sha256" and sig.ecdsa_r > 0


def test_each_check_fails_alone(ec_key) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    forged = _files(ec_key)
    assert (
        _check(dataclasses.replace(forged, signature=_files(other).signature), nonce=NONCE)
        == "signature"
    )
    assert _check(_files(ec_key, magic=0x12345678), nonce=NONCE) == "magic"
    assert _check(_files(ec_key, st=TPM2_ST.ATTEST_NV), nonce=NONCE) == "type"
    assert _check(_files(ec_key), nonce=os.urandom(16)) == "nonce"
    relabelled = _files(ec_key, claimed=parse_selection("sha256:0,1,2"))
    assert _check(relabelled, nonce=NONCE) == "pcr-selection"
    wrong_values = _files(ec_key, values=bytes(96))
    assert _check(wrong_values, nonce=NONCE) == "pcr-digest"


def test_unrestricted_signing_key_is_not_an_ak(ec_key) -> None:
    # An unrestricted key can sign a perfect-looking TPMS_ATTEST made in software.
    attrs = AK_ATTRS & ~TPMA_OBJECT.RESTRICTED
    assert _check(_files(ec_key, attrs=attrs), nonce=NONCE) == "ak"


def test_expected_ak_and_name(ec_key) -> None:
    files = _files(ec_key)
    evidence = evidence_from_files(files)
    mine = evidence.ak.key_spki
    verify_quote(evidence, nonce=NONCE, expected_ak=mine, expected_ak_name=evidence.ak.name)
    other = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert _check(files, nonce=NONCE, expected_ak=other) == "ak"
    assert _check(files, nonce=NONCE, expected_ak_name=b"\x00\x0b" + bytes(32)) == "ak"


def test_without_a_pinned_ak_nothing_is_verified(ec_key) -> None:
    # A software key signs a perfect TPMS_ATTEST; its ak.pub claims fixedTPM|restricted ...
    claiming = evidence_from_files(_files(ec_key))
    # ... or the sender signed with an unrestricted key and dropped ak.pub altogether.
    unrestricted = _files(ec_key, attrs=AK_ATTRS & ~TPMA_OBJECT.RESTRICTED)
    dropped = evidence_from_files(dataclasses.replace(unrestricted, ak_blob=None))
    for evidence in (claiming, dropped):
        with pytest.raises(QuoteRejected, match="no pinned AK") as info:
            verify_quote(evidence, nonce=NONCE)
        assert info.value.code == "ak"
    # Pinned to the activated AK, the software key is refused as another key.
    activated = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(QuoteRejected, match="other than the expected"):
        verify_quote(dropped, nonce=NONCE, expected_ak=activated)


def test_without_the_verifiers_nonce_freshness_is_unproven(ec_key) -> None:
    evidence = evidence_from_files(_files(ec_key))
    assert evidence.nonce == NONCE == parse_attest(evidence.message).extra_data
    with pytest.raises(QuoteRejected, match="freshness unproven") as info:
        _pinned(evidence, nonce=None)
    assert info.value.code == "nonce"


def test_pem_and_blob_must_hold_the_same_key(ec_key) -> None:
    # Signed by another key whose PEM is shipped, next to the restricted AK's ak.pub.
    other = _files(ec.generate_private_key(ec.SECP256R1()))
    mixed = dataclasses.replace(other, ak_blob=_files(ec_key).ak_blob)
    assert _check(mixed, nonce=NONCE) == "ak"


def test_reference_values(ec_key) -> None:
    evidence = evidence_from_files(_files(ec_key))
    good = {"sha256": {16: hashlib.sha256(bytes([16])).digest()}}
    assert _pinned(evidence, nonce=NONCE, reference=good).reference_checked == 1
    with pytest.raises(QuoteRejected, match="differs from its reference"):
        _pinned(evidence, nonce=NONCE, reference={"sha256": {16: bytes(32)}})
    with pytest.raises(QuoteRejected, match="not quoted"):
        _pinned(evidence, nonce=NONCE, reference={"sha256": {7: bytes(32)}})


def test_previous_quote_clock(ec_key) -> None:
    older = evidence_from_files(_files(ec_key, clock=(1000, 5, 1)))
    newer = evidence_from_files(_files(ec_key, clock=(2000, 5, 1)))
    _pinned(newer, nonce=NONCE, previous=older)
    with pytest.raises(QuoteRejected) as info:
        _pinned(older, nonce=NONCE, previous=newer)
    assert info.value.code == "clock"
    stranger = evidence_from_files(_files(ec.generate_private_key(ec.SECP256R1()), clock=(1, 0, 0)))
    with pytest.raises(QuoteRejected, match="another AK"):
        _pinned(newer, nonce=NONCE, previous=stranger)


@pytest.mark.parametrize(
    ("prev", "cur", "ok"),
    [
        ((100, 2, 0), (200, 2, 0), True),
        ((100, 2, 0), (100, 2, 0), True),
        ((100, 2, 0), (50, 2, 0), False),  # clock back within one boot
        ((100, 2, 3), (200, 2, 1), False),  # restartCount back
        ((100, 2, 0), (200, 1, 0), False),  # resetCount back: TPM2_Clear or rollback
        ((100, 2, 0), (300, 3, 0), True),
    ],
)
def test_check_clock(prev, cur, ok) -> None:
    p = ClockInfo(*prev, safe=True)
    c = ClockInfo(*cur, safe=True)
    if ok:
        check_clock(p, c)
    else:
        with pytest.raises(QuoteRejected):
            check_clock(p, c)


def test_unorderly_reset_may_resume_older_clock() -> None:
    check_clock(ClockInfo(100, 2, 0, True), ClockInfo(90, 3, 0, False))
    with pytest.raises(QuoteRejected):
        check_clock(ClockInfo(100, 2, 0, True), ClockInfo(90, 3, 0, True))


def test_malformed_evidence_is_bad_input(ec_key) -> None:
    files = _files(ec_key)
    with pytest.raises(BadInput):
        evidence_from_files(dataclasses.replace(files, message=files.message[:40]))
    with pytest.raises(BadInput):
        evidence_from_files(dataclasses.replace(files, message=files.message + b"\x00"))
    with pytest.raises(BadInput):
        evidence_from_files(dataclasses.replace(files, signature=files.signature[:10]))
    with pytest.raises(BadInput):
        evidence_from_files(dataclasses.replace(files, ak_pem=b"-----BEGIN nonsense"))
    with pytest.raises(BadInput):
        _pinned(evidence_from_files(dataclasses.replace(files, pcrs=VALUES[:-1])), nonce=NONCE)
