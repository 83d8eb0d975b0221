"""EK pieces that need no TPM: TCG policy digests, chain verification against throwaway CAs,
and the EK public rebuilt from a certificate (TCG EK Credential Profile 2.x)."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier
from tpm2_pytss.internal.templates import ek_template, template_policy
from tpm2_pytss.types import TPM2B_PUBLIC

from tpm.ek import (
    ek_policy_a,
    ek_policy_b,
    ek_public_area,
    ek_public_from_certificate,
    ek_tpm_public,
    verify_ek_chain,
)
from tpm.errors import EkCertificateRejected
from trelab.errors import BadInput

EK_EKU = ObjectIdentifier("2.23.133.8.1")
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def test_policy_digests_match_the_tcg_templates() -> None:
    # Computed here from PolicySecret/PolicyOR; the constants come from tpm2-pytss' templates.
    assert ek_policy_a("sha256") == template_policy.low
    assert ek_policy_b("sha256") == template_policy.sha256
    assert ek_policy_b("sha384") == template_policy.sha384
    assert ek_policy_b("sha512") == template_policy.sha512


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, subject_key, issuer, issuer_key, *, ca: bool, eku: bool = True):
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        ).add_extension(
            x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, True, False, False, False, False, False, False),
            critical=True,
        )
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage([EK_EKU]), critical=False)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
    )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki():
    root_key = ec.generate_private_key(ec.SECP256R1())
    mid_key = ec.generate_private_key(ec.SECP256R1())
    ek_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = _cert("root", root_key, "root", root_key, ca=True)
    mid = _cert("issuer", mid_key, "root", root_key, ca=True)
    ek = _cert("ek", ek_key, "issuer", mid_key, ca=False)
    ek_no_eku = _cert("ek2", ek_key, "issuer", mid_key, ca=False, eku=False)
    return {"root": root, "mid": mid, "ek": ek, "ek_no_eku": ek_no_eku, "ek_key": ek_key,
            "mid_key": mid_key}  # fmt: skip


def test_chain_accepted(pki) -> None:
    verify_ek_chain(pki["ek"], [pki["root"], pki["mid"]], now=NOW)


def test_chain_to_other_ca_rejected(pki) -> None:
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_root = _cert("root", other_key, "root", other_key, ca=True)
    with pytest.raises(EkCertificateRejected, match="does not chain"):
        verify_ek_chain(pki["ek"], [other_root, pki["mid"]], now=NOW)


def test_intermediate_alone_is_no_trust_anchor(pki) -> None:
    with pytest.raises(EkCertificateRejected, match="no self-signed root"):
        verify_ek_chain(pki["ek"], [pki["mid"]], now=NOW)
    # Only when the caller explicitly accepts a partial chain (openssl -partial_chain).
    verify_ek_chain(pki["ek"], [pki["mid"]], now=NOW, partial_chain=True)
    # The intermediate's key in a certificate naming itself as its issuer, signed by some
    # other key, looks like a root by name only: it is not self-signed, so no anchor.
    stranger = ec.generate_private_key(ec.SECP256R1())
    fake_root = _cert("issuer", pki["mid_key"], "issuer", stranger, ca=True)
    with pytest.raises(EkCertificateRejected, match="no self-signed root"):
        verify_ek_chain(pki["ek"], [fake_root, pki["mid"]], now=NOW)


def test_expired_and_missing_eku_rejected(pki) -> None:
    with pytest.raises(EkCertificateRejected):
        verify_ek_chain(
            pki["ek"], [pki["root"], pki["mid"]], now=NOW + datetime.timedelta(days=400)
        )
    with pytest.raises(EkCertificateRejected, match="key usage"):
        verify_ek_chain(pki["ek_no_eku"], [pki["root"], pki["mid"]], now=NOW)


def test_bad_bundle_is_bad_input(tmp_path, pki) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(BadInput):
        verify_ek_chain(pki["ek"], junk)
    with pytest.raises(BadInput):
        verify_ek_chain(pki["ek"], tmp_path / "absent.pem")


def test_ek_public_rebuilt_with_tcg_template(pki) -> None:
    public = ek_tpm_public(pki["ek"])
    area = public.publicArea
    assert bytes(area.authPolicy) == template_policy.low
    n = pki["ek_key"].public_key().public_numbers().n
    assert bytes(area.unique.rsa) == n.to_bytes(256, "big")
    assert (
        ek_public_from_certificate(pki["ek"]).public_numbers()
        == pki["ek_key"].public_key().public_numbers()
    )


def _pytss_rebuild(cert: x509.Certificate, template: str) -> TPM2B_PUBLIC:
    """The EK public built independently: tpm2-pytss' TCG template with the certificate's
    key filled in through tpm2-pytss' own fields."""
    public = TPM2B_PUBLIC.unmarshal(ek_template.lookup(template).template.marshal())[0]
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        public.publicArea.unique.rsa = key.public_numbers().n.to_bytes(key.key_size // 8, "big")
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        point = key.public_numbers()
        public.publicArea.unique.ecc.x = point.x.to_bytes(32, "big")
        public.publicArea.unique.ecc.y = point.y.to_bytes(32, "big")
    return public


def test_ek_public_area_is_the_tpm2_pytss_rebuild_byte_for_byte(pki) -> None:
    ecc_key = ec.generate_private_key(ec.SECP256R1())
    ecc = _cert("ek3", ecc_key, "issuer", pki["mid_key"], ca=False)
    for cert, template in ((pki["ek"], "EK-RSA2048"), (ecc, "EK-ECC256")):
        theirs = _pytss_rebuild(cert, template)
        mine = ek_public_area(cert)
        assert mine.marshal_sized() == bytes(theirs.marshal())
        assert mine.name() == bytes(theirs.get_name())
        assert bytes(ek_tpm_public(cert).marshal()) == bytes(theirs.marshal())
