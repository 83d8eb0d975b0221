"""Quotes on the lab swtpm: tpm2-tools evidence that ``tpm2_checkquote`` accepts, and our
verifier (the PVA's core) rejecting what known verifiers wrongly accepted — relabelled PCR
selections (CVE-2024-29038), NV certifications passed off as quotes (CVE-2024-29039), a quote
by another TPM's AK — plus stale nonces, bit flips, wrong reference values and a clock going
back (TR 33.812 §7.1.2.1 "remote validation"; docs/provisioning.md M4)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from tpm2_pytss import TPML_DIGEST_VALUES, TPMT_HA, TPMT_SIG_SCHEME, TPMU_HA
from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_CAP

from host.cli import main
from tpm.connection import TpmConnection
from tpm.evidence import write_evidence
from tpm.identity import ensure_ak, open_ak
from tpm.pcrsel import parse_selection
from tpm.quote import Quoter
from tpm.verify import QuoteRejected

SEL = "sha256:0,1,2,3,16"


def cli(capsys, *argv: str) -> tuple[int, dict, str]:
    """``trelab …`` in-process; returns (exit code, parsed --json stdout, stderr)."""
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if out.out.strip() else {}), out.err


AK_NAMES: dict[Path, str] = {}  # evidence directory -> the AK name `attest quote` reported


def quote_dir(capsys, tcti: str, out: Path, pcrs: str = SEL, *extra: str) -> tuple[Path, str]:
    nonce = os.urandom(16).hex()
    rc, data, err = cli(
        capsys, "attest", "quote", "--tpm", tcti, "--nonce", nonce, "--pcrs", pcrs,
        "--out", str(out), "--json", *extra,
    )  # fmt: skip
    assert rc == 0, err
    assert data["pcrlist"] == pcrs and data["nonce"] == nonce
    AK_NAMES[out] = data["ak_name"]
    return out, nonce


def verify(capsys, directory: Path, *extra: str) -> tuple[int, dict, str]:
    """``attest verify`` pinned to the AK that made the quote (as after credential activation),
    unless the test pins something itself."""
    pin: tuple[str, ...] = ()
    if "--ak-pub" not in extra and "--ak-name" not in extra:
        pin = ("--ak-name", AK_NAMES[directory])
    return cli(capsys, "attest", "verify", str(directory), "--json", *pin, *extra)


def checkquote(directory: Path, *, public: str = "ak.pub.pem") -> subprocess.CompletedProcess[str]:
    tool = shutil.which("tpm2_checkquote")
    if tool is None:
        pytest.skip("tpm2_checkquote not installed (apt-get install tpm2-tools)")
    pcrlist = (directory / "pcrlist").read_text().strip()
    return subprocess.run(
        [
            tool, "-u", str(directory / public), "-m", str(directory / "quote.msg"),
            "-s", str(directory / "quote.sig"), "-f", str(directory / "pcrs"),
            "-l", pcrlist, "-g", "sha256", "-q", str(directory / "nonce"),
        ],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def leftovers(tcti: str) -> list[int]:
    with TpmConnection(tcti) as conn:
        found = []
        for first in (0x80000000, 0x02000000, 0x03000000):
            _, caps = conn.esys.get_capability(TPM2_CAP.HANDLES, first, 64)
            found += [int(h) for h in caps.data.handles]
        return found


@pytest.fixture(scope="module")
def other(lab_factory):
    """Another TPM (own EK and AK); also the one whose PCRs tests may extend. Downed with the
    module, so its card does not hold a reader the later modules' labs need."""
    made = lab_factory("attest-other")
    yield made.up()
    made.down()


