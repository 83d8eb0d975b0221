"""TPM identity on the lab swtpm: capability probe, EK certificates and their chain, the
persisted AK, and credential activation (TPM 2.0 Part 1 §24; TR 33.812 §7.1.2.1 "unique
certified TRE identity"). A second lab plays "another TPM" with its own EK and CA."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from tpm2_pytss.constants import ESYS_TR, TPM2_CAP, TPMA_OBJECT

from host.cli import output
from host.cli.tpm_identity_verbs import add_identity_verbs
from tpm.connection import TpmConnection
from tpm.ek import (
    find_ek_certificate,
    load_ek,
    loaded_ek,
    read_ek_certificates,
    release_ek,
    tpm_public_key,
    verify_ek_chain,
)
from tpm.errors import CredentialRejected, EkCertificateRejected
from tpm.identity import (
    AK_HANDLES,
    activate_credential,
    activation_round_trip,
    ak_template,
    check_ak_public,
    ensure_ak,
    make_challenge,
    verify_activation,
)
from tpm.info import choose_aka_mode, hmac_supported, probe, propose_algorithm
from trelab.errors import BadInput


def leftovers(conn: TpmConnection) -> list[int]:
    """Transient objects and sessions still in the TPM: swtpm has no resource manager, so
    anything here was leaked by the code under test."""
    found = []
    for first in (0x80000000, 0x02000000, 0x03000000):
        _, caps = conn.esys.get_capability(TPM2_CAP.HANDLES, first, 64)
        found += [int(h) for h in caps.data.handles]
    return found


@pytest.fixture
def conn(lab_tcti: str):
    with TpmConnection(lab_tcti) as opened:
        yield opened
        assert leftovers(opened) == [], "transient handles or sessions leaked"


@pytest.fixture(scope="module")
def other(lab_factory):
    """A second TPM: its own EK, its own manufacturer CA. Downed with the module, so its card
    does not hold a reader the later modules' labs need."""
    made = lab_factory("identity-other")
    yield made.up()
    made.down()


def run_verb(capsys, *argv: str) -> tuple[int, dict]:
    """Run one of the identity verbs with --json, as the ``tpm`` noun will."""
    parser = argparse.ArgumentParser(prog="trelab tpm")
    verbs = parser.add_subparsers(dest="verb", required=True)
    add_identity_verbs(verbs)
    rc = output.run_verb(parser.parse_args([*argv, "--json"]))
    out = capsys.readouterr().out
    return rc, json.loads(out)


