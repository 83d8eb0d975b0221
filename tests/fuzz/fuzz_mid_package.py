"""MID packages as a TRE receives them (JSON manifest + TPM2_Duplicate objects): parse, then
the device-side structural checks. Only typed errors; a package that passes the checks holds
each public area in its one canonical encoding (its name is the hash of exactly those bytes).
The starting inputs are real packages built in software for a software storage key (no TPM)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tpm2_pytss import (
    TPM2B_PUBLIC,
    TPMT_ASYM_SCHEME,
    TPMT_SYM_DEF_OBJECT,
    TPMU_SYM_KEY_BITS,
    TPMU_SYM_MODE,
)
from tpm2_pytss.constants import TPM2_ALG, TPMA_OBJECT

from tests.fuzz.oracle import typed
from tpm import package as pkg
from trelab.jsontext import load_json


def test_one_input(data: bytes) -> None:
    doc = typed(load_json, data, "package")
    if isinstance(doc, Exception):
        return
    package = typed(pkg.Package.from_json, doc)
    if isinstance(package, Exception):
        return
    if isinstance(typed(pkg.check_package, package), Exception):
        return
    for obj in (package.parent, package.k, package.secret):
        public, _ = TPM2B_PUBLIC.unmarshal(obj.public)
        assert bytes(public.marshal()) == obj.public, "a non-canonical public area passed"


def _target() -> pkg.Target:
    key = ec.derive_private_key(0x57_0BA6E, ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = TPM2B_PUBLIC.from_pem(
        pem,
        objectAttributes=TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT,
        symmetric=TPMT_SYM_DEF_OBJECT(
            algorithm=TPM2_ALG.AES,
            keyBits=TPMU_SYM_KEY_BITS(aes=128),
            mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB),
        ),
        scheme=TPMT_ASYM_SCHEME(scheme=TPM2_ALG.NULL),
    )
    return pkg.Target(ek_public=bytes(public.marshal()), srk_name=b"\x00\x0b" + bytes(range(32)))


def _package(kind: str, algorithm: pkg.AlgorithmSpec, **kw: Any) -> dict[str, Any]:
    policy = pkg.MidPolicy(
        kind=kind,  # type: ignore[arg-type]
        selection="sha256:0,7",
        pcr_digest=bytes(32),
        slot=3,
        k_form="sealed" if algorithm.name == "tuak" else "symcipher",
        **kw,
    )
    built = pkg.build_package(
        _target(),
        pkg.MidSecrets(
            bytes(range(16)) * (2 if algorithm.name == "tuak" else 1),
            bytes(range(16, 48))[: 32 if algorithm.name == "tuak" else 16],
            None,
        ),
        seq=5,
        imsi="001010123456789",
        algorithm=algorithm,
        amf=b"\x80\x00",
        sqn_ms=bytes(6),
        policy=policy,
    )
    return built.to_json()


def starting_inputs() -> Iterator[bytes]:
    tuak = pkg.AlgorithmSpec(
        name="tuak", key_bits=256, mac_bits=64, res_bits=64, ck_bits=128, ik_bits=128, iterations=1
    )
    for doc in (
        _package("load", pkg.AlgorithmSpec()),
        _package("use", pkg.AlgorithmSpec()),
        _package("use", tuak),
    ):
        yield json.dumps(doc, indent=1).encode()
    doc = _package("use", pkg.AlgorithmSpec())
    doc["policy"]["command"] = {}
    yield json.dumps(doc).encode()
