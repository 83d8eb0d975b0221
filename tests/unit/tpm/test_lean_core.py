"""The lean session layer's pure core: KDFa/KDFe against tpm2-pytss's own (independent)
implementation, the salt against the TPM-side computation, and the wire rules of
:mod:`tpm.lean` on hand-made responses (the TPM-side cross-checks run in
tests/integration/test_tpm_lean.py on swtpm)."""

from __future__ import annotations

import os
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from tpm2_pytss.constants import TPM2_ALG
from tpm2_pytss.internal.crypto import _kdfa, kdfe

from tpm import lean
from tpm import session_crypto as sc
from trelab.errors import BadInput, RemoteProtocolError

_bytes = st.binary(min_size=0, max_size=64)


@settings(max_examples=60, deadline=None)
@given(key=st.binary(min_size=1, max_size=64), label=st.sampled_from([b"ATH", b"CFB", b"XYZ"]),
       u=_bytes, v=_bytes, words=st.integers(min_value=1, max_value=24))  # fmt: skip
def test_kdfa_matches_tpm2_pytss(key: bytes, label: bytes, u: bytes, v: bytes, words: int) -> None:
    bits = words * 32
    ours = sc.kdfa(sc.ALG_SHA256, key, label, u, v, bits)
    theirs = _kdfa(TPM2_ALG.SHA256, key, label, u, v, bits)
    assert ours == theirs and len(ours) == bits // 8


@settings(max_examples=60, deadline=None)
@given(z=st.binary(min_size=1, max_size=66), u=_bytes, v=_bytes,
       words=st.integers(min_value=1, max_value=24))  # fmt: skip
def test_kdfe_matches_tpm2_pytss(z: bytes, u: bytes, v: bytes, words: int) -> None:
    bits = words * 32
    assert sc.kdfe(sc.ALG_SHA256, z, b"SECRET", u, v, bits) == kdfe(
        TPM2_ALG.SHA256, z, b"SECRET\x00", u, v, bits
    )


@settings(max_examples=40, deadline=None)
@given(key=st.binary(min_size=1, max_size=64), newer=_bytes, older=_bytes, data=_bytes)
def test_the_keyed_hot_path_is_kdfa_and_hmac(
    key: bytes, newer: bytes, older: bytes, data: bytes
) -> None:
    """The one-update MAC and the CFB key material the layer computes per command are the
    HMAC and the KDFa of tpm2-pytss's independent implementation."""
    keyed = sc.KeyedHmac(sc.ALG_SHA256, key)
    assert keyed.cfb_material(newer, older) == _kdfa(
        TPM2_ALG.SHA256, key, b"CFB", newer, older, 256
    )
    assert (
        keyed.mac1(data + newer)
        == keyed.mac(data, newer)
        == sc._hmac(sc.ALG_SHA256, key, data, newer)
    )


def test_kdf_lengths_are_checked() -> None:
    with pytest.raises(BadInput):
        sc.kdfa(sc.ALG_SHA256, b"k", b"ATH", b"", b"", 12)
    with pytest.raises(BadInput):
        sc.kdfe(sc.ALG_SHA256, b"z", b"SECRET", b"", b"", 0)
    with pytest.raises(BadInput, match="SHA-256"):
        sc.digest(0x0004, b"x")


def test_ecc_salt_is_what_the_tpm_derives_with_its_private_key() -> None:
    tpm_key = ec.generate_private_key(ec.SECP256R1())
    numbers = tpm_key.public_key().public_numbers()
    x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
    salt, secret = sc.encrypt_salt(sc.EccSaltKey(ec.SECP256R1(), x, y))
    # the TPM side: Qe from the TPMS_ECC_POINT, Z = (d·Qe).x, KDFe as Part 1 C.6.4
    ex, offset = lean.parse_tpm2b(secret, 0)
    ey, end = lean.parse_tpm2b(secret, offset)
    assert end == len(secret)
    qe = ec.EllipticCurvePublicNumbers(
        int.from_bytes(ex, "big"), int.from_bytes(ey, "big"), ec.SECP256R1()
    ).public_key()
    z = tpm_key.exchange(ec.ECDH(), qe)
    assert salt == kdfe(TPM2_ALG.SHA256, z, b"SECRET\x00", ex, x, 256)
    assert salt not in secret  # only the ephemeral point travels


def test_rsa_salt_decrypts_with_the_secret_label() -> None:
    tpm_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    salt, secret = sc.encrypt_salt(sc.RsaSaltKey(tpm_key.public_key()))
    oaep = padding.OAEP(
        mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=b"SECRET\x00"
    )
    assert tpm_key.decrypt(secret, oaep) == salt and len(salt) == 32


def _session(kind: str = "hmac") -> lean.Session:
    return lean.Session(
        handle=0x02000000,
        kind=kind,  # type: ignore[arg-type]
        key=os.urandom(32),
        nonce_tpm=os.urandom(32),
        symmetric=True,
    )


