"""Messages: round trips of every type, COSE_Sign1 signatures, and malformed input → typed
errors (never a traceback)."""

from __future__ import annotations

import contextlib
import dataclasses
import os

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import messages as m
from protocol.errors import LocalProtocolError, RemoteProtocolError, SignatureInvalid

SID = os.urandom(32)
TH = os.urandom(32)
PVA = m.SigningKey("pva", ec.generate_private_key(ec.SECP256R1()))
OTHER = m.SigningKey("pva", ec.generate_private_key(ec.SECP256R1()))


def samples() -> list[m.Message]:
    h = {"session_id": SID, "transcript": TH}
    ek, ak, nonce = b"\x30" * 300, b"\x00\x58" + b"a" * 88, os.urandom(16)
    reg_sid = m.derive_session_id(ek, ak, nonce)
    return [
        m.RegisterRequest(
            session_id=reg_sid,
            transcript=TH,
            ek_cert=ek,
            ak_public=ak,
            device_nonce=nonce,
            sho="sho-a",
        ),
        m.CredentialChallenge(**h, credential_blob=b"b" * 68, encrypted_secret=b"e" * 258),
        m.CredentialProof(**h, proof=os.urandom(32)),
        m.ValidationChallenge(**h, nonce=os.urandom(32), pcr_selection="sha256:0,1,2,16"),
        m.Evidence(
            **h,
            quote_msg=b"\xff\x54\x43\x47" + b"q" * 100,
            quote_sig=b"s" * 72,
            pcrs=bytes(64),
            pcrlist="sha256:0,1",
        ),
        m.PackageRequest(**h, srk_public=b"p" * 90, slot=3, counter=7),
        m.PackageRequest(
            **h, srk_public=b"p" * 90, slot=0, counter=0, certify_info=b"i", certify_sig=b"s"
        ),
        m.Receipt(
            **h,
            mid_id="abc123",
            sequence=8,
            event="install",
            evidence=(("state.attest", b"a"), ("state.sig", b"s")),
        ),
        m.LifecycleRequest(**h, mid_id="abc123", transition="pending"),
        m.Ack(**h, mid_id="abc123", state="ACTIVE"),
        m.AttachRequest(**h, imsi="001010000000001"),
        m.AuthChallenge(**h, rand=os.urandom(16), autn=os.urandom(16)),
        m.AuthResponse(**h, res=os.urandom(8)),
        m.AuthResponse(**h, auts=os.urandom(14)),
        m.AttachResult(**h, accepted=True, reason="authenticated", grant=os.urandom(32)),
        m.Error(**h, code="unknown-ca", reason="EK certificate does not chain"),
    ]


def signed_samples() -> list[m.SignedMessage]:
    h = {"session_id": SID, "transcript": TH}
    return [
        m.Verdict(
            **h,
            ak_name=b"\x00\x0b" + bytes(32),
            pcr_digest=bytes(32),
            pcr_selection="sha256:0",
            not_after=10,
        ),
        m.MidPackage(
            **h,
            mid_id="abc123",
            imsi="001010000000001",
            sho="sho-a",
            sequence=1,
            amf=b"\x80\x00",
            algorithm="milenage",
            policy=m.pairs({"kind": "use", "slot": 3, "pin": False}),
            names=m.pairs({"k": b"\x00\x0b" + bytes(32)}),
            not_after=99,
            package=b"{}" * 100,
        ),
        m.LifecycleCommand(**h, mid_id="abc123", transition="suspend", sequence=2),
        m.LifecycleOrder(**h, mid_id="abc123", transition="delete"),
    ]


@pytest.mark.parametrize("msg", samples(), ids=lambda x: type(x).__name__)
def test_round_trip(msg: m.Message) -> None:
    wire = m.encode(msg)
    assert m.decode(wire) == msg
    assert cbor2.dumps(cbor2.loads(wire), canonical=True) == wire  # deterministic


@pytest.mark.parametrize("msg", signed_samples(), ids=lambda x: type(x).__name__)
def test_signed_round_trip_and_verify(msg: m.SignedMessage) -> None:
    signed = m.sign(msg, PVA)
    wire = m.encode(signed)
    assert wire[:1] == b"\xd2"  # COSE_Sign1 tag 18
    back = m.decode(wire)
    assert back == signed and back.signer == "pva" and back.cose == wire
    m.verify_signature(back, PVA.public_key)
    with pytest.raises(SignatureInvalid):
        m.verify_signature(back, OTHER.public_key)


