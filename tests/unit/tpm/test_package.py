"""tpm.package offline: building, serialising and the device-side structural checks.

No TPM: the "target" is a software ECC storage key's public area (wrap() works for any
restricted-decrypt parent). The TPM-side refusals are in tests/integration/test_tpm_mid.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest
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

from tpm import package as pkg
from tpm.mid_errors import PackageRejected
from tpm.policy import PolicySecret, policy_digest
from trelab.errors import BadInput

K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
SRK_NAME = b"\x00\x0b" + bytes(range(32))


@pytest.fixture(scope="module")
def target() -> pkg.Target:
    key = ec.generate_private_key(ec.SECP256R1())
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
    return pkg.Target(ek_public=bytes(public.marshal()), srk_name=SRK_NAME)


def policy(kind: str = "load", **kw: Any) -> pkg.MidPolicy:
    return pkg.MidPolicy(kind=kind, selection="sha256:0,7", pcr_digest=bytes(32), slot=3, **kw)  # type: ignore[arg-type]


def build(target: pkg.Target, pol: pkg.MidPolicy, pin: bytes | None = None) -> pkg.Package:
    return pkg.build_package(
        target,
        pkg.MidSecrets(K, OPC, pin),
        seq=5,
        imsi="001010123456789",
        algorithm=pkg.AlgorithmSpec(),
        amf=b"\x80\x00",
        sqn_ms=bytes(6),
        policy=pol,
    )


def test_round_trip_and_no_secret_in_the_file(target: pkg.Target) -> None:
    package = build(target, policy("use", pin=True), pin=b"2468")
    text = package.dumps()
    again = pkg.Package.from_json(json.loads(text))
    assert again == package
    pkg.check_package(again)
    for secret in (K, OPC, b"2468"):
        assert secret.hex() not in text and secret.hex().upper() not in text
    # the PIN as text anywhere but inside a hex string (random hex may hold these 4 digits)
    assert re.search(r"(?<![0-9a-fA-F])2468(?![0-9a-fA-F])", text) is None
    assert "<hidden>" in repr(pkg.MidSecrets(K, OPC, b"1"))


@pytest.mark.parametrize("kind", ["load", "use", "authorize"])
def test_each_object_carries_the_policy_the_manifest_names(target: pkg.Target, kind: str) -> None:
    extra: dict[str, Any] = {}
    if kind == "authorize":
        key = ec.generate_private_key(ec.SECP256R1())
        extra = {
            "operator_key": pkg.operator_public(key),
            "approval": pkg.sign_approval(key, "sha256:0,7", bytes(32), 3),
        }
    package = build(target, policy(kind, **extra))
    pkg.check_package(package)
    parent, _ = TPM2B_PUBLIC.unmarshal(package.parent.public)
    steps = package.policy.parent_steps(SRK_NAME)
    assert isinstance(steps[0], PolicySecret)
    assert bytes(parent.publicArea.authPolicy) == policy_digest(steps)
    k, _ = TPM2B_PUBLIC.unmarshal(package.k.public)
    user = bool(int(k.publicArea.objectAttributes) & int(TPMA_OBJECT.USERWITHAUTH))
    assert user == (kind == "load")  # a policy-gated K must not have userWithAuth
    assert int(k.publicArea.type) == int(TPM2_ALG.SYMCIPHER)


def test_tampered_manifest_or_objects_are_refused(target: pkg.Target) -> None:
    package = build(target, policy("load"))
    # claims use-gated while the objects are load-gated
    with pytest.raises(PackageRejected, match="authPolicy"):
        pkg.check_package(replace(package, policy=policy("use")))
    # a flipped byte in a public area no longer matches its name
    public = bytearray(package.k.public)
    public[-5] ^= 1
    with pytest.raises(PackageRejected, match="name"):
        pkg.check_package(replace(package, k=replace(package.k, public=bytes(public))))
    # the parent bound to another owner epoch (SRK)
    with pytest.raises(PackageRejected, match="parent authPolicy"):
        pkg.check_package(replace(package, srk_name=b"\x00\x0b" + bytes(32)))
    # OPc and K swapped: K's slot then holds sealed data
    with pytest.raises(PackageRejected):
        pkg.check_package(replace(package, k=package.secret, secret=package.k))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(format="other"),
        lambda d: d.update(version=99),
        lambda d: d.update(imsi="12ab"),
        lambda d: d.update(seq=0),
        lambda d: d.update(amf="zz"),
        lambda d: d["objects"].pop("opc"),
        lambda d: d["objects"]["k"].update(duplicate="xyz"),
        lambda d: d["policy"].update(kind="everything"),
        lambda d: d["policy"].update(pcrs="sha256:99"),
    ],
)
def test_malformed_packages_are_bad_input(target: pkg.Target, mutate: Any) -> None:
    data = build(target, policy("load")).to_json()
    mutate(data)
    with pytest.raises(BadInput):
        pkg.Package.from_json(data)


def test_option_combinations(target: pkg.Target) -> None:
    with pytest.raises(BadInput, match="pin"):
        policy("load", pin=True)
    with pytest.raises(BadInput, match="sealed"):
        pkg.build_package(
            target,
            pkg.MidSecrets(K, bytes(32)),
            seq=1,
            imsi="001010123456789",
            algorithm=pkg.AlgorithmSpec(name="tuak"),
            amf=bytes(2),
            sqn_ms=bytes(6),
            policy=policy("load"),
        )
    with pytest.raises(BadInput):
        pkg.AlgorithmSpec(name="tuak", res_bits=48)
    with pytest.raises(BadInput):
        policy("authorize")  # needs an operator key and approval


def test_read_package_errors(tmp_path: Any) -> None:
    with pytest.raises(BadInput, match="package"):
        pkg.read_package(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(BadInput, match="not JSON"):
        pkg.read_package(tmp_path / "junk.json")


def test_operator_key_file(tmp_path: Any) -> None:
    path = tmp_path / "op.pem"
    key = pkg.load_operator_key(path, create=True)
    assert path.stat().st_mode & 0o777 == 0o600
    again = pkg.load_operator_key(path)
    assert pkg.operator_public(again) == pkg.operator_public(key)
    path.write_text("nope")
    with pytest.raises(BadInput):
        pkg.load_operator_key(path)
