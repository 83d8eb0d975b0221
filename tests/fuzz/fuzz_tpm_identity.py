"""The operator's endpoints that take a TRE's TPM structures: ``drf/register`` (EK certificate,
AK TPM2B_PUBLIC) and ``dpf/package`` (SRK TPM2B_PUBLIC, on a validated session of its own).
Each structure starts genuine and is changed field by field as the fuzzer says (type,
nameAlg, attributes, parameters, unique, the TPM2B size prefix, raw bytes), or is replaced.
Beyond the operator app's contract (4xx Error, never 500; a refusal changes nothing but its
audit entry): an AK public without the restricted, TPM-fixed signing attributes, an EK
certificate that does not chain to the manufacturer CA, and a TPM2B whose size prefix
disagrees with its contents are never accepted."""

from __future__ import annotations

import datetime
import hashlib
import itertools
from collections.abc import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ObjectIdentifier
from tpm2_pytss import TPM2B_PUBLIC
from tpm2_pytss.constants import TPMA_OBJECT

from network.server import CBOR
from protocol import messages as m
from protocol.records import DeviceRecord, SessionRecord, VerdictRecord
from protocol.transitions import Session, SessionState
from tests.fuzz.operator_common import CA, CA_KEY, NOW, WHEN, Deployment, fixed_key, make_ca
from tests.fuzz.oracle import Reader, typed
from tpm.ek import ek_tpm_public
from tpm.identity import ak_template
from trelab.errors import TrelabError

EK_EKU = ObjectIdentifier("2.23.133.8.1")  # tcg-kp-EKCertificate
HEADERS = {"Content-Type": CBOR}
DEPLOYMENT = Deployment("identity")
DEPLOYMENT.count_changes()


def _modulus(bits: int, label: bytes) -> int:
    """An odd modulus of exactly ``bits`` bits: only public operations (the certificate,
    MakeCredential's RSA-OAEP) ever use it."""
    return int.from_bytes(hashlib.shake_256(label).digest(bits // 8), "big") | 1 << (bits - 1) | 1


def _ek_cert(
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    *,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] = (CA, CA_KEY),
    eku: bool = True,
) -> bytes:
    ca, ca_key = issuer
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.subject)
        .public_key(key)
        .serial_number(7)
        .not_valid_before(WHEN - datetime.timedelta(days=1))
        .not_valid_after(WHEN + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, True, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage([EK_EKU]), critical=False)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _rsa(bits: int, e: int = 65537) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(e, _modulus(bits, b"ek-%d" % bits)).public_key()


_OTHER_CA_KEY = fixed_key(9)
#: EK certificates the manufacturer CA issued for keys that have a TCG template here
GENUINE_EKS = (_ek_cert(_rsa(2048)), _ek_cert(fixed_key(10).public_key()))
#: certificates to refuse: no TCG template (RSA-3072, e = 3, P-521), no EK key usage, or
#: issued by a CA the operator does not trust
REFUSED_EKS = (
    _ek_cert(_rsa(3072)),
    _ek_cert(_rsa(2048, 3)),
    _ek_cert(ec.derive_private_key(0xE521, ec.SECP521R1()).public_key()),
    _ek_cert(fixed_key(11).public_key(), eku=False),
    _ek_cert(
        fixed_key(12).public_key(),
        issuer=(make_ca(_OTHER_CA_KEY, "Fuzz Other CA"), _OTHER_CA_KEY),
    ),
)
#: P-384 EK (the TCG high-range template): accepted or refused, never a 500
EKS = (*GENUINE_EKS, _ek_cert(ec.derive_private_key(0xE384, ec.SECP384R1()).public_key()))


def _ak(kind: str) -> bytes:
    public = ak_template(kind)  # type: ignore[arg-type]
    if kind == "ecc":
        point = fixed_key(20).public_key().public_numbers()
        public.publicArea.unique.ecc.x = point.x.to_bytes(32, "big")
        public.publicArea.unique.ecc.y = point.y.to_bytes(32, "big")
    else:
        public.publicArea.unique.rsa = _modulus(2048, b"ak").to_bytes(256, "big")
    return bytes(public.marshal())


def _srk() -> bytes:
    public = TPM2B_PUBLIC.parse(
        "ecc256:aes128cfb",
        objectAttributes=TPMA_OBJECT.FIXEDTPM
        | TPMA_OBJECT.FIXEDPARENT
        | TPMA_OBJECT.SENSITIVEDATAORIGIN
        | TPMA_OBJECT.USERWITHAUTH
        | TPMA_OBJECT.NODA
        | TPMA_OBJECT.RESTRICTED
        | TPMA_OBJECT.DECRYPT,
    )
    point = fixed_key(21).public_key().public_numbers()
    public.publicArea.unique.ecc.x = point.x.to_bytes(32, "big")
    public.publicArea.unique.ecc.y = point.y.to_bytes(32, "big")
    return bytes(public.marshal())