def _tpm_response(
    session: lean.Session,
    code: int,
    params: bytes,
    nonce_caller: bytes,
    *,
    auth_value: bytes = b"",
    encrypt: bool = False,
) -> tuple[bytes, bytes]:
    """What a TPM would answer (Part 1 §19.6.16, §21.3): the layer's own helpers are not used
    for the response side, only the spec's formulas through session_crypto's primitives."""
    new_nonce = os.urandom(32)
    attrs = lean.CONTINUE | (lean.ENCRYPT if encrypt else 0)
    if encrypt:
        payload, end = lean.parse_tpm2b(params, 0)
        key, iv = sc.cfb_key(sc.ALG_SHA256, session.key + auth_value, new_nonce, nonce_caller)
        params = params[:2] + sc.encrypt_cfb(key, iv, payload) + params[end:]
    rphash = sc.digest(sc.ALG_SHA256, struct.pack(">II", 0, code), params)
    mac = sc._hmac(
        sc.ALG_SHA256, session.key + auth_value, rphash, new_nonce, nonce_caller, bytes([attrs])
    )
    body = struct.pack(">I", len(params)) + params + lean.tpm2b(new_nonce) + bytes([attrs])
    body += lean.tpm2b(mac)
    return struct.pack(">HII", lean.ST_SESSIONS, 10 + len(body), 0) + body, new_nonce


def test_response_is_checked_then_nonce_rolls_then_first_parameter_decrypted() -> None:
    session = _session()
    before = session.nonce_tpm
    params = lean.encrypt_decrypt2_params(b"A" * 16, decrypt=False, mode=0x44, iv=b"")
    command, pending = lean.wrap(
        lean.CC.ENCRYPT_DECRYPT_2, [0x80000001], [b"\x00\x0b" + b"n" * 32], params,
        [lean.Auth(session, decrypt=True, encrypt=True)],
    )  # fmt: skip
    assert b"A" * 16 not in command  # inData went out encrypted
    out = lean.tpm2b(b"B" * 16) + lean.tpm2b(b"I" * 16)
    response, new_nonce = _tpm_response(
        session, lean.CC.ENCRYPT_DECRYPT_2, out, pending.nonces[0], encrypt=True
    )
    assert b"B" * 16 not in response
    _, got = pending.unwrap(response)
    assert lean.encrypt_decrypt2_result(got) == (b"B" * 16, b"I" * 16)  # ivOut left alone
    assert session.nonce_tpm == new_nonce != before and session.uses == 1


@pytest.mark.parametrize("where", ["hmac", "params", "nonce"])
def test_a_tampered_response_is_refused_and_breaks_the_session(where: str) -> None:
    session = _session()
    before = session.nonce_tpm
    _command, pending = lean.wrap(
        lean.CC.UNSEAL, [0x80000001], [b"\x00\x0b" + b"n" * 32], b"", [lean.Auth(session)]
    )
    response, _ = _tpm_response(session, lean.CC.UNSEAL, lean.tpm2b(b"secret"), pending.nonces[0])
    spot = {"hmac": len(response) - 1, "params": 16, "nonce": 10 + 4 + 8 + 3}[where]
    tampered = bytearray(response)
    tampered[spot] ^= 0x01
    with pytest.raises(lean.ResponseAuthFailed):
        pending.unwrap(bytes(tampered))
    assert session.broken and session.nonce_tpm == before  # no roll on failure
    with pytest.raises(BadInput, match="flush it"):
        lean.wrap(lean.CC.UNSEAL, [0x80000001], [b"x"], b"", [lean.Auth(session)])


def test_a_tpm_side_hmac_failure_breaks_the_session_and_other_errors_do_not() -> None:
    session = _session()
    _, pending = lean.wrap(lean.CC.UNSEAL, [1], [b"x"], b"", [lean.Auth(session)])
    with pytest.raises(lean.TpmRefused) as refused:
        pending.unwrap(struct.pack(">HII", lean.ST_NO_SESSIONS, 10, 0x98E))
    assert refused.value.base == 0x8E and session.broken
    other = _session()
    _, pending = lean.wrap(lean.CC.UNSEAL, [1], [b"x"], b"", [lean.Auth(other)])
    with pytest.raises(lean.TpmRefused):
        pending.unwrap(struct.pack(">HII", lean.ST_NO_SESSIONS, 10, 0x99D))  # POLICY_FAIL
    assert not other.broken


def test_malformed_responses_are_protocol_errors() -> None:
    session = _session()
    _, pending = lean.wrap(lean.CC.UNSEAL, [1], [b"x"], b"", [lean.Auth(session)])
    with pytest.raises(RemoteProtocolError):
        pending.unwrap(b"\x80\x02\x00\x00")
    with pytest.raises(RemoteProtocolError):
        pending.unwrap(struct.pack(">HII", lean.ST_SESSIONS, 99, 0))
    with pytest.raises(RemoteProtocolError):
        pending.unwrap(struct.pack(">HIII", lean.ST_SESSIONS, 14, 0, 50))


