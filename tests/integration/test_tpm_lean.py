"""The lean TPM session layer against a real swtpm, ESYS on the same TPM as the cross-check:
each command both ways with equal results (hypothesis over random inputs), salted sessions to
ECC and RSA keys, the wire showing no protected parameter, tampered command and response
HMACs refused, nonces rolling (a replayed command is refused), PolicyAuthValue and an HMAC
session keyed with the entity's authValue.

The swtpm is this module's own (``private_swtpm``), not the shared lab: the tests keep keys
loaded. A MID's AKA on both layers: tests/integration/test_tpm_lean_mid.py.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tpm2_pytss import (
    TPM2B_DIGEST,
    TPM2B_IV,
    TPM2B_MAX_BUFFER,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
)
from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPMA_OBJECT

from tpm import lean
from tpm import lean_commands as lc
from tpm.connection import TpmConnection
from tpm.lean_commands import LeanObject
from trelab.errors import BadInput

pytestmark = pytest.mark.lab

_STORAGE = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.NODA
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.DECRYPT
)
_AES = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.NODA
    | TPMA_OBJECT.DECRYPT
    | TPMA_OBJECT.SIGN_ENCRYPT
)


#: TPM_RC_AUTH_FAIL (DA-protected object) / TPM_RC_BAD_AUTH (noDA object): HMAC wrong
_HMAC_REFUSED = {0x8E, 0xA2}


@pytest.fixture(scope="module")
def conn(private_swtpm: str) -> Iterator[TpmConnection]:
    with TpmConnection(private_swtpm) as c:
        yield c


@pytest.fixture(scope="module", params=["ecc", "rsa"])
def parent(request: pytest.FixtureRequest, conn: TpmConnection) -> Iterator[tuple[Any, Any]]:
    kind = "ecc256:aes128cfb" if request.param == "ecc" else "rsa2048:aes128cfb"
    template = TPM2B_PUBLIC.parse(kind, objectAttributes=_STORAGE)
    handle, public, *_ = conn.esys.create_primary(
        TPM2B_SENSITIVE_CREATE(), template, primary_handle=ESYS_TR.OWNER
    )
    yield handle, public
    conn.flush(handle)


def _child(
    conn: TpmConnection,
    parent: Any,
    scheme: str,
    attrs: Any,
    *,
    data: bytes = b"",
    auth: bytes = b"",
    policy: bytes = b"",
) -> tuple[Any, Any, Any]:
    sensitive = TPM2B_SENSITIVE_CREATE()
    if data:
        sensitive.sensitive.data = data
    if auth:
        sensitive.sensitive.userAuth = auth
    template = TPM2B_PUBLIC.parse(scheme, objectAttributes=attrs)
    if policy:
        template.publicArea.authPolicy = TPM2B_DIGEST(policy)
    private, public, *_ = conn.esys.create(parent, sensitive, template)
    return conn.esys.load(parent, private, public), private, public


@pytest.fixture(scope="module")
def aes_key(conn: TpmConnection, parent: tuple[Any, Any]) -> Iterator[tuple[Any, bytes]]:
    k = os.urandom(16)
    scheme = "aes128"
    handle, _, _ = _child(
        conn, parent[0], scheme, _AES | TPMA_OBJECT.USERWITHAUTH, data=k
    )  # fmt: skip
    yield handle, k
    conn.flush(handle)


@pytest.fixture
def salted(conn: TpmConnection, parent: tuple[Any, Any]) -> Iterator[lean.Session]:
    handle = int(conn.esys.tr_get_tpm_handle(parent[0]))
    with lc.session(conn, kind="hmac", salt_to=(handle, parent[1])) as s:
        yield s


def _software(k: bytes, mode: str, iv: bytes, data: bytes, decrypt: bool) -> bytes:
    chosen = modes.ECB() if mode == "ecb" else CFB(iv)
    cipher = Cipher(algorithms.AES(k), chosen)
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx.update(data) + ctx.finalize()


@settings(
    max_examples=20, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)  # fmt: skip
@given(
    blocks=st.integers(min_value=1, max_value=64),
    mode=st.sampled_from(["ecb", "cfb"]),
    decrypt=st.booleans(),
    seed=st.binary(min_size=16, max_size=16),
)
def test_encrypt_decrypt2_lean_equals_esys_and_software(
    conn: TpmConnection,
    parent: tuple[Any, Any],
    aes_key: tuple[Any, bytes],
    blocks: int,
    mode: str,
    decrypt: bool,
    seed: bytes,
) -> None:
    handle, k = aes_key
    data = hashlib.shake_256(seed).digest(16 * blocks)
    iv = b"" if mode == "ecb" else seed
    alg = TPM2_ALG.ECB if mode == "ecb" else TPM2_ALG.CFB
    key = LeanObject.from_esys(conn, handle)
    ppub = parent[1]
    with lc.session(
        conn, kind="hmac", salt_to=(int(conn.esys.tr_get_tpm_handle(parent[0])), ppub)
    ) as s:
        ours = lc.encrypt_decrypt2(
            conn, key, data, decrypt=decrypt, mode=int(alg), iv=iv, session=s
        )  # fmt: skip
        assert s.uses == 1 and not s.broken
    esys_iv = TPM2B_IV(iv) if iv else TPM2B_IV()
    theirs, _ = conn.esys.encrypt_decrypt_2(handle, decrypt, alg, esys_iv, TPM2B_MAX_BUFFER(data))
    assert ours == bytes(theirs) == _software(k, mode, iv, data, decrypt)


def test_protected_parameters_never_cross_the_wire_in_clear(
    conn: TpmConnection, aes_key: tuple[Any, bytes], salted: lean.Session
) -> None:
    handle, k = aes_key
    key = LeanObject.from_esys(conn, handle)
    data = os.urandom(32)
    expected = _software(k, "ecb", b"", data, False)
    params = lean.encrypt_decrypt2_params(data, decrypt=False, mode=int(TPM2_ALG.ECB), iv=b"")
    auth = lean.Auth(salted, decrypt=True, encrypt=True)
    command, pending = lean.wrap(
        lean.CC.ENCRYPT_DECRYPT_2, [key.handle], [key.name], params, [auth]
    )
    response = conn.transport.execute(command)
    assert data not in command and expected not in response
    assert data[:16] not in command and expected[:16] not in response
    _, out = pending.unwrap(response)
    assert lean.encrypt_decrypt2_result(out)[0] == expected


def test_a_replayed_command_is_refused_because_the_nonce_rolled(
    conn: TpmConnection, aes_key: tuple[Any, bytes], salted: lean.Session
) -> None:
    key = LeanObject.from_esys(conn, aes_key[0])
    params = lean.encrypt_decrypt2_params(
        os.urandom(16), decrypt=False, mode=int(TPM2_ALG.ECB), iv=b""
    )
    command, pending = lean.wrap(
        lean.CC.ENCRYPT_DECRYPT_2, [key.handle], [key.name], params, [lean.Auth(salted)]
    )
    first_nonce = salted.nonce_tpm
    pending.unwrap(conn.transport.execute(command))
    assert salted.nonce_tpm != first_nonce
    replay = conn.transport.execute(command)
    rc = struct.unpack_from(">I", replay, 6)[0]
    assert rc & 0xBF in _HMAC_REFUSED  # the HMAC was over the old nonceTPM


def test_a_tampered_command_hmac_is_refused_by_the_tpm(
    conn: TpmConnection, parent: tuple[Any, Any], salted: lean.Session
) -> None:
    secret = os.urandom(24)
    handle, _, _ = _child(conn, parent[0], "keyedhash", TPMA_OBJECT.FIXEDTPM
                          | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.USERWITHAUTH
                          | TPMA_OBJECT.NODA, data=secret)  # fmt: skip
    try:
        item = LeanObject.from_esys(conn, handle)
        command, pending = lean.wrap(
            lean.CC.UNSEAL, [item.handle], [item.name], b"", [lean.Auth(salted, encrypt=True)]
        )
        tampered = bytearray(command)
        tampered[-1] ^= 0x01  # Unseal has no parameters: the HMAC ends the command
        with pytest.raises(lean.TpmRefused) as refused:
            pending.unwrap(conn.transport.execute(bytes(tampered)))
        assert refused.value.base in _HMAC_REFUSED and salted.broken
        with pytest.raises(lean.BadInput, match="flush it"):
            lc.unseal(conn, item, session=salted)
        # flush and restart: a fresh salted session works
        with lc.session(
            conn, kind="hmac", salt_to=(int(conn.esys.tr_get_tpm_handle(parent[0])), parent[1])
        ) as fresh:
            assert lc.unseal(conn, item, session=fresh) == secret
    finally:
        conn.flush(handle)


def test_a_tampered_response_is_refused_and_nothing_of_it_used(
    conn: TpmConnection, parent: tuple[Any, Any], salted: lean.Session
) -> None:
    secret = os.urandom(24)
    handle, _, _ = _child(conn, parent[0], "keyedhash", TPMA_OBJECT.FIXEDTPM
                          | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.USERWITHAUTH
                          | TPMA_OBJECT.NODA, data=secret)  # fmt: skip
    try:
        item = LeanObject.from_esys(conn, handle)
        for spot in ("hmac", "data"):
            with lc.session(
                conn, kind="hmac", salt_to=(int(conn.esys.tr_get_tpm_handle(parent[0])), parent[1])
            ) as s:
                before = s.nonce_tpm
                command, pending = lean.wrap(
                    lean.CC.UNSEAL, [item.handle], [item.name], b"", [lean.Auth(s, encrypt=True)]
                )
                response = bytearray(conn.transport.execute(command))
                assert secret not in response  # encrypted on the wire
                response[-1 if spot == "hmac" else 16] ^= 0x01
                with pytest.raises(lean.ResponseAuthFailed):
                    pending.unwrap(bytes(response))
                assert s.broken and s.nonce_tpm == before
        # the unsalted ESYS cross-check of the same object
        assert bytes(conn.esys.unseal(handle)) == secret
    finally:
        conn.flush(handle)


def test_unseal_and_load_match_esys(
    conn: TpmConnection, parent: tuple[Any, Any], salted: lean.Session
) -> None:
    secret = os.urandom(32)
    attrs = (
        TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.NODA
    )
    handle, private, public = _child(conn, parent[0], "keyedhash", attrs, data=secret)
    esys_name = bytes(conn.esys.tr_get_name(handle).marshal())[2:]
    conn.flush(handle)
    ppub_parent = LeanObject.from_esys(conn, parent[0])
    loaded = lc.load(
        conn, ppub_parent, bytes(private.marshal()), bytes(public.marshal()), session=None
    )
    try:
        assert loaded.name == esys_name
        assert lc.unseal(conn, loaded, session=salted) == secret
    finally:
        lc.flush_object(conn, loaded.handle)
    # Load authorised in the salted HMAC session (parent's empty authValue)
    loaded = lc.load(
        conn, ppub_parent, bytes(private.marshal()), bytes(public.marshal()), session=salted
    )
    lc.flush_object(conn, loaded.handle)


def test_a_last_use_ends_the_session_in_the_tpm(
    conn: TpmConnection, parent: tuple[Any, Any]
) -> None:
    """Load with continueSession clear: the TPM flushes the session after the command, the
    layer refuses to use it again and sends no FlushContext for it."""
    from tpm.tss import TPM2_CAP

    attrs = (
        TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.NODA
    )
    handle, private, public = _child(conn, parent[0], "keyedhash", attrs, data=b"x")
    conn.flush(handle)
    ppub_parent = LeanObject.from_esys(conn, parent[0])
    salt_handle = int(conn.esys.tr_get_tpm_handle(parent[0]))

    def loaded_sessions() -> set[int]:  # loaded or saved (a resource manager saves them)
        found: set[int] = set()
        for first in (0x02000000, 0x03000000):
            _, caps = conn.esys.get_capability(TPM2_CAP.HANDLES, first, 64)
            found |= {int(h) for h in caps.data.handles}
        return found

    s = lc.start_session(conn, kind="hmac", salt_to=(salt_handle, parent[1]))
    assert s.handle in loaded_sessions()
    loaded = lc.load(
        conn, ppub_parent, bytes(private.marshal()), bytes(public.marshal()), session=s,
        last_use=True,
    )  # fmt: skip
    lc.flush_object(conn, loaded.handle)
    assert s.ended and s.handle not in loaded_sessions()
    with pytest.raises(BadInput):
        lc.unseal(conn, loaded, session=s)
    sent: list[int] = []
    with conn.transport.observe(lambda event: sent.append(event.code)):
        lc.flush_session(conn, s)
    assert sent == []


def _policy_digest(*steps: bytes) -> bytes:
    digest = bytes(32)
    for step in steps:
        digest = hashlib.sha256(digest + step).digest()
    return digest


def test_policy_auth_value_keys_the_hmac_with_the_pin(
    conn: TpmConnection, parent: tuple[Any, Any]
) -> None:
    pin, k = b"2468", os.urandom(16)
    policy = _policy_digest(
        struct.pack(">I", lean.CC.POLICY_AUTH_VALUE),
        struct.pack(">II", lean.CC.POLICY_COMMAND_CODE, lean.CC.ENCRYPT_DECRYPT_2),
    )
    handle, _, _ = _child(conn, parent[0], "aes128", _AES, data=k, auth=pin, policy=policy)
    salt_to = (int(conn.esys.tr_get_tpm_handle(parent[0])), parent[1])
    data = os.urandom(16)
    try:
        for given_pin, ok in ((pin, True), (b"1111", False)):
            key = LeanObject.from_esys(conn, handle, given_pin)
            with lc.session(conn, kind="policy", salt_to=salt_to) as s:
                lc.policy_auth_value(conn, s)
                lc.policy_command_code(conn, s, lean.CC.ENCRYPT_DECRYPT_2)
                if ok:
                    out = lc.encrypt_decrypt2(
                        conn, key, data, decrypt=False, mode=int(TPM2_ALG.ECB), iv=b"", session=s
                    )
                    assert out == _software(k, "ecb", b"", data, False)
                    assert not s.auth_value_needed  # the TPM reset the policy after the use
                else:
                    with pytest.raises(lean.TpmRefused) as refused:
                        lc.encrypt_decrypt2(
                            conn,
                            key,
                            data,
                            decrypt=False,
                            mode=int(TPM2_ALG.ECB),
                            iv=b"",
                            session=s,
                        )
                    assert refused.value.base in _HMAC_REFUSED and s.broken
    finally:
        conn.flush(handle)


def test_hmac_session_includes_the_entity_auth_value(
    conn: TpmConnection, parent: tuple[Any, Any], salted: lean.Session
) -> None:
    auth, k = b"secret-auth", os.urandom(16)
    handle, _, _ = _child(
        conn, parent[0], "aes128", _AES | TPMA_OBJECT.USERWITHAUTH, data=k, auth=auth
    )
    data = os.urandom(16)
    try:
        good = LeanObject.from_esys(conn, handle, auth)
        out = lc.encrypt_decrypt2(
            conn, good, data, decrypt=False, mode=int(TPM2_ALG.ECB), iv=b"", session=salted
        )
        assert out == _software(k, "ecb", b"", data, False)
        bad = LeanObject.from_esys(conn, handle, b"wrong")
        with pytest.raises(lean.TpmRefused):
            lc.encrypt_decrypt2(
                conn, bad, data, decrypt=False, mode=int(TPM2_ALG.ECB), iv=b"", session=salted
            )
    finally:
        conn.flush(handle)


def test_the_lean_layer_runs_through_a_tpm2_tss_tcti(
    private_swtpm: str, conn: TpmConnection, parent: tuple[Any, Any], aes_key: tuple[Any, bytes]
) -> None:
    """What a resource manager or /dev/tpmrm0 gets: the layer's bytes through tpm2-tss's own
    TCTI (here its swtpm TCTI) instead of trelab's socket, observed the same way."""
    from tpm2_pytss import TCTILdr

    from tpm.connection import parse_tcti
    from tpm.tss import CommandEvent, TctiTransport

    name, conf = parse_tcti(private_swtpm)
    via: Any
    if name == "swtpm":
        transport = TctiTransport(TCTILdr(name, conf))
        via = SimpleNamespace(transport=transport, esys=conn.esys)
    else:  # already tpm2-tss's TCTI (tpm2-abrmd): its transient handles are this connection's
        assert isinstance(conn.transport, TctiTransport)
        transport, via = conn.transport, conn
    seen: list[CommandEvent] = []
    try:
        handle, k = aes_key
        data = os.urandom(48)
        salt_to = (int(conn.esys.tr_get_tpm_handle(parent[0])), parent[1])
        with transport.observe(seen.append), lc.session(via, kind="hmac", salt_to=salt_to) as s:
            out = lc.encrypt_decrypt2(
                via, LeanObject.from_esys(conn, handle), data, decrypt=False,
                mode=int(TPM2_ALG.ECB), iv=b"", session=s,
            )  # fmt: skip
        assert out == _software(k, "ecb", b"", data, False)
        names = [e.name for e in seen]
        assert names == ["start_auth_session", "encrypt_decrypt2", "flush_context"]
        assert all(e.rc == 0 and e.seconds > 0 for e in seen)
    finally:
        if via is not conn:
            transport.close()