def test_signature_checks_the_signer_the_curve_and_the_cose_structure() -> None:
    verdict = m.decode(m.encode(m.sign(signed_samples()[0], PVA)))
    assert isinstance(verdict, m.Verdict)
    m.verify_signature(verdict, PVA.public_key)
    relabelled = dataclasses.replace(verdict, signer="dpf")  # kid in the header stays "pva"
    with pytest.raises(SignatureInvalid):
        m.verify_signature(relabelled, PVA.public_key)
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(SignatureInvalid):
        m.verify_signature(verdict, p384)
    truncated = dataclasses.replace(verdict, cose=verdict.cose[:-1])
    with pytest.raises(SignatureInvalid):
        m.verify_signature(truncated, PVA.public_key)
    r_zero = dataclasses.replace(verdict, cose=verdict.cose[:-64] + bytes(32) + verdict.cose[-32:])
    with pytest.raises(SignatureInvalid):
        m.verify_signature(r_zero, PVA.public_key)


def test_every_type_is_sampled() -> None:
    covered = {type(x).__name__ for x in samples() + signed_samples()}
    assert covered == set(m.MESSAGE_TYPES)


def test_tampered_signature_and_payload_are_refused() -> None:
    verdict = m.decode(m.encode(m.sign(signed_samples()[0], PVA)))
    assert isinstance(verdict, m.Verdict)
    wire = bytearray(verdict.cose)
    wire[-1] ^= 1  # signature
    flipped = m.decode(bytes(wire))
    assert isinstance(flipped, m.Verdict)
    with pytest.raises(SignatureInvalid):
        m.verify_signature(flipped, PVA.public_key)
    item = cbor2.loads(verdict.cose)  # payload changed, signature kept
    env = cbor2.loads(item.value[2])
    env["b"]["not_after"] = 10**9
    item.value[2] = cbor2.dumps(env, canonical=True)
    forged = m.decode(cbor2.dumps(item, canonical=True))
    assert isinstance(forged, m.Verdict) and forged.not_after == 10**9
    with pytest.raises(SignatureInvalid):
        m.verify_signature(forged, PVA.public_key)


def test_signed_types_must_be_signed_and_unchanged() -> None:
    verdict = signed_samples()[0]
    with pytest.raises(LocalProtocolError, match="must be signed"):
        m.encode(verdict)
    signed = m.sign(verdict, PVA)
    with pytest.raises(LocalProtocolError, match="changed after"):
        m.encode(dataclasses.replace(signed, not_after=11))
    for signer in ("dpf", "PVA", ""):  # another key's name, not a name, none
        with pytest.raises(LocalProtocolError, match="changed after"):
            m.encode(dataclasses.replace(signed, signer=signer))
    assert m.encode(signed) == signed.cose
    assert m.decode(signed.cose) == signed and m.decode(signed.cose).signer == PVA.name
    with pytest.raises(RemoteProtocolError, match="COSE_Sign1"):  # a signed type sent bare
        m.decode(m._envelope(verdict))
    with pytest.raises(LocalProtocolError):
        m.sign(samples()[1], PVA)  # CredentialChallenge is not a signed type


def _env(msg: m.Message) -> dict:
    return cbor2.loads(m.encode(msg))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.update(v=2),
        lambda e: e.update(v=True),
        lambda e: e.update(t="Nonsense"),
        lambda e: e.update(t=7),
        lambda e: e.update(sid=b"short"),
        lambda e: e.update(th="text"),
        lambda e: e.pop("b"),
        lambda e: e.update(extra=1),
        lambda e: e["b"].update(extra=b""),
        lambda e: e["b"].pop("proof"),
        lambda e: e["b"].update(proof="not bytes"),
        lambda e: e["b"].update(proof=b"\x00" * 31),
    ],
    ids=lambda f: f.__code__.co_consts[-1] if f.__code__.co_consts else "mutation",
)
def test_malformed_envelopes(mutate: object) -> None:
    env = _env(samples()[2])  # CredentialProof
    mutate(env)  # type: ignore[operator]
    with pytest.raises(RemoteProtocolError):
        m.decode(cbor2.dumps(env, canonical=True))


