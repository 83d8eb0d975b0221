"""The provisioning commands on the lean layer against a real swtpm, ESYS on the same TPM as
the cross-check: credential activation (the EK's policy session, ActivateCredential with two
authorisations) and the owner-approved lifecycle write (PolicyNvWritten, PolicyNV,
PolicyCpHash, LoadExternal, VerifySignature, PolicyAuthorize, NV_Write in the policy session)
give the same results both ways over random inputs, one layer's write is the other's
starting point, tampered command and response HMACs are refused, and nothing of a refused
response is used.

Neither command has a secret first parameter to hide on the bus (docs/tpm-sessions.md), so
no parameter encryption is checked here; the import's commands are checked with a MID in
tests/integration/test_tpm_lean_mid.py. The swtpm is this module's own (``private_swtpm``).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tpm2_pytss.constants import TPM2_CAP

from tpm import lean, nv
from tpm import lean_commands as lc
from tpm.connection import TpmConnection
from tpm.ek import ek_policy_or_list, loaded_ek, read_ek_certificates
from tpm.errors import CredentialRejected
from tpm.identity import activate_credential, ensure_ak, make_challenge
from tpm.lifecycle_write import write_lifecycle
from tpm.mid_errors import MidRefused
from tpm.package import LifecycleBinding
from tpm.policy import PolicyAuthorize, approval_hash, policy_digest
from tpm.policy_session import PolicyRunner, _signature

pytestmark = pytest.mark.lab

#: TPM_RC_AUTH_FAIL (DA-protected object) / TPM_RC_BAD_AUTH (noDA object): HMAC wrong
_HMAC_REFUSED = {0x8E, 0xA2}
_SLOTS = iter(range(200, 256))
_ONCE = settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def conn(private_swtpm: str) -> Iterator[TpmConnection]:
    with TpmConnection(private_swtpm) as c:
        nv.ensure_indices(c)
        yield c


@pytest.fixture(scope="module")
def ak(conn: TpmConnection) -> Any:
    return ensure_ak(conn, "ecc")[0]


@pytest.fixture(scope="module")
def ek_cert(conn: TpmConnection) -> Any:
    return read_ek_certificates(conn)["rsa2048"]


# ---- credential activation -------------------------------------------------------------------


@_ONCE
@given(secret=st.binary(min_size=1, max_size=32))
def test_activation_gives_the_same_secret_on_both_layers(
    conn: TpmConnection, ak: Any, ek_cert: Any, secret: bytes
) -> None:
    challenge = make_challenge(ek_cert, ak.public, secret=secret)
    blob, encrypted = challenge.credential_blob, challenge.encrypted_secret
    lean_secret = activate_credential(conn, ak, blob, encrypted, layer="lean")
    esys_secret = activate_credential(conn, ak, blob, encrypted, layer="esys")
    assert lean_secret == esys_secret == secret


def test_a_tampered_challenge_is_refused_on_both_layers(
    conn: TpmConnection, ak: Any, ek_cert: Any
) -> None:
    challenge = make_challenge(ek_cert, ak.public)
    blob = bytearray(challenge.credential_blob)
    blob[-1] ^= 0x01
    for layer in ("lean", "esys"):
        with pytest.raises(CredentialRejected):
            activate_credential(conn, ak, bytes(blob), challenge.encrypted_secret, layer=layer)
    # nothing was left behind: the untampered challenge still works on the lean layer
    assert (
        activate_credential(conn, ak, challenge.credential_blob, challenge.encrypted_secret)
        == challenge.secret
    )


def _activation_command(
    conn: TpmConnection, ak: Any, ek: Any, ek_public: Any, blob: bytes, encrypted: bytes
) -> tuple[lean.Session, bytes, lean.Pending]:
    session = lc.ek_session(conn, ek_policy_or_list(ek_public))
    ek_object = lc.LeanObject(int(conn.esys.tr_get_tpm_handle(ek)), lc.public_name(ek_public))
    ak_object = lc.LeanObject(ak.handle, lc.public_name(ak.public))
    command, pending = lean.wrap(
        lean.CC.ACTIVATE_CREDENTIAL,
        [ak_object.handle, ek_object.handle],
        [ak_object.name, ek_object.name],
        blob + encrypted,
        [lean.Auth(None), lean.Auth(session)],
    )
    return session, command, pending


def test_activation_hmacs_are_checked_both_ways(conn: TpmConnection, ak: Any, ek_cert: Any) -> None:
    challenge = make_challenge(ek_cert, ak.public)
    blob, encrypted = challenge.credential_blob, challenge.encrypted_secret
    with loaded_ek(conn) as (ek, ek_public):
        # the EK session's command HMAC altered: the TPM refuses, the session is broken
        session, command, pending = _activation_command(conn, ak, ek, ek_public, blob, encrypted)
        tampered = bytearray(command)
        hmac_end = command.index(blob)  # the auth area ends where the parameters begin
        tampered[hmac_end - 1] ^= 0x01
        with pytest.raises(lean.TpmRefused) as refused:
            pending.unwrap(conn.transport.execute(bytes(tampered)))
        assert refused.value.base in _HMAC_REFUSED and session.broken
        lc.flush_session(conn, session)
        # the response's HMAC altered: refused before anything of it is used, nonce kept
        session, command, pending = _activation_command(conn, ak, ek, ek_public, blob, encrypted)
        before = session.nonce_tpm
        response = bytearray(conn.transport.execute(command))
        assert struct.unpack_from(">I", response, 6)[0] == 0
        response[-1] ^= 0x01
        with pytest.raises(lean.ResponseAuthFailed):
            pending.unwrap(bytes(response))
        assert session.broken and session.nonce_tpm == before
        lc.flush_session(conn, session)


# ---- the owner-approved lifecycle write ------------------------------------------------------


def _index(conn: TpmConnection, key: Any, ref: bytes) -> tuple[nv.LifecycleIndex, bytes]:
    binding = LifecycleBinding.for_key(key)
    index = nv.LifecycleIndex(next(_SLOTS), binding.authority_name, ref)
    nv.define_lifecycle(conn, index)
    return index, binding.authority


_STATES = [nv.MidState.ACTIVE, nv.MidState.SUSPENDED, nv.MidState.INSTALLED]


@_ONCE
@given(
    ref=st.binary(min_size=1, max_size=32),
    layers=st.lists(st.sampled_from(["lean", "esys"]), min_size=3, max_size=3),
    states=st.lists(st.sampled_from(_STATES), min_size=2, max_size=2),
)
def test_lifecycle_writes_interleave_across_layers(
    conn: TpmConnection, ref: bytes, layers: list[str], states: list[nv.MidState]
) -> None:
    """Each layer continues from what the other wrote (the index's name changes with its
    first write), and a replayed approval is refused by both, the index unchanged."""
    key = ec.generate_private_key(ec.SECP256R1())
    index, authority = _index(conn, key, ref)
    try:
        counter = nv.read_counter(conn, nv.MID_CTR)
        first = nv.StateApproval.sign(key, index, None, nv.INSTALLED_FIRST, counter=counter)
        write_lifecycle(conn, first, authority, layer=layers[0])  # type: ignore[arg-type]
        value = nv.INSTALLED_FIRST
        assert nv.read_lifecycle(conn, index.slot) == value
        approvals = []
        for layer, state in zip(layers[1:], states, strict=True):
            approval = nv.StateApproval.sign(key, index, value, value.then(state))
            write_lifecycle(conn, approval, authority, layer=layer)  # type: ignore[arg-type]
            value = value.then(state)
            assert nv.read_lifecycle(conn, index.slot) == value
            approvals.append(approval)
        for layer in ("lean", "esys"):
            with pytest.raises(MidRefused, match="replayed or out of order"):
                write_lifecycle(conn, approvals[0], authority, layer=layer)  # type: ignore[arg-type]
            with pytest.raises(MidRefused):
                write_lifecycle(conn, first, authority, layer=layer)  # type: ignore[arg-type]
        assert nv.read_lifecycle(conn, index.slot) == value
    finally:
        nv.discard_lifecycle(conn, index.slot)


def _digest(conn: TpmConnection, session: lean.Session) -> bytes:
    command = lean.wrap_plain(lean.CC.POLICY_GET_DIGEST, [session.handle])
    _, out = lean.unwrap_plain(lean.CC.POLICY_GET_DIGEST, conn.transport.execute(command))
    return lean.single_tpm2b(out, "PolicyGetDigest")


@_ONCE
@given(ref=st.binary(min_size=1, max_size=32), version=st.integers(1, 2**32 - 2))
def test_policy_authorize_reaches_the_digest_esys_and_software_compute(
    conn: TpmConnection, ref: bytes, version: int
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    binding = LifecycleBinding.for_key(key)
    index = nv.LifecycleIndex(255, binding.authority_name, ref)
    old = nv.Lifecycle(nv.MidState.ACTIVE, version)
    approval = nv.StateApproval.sign(key, index, old, old.then(nv.MidState.SUSPENDED))
    steps = [PolicyAuthorize(index.authority_name, index.ref)]
    # the approval's own PolicyNV reads the index: the steps run against MID_CTR instead,
    # which any TPM state satisfies when compared with itself
    counter = nv.read_counter(conn, nv.MID_CTR)
    first = nv.StateApproval.sign(key, index, None, nv.INSTALLED_FIRST, counter=counter)
    expected = policy_digest(steps)
    with lc.session(conn, kind="policy", symmetric=False) as s:
        lc.run_approved_policy(conn, s, steps, approval=first, operator_public=binding.authority)
        assert _digest(conn, s) == expected
    with PolicyRunner(
        conn, steps, approval=first, operator_public=binding.authority, trial=True
    ) as runner:
        runner.run_steps()
        assert runner.digest() == expected
    # the ticket both layers get for the same signature is the same TPM statement
    a_hash = approval_hash(approval.approved_policy(), ref)
    lean_ticket = lc.approval_ticket(conn, binding.authority, a_hash, approval.signature)
    assert lean_ticket[:2] == b"\x80\x22"  # TPM_ST_VERIFIED


def test_a_wrong_signature_is_refused_by_the_tpm(conn: TpmConnection) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    binding = LifecycleBinding.for_key(key)
    message = os.urandom(32)
    other = ec.generate_private_key(ec.SECP256R1()).sign(message, ec.ECDSA(hashes.SHA256()))
    a_hash = approval_hash(message)
    with pytest.raises(lean.TpmRefused) as refused:
        lc.approval_ticket(conn, binding.authority, a_hash, other)
    assert refused.value.command_code == lean.CC.VERIFY_SIGNATURE
    # no loaded key is left behind
    _, caps = conn.esys.get_capability(TPM2_CAP.HANDLES, 0x80000000, 16)
    assert not [int(h) for h in caps.data.handles]


def test_a_tampered_write_response_is_refused(conn: TpmConnection) -> None:
    """The lifecycle write's response HMAC is checked (the TPM wrote: the caller learns
    that the response was altered and the session cannot be trusted any more)."""
    key = ec.generate_private_key(ec.SECP256R1())
    index, authority = _index(conn, key, os.urandom(8))
    try:
        counter = nv.read_counter(conn, nv.MID_CTR)
        approval = nv.StateApproval.sign(key, index, None, nv.INSTALLED_FIRST, counter=counter)
        with lc.session(conn, kind="policy", symmetric=False) as s:
            lc.run_approved_policy(
                conn, s, [PolicyAuthorize(index.authority_name, index.ref)],
                approval=approval, operator_public=authority,
            )  # fmt: skip
            name = index.name(written=False)
            command, pending = lean.wrap(
                lean.CC.NV_WRITE, [index.handle, index.handle], [name, name],
                lean.nv_write_params(nv.INSTALLED_FIRST.encode(), 0), [lean.Auth(s)],
            )  # fmt: skip
            before = s.nonce_tpm
            response = bytearray(conn.transport.execute(command))
            response[-3] ^= 0x10
            with pytest.raises(lean.ResponseAuthFailed):
                pending.unwrap(bytes(response))
            assert s.broken and s.nonce_tpm == before
    finally:
        nv.discard_lifecycle(conn, index.slot)


@settings(max_examples=25, deadline=None)
@given(message=st.binary(min_size=32, max_size=32))
def test_the_signature_marshalled_by_hand_equals_tpm2_pytss(message: bytes) -> None:
    der = ec.generate_private_key(ec.SECP256R1()).sign(message, ec.ECDSA(hashes.SHA256()))
    assert lc.ecdsa_signature(der) == bytes(_signature(der).marshal())


# ---- look-ups and receipts by password -------------------------------------------------------


def test_lookups_equal_esys(conn: TpmConnection, ek_cert: Any) -> None:
    from tpm2_pytss.constants import TPM2_PT_NV

    indices = [nv.MID_CTR, nv.MID_STATE, nv.AUDIT, nv.REG_CTR, 0x01C00002]
    for index in indices:
        ours = lc.nv_read_public(conn, index)
        # the connection's one ESYS object per index (ESYS hands out one per handle)
        public, name = conn.esys.nv_read_public(nv.resource(conn, index))
        area = public.nvPublic
        assert ours.name == bytes(name) and ours.data_size == int(area.dataSize)
        assert ours.attributes == int(area.attributes)
        assert ours.auth_policy == bytes(area.authPolicy)
    _, listed = conn.esys.get_capability(TPM2_CAP.HANDLES, 0x01000000, 64)
    assert lc.handles(conn, 0x01000000, 64) == [int(h) for h in listed.data.handles]
    _, caps = conn.esys.get_capability(TPM2_CAP.TPM_PROPERTIES, TPM2_PT_NV.BUFFER_MAX, 1)
    assert lc.tpm_property(conn, int(TPM2_PT_NV.BUFFER_MAX)) == int(
        caps.data.tpmProperties[0].value
    )
    with pytest.raises(lean.TpmRefused):
        lc.nv_read_public(conn, 0x01000FFF)  # not defined


def test_read_public_and_pcr_read_equal_esys(conn: TpmConnection, ak: Any) -> None:
    from tpm2_pytss import TPML_PCR_SELECTION

    blob, name = lc.read_public(conn, ak.handle)
    tr = conn.esys.tr_from_tpmpublic(ak.handle)
    try:
        public, esys_name, _ = conn.esys.read_public(tr)
    finally:
        conn.esys.tr_close(tr)
    assert blob == bytes(public.marshal()) and name == bytes(esys_name)
    for selection in ("sha256:0,1,2,3,4,5,6,7", "sha256:16,23", "sha1:0"):
        _, _, digests = conn.esys.pcr_read(TPML_PCR_SELECTION.parse(selection))
        assert lc.pcr_read(conn, lc.pcr_selection(selection)) == [bytes(d) for d in digests]


def _verify(ak: Any, attest: bytes, signature: bytes) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    r, end = lean.parse_tpm2b(signature, 4)
    s, end = lean.parse_tpm2b(signature, end)
    assert end == len(signature)
    key = serialization.load_pem_public_key(ak.public_pem)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    der = encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
    key.verify(der, attest, ec.ECDSA(hashes.SHA256()))


@_ONCE
@given(
    qualifying=st.binary(max_size=32),
    where=st.sampled_from([(nv.MID_CTR, 8, 0), (nv.MID_STATE, 1, 7), (nv.MID_STATE, 16, 32)]),
)
def test_nv_certify_matches_esys(
    conn: TpmConnection, ak: Any, qualifying: bytes, where: tuple[int, int, int]
) -> None:
    """The lean receipt and ESYS's are signatures by the AK over the same statement: the
    attested NV contents and the verifier's qualifying data (the clock fields differ)."""
    from tpm2_pytss import TPMS_ATTEST
    from tpm2_pytss.constants import TPM2_ALG
    from tpm2_pytss.types import TPMT_SIG_SCHEME

    index, size, offset = where
    attest, sig = lc.nv_certify(
        conn, lc.LeanObject(ak.handle, b""), index, qualifying, size, offset
    )
    _verify(ak, attest, sig)
    tr = nv.resource(conn, index)
    ak_tr = conn.esys.tr_from_tpmpublic(ak.handle)
    try:
        theirs, _ = conn.esys.nv_certify(
            ak_tr, tr, qualifying, TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL), size, offset,
            auth_handle=tr,
        )  # fmt: skip
    finally:
        conn.esys.tr_close(ak_tr)
    ours, _ = TPMS_ATTEST.unmarshal(attest)
    esys_attest, _ = TPMS_ATTEST.unmarshal(bytes(theirs))
    assert bytes(ours.extraData) == bytes(esys_attest.extraData) == qualifying
    mine, other = ours.attested.nv, esys_attest.attested.nv
    assert bytes(mine.indexName) == bytes(other.indexName)
    assert bytes(mine.nvContents) == bytes(other.nvContents)
    assert bytes(mine.nvContents) == lc.nv_read(conn, index, size, offset)