def throwaway_ca(tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the manufacturer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "other-ca.pem"
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    return path


# ---- capabilities ------------------------------------------------------------------------


@pytest.mark.symmetric_k
def test_info_reports_the_lab_tpm(conn, capsys) -> None:
    info = probe(conn)
    assert info.encrypt_decrypt2 and info.encrypt_decrypt
    assert info.aes_modes["ecb"] and info.aes_modes["cfb"]
    assert 128 in info.aes_key_bits
    assert info.pcr_banks["sha256"] == list(range(24))
    assert info.rsa and 2048 in info.rsa_key_bits
    assert info.ecc and "nist_p256" in info.ecc_curves
    assert info.dictionary_attack.max_tries > 0
    assert info.aka_mode == "ecb"
    rc, data = run_verb(capsys, "info", "--tpm", conn.tcti)
    assert rc == 0
    assert data["aes_modes"]["ecb"] is True and data["aes_modes"]["cfb"] is True
    assert data["manufacturer"] == info.manufacturer and data["aka_mode"] == "ecb"
    assert set(data["dictionary_attack"]) == {
        "max_tries",
        "recovery_time",
        "lockout_recovery",
        "failed_tries",
        "locked_out",
    }


@pytest.mark.symmetric_k
def test_tpm_info_through_the_cli(lab_tcti, capsys) -> None:
    from host.cli import main

    assert main(["tpm", "info", "--tpm", lab_tcti, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["encrypt_decrypt2"] is True and data["pcr_banks"]["sha256"][-1] == 23


@pytest.mark.symmetric_k
def test_aka_mode_follows_the_probe(conn) -> None:
    info = probe(conn)
    no_ecb = dataclasses.replace(info, aes_modes=info.aes_modes | {"ecb": False})
    assert choose_aka_mode(no_ecb) == "cfb"
    bare = dataclasses.replace(info, encrypt_decrypt=False, encrypt_decrypt2=False)
    assert choose_aka_mode(bare) == "sealed"


@pytest.mark.symmetric_k  # swtpm's full command set; parts without EncryptDecrypt2 are checked in test_tpm_front
def test_algorithm_proposal_follows_the_command_set(conn) -> None:
    """swtpm has everything: Milenage with K as an AES key. Without EncryptDecrypt(2) (an
    SLB 9670's command set) the HMAC-SHA-256 set keeps K inside; without TPM2_HMAC too, sealed
    K is proposed and labelled as leaving K in host memory."""
    info = probe(conn)
    assert info.hmac_command is True and hmac_supported(info)
    assert propose_algorithm(info).algorithm == "milenage"
    assert propose_algorithm(info).k_form == "symcipher" and propose_algorithm(info).k_inside
    no_symmetric = dataclasses.replace(info, encrypt_decrypt=False, encrypt_decrypt2=False)
    proposal = propose_algorithm(no_symmetric)
    assert (proposal.algorithm, proposal.k_form, proposal.mode) == ("hmac-sha256", "hmac", "hmac")
    assert proposal.k_inside is True
    assert no_symmetric.to_json()["aka_proposal"]["algorithm"] == "hmac-sha256"
    nothing = dataclasses.replace(no_symmetric, hmac_command=False)
    last = propose_algorithm(nothing)
    assert (last.algorithm, last.k_form, last.k_inside) == ("milenage", "sealed", False)
    assert "host memory" in last.reason


# ---- EK ----------------------------------------------------------------------------------


def test_ek_certificates_chain_to_the_lab_ca(conn, lab, capsys) -> None:
    certs = read_ek_certificates(conn)
    assert set(certs) == {"rsa2048", "ecc"}
    for cert in certs.values():
        verify_ek_chain(cert, lab.ca.bundle)
    rc, data = run_verb(capsys, "ek", "--tpm", conn.tcti, "--ca", str(lab.ca.bundle))
    assert rc == 0 and data["ok"] is True
    assert {e["chain"] for e in data["certificates"].values()} == {"verified"}
    assert data["certificates"]["rsa2048"]["nv_index"] == "0x01c00002"
    assert data["certificates"]["ecc"]["nv_index"] == "0x01c00016"


def test_intermediate_alone_is_no_trust_anchor(conn, lab, capsys) -> None:
    """The lab's real issuing CA without its root: refused before the TPM is read, as
    ``openssl verify`` does without ``-partial_chain``; accepted only when asked for."""
    intermediate = str(lab.ca.intermediate)
    for cert in read_ek_certificates(conn).values():
        with pytest.raises(EkCertificateRejected, match="no self-signed root"):
            verify_ek_chain(cert, lab.ca.intermediate)
        verify_ek_chain(cert, lab.ca.intermediate, partial_chain=True)
    for verb in (("ek",), ("activate", "--ek", "ecc")):
        rc, data = run_verb(capsys, *verb, "--tpm", conn.tcti, "--ca", intermediate)
        assert rc == 1 and data["error"]["type"] == "EkCertificateRejected"
        assert "no self-signed root" in data["error"]["message"]
        assert "\n" not in data["error"]["message"]
    rc, data = run_verb(capsys, "ek", "--tpm", conn.tcti, "--ca", intermediate, "--partial-chain")
    assert rc == 0 and {e["chain"] for e in data["certificates"].values()} == {"verified"}


def test_ek_certificates_rejected_by_another_ca(conn, other, tmp_path, capsys) -> None:
    certs = read_ek_certificates(conn)
    stranger = throwaway_ca(tmp_path)
    for cert in certs.values():
        with pytest.raises(EkCertificateRejected, match="does not chain"):
            verify_ek_chain(cert, stranger)
        with pytest.raises(EkCertificateRejected):  # a real, different manufacturer CA
            verify_ek_chain(cert, other.ca.bundle)
    rc, data = run_verb(capsys, "ek", "--tpm", conn.tcti, "--ca", str(stranger))
    assert rc == 1 and data["ok"] is False
    assert {e["chain"] for e in data["certificates"].values()} == {"rejected"}


def test_ek_matches_its_certificate(conn) -> None:
    from tpm.ek import ek_tpm_public

    _, caps = conn.esys.get_capability(TPM2_CAP.HANDLES, 0x81010000, 64)
    persisted = {int(h) for h in caps.data.handles}
    for kind, where in (("rsa2048", 0x81010001), ("ecc", 0x81010016)):
        _, _, cert = find_ek_certificate(conn, kind)
        with loaded_ek(conn, kind) as (handle, public):
            # swtpm_setup persists both EKs; a TPM2_Clear (MID factory-reset tests) evicts
            # them, and then the EK is re-derived from the TCG template instead.
            found = int(conn.esys.tr_get_tpm_handle(handle))
            assert found == where if where in persisted else found >> 24 == 0x80
            assert tpm_public_key(public).public_numbers() == cert.public_key().public_numbers()
            # The verifier's rebuild (template + certificate key) has the EK's exact name.
            assert bytes(ek_tpm_public(cert).get_name()) == bytes(public.get_name())


def test_ek_recreated_from_template_when_not_persisted(other) -> None:
    with TpmConnection(other.tcti) as conn:
        persistent = conn.esys.tr_from_tpmpublic(0x81010001)
        conn.esys.evict_control(ESYS_TR.OWNER, persistent, 0x81010001)  # remove it
        handle, public = load_ek(conn, "rsa2048")
        try:
            assert int(conn.esys.tr_get_tpm_handle(handle)) >> 24 == 0x80  # CreatePrimary
            cert = read_ek_certificates(conn)["rsa2048"]
            assert tpm_public_key(public).public_numbers() == cert.public_key().public_numbers()
            restored = conn.esys.evict_control(ESYS_TR.OWNER, handle, 0x81010001)
            conn.esys.tr_close(restored)
        finally:
            release_ek(conn, handle)
        assert leftovers(conn) == []


# ---- AK ----------------------------------------------------------------------------------


def test_ak_is_persisted_and_reused(conn, capsys) -> None:
    ak, _ = ensure_ak(conn, "ecc")
    again, created = ensure_ak(conn, "ecc")
    assert not created and again.name == ak.name and ak.handle == AK_HANDLES["ecc"]
    attrs = int(ak.public.publicArea.objectAttributes)
    for bit in (TPMA_OBJECT.RESTRICTED, TPMA_OBJECT.SIGN_ENCRYPT, TPMA_OBJECT.FIXEDTPM):
        assert attrs & int(bit)
    assert check_ak_public(ak.public) == ak.name
    rc, data = run_verb(capsys, "ak", "--tpm", conn.tcti)
    assert rc == 0 and data["name"] == ak.name.hex() and data["created"] is False
    assert data["public_pem"].startswith("-----BEGIN PUBLIC KEY-----")


def test_rsa_ak(conn) -> None:
    ak, _ = ensure_ak(conn, "rsa")
    assert (
        ak.handle == AK_HANDLES["rsa"] and ak.public.publicArea.parameters.rsaDetail.keyBits == 2048
    )
    activation_round_trip(conn, ak)


def test_non_ak_public_refused_by_the_verifier(conn) -> None:
    template = ak_template("ecc")
    template.publicArea.objectAttributes &= ~TPMA_OBJECT.RESTRICTED
    with pytest.raises(CredentialRejected, match="restricted"):
        check_ak_public(template)


# ---- credential activation -----------------------------------------------------------------


@pytest.mark.parametrize("ek_kind", ["rsa2048", "ecc"])
def test_activation_round_trip(conn, lab, ek_kind, capsys) -> None:
    ak, _ = ensure_ak(conn, "ecc")
    result = activation_round_trip(conn, ak, ca_bundle=lab.ca.bundle, ek_kind=ek_kind)
    assert result.ek_source == "certificate" and result.chain_verified
    rc, data = run_verb(
        capsys, "activate", "--tpm", conn.tcti, "--ek", ek_kind, "--ca", str(lab.ca.bundle)
    )
    assert rc == 0 and data["activated"] is True and data["ak_name"] == ak.name.hex()


def test_activation_fails_for_another_tpms_ek(conn, other) -> None:
    ak, _ = ensure_ak(conn, "ecc")
    with TpmConnection(other.tcti) as other_conn:
        other_cert = read_ek_certificates(other_conn)["rsa2048"]
    challenge = make_challenge(other_cert, ak.public)
    with pytest.raises(CredentialRejected):
        activate_credential(conn, ak, challenge.credential_blob, challenge.encrypted_secret)


def test_activation_fails_for_an_ak_of_another_tpm(conn, other) -> None:
    # Challenge bound to the other TPM's AK name but encrypted to this TPM's EK: this TPM
    # must not release it for its own AK (the name is part of the integrity check).
    ak, _ = ensure_ak(conn, "ecc")
    with TpmConnection(other.tcti) as other_conn:
        foreign, _ = ensure_ak(other_conn, "ecc")
    cert = read_ek_certificates(conn)["rsa2048"]
    challenge = make_challenge(cert, foreign.public)
    with pytest.raises(CredentialRejected):
        activate_credential(conn, ak, challenge.credential_blob, challenge.encrypted_secret)


def test_activation_fails_for_tampered_challenge(conn) -> None:
    ak, _ = ensure_ak(conn, "ecc")
    cert = read_ek_certificates(conn)["rsa2048"]
    challenge = make_challenge(cert, ak.public)
    blob = bytearray(challenge.credential_blob)
    blob[-1] ^= 0x01  # inside the encrypted credential, covered by the outer HMAC
    with pytest.raises(CredentialRejected):
        activate_credential(conn, ak, bytes(blob), challenge.encrypted_secret)
    secret = bytearray(challenge.encrypted_secret)
    secret[40] ^= 0x80  # the RSA-OAEP encrypted seed
    with pytest.raises(CredentialRejected):
        activate_credential(conn, ak, challenge.credential_blob, bytes(secret))
    with pytest.raises(BadInput):
        activate_credential(conn, ak, challenge.credential_blob[:10], challenge.encrypted_secret)
    # The untampered challenge still works, and only the right secret verifies.
    returned = activate_credential(conn, ak, challenge.credential_blob, challenge.encrypted_secret)
    verify_activation(challenge, returned)
    with pytest.raises(CredentialRejected):
        verify_activation(challenge, bytes(len(returned)))
    assert repr(challenge.secret) not in repr(challenge)


# ---- hardware ----------------------------------------------------------------------------


def test_hardware_tpm_same_code_path() -> None:
    """The probe and EK read on a board's TPM through the kernel resource manager; skipped
    where there is none (lab VMs, CI)."""
    import os

    if not os.path.exists("/dev/tpmrm0"):
        pytest.skip("no hardware TPM (/dev/tpmrm0 absent)")
    with TpmConnection("device:/dev/tpmrm0") as hw:
        info = probe(hw)
        assert info.pcr_banks and info.manufacturer
        certs = read_ek_certificates(hw)  # may be empty: some fTPMs publish EK certs online
        for kind in certs:
            with loaded_ek(hw, kind) as (_, public):
                assert (
                    tpm_public_key(public).public_numbers()
                    == certs[kind].public_key().public_numbers()
                )
