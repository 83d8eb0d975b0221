"""Provisioning messages (deterministic CBOR, RFC 8949 §4.2) and their COSE_Sign1/ES256
signatures (RFC 9052): decoding raises only RemoteProtocolError (or another typed error), a
decoded message re-encodes to the same bytes, and a signed message that verifies under the
signer's key is byte for byte one the signer made."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from cryptography.hazmat.primitives.asymmetric import ec

from protocol import messages as m
from tests.fuzz.oracle import typed

KEY = m.SigningKey("pva", ec.derive_private_key(0x5EED_F022, ec.SECP256R1()))
SID, TH = bytes(range(32)), bytes(range(32, 64))


def _samples() -> list[m.Message]:
    h = {"session_id": SID, "transcript": TH}
    ek, ak, nonce = b"\x30" * 60, b"\x00\x58" + b"a" * 88, bytes(16)
    return [
        m.RegisterRequest(
            session_id=m.derive_session_id(ek, ak, nonce),
            transcript=TH,
            ek_cert=ek,
            ak_public=ak,
            device_nonce=nonce,
            sho="sho-a",
        ),
        m.CredentialChallenge(**h, credential_blob=b"b" * 68, encrypted_secret=b"e" * 64),
        m.CredentialProof(**h, proof=bytes(32)),
        m.ValidationChallenge(**h, nonce=bytes(32), pcr_selection="sha256:0,1,2,16"),
        m.Evidence(
            **h,
            quote_msg=b"\xffTCG" + b"q" * 40,
            quote_sig=b"s" * 72,
            pcrs=bytes(64),
            pcrlist="sha256:0,1",
        ),
        m.PackageRequest(**h, srk_public=b"p" * 90, slot=3, counter=7),
        m.Receipt(
            **h, mid_id="abc123", sequence=8, event="install", evidence=(("state.sig", b"s"),)
        ),
        m.LifecycleRequest(**h, mid_id="abc123", transition="pending"),
        m.Ack(**h, mid_id="abc123", state="ACTIVE"),
        m.AttachRequest(**h, imsi="001010000000001"),
        m.AuthChallenge(**h, rand=bytes(16), autn=bytes(16)),
        m.AuthResponse(**h, res=bytes(8)),
        m.AttachResult(**h, accepted=True, reason="authenticated", grant=bytes(32)),
        m.Error(**h, code="unknown-ca", reason="EK certificate does not chain"),
    ]


def _signed() -> list[m.SignedMessage]:
    h = {"session_id": SID, "transcript": TH}
    unsigned: list[m.SignedMessage] = [
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
            package=b"{}",
        ),
        m.LifecycleCommand(**h, mid_id="abc123", transition="suspend", sequence=2),
        m.LifecycleOrder(**h, mid_id="abc123", transition="delete"),
    ]
    return [m.sign(msg, KEY) for msg in unsigned]


SIGNED = _signed()
GENUINE = [dataclasses.replace(msg, cose=b"") for msg in SIGNED]  # ES256 signs with a fresh k


def test_one_input(data: bytes) -> None:
    msg = typed(m.decode, data)
    if isinstance(msg, Exception):
        return
    assert m.encode(msg) == data, "a decoded message does not re-encode to its bytes"
    if isinstance(msg, m.SignedMessage):
        verified = typed(m.verify_signature, msg, KEY.public_key)
        if not isinstance(verified, Exception):
            assert dataclasses.replace(msg, cose=b"") in GENUINE, "a modified message verified"


def starting_inputs() -> Iterator[bytes]:
    for msg in _samples():
        yield m.encode(msg)
    for signed in SIGNED:
        yield m.encode(signed)