def test_policy_session_keys_with_auth_value_only_after_policy_auth_value() -> None:
    session = _session("policy")
    assert session.hmac_key(b"pin") == (session.key, b"")
    session.policy_auth_value()
    assert session.hmac_key(b"pin") == (session.key, b"pin")
    with pytest.raises(BadInput):
        _session("hmac").policy_auth_value()


def test_only_the_first_parameter_is_encrypted_and_only_as_a_tpm2b() -> None:
    session = _session()
    iv = b"V" * 16
    params = lean.encrypt_decrypt2_params(b"D" * 32, decrypt=True, mode=0x43, iv=iv)
    command, _ = lean.wrap(
        lean.CC.ENCRYPT_DECRYPT_2, [1], [b"x"], params, [lean.Auth(session, decrypt=True)]
    )
    assert b"D" * 32 not in command
    assert command.endswith(b"\x01\x00\x43" + lean.tpm2b(iv))  # decrypt flag, mode, ivIn clear
    clear = lean._crypt_first(params, _session(), b"", b"n", b"m", True)
    assert len(clear) == len(params)
    unsymmetric = lean.Session(1, "hmac", b"k", b"n", symmetric=False)
    with pytest.raises(BadInput, match="AES-128-CFB"):
        lean.wrap(lean.CC.UNSEAL, [1], [b"x"], lean.tpm2b(b"p"),
                  [lean.Auth(unsymmetric, decrypt=True)])  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=80),
    out=st.binary(min_size=0, max_size=80),
    kind=st.sampled_from(["hmac", "policy"]),
    protect=st.booleans(),
    last=st.booleans(),
    auth_value=st.binary(max_size=8),
)
def test_the_one_authorisation_path_is_the_general_path(
    data: bytes, out: bytes, kind: str, protect: bool, last: bool, auth_value: bytes
) -> None:
    """A command with one authorisation goes out as the same bytes on the straight path and
    the general one (nonceCaller pinned), and their checks of the TPM's answer, tampered or
    not, agree: same parameters, same nonce roll, same refusals."""
    first, second = _session(kind), _session(kind)
    second.key, second.nonce_tpm = first.key, first.nonce_tpm
    nonce = os.urandom(32)
    params = lean.tpm2b(data) + b"\x00\x42"
    handles, names = [0x80000001], [b"\x00\x0b" + bytes(32)]
    command: list[bytes] = []
    pendings: list[lean.Pending] = []
    for session, wrap in ((first, lean.wrap), (second, lean._wrap_general)):
        auth = lean.Auth(session, auth_value, decrypt=protect, encrypt=protect, last_use=last)
        sent, pending = wrap(lean.CC.HMAC, handles, names, params, [auth], response_handles=0,
                             nonce=nonce)  # fmt: skip
        command.append(sent)
        pendings.append(pending)
    assert command[0] == command[1] and pendings[0].single and not pendings[1].single
    value = auth_value.rstrip(b"\x00") if kind == "hmac" else b""
    response, new_nonce = _tpm_response(
        first, lean.CC.HMAC, lean.tpm2b(out), nonce, auth_value=value, encrypt=protect
    )
    if last:  # continueSession as the command asked
        response = response[:-35] + bytes([response[-35] & ~lean.CONTINUE]) + response[-34:]
        response = _remac(first, response, value, nonce)
    for spot in (None, len(response) - 1, 16, 30):
        results = []
        for session, pending in zip((first, second), pendings, strict=True):
            before = session.nonce_tpm
            tampered = bytearray(response)
            if spot is not None:
                tampered[spot] ^= 0x01
            try:
                results.append(("ok", pending.unwrap(bytes(tampered)), session.nonce_tpm,
                                session.ended))  # fmt: skip
            except (lean.ResponseAuthFailed, RemoteProtocolError) as exc:
                results.append((type(exc).__name__, None, session.nonce_tpm == before,
                                session.broken))  # fmt: skip
            session.nonce_tpm, session.broken, session.ended = before, False, False
        assert results[0] == results[1]
        if spot is None:
            assert results[0][1] == ([], lean.tpm2b(out)) and results[0][2] == new_nonce
            assert results[0][3] == last


def _remac(session: lean.Session, response: bytes, auth_value: bytes, nonce: bytes) -> bytes:
    """``response`` (one session, its HMAC last) with its HMAC computed again."""
    (size,) = struct.unpack_from(">I", response, 10)
    params = response[14 : 14 + size]
    new_nonce = response[14 + size + 2 : 14 + size + 34]
    attrs = response[-35]
    rphash = sc.digest(sc.ALG_SHA256, struct.pack(">II", 0, lean.CC.HMAC), params)
    mac = sc._hmac(
        sc.ALG_SHA256, session.key + auth_value, rphash, new_nonce, nonce, bytes([attrs])
    )
    return response[:-32] + mac
