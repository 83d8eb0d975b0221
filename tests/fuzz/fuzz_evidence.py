"""Quote evidence (TPMS_ATTEST, TPMT_SIGNATURE, ak.pub, ak.pub.pem, PCR values, pcrlist) and
its verification against a pinned AK, the verifier's nonce and reference values (TPM 2.0
Part 2 §10.12, Part 3 §18.4). One genuine quote, made in software, with one of its files
replaced by a mutation: the verifier raises a typed error, or says "verified" only for what
the genuine quote says."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from tpm2_pytss import (
    TPM2B_PUBLIC,
    TPMS_ATTEST,
    TPMS_CLOCK_INFO,
    TPMS_QUOTE_INFO,
    TPMS_SIGNATURE_ECC,
    TPMT_SIGNATURE,
    TPMU_ATTEST,
    TPMU_SIGNATURE,
)
from tpm2_pytss.constants import TPM2_ALG, TPM2_ST, TPMA_OBJECT

from tests.fuzz.oracle import Reader, typed
from tpm.evidence import QuoteFiles, evidence_from_files
from tpm.marshal import tpml_from_selection
from tpm.pcrsel import parse_selection
from tpm.verify import spki, verify_quote

KEY = ec.derive_private_key(0xA77E_57ED, ec.SECP256R1())
SELECTION = parse_selection("sha256:0,1,16")
VALUES = b"".join(hashlib.sha256(bytes([i])).digest() for i in (0, 1, 16))
NONCE = bytes(range(16))
REFERENCE = {"sha256": {16: hashlib.sha256(bytes([16])).digest()}}
AK_ATTRS = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.SIGN_ENCRYPT
)


def _genuine() -> QuoteFiles:
    info = TPMS_CLOCK_INFO(clock=1000, resetCount=5, restartCount=1, safe=1)
    quote = TPMS_QUOTE_INFO(
        pcrSelect=tpml_from_selection(SELECTION), pcrDigest=hashlib.sha256(VALUES).digest()
    )
    message = bytes(
        TPMS_ATTEST(
            magic=0xFF544347,
            type=TPM2_ST.ATTEST_QUOTE,
            qualifiedSigner=b"\x00\x0b" + bytes(32),
            extraData=NONCE,
            clockInfo=info,
            firmwareVersion=0x1234,
            attested=TPMU_ATTEST(quote=quote),
        ).marshal()
    )
    r, s = decode_dss_signature(KEY.sign(message, ec.ECDSA(hashes.SHA256())))
    signature = TPMT_SIGNATURE(
        sigAlg=TPM2_ALG.ECDSA,
        signature=TPMU_SIGNATURE(
            ecdsa=TPMS_SIGNATURE_ECC(
                hash=TPM2_ALG.SHA256,
                signatureR=r.to_bytes(32, "big"),
                signatureS=s.to_bytes(32, "big"),
            )
        ),
    )
    pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    blob = TPM2B_PUBLIC.from_pem(pem, objectAttributes=AK_ATTRS).marshal()
    return QuoteFiles(
        message=message,
        signature=bytes(signature.marshal()),
        ak_pem=pem,
        pcrs=VALUES,
        selection=SELECTION,
        ak_blob=bytes(blob),
        nonce=NONCE,
    )


GENUINE = _genuine()
PINNED_SPKI = spki(KEY.public_key())
PINNED_NAME = evidence_from_files(GENUINE).ak.name
FIELDS = ("message", "signature", "ak_pem", "ak_blob", "pcrs", "pcrlist")


def _mutated(files: QuoteFiles, reader: Reader) -> QuoteFiles | Exception:
    field = FIELDS[reader.pick(len(FIELDS))]
    raw = reader.flag()
    if field == "pcrlist":
        text = reader.rest() if raw else files.pcrlist.encode()
        selection = typed(parse_selection, text.decode("latin-1"))
        return (
            selection if isinstance(selection, Exception) else replace(files, selection=selection)
        )
    value = getattr(files, field) or b""
    if raw:
        value = reader.rest()
    else:
        out = bytearray(value)
        for _ in range(1 + reader.pick(4)):
            if out:
                out[reader.byte() % len(out)] ^= reader.byte()
        if reader.flag():
            del out[reader.byte() % (len(out) + 1) :]
        out += reader.take(reader.pick(8))
        value = bytes(out)
    return replace(files, **{field: value})


def test_one_input(data: bytes) -> None:
    reader = Reader(data)
    pin = reader.pick(3)  # by key, by name, by both
    files = _mutated(GENUINE, reader)
    if isinstance(files, Exception):
        return
    evidence = typed(evidence_from_files, files)
    if isinstance(evidence, Exception):
        return
    verdict = typed(
        verify_quote,
        evidence,
        nonce=NONCE,
        reference=REFERENCE,
        expected_ak=PINNED_SPKI if pin != 1 else None,
        expected_ak_name=PINNED_NAME if pin != 0 else None,
    )
    if isinstance(verdict, Exception):
        return
    assert (files.message, files.pcrs, files.selection) == (
        GENUINE.message,
        GENUINE.pcrs,
        GENUINE.selection,
    ), "modified evidence verified"
    assert spki(evidence.ak.key) == PINNED_SPKI, "evidence signed by another key verified"


def starting_inputs() -> Iterator[bytes]:
    for pin in range(3):
        for field in range(len(FIELDS)):
            yield bytes([pin, field, 0, 0, 0, 0, 0])  # one byte XOR 0: the genuine quote
            yield bytes([pin, field, 0, 0, 9, 1, 0, 0])  # one bit flipped
    yield bytes([0, 5, 1]) + "sha256:0,1,²".encode()
    yield bytes([0, 3, 1]) + GENUINE.ak_blob
