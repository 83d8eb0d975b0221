"""The MID store's NV names and cpHashes, marshalled by hand in :mod:`tpm.nv`, equal what
tpm2-pytss marshals from the same definition (the TPM's own names are compared in
tests/integration/test_tpm_lifecycle_index.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tpm2_pytss import TPM2B_MAX_NV_BUFFER

from tpm import nv
from tpm.policy import CC_NV_WRITE, command_parameter_hash


@settings(max_examples=60, deadline=None)
@given(
    slot=st.integers(0, nv.STATE_SLOTS - 1),
    authority=st.binary(min_size=34, max_size=34),
    ref=st.binary(min_size=1, max_size=32),
    written=st.booleans(),
    state=st.sampled_from(list(nv.MidState)),
    version=st.integers(0, 2**32 - 1),
)
def test_lifecycle_name_and_write_cphash_equal_tpm2_pytss(
    slot: int,
    authority: bytes,
    ref: bytes,
    written: bool,
    state: nv.MidState,
    version: int,
) -> None:
    index = nv.LifecycleIndex(slot, authority, ref)
    expected = bytes(index.public(written=written).get_name().marshal())[2:]
    assert index.name(written=written) == expected
    value = nv.Lifecycle(state, version)
    params = bytes(TPM2B_MAX_NV_BUFFER(value.encode()).marshal()) + bytes(2)
    cp_hash = command_parameter_hash(CC_NV_WRITE, (expected, expected), params)
    assert index.write_cp_hash(value, written=written) == cp_hash
