"""tpm.policy: policy digests against published values and an independent hand computation.

The on-TPM cross-check (trial sessions) is in tests/integration/test_tpm_mid.py.
"""

from __future__ import annotations

import hashlib
import struct

import pytest

from tpm import nv
from tpm.ek import ek_policy_a
from tpm.policy import (
    CC_DUPLICATE,
    CC_ENCRYPT_DECRYPT2,
    PolicyAuthorize,
    PolicyAuthValue,
    PolicyCommandCode,
    PolicyNv,
    PolicyPcr,
    PolicySecret,
    approval_hash,
    marshal_pcr_selection,
    parse_pcr_selection,
    pcr_digest,
    policy_digest,
)
from trelab.errors import BadInput


def sha(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def test_policy_auth_value_published_digest() -> None:
    # tpm2-tools `tpm2_policyauthvalue` from a fresh session (TPM 2.0 Part 3 §23.17)
    assert policy_digest([PolicyAuthValue()]).hex() == (
        "8fcd2169ab92694e0c633f1ab772842b8241bbc20288981fc7ac1eddc1fddb0e"
    )


def test_policy_secret_endorsement_is_the_tcg_ek_policy() -> None:
    # TCG EK Credential Profile PolicyA, and the repository's other implementation (tpm.ek)
    endorsement = struct.pack(">I", 0x4000000B)
    digest = policy_digest([PolicySecret(endorsement)])
    assert digest.hex() == "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa"
    assert digest == ek_policy_a()


def test_command_code_and_chaining_by_hand() -> None:
    step1 = sha(bytes(32), struct.pack(">II", 0x16C, CC_ENCRYPT_DECRYPT2))
    step2 = sha(step1, struct.pack(">I", 0x16B))
    assert policy_digest([PolicyCommandCode(CC_ENCRYPT_DECRYPT2)]) == step1
    assert policy_digest([PolicyCommandCode(CC_ENCRYPT_DECRYPT2), PolicyAuthValue()]) == step2
    # order matters: a policy is a hash chain
    assert policy_digest([PolicyAuthValue(), PolicyCommandCode(CC_ENCRYPT_DECRYPT2)]) != step2


def test_policy_pcr_by_hand() -> None:
    values = [bytes([i]) * 32 for i in (1, 2, 3)]
    # TPML_PCR_SELECTION: count=1, hash=sha256 (0x000b), sizeofSelect=3, bitmap PCR 0,2,16
    tpml = struct.pack(">IHB", 1, 0x000B, 3) + bytes([0b101, 0, 0b1])
    assert marshal_pcr_selection("sha256:16,0,2") == tpml
    expected = sha(bytes(32), struct.pack(">I", 0x17F), tpml, sha(*values))
    assert policy_digest([PolicyPcr("sha256:0,2,16", pcr_digest(values))]) == expected


def test_policy_nv_by_hand() -> None:
    name = b"\x00\x0b" + bytes(range(32))
    args = sha(b"\x02", struct.pack(">HH", 7, 0))
    expected = sha(bytes(32), struct.pack(">I", 0x149), args, name)
    assert policy_digest([PolicyNv(0x01000111, name, b"\x02", 7)]) == expected


def test_policy_authorize_replaces_what_came_before() -> None:
    key_name = b"\x00\x0b" + bytes(32)
    alone = policy_digest([PolicyAuthorize(key_name)])
    after_pcr = policy_digest([PolicyPcr("sha256:0", bytes(32)), PolicyAuthorize(key_name)])
    assert alone == after_pcr == sha(sha(bytes(32), struct.pack(">I", 0x16A), key_name))
    with_ref = policy_digest([PolicyAuthorize(key_name, b"ref")])
    assert with_ref == sha(sha(bytes(32), struct.pack(">I", 0x16A), key_name), b"ref")
    assert approval_hash(alone, b"r") == sha(alone, b"r")


def test_duplicate_lock_changes_the_digest() -> None:
    key_name = b"\x00\x0b" + bytes(32)
    locked = policy_digest([PolicyAuthorize(key_name), PolicyCommandCode(CC_ENCRYPT_DECRYPT2)])
    dup = policy_digest([PolicyAuthorize(key_name), PolicyCommandCode(CC_DUPLICATE)])
    assert locked != dup != policy_digest([PolicyAuthorize(key_name)])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256",
        "md5:0",
        "sha256:",
        "sha256:x",
        "sha256:24",
        "sha256:-1",
        "0,1",
        "sha256:²",
        "sha256:7,7",
        "sha256:0+sha1:0",
        "sm3_256:0",
    ],
)
def test_bad_pcr_selections(text: str) -> None:
    with pytest.raises(BadInput):
        parse_pcr_selection(text)


def test_pcr_selection_is_canonical() -> None:
    assert parse_pcr_selection(" SHA256:7,0,3 ") == ("sha256", (0, 3, 7))


def test_pcr_digest_needs_uniform_values() -> None:
    with pytest.raises(BadInput):
        pcr_digest([])
    with pytest.raises(BadInput):
        pcr_digest([bytes(32), bytes(20)])
    with pytest.raises(BadInput):
        policy_digest([PolicyPcr("sha256:0", b"short")])


def test_nv_index_names_by_hand() -> None:
    # TPMS_NV_PUBLIC: index, nameAlg, attributes, authPolicy (empty), dataSize
    attrs = 0x00000002 | 0x00020000 | 0x00040000 | 0x02000000 | 0x20000000  # OWNERWRITE…WRITTEN
    public = struct.pack(">IHIHH", nv.MID_STATE, 0x000B, attrs, 0, nv.STATE_SLOTS)
    assert nv.state_index_name() == b"\x00\x0b" + sha(public)
    counter = attrs | (1 << 4)  # TPM_NT_COUNTER in bits 7:4
    public = struct.pack(">IHIHH", nv.MID_CTR, 0x000B, counter, 0, 8)
    assert nv.index_name(nv.MID_CTR) == b"\x00\x0b" + sha(public)