def flip(path: Path, offset: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


# ---- good quotes -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ecc", "rsa"])
def test_quote_verified_by_tpm2_checkquote_and_ours(lab_tcti, tmp_path, capsys, kind) -> None:
    extra = ("--rsa",) if kind == "rsa" else ()
    out, nonce = quote_dir(capsys, lab_tcti, tmp_path / "q", SEL, *extra)
    message = (out / "quote.msg").read_bytes()
    assert message[:6] == bytes.fromhex("ff5443478018")  # TPM_GENERATED_VALUE, ATTEST_QUOTE
    assert len((out / "pcrs").read_bytes()) == 5 * 32
    assert (out / "pcrlist").read_text().strip() == SEL
    assert (out / "nonce").read_bytes() == bytes.fromhex(nonce)
    for public in ("ak.pub.pem", "ak.pub"):
        done = checkquote(out, public=public)
        assert done.returncode == 0, done.stderr
    rc, data, err = verify(capsys, out, "--nonce", nonce)
    assert rc == 0, err
    assert data["verified"] is True and data["reason"] is None
    assert data["pcrlist"] == SEL and data["nonce"] == nonce
    assert set(data["pcrs"]["sha256"]) == {"0", "1", "2", "3", "16"}
    assert leftovers(lab_tcti) == []


def test_more_than_eight_pcrs(lab_tcti, tmp_path, capsys) -> None:
    everything = "sha256:" + ",".join(str(i) for i in range(24))  # PCR_Read returns 8 per call
    out, nonce = quote_dir(capsys, lab_tcti, tmp_path / "q", everything)
    rc, data, err = verify(capsys, out, "--nonce", nonce)
    assert rc == 0, err
    assert len(data["pcrs"]["sha256"]) == 24


def text_run(capsys, *argv: str) -> tuple[int, list[str], str]:
    """``trelab …`` without --json: (exit code, stdout lines, stderr)."""
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out.strip().splitlines(), out.err


def test_nonce_file_is_no_proof_of_freshness(lab_tcti, tmp_path, capsys) -> None:
    out, nonce = quote_dir(capsys, lab_tcti, tmp_path / "q")
    assert (out / "nonce").read_bytes() == bytes.fromhex(nonce)  # the evidence's own claim
    rc, data, _ = verify(capsys, out)
    assert rc == 1 and data["verified"] is False and data["check"] == "nonce"
    assert "freshness unproven" in data["reason"]
    rc, lines, err = text_run(capsys, "attest", "verify", str(out), "--ak-name", AK_NAMES[out])
    assert rc == 1 and err == "" and len(lines) == 1
    assert lines[0].startswith("REJECTED (nonce): ") and "verified" not in lines[0]
    (out / "nonce").unlink()
    rc, data, _ = verify(capsys, out)
    assert rc == 1 and data["check"] == "nonce"
    assert verify(capsys, out, "--nonce", nonce)[0] == 0  # the verifier's own nonce passes


def _software_key_forgery(out: Path, *, ak_pub_attributes: int | None) -> None:
    """Re-sign the real quote.msg with a software ECC key and ship that key as the AK: with
    ``ak_pub_attributes`` None the sender drops ak.pub (nothing says what the key is), else
    ak.pub claims those TPMA_OBJECT attributes for the software key."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from tpm2_pytss import TPM2B_PUBLIC, TPMS_SIGNATURE_ECC, TPMT_SIGNATURE, TPMU_SIGNATURE

    key = ec.generate_private_key(ec.SECP256R1())
    message = (out / "quote.msg").read_bytes()
    r, s_ = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    sig = TPMT_SIGNATURE(
        sigAlg=TPM2_ALG.ECDSA,
        signature=TPMU_SIGNATURE(
            ecdsa=TPMS_SIGNATURE_ECC(
                hash=TPM2_ALG.SHA256,
                signatureR=r.to_bytes(32, "big"),
                signatureS=s_.to_bytes(32, "big"),
            )
        ),
    )
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (out / "quote.sig").write_bytes(bytes(sig.marshal()))
    (out / "ak.pub.pem").write_bytes(pem)
    if ak_pub_attributes is None:
        (out / "ak.pub").unlink()
    else:
        blob = TPM2B_PUBLIC.from_pem(pem, objectAttributes=ak_pub_attributes).marshal()
        (out / "ak.pub").write_bytes(bytes(blob))


@pytest.mark.parametrize("ak_pub", ["dropped", "claims-restricted-fixedtpm"])
def test_unpinned_ak_is_never_verified(lab_tcti, tmp_path, capsys, ak_pub) -> None:
    from tpm2_pytss.constants import TPMA_OBJECT

    out, nonce = quote_dir(capsys, lab_tcti, tmp_path / "q")
    real_name = AK_NAMES[out]
    # The genuine quote, unpinned: its signer is whatever key the sender described.
    rc, lines, _ = text_run(capsys, "attest", "verify", str(out), "--nonce", nonce)
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("REJECTED (ak): no pinned AK")
    claims = (
        TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
        | TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.SIGN_ENCRYPT
    )  # fmt: skip
    _software_key_forgery(out, ak_pub_attributes=None if ak_pub == "dropped" else claims)
    rc, data, err = cli(capsys, "attest", "verify", str(out), "--nonce", nonce, "--json")
    assert rc == 1, err
    assert data["verified"] is False and data["check"] == "ak" and "no pinned AK" in data["reason"]
    rc, lines, _ = text_run(capsys, "attest", "verify", str(out), "--nonce", nonce)
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("REJECTED (ak): ")
    # Pinned to the TPM's activated AK, the forgery is refused as another key.
    rc, data, _ = verify(capsys, out, "--nonce", nonce, "--ak-name", real_name)
    assert rc == 1 and data["check"] == "ak"


def test_reference_values(lab_tcti, tmp_path, capsys) -> None:
    out, nonce = quote_dir(capsys, lab_tcti, tmp_path / "q")
    _, good, _ = verify(capsys, out, "--nonce", nonce)
    reference = tmp_path / "ref.json"
    reference.write_text(json.dumps({"sha256": good["pcrs"]["sha256"]}))
    rc, data, _ = verify(capsys, out, "--nonce", nonce, "--reference", str(reference))
    assert rc == 0 and data["reference_pcrs_checked"] == 5
    wrong = dict(good["pcrs"]["sha256"]) | {"3": "ab" * 32}
    reference.write_text(json.dumps({"sha256": wrong}))
    rc, data, _ = verify(capsys, out, "--nonce", nonce, "--reference", str(reference))
    assert rc == 1 and data["verified"] is False and data["check"] == "reference"
    assert "sha256:3" in data["reason"]
    reference.write_text(json.dumps({"sha256": {"7": "00" * 32}}))  # not in the quote
    rc, data, _ = verify(capsys, out, "--nonce", nonce, "--reference", str(reference))
    assert rc == 1 and data["check"] == "reference"


def test_extended_pcr_against_reference(other, tmp_path, capsys) -> None:
    """A measured component changes PCR 23: the old reference no longer verifies, the value
    recomputed by the verifier (extend = H(old ‖ digest)) does. Done on the second lab so the
    session lab's PCRs stay as other tests expect."""
    measurement = hashlib.sha256(b"mid-manager v2").digest()
    with TpmConnection(other.tcti) as conn:
        ak, _ = ensure_ak(conn, "ecc")
        # One Quoter spans the extend: its cached PCR values must be noticed as stale.
        with Quoter(conn, ak) as quoter:
            old = quoter.quote(b"n1", parse_selection("sha256:23")).pcrs
            digest = TPMT_HA(hashAlg=TPM2_ALG.SHA256, digest=TPMU_HA(sha256=measurement))
            conn.esys.pcr_extend(ESYS_TR.PCR23, TPML_DIGEST_VALUES([digest]))
            nonce = os.urandom(16)
            files = quoter.quote(nonce, parse_selection("sha256:23"))
    expected = hashlib.sha256(old + measurement).digest()
    assert files.pcrs == expected
    out = write_evidence(tmp_path / "q", files)
    AK_NAMES[out] = ak.name.hex()
    reference = tmp_path / "ref.json"
    reference.write_text(json.dumps({"sha256": {"23": old.hex()}}))
    rc, data, _ = verify(capsys, out, "--nonce", nonce.hex(), "--reference", str(reference))
    assert rc == 1 and data["check"] == "reference"
    reference.write_text(json.dumps({"sha256": {"23": expected.hex()}}))
    rc, data, _ = verify(capsys, out, "--nonce", nonce.hex(), "--reference", str(reference))
    assert rc == 0 and data["pcrs"]["sha256"]["23"] == expected.hex()


@pytest.mark.parametrize("kind", ["ecc", "rsa"])
def test_lean_quote_equals_esys_quote(lab_tcti, kind) -> None:
    """TPM2_Quote on the lean layer and through ESYS on the same TPM and AK, over random
    nonces and PCR selections: both verify, and they attest the same thing (the signed
    structure differs only in the clock; ECDSA signatures are randomised)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tpm.evidence import evidence_from_files
    from tpm.verify import verify_quote

    with TpmConnection(lab_tcti) as conn:
        ak, _ = ensure_ak(conn, kind)
        with Quoter(conn, ak) as lean_q, Quoter(conn, ak, layer="esys") as esys_q:

            @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
            @given(
                nonce=st.binary(min_size=1, max_size=32),
                pcrs=st.sets(st.sampled_from([0, 1, 2, 3, 7, 16, 23]), min_size=1),
            )
            def same(nonce: bytes, pcrs: set[int]) -> None:
                selection = parse_selection("sha256:" + ",".join(map(str, sorted(pcrs))))
                made = [q.quote(nonce, selection) for q in (lean_q, esys_q)]
                attests = []
                for files in made:
                    evidence = evidence_from_files(files)
                    verify_quote(evidence, nonce=nonce, expected_ak_name=ak.name)
                    attests.append(evidence.attest)
                    assert evidence.signature.alg == ("ecdsa" if kind == "ecc" else "rsassa")
                lean_a, esys_a = attests
                assert lean_a.extra_data == esys_a.extra_data == nonce
                assert lean_a.qualified_signer == esys_a.qualified_signer
                assert lean_a.pcr_select == esys_a.pcr_select
                assert lean_a.pcr_digest == esys_a.pcr_digest
                assert lean_a.firmware_version == esys_a.firmware_version
                assert made[0].pcrs == made[1].pcrs
                # a tampered lean quote does not verify
                bad = bytearray(made[0].message)
                bad[-1] ^= 1
                tampered = evidence_from_files(replace(made[0], message=bytes(bad)))
                with pytest.raises(QuoteRejected):
                    verify_quote(tampered, nonce=nonce, expected_ak_name=ak.name)

            same()
    assert leftovers(lab_tcti) == []


def test_lean_pcr_read_equals_esys(lab_tcti) -> None:
    """TPM2_PCR_Read on the lean layer and through ESYS, same TPM: the same values, also for
    selections the TPM answers in several reads (at most 8 digests per response); the same
    refusal for a bank the TPM does not have."""
    from tpm.quote import read_pcrs
    from trelab.errors import BadInput

    def outcome(conn: TpmConnection, selection, layer: str) -> bytes | str:
        try:
            return read_pcrs(conn, selection, layer=layer)  # type: ignore[arg-type]
        except BadInput as exc:
            return str(exc)

    with TpmConnection(lab_tcti) as conn:
        for text in (
            "sha256:0,1,2,3,16",
            "sha256:" + ",".join(map(str, range(24))),
            "sha256:0,7,23+sha1:0,1,2,3,4,5,6,7,8,9",
        ):
            selection = parse_selection(text)
            lean_values = outcome(conn, selection, "lean")
            assert lean_values == outcome(conn, selection, "esys")
            if isinstance(lean_values, bytes):
                assert len(lean_values) == sum(
                    (20 if bank == "sha1" else 32) * len(pcrs) for bank, pcrs in selection
                )
            else:
                assert "sha1" in lean_values  # the lab's swtpm has the SHA-256 bank only
        values = outcome(conn, parse_selection("sha256:" + ",".join(map(str, range(24)))), "lean")
        assert isinstance(values, bytes) and len(values) == 24 * 32


def test_quoter_refuses_a_handle_holding_another_key(lab_tcti) -> None:
    """The lean Quoter looks the AK up by name: the ECC AK's handle presented as the RSA AK
    is refused before anything is signed, with one clear line."""
    from trelab.errors import Unavailable

    with TpmConnection(lab_tcti) as conn:
        ecc, _ = ensure_ak(conn, "ecc")
        rsa, _ = ensure_ak(conn, "rsa")
        wrong = replace(rsa, handle=ecc.handle)
        with pytest.raises(Unavailable, match="holds another key than this AK"):
            Quoter(conn, wrong).__enter__()
        with Quoter(conn, ecc) as quoter:  # the right one is accepted
            assert quoter.quote(b"n", parse_selection("sha256:0")).ak_blob == ecc.public_blob


# ---- attacks -----------------------------------------------------------------------------


def test_relabelled_pcr_selection_rejected(lab_tcti, tmp_path, capsys) -> None:
    # Quote PCR 16 (debug, resettable) and present its value as PCR 0 (boot code): the
    # signed digest still matches the values, only the label changed.
    out, nonce = quote_dir(capsys, lab_tcti, tmp_path / "q", "sha256:16")
    (out / "pcrlist").write_text("sha256:0\n")
    rc, data, _ = verify(capsys, out, "--nonce", nonce)
    assert rc == 1 and data["verified"] is False and data["check"] == "pcr-selection"
    assert "sha256:16" in data["reason"] and "sha256:0" in data["reason"]
    # Two PCRs relabelled as two others, values reordered consistently.
    out, nonce = quote_dir(capsys, lab_tcti, tmp_path / "q2", "sha256:16,23")
    (out / "pcrlist").write_text("sha256:0,7\n")
    rc, data, _ = verify(capsys, out, "--nonce", nonce)
    assert rc == 1 and data["check"] == "pcr-selection"


def test_nv_certification_presented_as_quote_rejected(lab_tcti, tmp_path, capsys) -> None:
    out, nonce = quote_dir(capsys, lab_tcti, tmp_path / "q")
    with TpmConnection(lab_tcti) as conn:
        ak, _ = ensure_ak(conn, "ecc")
        with open_ak(conn, ak) as signer:
            index = conn.esys.tr_from_tpmpublic(0x01C00002)  # the RSA EK certificate
            try:
                attest, signature = conn.esys.nv_certify(
                    signer,
                    index,
                    bytes.fromhex(nonce),
                    TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL),
                    32,
                    0,
                    auth_handle=index,
                )
            finally:
                conn.esys.tr_close(index)
    (out / "quote.msg").write_bytes(bytes(attest))
    (out / "quote.sig").write_bytes(bytes(signature.marshal()))
    rc, data, _ = verify(capsys, out, "--nonce", nonce)
    assert rc == 1 and data["check"] == "type"  # signature and nonce were fine
    assert "nv-certify" in data["reason"]


def test_wrong_nonce_rejected(lab_tcti, tmp_path, capsys) -> None:
    out, _ = quote_dir(capsys, lab_tcti, tmp_path / "q")
    rc, data, _ = verify(capsys, out, "--nonce", os.urandom(16).hex())
    assert rc == 1 and data["check"] == "nonce"


@pytest.mark.parametrize(
    ("name", "offset"),
    [
        ("quote.msg", 44),  # first byte of extraData (after magic, type, qualifiedSigner)
        ("quote.msg", 62),  # inside clockInfo
        ("quote.msg", -1),  # last byte of pcrDigest
        ("quote.sig", -1),  # last byte of S
        ("quote.sig", 10),  # inside R
    ],
)
def test_flipped_bit_rejected(lab_tcti, tmp_path, capsys, name, offset) -> None:
    out, nonce = quote_dir(capsys, lab_tcti, tmp_path / "q")
    flip(out / name, offset)
    rc, data, err = verify(capsys, out, "--nonce", nonce)
    assert rc == 1, err
    assert data["verified"] is False and data["check"] == "signature"


def test_quote_by_another_tpm_rejected(lab_tcti, other, tmp_path, capsys) -> None:
    mine, _ = quote_dir(capsys, lab_tcti, tmp_path / "mine")
    foreign, nonce = quote_dir(capsys, other.tcti, tmp_path / "foreign")
    # Verified when pinned to its own TPM's AK ...
    assert verify(capsys, foreign, "--nonce", nonce)[0] == 0
    # ... but not by the AK activated for this device's EK.
    rc, data, _ = verify(capsys, foreign, "--nonce", nonce, "--ak-pub", str(mine / "ak.pub.pem"))
    assert rc == 1 and data["check"] == "ak"
    rc, data, _ = verify(capsys, foreign, "--nonce", nonce, "--ak-name", AK_NAMES[mine])
    assert rc == 1 and data["check"] == "ak"
    # Swapping in this device's AK public files breaks the signature instead.
    for public in ("ak.pub.pem", "ak.pub"):
        shutil.copy(mine / public, foreign / public)
    rc, data, _ = verify(capsys, foreign, "--nonce", nonce, "--ak-name", AK_NAMES[mine])
    assert rc == 1 and data["check"] == "signature"


def test_clock_going_back_rejected(lab_tcti, tmp_path, capsys) -> None:
    older, n1 = quote_dir(capsys, lab_tcti, tmp_path / "older")
    newer, n2 = quote_dir(capsys, lab_tcti, tmp_path / "newer")
    rc, data, _ = verify(capsys, newer, "--nonce", n2, "--previous", str(older))
    assert rc == 0 and data["previous_checked"] is True
    rc, data, _ = verify(capsys, older, "--nonce", n1, "--previous", str(newer))
    assert rc == 1 and data["check"] == "clock"


def test_previous_quote_of_another_tpm_is_no_baseline(lab_tcti, other, tmp_path, capsys) -> None:
    mine, nonce = quote_dir(capsys, lab_tcti, tmp_path / "mine")
    foreign, _ = quote_dir(capsys, other.tcti, tmp_path / "foreign")
    rc, data, _ = verify(capsys, mine, "--nonce", nonce, "--previous", str(foreign))
    assert rc == 1 and data["check"] == "clock" and "another AK" in data["reason"]


# ---- malformed input ----------------------------------------------------------------------


def _one_line_error(rc: int, err: str) -> None:
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trelab: error:"), err


def test_malformed_evidence_is_bad_input(lab_tcti, tmp_path, capsys) -> None:
    out, nonce = quote_dir(capsys, lab_tcti, tmp_path / "q")
    pristine = {p.name: p.read_bytes() for p in out.iterdir()}

    def restore() -> None:
        for name, data in pristine.items():
            (out / name).write_bytes(data)

    cases = [
        ("quote.msg", pristine["quote.msg"][:50]),  # truncated
        ("quote.sig", pristine["quote.sig"][:7]),
        ("pcrlist", b"sha256:zero,one\n"),
        ("pcrlist", b"\xff\xfe garbage"),
        ("pcrs", pristine["pcrs"][:-1]),
        ("ak.pub.pem", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
    ]
    for name, data in cases:
        (out / name).write_bytes(data)
        pin = ("--ak-name", AK_NAMES[out])
        rc, _, err = cli(capsys, "attest", "verify", str(out), "--nonce", nonce, *pin)
        _one_line_error(rc, err)
        restore()
    (out / "pcrlist").unlink()
    _one_line_error(*cli(capsys, "attest", "verify", str(out))[::2])
    restore()
    _one_line_error(*cli(capsys, "attest", "verify", str(tmp_path / "absent"))[::2])
    _one_line_error(*cli(capsys, "attest", "verify", str(out), "--nonce", "xyz")[::2])
    bad_ref = tmp_path / "ref.json"
    bad_ref.write_text('{"sha256": {"0": "1234"}}')  # not a sha256 digest
    _one_line_error(*cli(capsys, "attest", "verify", str(out), "--reference", str(bad_ref))[::2])
    # The evidence itself was never touched by the failed runs.
    rc, data, _ = verify(capsys, out, "--nonce", nonce)
    assert rc == 0 and data["verified"] is True


def test_quote_never_overwrites_earlier_evidence_silently(lab_tcti, tmp_path, capsys) -> None:
    out, _ = quote_dir(capsys, lab_tcti, tmp_path / "q")
    before = (out / "quote.msg").read_bytes()
    base = ("attest", "quote", "--tpm", lab_tcti, "--nonce", "0011", "--pcrs", SEL, "--json")
    rc, _, err = cli(capsys, *base, "--out", str(out))
    assert rc == 2 and "holds earlier evidence" in err and "--force" in err
    assert (out / "quote.msg").read_bytes() == before
    rc, _, err = cli(capsys, *base, "--out", str(out), "--force", "--json")
    assert rc == 0, err
    assert (out / "quote.msg").read_bytes() != before


def test_quote_rejects_bad_arguments(lab_tcti, tmp_path, capsys) -> None:
    base = ("attest", "quote", "--tpm", lab_tcti, "--out", str(tmp_path / "q"))
    _one_line_error(*cli(capsys, *base, "--nonce", "", "--pcrs", SEL)[::2])
    _one_line_error(*cli(capsys, *base, "--nonce", "00" * 65, "--pcrs", SEL)[::2])
    _one_line_error(*cli(capsys, *base, "--nonce", "0011", "--pcrs", "sha256:99")[::2])
    # A PCR the TPM does not have: the TPM refuses a parameter, which is the caller's mistake.
    assert cli(capsys, *base, "--nonce", "0011", "--pcrs", "sha256:30")[0] == 2
    assert not (tmp_path / "q").exists()
    assert leftovers(lab_tcti) == []
