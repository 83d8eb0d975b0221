"""Reproducers of what fuzzing found (and of the root causes the same campaign reported), kept
as regression tests: each hostile input gets the project's typed error, or the protocol's own
refusal, and changes nothing. The harnesses in this directory search for new ones."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tpm2_pytss import TPM2B_PUBLIC
from tpm2_pytss.constants import TPMA_OBJECT

from firmware_stubs.modem.at import AtModem
from firmware_stubs.usim.engine import UsimEngine
from firmware_stubs.usim.profile import DEFAULT_PROFILE, load_profile
from firmware_stubs.usim.state import CardStore
from network.server import CBOR
from network.trust import TpmTrust
from protocol import messages as m
from tests.fuzz import fuzz_bench_report, fuzz_evidence, fuzz_mid_package
from tests.fuzz.usim_common import MILENAGE, TUAK, USIM_AID, Watched, keyset
from tpm import package as pkg
from tpm.errors import QuoteRejected
from tpm.evidence import evidence_from_files, load_reference
from tpm.marshal import ak_public_from_pem
from tpm.mid_errors import PackageRejected
from tpm.pcrsel import parse_selection
from tpm.policy import parse_pcr_selection
from tpm.verify import verify_quote
from trelab.digits import is_decimal, parse_decimal
from trelab.errors import BadInput, RemoteProtocolError, TrelabError
from trelab.jsontext import load_json
from uicc import fs
from uicc.links.at_codec import parse_crsm, parse_csim
from uicc.ota import (
    DEFAULT_SPI,
    TAR_RAM_ISD,
    PorStatus,
    build_command_packet,
    build_envelope_sms_pp,
    build_sms_deliver,
    encode_expanded,
    parse_remote_response,
    parse_response_packet,
)

NON_ASCII_DIGITS = ["²", "³", "¹", "٣", "۷", "߁", "१", "𝟙"]


# ---- one digit check for all -------------------------------------------------------------------


@pytest.mark.parametrize("text", [*NON_ASCII_DIGITS, "", " 1", "1 ", "+1", "-1", "1_0", "0x1"])
def test_only_ascii_digits_are_decimal(text: str) -> None:
    assert not is_decimal(text)
    with pytest.raises(BadInput):
        parse_decimal("--counter", text)


def test_digit_strings_longer_than_int_reads_are_refused_before_int() -> None:
    assert is_decimal("9" * 40) and not is_decimal("9" * 41)
    with pytest.raises(BadInput):
        parse_decimal("--counter", "9" * 5000)  # int() itself raises ValueError past 4300
    assert parse_decimal("--counter", "0042", high=100) == 42


# ---- USIM engine and OTA ---------------------------------------------------------------------


def test_ram_script_with_a_command_under_4_bytes_gets_a_por_not_6f00() -> None:
    card = Watched(MILENAGE)
    script = encode_expanded([b"\x80\xd8"])  # PUT KEY cut after CLA INS
    packet = build_command_packet(keyset(MILENAGE), tar=TAR_RAM_ISD, counter=1, data=script)
    answer = card.send(build_envelope_sms_pp(build_sms_deliver(packet)))
    if answer[-2] == 0x61:  # T=0: the PoR waits for GET RESPONSE
        answer = card.send(bytes([0x00, 0xC0, 0x00, 0x00, answer[-1]]))
    por = answer
    assert por[-2:] == b"\x90\x00", por.hex()  # a PoR, no 6F00
    response = parse_response_packet(por[:-2], spi=DEFAULT_SPI, keyset=keyset(MILENAGE))
    assert response.status is PorStatus.OK and response.authenticated
    result = parse_remote_response(response.data, expanded=True)
    assert result.last_sw == 0x6A80  # the script was refused as malformed data
    assert card.engine.state.ota.counters == {1: 1}  # spent, with its proof of receipt


def test_gsm_context_on_a_tuak_card_with_256_bit_res_is_refused_not_6f00() -> None:
    card = Watched(TUAK)
    card.send(bytes([0x00, 0xA4, 0x04, 0x04, len(USIM_AID)]) + USIM_AID)
    card.send(b"\x00\x20\x00\x01\x08" + b"1234" + b"\xff" * 4)
    answer = card.send(bytes([0x00, 0x88, 0x00, 0x80, 0x11, 0x10]) + bytes(16))
    assert answer == b"\x69\x85"  # conditions of use not satisfied: c2 needs RES ≤ 128 bits


# ---- AT ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("line", ["ATE²", "ATV³", "AT+CMEE=²", "ATE٣", "AT+CMEE=" + "1" * 5000])
def test_at_modem_answers_error_to_non_ascii_numbers(line: str) -> None:
    modem = AtModem(UsimEngine(MILENAGE))
    out = modem.receive_data(line.encode("latin-1", "replace")[:1000] + b"\r")
    assert out.rstrip().endswith(b"ERROR") or b"+CME ERROR" in out


@pytest.mark.parametrize(
    "line",
    ['+CSIM: ²,"9000"', f'+CSIM: {"4" * 4400},"9000"', '+CSIM: 4\x1e\x1e,"9000"', "+CSIM: ٤,9000"],
)
def test_host_at_codec_refuses_bad_csim_lengths(line: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_csim((line,))


@pytest.mark.parametrize("line", ["+CRSM: ²,0", "+CRSM: 144,٠", f"+CRSM: {'1' * 5000},0"])
def test_host_at_codec_refuses_bad_crsm_status_words(line: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_crsm((line,))


# ---- PCR selections -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["sha256:²", "sha256:0,٣", "sha1:" + "1" * 5000, "sha256:+1"])
def test_pcr_selections_take_ascii_indices_only(text: str) -> None:
    with pytest.raises(BadInput):
        parse_selection(text)


@pytest.mark.parametrize("text", ["sha256:٣", "sha256:0,²", "sha256: 1_0", "sha256:" + "7" * 5000])
def test_mid_policy_pcr_lists_take_ascii_indices_only(text: str) -> None:
    with pytest.raises(BadInput):
        parse_pcr_selection(text)


# ---- the operator app ----------------------------------------------------------------------------


def test_a_bad_pcr_list_gets_a_400_and_an_audited_refusal() -> None:
    from tests.fuzz import fuzz_operator_app as harness

    evidence = m.Evidence(
        session_id=harness.VALIDATED.session_id,
        transcript=harness.VALIDATED.transcript,
        quote_msg=b"\xffTCG" + bytes(40),
        quote_sig=bytes(72),
        pcrs=bytes(32),
        pcrlist="sha256:10",
    )
    wire = m.encode(evidence).replace(b"sha256:10", "sha256:²".encode())  # same length
    changed, audited = harness.DEPLOYMENT.counts()
    response = harness.DEPLOYMENT.app.handle(
        "POST", "/v1/pva/evidence", {"Content-Type": CBOR}, wire
    )
    assert response.status == 400
    error = m.decode(response.body)
    assert isinstance(error, m.Error) and error.code == "protocol"
    assert harness.DEPLOYMENT.counts() == (changed, audited + 1)


def _public_with_name_alg(name_alg: int) -> bytes:
    public = TPM2B_PUBLIC.parse(
        "ecc256:ecdsa-sha256",
        objectAttributes=TPMA_OBJECT.SIGN_ENCRYPT
        | TPMA_OBJECT.RESTRICTED
        | TPMA_OBJECT.FIXEDTPM
        | TPMA_OBJECT.FIXEDPARENT
        | TPMA_OBJECT.SENSITIVEDATAORIGIN,
    )
    public.publicArea.nameAlg = name_alg
    return bytes(public.marshal())


def test_an_srk_public_with_an_unknown_name_algorithm_gets_a_400_not_500() -> None:
    from tests.fuzz import fuzz_operator_app as harness

    request = m.PackageRequest(
        session_id=harness.VALIDATED.session_id,
        transcript=harness.VALIDATED.transcript,
        srk_public=_public_with_name_alg(0x0099),
        slot=2,
        counter=0,
    )
    changed, _ = harness.DEPLOYMENT.counts()
    response = harness.DEPLOYMENT.app.handle(
        "POST", "/v1/dpf/package", {"Content-Type": CBOR}, m.encode(request)
    )
    assert response.status == 400, m.decode(response.body)
    assert harness.DEPLOYMENT.counts()[0] == changed


def test_an_ak_public_with_an_unknown_name_algorithm_is_a_typed_refusal() -> None:
    from tests.fuzz.operator_common import CONFIG

    with pytest.raises(TrelabError):
        TpmTrust(CONFIG.trusted_cas).ak_name(_public_with_name_alg(0x0099))


def _resized(public: bytes, size: int) -> bytes:
    return size.to_bytes(2, "big") + public[2:]


@pytest.mark.parametrize("delta", [-1, +1, -16])
def test_an_ak_public_whose_tpm2b_size_disagrees_is_not_registered(delta: int) -> None:
    from tests.fuzz import fuzz_tpm_identity as harness

    ak = harness.AKS[0]
    malleable = _resized(ak, len(ak) - 2 + delta)
    nonce = bytes(16)
    request = m.RegisterRequest(
        session_id=m.derive_session_id(harness.GENUINE_EKS[0], malleable, nonce),
        transcript=m.INITIAL_TRANSCRIPT,
        ek_cert=harness.GENUINE_EKS[0],
        ak_public=malleable,
        device_nonce=nonce,
        sho="sho-a",
    )
    changed, audited = harness.DEPLOYMENT.counts()
    response, error = harness.DEPLOYMENT.request(
        "POST", "/v1/drf/register", {"Content-Type": CBOR}, m.encode(request)
    )
    assert response.status == 403
    assert isinstance(error, m.Error) and error.code == "malformed", error
    assert harness.DEPLOYMENT.counts() == (changed, audited + 1)


@pytest.mark.parametrize("delta", [-1, +1])
def test_an_srk_public_whose_tpm2b_size_disagrees_gets_no_package(delta: int) -> None:
    from tests.fuzz import fuzz_tpm_identity as harness

    session = harness._validated_session()
    request = m.PackageRequest(
        session_id=session.session_id,
        transcript=session.transcript,
        srk_public=_resized(harness.SRK, len(harness.SRK) - 2 + delta),
        slot=0,
        counter=0,
    )
    response, error = harness.DEPLOYMENT.request(
        "POST", "/v1/dpf/package", {"Content-Type": CBOR}, m.encode(request)
    )
    assert response.status == 403
    assert isinstance(error, m.Error) and error.code == "malformed", error


def test_the_same_srk_with_its_own_size_gets_a_package() -> None:
    from tests.fuzz import fuzz_tpm_identity as harness

    session = harness._validated_session()
    request = m.PackageRequest(
        session_id=session.session_id,
        transcript=session.transcript,
        srk_public=harness.SRK,
        slot=0,
        counter=0,
    )
    response, answer = harness.DEPLOYMENT.request(
        "POST", "/v1/dpf/package", {"Content-Type": CBOR}, m.encode(request)
    )
    assert response.status == 200 and isinstance(answer, m.MidPackage), answer


def test_every_tpm2b_is_held_to_its_size_prefix() -> None:
    from tests.fuzz.fuzz_tpm_identity import AKS
    from tpm.marshal import ak_public_from_blob, unmarshal_exact

    assert bytes(unmarshal_exact(TPM2B_PUBLIC, AKS[0], "AK public").marshal()) == AKS[0]
    for size in (len(AKS[0]) - 3, len(AKS[0]) - 1, 0):
        with pytest.raises(BadInput, match=r"size prefix|not a complete"):
            unmarshal_exact(TPM2B_PUBLIC, _resized(AKS[0], size), "AK public")
        with pytest.raises(BadInput):
            ak_public_from_blob(_resized(AKS[0], size))


def test_an_ek_certificate_with_an_unknown_x509_version_is_refused_not_500() -> None:
    from tests.fuzz import fuzz_tpm_identity as harness

    changed, audited = harness.DEPLOYMENT.counts()
    # a genuine certificate's version field ([0] EXPLICIT INTEGER 2) changed to 15
    cert = bytearray(harness.GENUINE_EKS[1])
    at = cert.index(b"\xa0\x03\x02\x01\x02")
    cert[at + 4] = 15
    nonce = bytes(16)
    request = m.RegisterRequest(
        session_id=m.derive_session_id(bytes(cert), harness.AKS[0], nonce),
        transcript=m.INITIAL_TRANSCRIPT,
        ek_cert=bytes(cert),
        ak_public=harness.AKS[0],
        device_nonce=nonce,
        sho="sho-a",
    )
    response, error = harness.DEPLOYMENT.request(
        "POST", "/v1/drf/register", {"Content-Type": CBOR}, m.encode(request)
    )
    assert response.status == 403
    assert isinstance(error, m.Error) and error.code == "bad-ek-cert", error
    assert harness.DEPLOYMENT.counts() == (changed, audited + 1)


# ---- quote evidence -------------------------------------------------------------------------------


def test_without_a_pinned_ak_attributes_claimed_by_ak_pub_verify_nothing() -> None:
    software = ec.derive_private_key(12345, ec.SECP256R1())  # not in any TPM
    files = fuzz_evidence.GENUINE
    evidence = evidence_from_files(files)
    assert evidence.ak.attributes is not None  # ak.pub claims restricted, fixedTPM …
    with pytest.raises(QuoteRejected) as caught:
        verify_quote(evidence, nonce=fuzz_evidence.NONCE)
    assert caught.value.check == "ak"
    del software


def test_an_unknown_spki_algorithm_is_bad_input() -> None:
    key = ec.derive_private_key(7, ec.SECP256R1()).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    oid = bytes.fromhex("2a8648ce3d0201")  # id-ecPublicKey → 1.2.840.10045.2.0, unknown
    assert oid in der
    pem = (
        b"-----BEGIN PUBLIC KEY-----\n"
        + base64.encodebytes(der.replace(oid, oid[:-1] + b"\x00"))
        + b"-----END PUBLIC KEY-----\n"
    )
    with pytest.raises(BadInput):
        ak_public_from_pem(pem)
    with pytest.raises(BadInput):
        evidence_from_files(replace(fuzz_evidence.GENUINE, ak_pem=pem, ak_blob=None))


@pytest.mark.parametrize(
    "doc", [b'{"sha256": {"' + b"1" * 5000 + b'": "00"}}', '{"sha256": {"²": "00"}}'.encode()]
)
def test_reference_values_with_bad_indices_are_bad_input(tmp_path: Path, doc: bytes) -> None:
    (tmp_path / "reference.json").write_bytes(doc)
    with pytest.raises(BadInput):
        load_reference(tmp_path / "reference.json")


# ---- JSON files: card state, profiles, packages, reports ----------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe{}", b"[" * 100_000, b'{"a": 1e999}', b'{"a": NaN}', b'{"a": -Infinity}'],
)
def test_json_from_outside_is_bad_input(raw: bytes) -> None:
    with pytest.raises(BadInput):
        load_json(raw, "document")


def _state_of_a_used_card() -> dict:
    engine = UsimEngine(MILENAGE)
    return engine.state.to_json()


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe\x00{",  # not UTF-8
        b"[" * 100_000,  # nested too deep for json
        json.dumps(_state_of_a_used_card())
        .replace('"remaining": 3', '"remaining": 1e999')
        .encode(),
        json.dumps(_state_of_a_used_card()).replace('"remaining": 3', '"remaining": [3]').encode(),
    ],
)
def test_malformed_card_state_is_refused(tmp_path: Path, raw: bytes) -> None:
    assert raw != json.dumps(_state_of_a_used_card()).encode()
    (tmp_path / "state.json").write_bytes(raw)
    with pytest.raises(BadInput):
        UsimEngine(MILENAGE, CardStore(tmp_path / "state.json"))
    assert (tmp_path / "state.json").read_bytes() == raw  # changed nothing


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff" + json.dumps(dict(DEFAULT_PROFILE)).encode(),
        b"{" * 50_000,
        json.dumps({**DEFAULT_PROFILE, "mnc_length": 1e999}).encode(),
        json.dumps({**DEFAULT_PROFILE, "imsi": "00101٣456789"}).encode(),
        json.dumps({**DEFAULT_PROFILE, "pin1": "12³4"}).encode(),
    ],
)
def test_malformed_profiles_are_bad_input(tmp_path: Path, raw: bytes) -> None:
    (tmp_path / "profile.json").write_bytes(raw)
    with pytest.raises(BadInput):
        load_profile(tmp_path / "profile.json")


def _compare(tmp_path: Path, new: dict | bytes) -> None:
    import argparse

    from host.cli.bench_cmd import _compare as compare

    (tmp_path / "old.json").write_text(json.dumps(fuzz_bench_report.report()))
    raw = new if isinstance(new, bytes) else json.dumps(new).encode()
    (tmp_path / "new.json").write_bytes(raw)
    compare(
        argparse.Namespace(old=str(tmp_path / "old.json"), new=str(tmp_path / "new.json"), seed=1)
    )


@pytest.mark.parametrize(
    "damage",
    [
        lambda r: r["records"][1].update(samples=[10**400]),
        lambda r: r["records"][1].update(samples=["fast"]),
        lambda r: r["records"][1].update(samples=[-1.0]),
        lambda r: r["records"][1].update(samples=[True]),
        lambda r: r.pop("records"),
        lambda r: r["records"][1].update(summary=2.5),  # found by fuzzing: AttributeError
        lambda r: r["records"][1].update(summary=[]),
    ],
)
def test_damaged_reports_make_bench_compare_say_bad_input(tmp_path: Path, damage) -> None:
    report = fuzz_bench_report.report(2.0)
    _compare(tmp_path, report)  # the undamaged report compares
    damage(report)
    with pytest.raises(BadInput):
        _compare(tmp_path, report)


def test_reports_that_are_not_json_make_bench_compare_say_bad_input(tmp_path: Path) -> None:
    for raw in (b"\xc3\x28", b"[" * 100_000, b'{"schema": 1e999}'):
        with pytest.raises(BadInput):
            _compare(tmp_path, raw)


# ---- MID packages -------------------------------------------------------------------------------


def _package() -> dict:
    return json.loads(next(iter(fuzz_mid_package.starting_inputs())))


@pytest.mark.parametrize("field", ["command", "kind", "k_form"])
@pytest.mark.parametrize("value", [{}, []])
def test_unhashable_policy_fields_are_bad_input(field: str, value: object) -> None:
    doc = _package()
    doc["policy"][field] = value
    with pytest.raises(BadInput):
        pkg.Package.from_json(doc)


def test_an_unknown_name_algorithm_is_a_package_refusal() -> None:
    package = pkg.Package.from_json(_package())
    pkg.check_package(package)
    public = bytearray(package.k.public)
    assert public[4:6] == b"\x00\x0b"  # TPM2B size, type, then nameAlg SHA-256
    public[4:6] = b"\x00\x99"
    altered = replace(package, k=replace(package.k, public=bytes(public)))
    with pytest.raises(PackageRejected, match="name algorithm"):
        pkg.check_package(altered)


def test_a_public_area_with_a_wrong_tpm2b_size_is_refused() -> None:
    package = pkg.Package.from_json(_package())
    public = package.k.public
    for size in (len(public) - 2 + 1, len(public) - 2 - 1, 0xFFFF):
        malleable = size.to_bytes(2, "big") + public[2:]
        altered = replace(package, k=replace(package.k, public=malleable))
        with pytest.raises(PackageRejected):
            pkg.check_package(altered)


def test_policy_pcrs_with_non_ascii_digits_are_bad_input() -> None:
    doc = _package()
    doc["policy"]["pcrs"] = "sha256:٠,٧"
    with pytest.raises(BadInput):
        pkg.Package.from_json(doc)


def test_package_files_that_are_not_json_are_bad_input(tmp_path: Path) -> None:
    for raw in (b"\xff\xfe", b"[" * 100_000, b'{"seq": 1e999}'):
        (tmp_path / "package.json").write_bytes(raw)
        with pytest.raises(BadInput):
            pkg.read_package(tmp_path / "package.json")


# ---- file contents a hostile card returns ---------------------------------------------------------


@pytest.mark.parametrize(
    ("ef", "content"),
    [
        (fs.EF_SPN, b""),
        (fs.EF_HPPLMN, b""),
        (fs.EF_ACC, b"\x01"),
        (fs.EF_PL, "é".encode("latin-1") + b"n"),
        (fs.EF_PL, b"e\x00"),
    ],
)
def test_malformed_file_contents_are_bad_input(ef: fs.TransparentEF, content: bytes) -> None:
    with pytest.raises(BadInput):
        ef.codec.decode(content)


@pytest.mark.parametrize(
    ("ef", "record"),
    [
        (fs.EF_SMS, b""),
        (fs.EF_SMSP, b"\x77"),
        (fs.EF_OPL, b"\x00"),
        (fs.EF_OPL, b"\x00\x00\x00"),
        (fs.EF_OPL5G, b"\x00"),
        (fs.EF_MSISDN, bytes.fromhex("ff8024ff010080ffff800080ff0101")),
        (fs.EF_ADN, bytes.fromhex("ff000101018000803f1101ffeb0101")),
    ],
)
def test_short_records_are_bad_input(ef: fs.LinearFixedEF, record: bytes) -> None:
    with pytest.raises(BadInput):
        ef.codec.decode(record)


def test_well_formed_file_contents_still_decode() -> None:
    assert fs.EF_PL.codec.decode(b"enfr\xff\xff") == ("en", "fr")
    assert fs.EF_SPN.codec.decode(b"\x01abc\xff")["name"] == "abc"
    assert fs.EF_HPPLMN.codec.decode(b"\x05") == 5


# ---- other JSON files the CLI and the network read ----------------------------------------------

DEEP = b"[" * 100_000


def test_an_hss_record_file_nested_too_deep_is_bad_input(tmp_path: Path) -> None:
    import argparse

    from host.cli.operator_cmd import _add_subscriber

    (tmp_path / "record.json").write_bytes(DEEP)
    with pytest.raises(BadInput):
        _add_subscriber(argparse.Namespace(hss_record=str(tmp_path / "record.json")))


def test_an_ota_keys_file_nested_too_deep_is_bad_input(tmp_path: Path) -> None:
    import argparse

    from host.cli.transfer_cmd import _keyset

    (tmp_path / "keys.json").write_bytes(DEEP)
    with pytest.raises(BadInput):
        _keyset(argparse.Namespace(keys_file=str(tmp_path / "keys.json"), kvn=1))


@pytest.mark.parametrize("raw", [DEEP, b"[]", b'"text"', b"{"])
def test_an_ota_transfer_journal_that_is_not_an_object_is_bad_input(
    tmp_path: Path, raw: bytes
) -> None:
    from network.store import Store
    from network.transfer import OtaKeyring

    store = Store(tmp_path / "network.db", bytes(32))
    with store.transaction() as tx:
        tx._db.execute(
            "INSERT INTO ota_transfers VALUES ('t1', '8988', 'sho-a', 'sho-b', 0, ?)",
            (raw.decode(),),
        )
    with pytest.raises(BadInput):
        OtaKeyring(store).journal("t1")
    store.close()


def test_a_network_config_nested_too_deep_is_a_config_error(tmp_path: Path) -> None:
    from network.config import load_config

    (tmp_path / "network.json").write_bytes(DEEP)
    with pytest.raises(TrelabError):
        load_config(tmp_path / "network.json")


@pytest.mark.parametrize("raw", [b"k = " + b"[" * 5000, b"mnc_length = inf", b"\xff = 1"])
def test_toml_profiles_nested_too_deep_or_not_finite_are_bad_input(
    tmp_path: Path, raw: bytes
) -> None:
    (tmp_path / "profile.toml").write_bytes(raw)
    with pytest.raises(BadInput):
        load_profile(tmp_path / "profile.toml")


# ---- memory --------------------------------------------------------------------------------------


def test_text_that_is_not_utf8_is_refused_without_growing_memory() -> None:
    import gc

    bad = b"\xa1\x61a\x62\xff\xfe"  # {"a": two bytes that are not UTF-8}
    with pytest.raises(RemoteProtocolError):
        m.decode(bad)
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(2000):
        with pytest.raises(RemoteProtocolError):
            m.decode(bad)
    gc.collect()
    assert len(gc.get_objects()) - before < 200  # cbor2's C decoder leaked 2 objects per call


# cbor2 decodes tag 4 (decimal fraction) and tag 5 (bigfloat) itself, through the decimal
# module: a bad exponent raised decimal.InvalidOperation / Overflow, ArithmeticErrors that
# escaped the decoders' ValueError handling.
_BAD_DECIMAL = bytes.fromhex("c4823b7fffffffffffffff01")  # 4([-2**63, 1])
_BAD_BIGFLOAT = bytes.fromhex("c5821b7fffffffffffffff01")  # 5([2**63 - 1, 1])


@pytest.mark.parametrize("fraction", [_BAD_DECIMAL, _BAD_BIGFLOAT])
def test_a_decimal_fraction_in_a_message_is_not_well_formed(fraction: bytes) -> None:
    found = base64.b64decode(
        "pWFipGVldmVudGdubnN0YWxsZm1pZF9pZGZhYmMxMjNoZXZpZGVuY2XLoWlzdGF0ZS5zaWdBc2hzZXF1ZW5jZcSC"
        "goKCgoKCCGF0Z1JlY2VpcHRhdgFidGhYICAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/Y3NpZFggAAEC"
        "AwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    )
    for data in (found, bytes.fromhex("a16162") + fraction):
        with pytest.raises(RemoteProtocolError, match="not well-formed CBOR"):
            m.decode(data)


@pytest.mark.parametrize("fraction", [_BAD_DECIMAL, _BAD_BIGFLOAT])
def test_a_decimal_fraction_in_a_ki_export_request_gets_a_400_not_500(fraction: bytes) -> None:
    from tests.fuzz import fuzz_operator_app as harness

    wire = bytes.fromhex("d284") + fraction + bytes.fromhex("a041784179")  # 18([frac, {}, ...])
    changed, _ = harness.DEPLOYMENT.counts()
    response = harness.DEPLOYMENT.app.handle(
        "POST", "/v1/sho/ki-export", {"Content-Type": CBOR}, wire
    )
    assert response.status == 400, m.decode(response.body)
    error = m.decode(response.body)
    assert isinstance(error, m.Error) and error.code == "protocol"
    assert harness.DEPLOYMENT.counts()[0] == changed


def test_the_input_that_made_cbor2_raise_runtime_error_gets_a_typed_refusal() -> None:
    # In the fuzzing run, decoding this raised "RuntimeError: This CBORTag is not hashable
    # because it contains a reference to itself" out of cbor2 (its tag-hashing state left by
    # earlier inputs; alone it decodes). The decoder's every failure is now a typed refusal.
    found = base64.b64decode(
        "pWFipGRwY3JzWEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAAZ3Bjcmxpc3Rqc2hhMjU2OjAsMWlxdW90ZV9tc2dYLP9UQ0dxcXFxcXFxcXFxcXFxcXHU1NTU1NTU"
        "1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU"
        "1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1HFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFpcXVvdGVfc2lnWEhz"
        "c3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nz"
        "c3Nzc3NhdGhFdmlkZW5jZWF2AWJ0aFggICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9jc2lkWCAAAQID"
        "BAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHw=="
    )
    with pytest.raises(RemoteProtocolError):
        m.decode(found)