AKS = (_ak("ecc"), _ak("rsa"))
SRK = _srk()
#: TPM_ALG_ID values a field may take: RSA, SHA-1, HMAC, AES, KEYEDHASH, SHA-256, SHA-384,
#: SHA-512, NULL, SM3-256, ECDSA, ECC, SYMCIPHER, SHA3-256, and ones no TPM defines
ALGS = (0x0001, 0x0004, 0x0005, 0x0006, 0x0008, 0x000B, 0x000C, 0x000D, 0x0010, 0x0012,
        0x0018, 0x0023, 0x0025, 0x0027, 0x0099, 0xFFFF)  # fmt: skip
#: TPMA_OBJECT bits an AK must have (TPM 2.0 Part 2 §8.3): fixedTPM, fixedParent,
#: sensitiveDataOrigin, restricted, sign (read from the bytes, not through the TSS)
AK_BITS = 0x00000002 | 0x00000010 | 0x00000020 | 0x00010000 | 0x00040000


def _offset(reader: Reader) -> int:
    return int.from_bytes(reader.take(2).ljust(2, b"\0"), "big")


def changed_public(reader: Reader, genuine: bytes) -> bytes:
    """``genuine`` (a marshaled TPM2B_PUBLIC) with fields changed: the size prefix is kept
    right unless the fuzzer sets it."""
    out = bytearray(genuine)
    sized = False
    for _ in range(reader.pick(4)):
        how = reader.pick(8)
        if how == 0:  # type
            out[2:4] = ALGS[reader.pick(len(ALGS))].to_bytes(2, "big")
        elif how == 1:  # nameAlg
            out[4:6] = ALGS[reader.pick(len(ALGS))].to_bytes(2, "big")
        elif how == 2:  # objectAttributes: bits flipped
            mask = int.from_bytes(reader.take(4).ljust(4, b"\0"), "big")
            out[6:10] = (int.from_bytes(out[6:10], "big") ^ mask).to_bytes(4, "big")
        elif how == 3 and len(out) > 2:  # one byte anywhere past the prefix
            out[2 + _offset(reader) % (len(out) - 2)] = reader.byte()
        elif how == 4:  # cut short
            del out[max(2, len(out) - 1 - reader.byte()) :]
        elif how == 5:  # bytes appended
            out += reader.chunk(16)
        elif how == 6:  # the size prefix itself
            out[0:2] = reader.take(2).ljust(2, b"\0")
            sized = True
        else:  # an algorithm ID somewhere in the parameters (scheme, curve, symmetric)
            at = 10 + _offset(reader) % max(1, len(out) - 11)
            out[at : at + 2] = ALGS[reader.pick(len(ALGS))].to_bytes(2, "big")
    if not sized:
        out[0:2] = (len(out) - 2).to_bytes(2, "big")
    return bytes(out)


def _tpm2b_sized(data: bytes) -> bool:
    return len(data) >= 2 and int.from_bytes(data[:2], "big") == len(data) - 2


def _register(reader: Reader) -> None:
    which = reader.pick(5)
    ek_refused = which >= 3
    if which < 3:
        ek = EKS[which]
    elif which == 3:
        ek = REFUSED_EKS[reader.pick(len(REFUSED_EKS))]
    else:  # a genuine certificate with bytes changed, or bytes of the fuzzer's own
        changed = bytearray(GENUINE_EKS[reader.pick(2)])
        for _ in range(1 + reader.pick(4)):
            changed[_offset(reader) % len(changed)] ^= reader.byte() | 1
        ek = bytes(changed) if reader.flag() else reader.chunk(128)
    raw_ak = reader.pick(8) == 0
    ak = reader.chunk(200) if raw_ak else changed_public(reader, AKS[reader.pick(2)])
    nonce = reader.take(16).ljust(16, b"\0")
    request = typed(
        m.RegisterRequest,
        session_id=m.derive_session_id(ek, ak, nonce),
        transcript=m.INITIAL_TRANSCRIPT,
        ek_cert=ek,
        ak_public=ak,
        device_nonce=nonce,
        sho="sho-a",
    )
    if isinstance(request, TrelabError):
        return  # the device's own encoder refuses it (an empty field): nothing to send
    response, answer = DEPLOYMENT.request("POST", "/v1/drf/register", HEADERS, m.encode(request))
    if response.status == 200:
        assert isinstance(answer, m.CredentialChallenge), answer
        assert not ek_refused or ek in GENUINE_EKS, "an EK certificate to refuse was accepted"
        assert _tpm2b_sized(ak), "an AK public with a wrong TPM2B size was accepted"
        attributes = int.from_bytes(ak[6:10], "big")
        assert attributes & AK_BITS == AK_BITS, "a key that is no AK was registered"
        assert ak[2:4] in (b"\x00\x01", b"\x00\x23"), "an AK neither RSA nor ECC was registered"