def test_non_canonical_and_trailing_bytes_are_refused() -> None:
    wire = m.encode(samples()[2])
    with pytest.raises(RemoteProtocolError, match="deterministic"):
        m.decode(wire + b"\x00")
    unsorted = cbor2.dumps(dict(reversed(list(cbor2.loads(wire).items()))))
    assert unsorted != wire
    with pytest.raises(RemoteProtocolError, match="deterministic"):
        m.decode(unsorted)
    with pytest.raises(RemoteProtocolError, match="at most"):
        m.decode(b"\x00" * (m.MAX_MESSAGE + 1))


def test_register_request_session_id_is_derived() -> None:
    reg = samples()[0]
    env = _env(reg)
    env["sid"] = os.urandom(32)
    with pytest.raises(RemoteProtocolError, match="H\\(EK"):
        m.decode(cbor2.dumps(env, canonical=True))


def test_cose_structure_is_strict() -> None:
    signed = m.sign(signed_samples()[2], PVA)
    item = cbor2.loads(signed.cose)
    for index, value in ((1, {4: b"pva"}), (3, b"short"), (0, cbor2.dumps({1: -35, 4: b"pva"}))):
        bad = cbor2.CBORTag(18, list(item.value))
        bad.value[index] = value
        with pytest.raises(RemoteProtocolError):
            m.decode(cbor2.dumps(bad, canonical=True))
    wrapped_unsigned = cbor2.CBORTag(18, [item.value[0], {}, m.encode(samples()[2]), item.value[3]])
    with pytest.raises(RemoteProtocolError, match="COSE_Sign1"):
        m.decode(cbor2.dumps(wrapped_unsigned, canonical=True))


def test_field_checks_are_local_errors() -> None:
    with pytest.raises(LocalProtocolError):
        m.AuthResponse(session_id=SID, transcript=TH, res=b"12345678", auts=bytes(14))
    with pytest.raises(LocalProtocolError):
        m.ValidationChallenge(
            session_id=SID, transcript=TH, nonce=bytes(32), pcr_selection="sha256:2,1"
        )
    with pytest.raises(LocalProtocolError):
        m.Ack(session_id=SID, transcript=TH, mid_id="Bad Id", state="ACTIVE")
    with pytest.raises(LocalProtocolError):
        m.PackageRequest(session_id=SID, transcript=TH, srk_public=b"p", slot=1, counter=True)


def test_secrets_stay_out_of_reprs() -> None:
    res = os.urandom(8)
    assert res.hex() not in repr(m.AuthResponse(session_id=SID, transcript=TH, res=res))
    assert "hidden" in repr(PVA)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_escape_as_other_errors(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        m.decode(data)


_ORIGINAL = m.encode(m.sign(signed_samples()[1], PVA))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(_ORIGINAL) - 1), st.integers(0, 255))
def test_flipped_byte_of_a_signed_message_never_verifies(position: int, value: int) -> None:
    wire = bytearray(_ORIGINAL)
    wire[position] = value
    if bytes(wire) == _ORIGINAL:
        return
    try:
        msg = m.decode(bytes(wire))
    except RemoteProtocolError:
        return
    assert isinstance(msg, m.SignedMessage)
    with pytest.raises(SignatureInvalid):
        m.verify_signature(msg, PVA.public_key)


@pytest.mark.parametrize("msg", signed_samples(), ids=lambda x: type(x).__name__)
def test_signed_wire_is_what_a_cose_library_makes(msg: m.SignedMessage) -> None:
    """The direct COSE_Sign1 has cwt's structure byte for byte (ECDSA's randomness aside),
    and cwt verifies it."""
    from cryptography.hazmat.primitives import serialization
    from cwt import COSE, COSEKey

    ours = cbor2.loads(m.sign(msg, PVA).cose)
    payload = ours.value[2]
    theirs = cbor2.loads(
        COSE.new().encode_and_sign(
            payload, PVA.cose_key(), protected={1: -7, 4: b"pva"}, unprotected={}
        )
    )
    assert ours.tag == theirs.tag == 18
    assert ours.value[:3] == theirs.value[:3] and len(ours.value[3]) == 64
    pem = PVA.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = COSEKey.from_pem(pem, alg="ES256", kid="pva")
    assert COSE.new().decode(cbor2.dumps(ours), public) == payload