_sessions = itertools.count()
EK_PUBLIC = bytes(ek_tpm_public(x509.load_der_x509_certificate(GENUINE_EKS[0])).marshal())
AK_NAME = b"\x00\x0b" + hashlib.sha256(AKS[0][2:]).digest()


def _validated_session() -> Session:
    """A device and a session of their own, validated, with a fresh verdict: what the DPF
    needs before it reads the SRK (every input starts from the same point, whatever earlier
    inputs did)."""
    number = hashlib.sha256(next(_sessions).to_bytes(8, "big")).digest()
    session = Session("device", SessionState(number, "validated", bytes(32)))
    device = DeviceRecord((b"\x00\x0b" + number).hex(), b"cert", AKS[0], AK_NAME, "activated")
    with DEPLOYMENT.store.transaction() as tx:
        tx.put_device(device)
        tx.put_session(
            SessionRecord(
                session.session_id, "provision", "validated", session.transcript, NOW,
                NOW + 900, device.device_id, "sho-a",
                data={"ek_public": EK_PUBLIC, "ak_public": AKS[0], "ak_name": AK_NAME},
            )
        )  # fmt: skip
        tx.put_verdict(
            VerdictRecord(session.session_id, device.device_id, AK_NAME, bytes(32), NOW + 300, b"c")
        )
    return session


_session: list[Session] = []


def _package(reader: Reader) -> None:
    """The SRK to a validated session. A refusal leaves the store as it was (the contract,
    checked on every answer), so the session stays validated and serves the next input; only
    an accepted request moves it on, and the next input gets a fresh one."""
    if not _session:
        _session.append(_validated_session())
    session = _session[0]
    srk = reader.chunk(200) if reader.pick(8) == 0 else changed_public(reader, SRK)
    request = typed(
        m.PackageRequest,
        session_id=session.session_id,
        transcript=session.transcript,
        srk_public=srk,
        slot=reader.pick(4),
        counter=0,
    )
    if isinstance(request, TrelabError):
        return
    response, _ = DEPLOYMENT.request("POST", "/v1/dpf/package", HEADERS, m.encode(request))
    if response.status < 400:
        _session.clear()
    if response.status == 200:
        assert _tpm2b_sized(srk), "an SRK public with a wrong TPM2B size was accepted"


def test_one_input(data: bytes) -> None:
    reader = Reader(data)
    if reader.flag():
        _package(reader)
    else:
        _register(reader)


def starting_inputs() -> Iterator[bytes]:
    nonce = bytes(range(16))
    # register: the flag byte (0), the EK, 1 (not raw), the AK kind, how many changes, ...
    for ek in range(3):  # each EK the CA issued, each AK kind, unchanged
        for ak in range(2):
            yield bytes([0, ek, 1, ak, 0]) + nonce
    for refused in range(len(REFUSED_EKS)):
        yield bytes([0, 3, refused, 1, 0, 0]) + nonce
    yield bytes([0, 4, 0, 0, 0x01, 0x55, 1, 1, 1, 0, 0]) + nonce  # one EK byte changed
    yield bytes([0, 0, 1, 0, 1, 1, ALGS.index(0x0099)]) + nonce  # AK nameAlg no TPM has
    yield bytes([0, 0, 1, 0, 1, 2, 0, 1, 0, 0]) + nonce  # AK not restricted
    yield bytes([0, 0, 1, 1, 1, 0, ALGS.index(0x0008)]) + nonce  # AK a keyed hash
    yield bytes([0, 0, 1, 0, 1, 6, 0, 0x10]) + nonce  # AK size prefix too small
    # package: the flag byte (1), 1 (not raw), how many changes, ..., the slot
    yield bytes([1, 1, 0, 0])  # the SRK unchanged
    yield bytes([1, 1, 1, 1, ALGS.index(0x0004), 0])  # SRK nameAlg SHA-1
    yield bytes([1, 1, 1, 1, ALGS.index(0x0099), 0])  # SRK nameAlg no TPM has
    yield bytes([1, 1, 1, 6, 0xFF, 0xFF, 0])  # SRK size prefix 0xFFFF
    yield bytes([1, 1, 1, 0, ALGS.index(0x0001), 0])  # SRK type RSA with ECC parameters
