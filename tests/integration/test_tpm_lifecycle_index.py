"""A MID's own lifecycle index in the lab's swtpm (tpm.nv, TR 33.812 threat 7 CM 1/10): only
the owning SHO's approvals write it, each approval works once, host software with owner
authorisation cannot write it, and a use-gated K's PolicyNV reads it.

The indices live at high slots (240…) and are discarded at the end of each test, so the
shared lab TPM's MID slots and counters are left as they were (MID_CTR is only read).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from lab.lab import LabStatus
from tpm import nv
from tpm.connection import TpmConnection
from tpm.lifecycle_write import write_lifecycle
from tpm.mid_errors import MidRefused
from tpm.package import LifecycleBinding, operator_public
from tpm.policy import policy_digest
from tpm.policy_session import PolicyRunner, trial_digest

SLOT = 240


@dataclass
class Owned:
    conn: TpmConnection
    index: nv.LifecycleIndex
    key: Any
    public: bytes

    def approve(
        self, old: nv.Lifecycle | None, new: nv.Lifecycle, *, key: Any = None, counter: int = 0
    ) -> nv.StateApproval:
        return nv.StateApproval.sign(
            key or self.key, self.index, old, new, counter=counter if old is None else None
        )

    def write(self, approval: nv.StateApproval) -> None:
        write_lifecycle(self.conn, approval, self.public)


@pytest.fixture
def owned(lab: LabStatus) -> Iterator[Owned]:
    key = ec.generate_private_key(ec.SECP256R1())
    binding = LifecycleBinding.for_key(key)
    with TpmConnection(lab.tcti) as conn:
        nv.ensure_indices(conn)
        nv.discard_lifecycle(conn, SLOT)  # a previous run's, if any
        index = binding.index(SLOT)
        nv.define_lifecycle(conn, index)
        try:
            yield Owned(conn, index, key, binding.authority)
        finally:
            nv.discard_lifecycle(conn, SLOT)


def _installed(owned: Owned) -> nv.Lifecycle:
    counter = nv.read_counter(owned.conn, nv.MID_CTR)
    owned.write(owned.approve(None, nv.INSTALLED_FIRST, counter=counter))
    return nv.INSTALLED_FIRST


def test_first_write_needs_the_owner_and_the_current_mid_ctr(owned: Owned) -> None:
    counter = nv.read_counter(owned.conn, nv.MID_CTR)
    assert nv.read_lifecycle(owned.conn, SLOT) is None  # defined, not written
    assert SLOT in nv.free_slots(owned.conn)  # an unwritten index guards nothing
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(MidRefused, match="approval"):
        owned.write(owned.approve(None, nv.INSTALLED_FIRST, key=other, counter=counter))
    with pytest.raises(MidRefused):  # bound to a MID_CTR value that has passed
        owned.write(owned.approve(None, nv.INSTALLED_FIRST, counter=counter - 1))
    assert nv.read_lifecycle(owned.conn, SLOT) is None
    owned.write(owned.approve(None, nv.INSTALLED_FIRST, counter=counter))
    assert nv.read_lifecycle(owned.conn, SLOT) == nv.INSTALLED_FIRST
    assert nv.read_state(owned.conn, SLOT) == nv.MidState.INSTALLED
    assert SLOT not in nv.free_slots(owned.conn)
    with pytest.raises(MidRefused):  # PolicyNvWritten(NO): a first write happens once
        owned.write(owned.approve(None, nv.INSTALLED_FIRST, counter=counter))


def test_owner_authorisation_cannot_write_it(owned: Owned) -> None:
    from tpm2_pytss import TSS2_Exception
    from tpm2_pytss.constants import ESYS_TR

    _installed(owned)
    tr = owned.conn.esys.tr_from_tpmpublic(owned.index.handle)
    forged = nv.Lifecycle(nv.MidState.ACTIVE, 2).encode()
    with pytest.raises(TSS2_Exception, match="authorization"):
        owned.conn.esys.nv_write(tr, forged, 0, auth_handle=ESYS_TR.OWNER)
    assert nv.read_lifecycle(owned.conn, SLOT) == nv.INSTALLED_FIRST


def test_each_approval_works_once_and_only_for_its_write(owned: Owned) -> None:
    installed = _installed(owned)
    active = installed.then(nv.MidState.ACTIVE)
    activate = owned.approve(installed, active)
    owned.write(activate)
    suspended = active.then(nv.MidState.SUSPENDED)
    owned.write(owned.approve(active, suspended))
    with pytest.raises(MidRefused, match="replayed or out of order"):
        owned.write(activate)  # the earlier activation, replayed on a suspended MID
    # an approval of one write cannot carry another value (PolicyCpHash)
    resume = owned.approve(suspended, suspended.then(nv.MidState.ACTIVE))
    deleted = nv.StateApproval(
        owned.index, suspended, suspended.then(nv.MidState.DELETED), resume.signature
    )
    with pytest.raises(MidRefused):
        owned.write(deleted)
    assert nv.read_lifecycle(owned.conn, SLOT) == suspended
    owned.write(resume)
    assert nv.read_lifecycle(owned.conn, SLOT) == nv.Lifecycle(nv.MidState.ACTIVE, 4)


def test_k_policy_reads_it_and_a_discarded_index_cannot_come_back(owned: Owned) -> None:
    step = owned.index.active()
    # the name PolicyNV hashes covers WRITTEN: K's policy names the index once written
    assert trial_digest(owned.conn, [step]) != policy_digest([step])
    installed = _installed(owned)
    assert trial_digest(owned.conn, [step]) == policy_digest([step])
    with PolicyRunner(owned.conn, [step]) as runner, pytest.raises(MidRefused):
        runner.run_steps()  # INSTALLED: not ACTIVE
    owned.write(owned.approve(installed, installed.then(nv.MidState.ACTIVE)))
    with PolicyRunner(owned.conn, [step]) as runner:
        runner.run_steps()
        assert runner.digest() == policy_digest([step])
    # host software discards the index and re-creates it: the same name, unwritten, and the
    # first-write approval it kept is bound to a MID_CTR value the TPM has passed
    counter = nv.read_counter(owned.conn, nv.MID_CTR)
    kept = owned.approve(None, nv.INSTALLED_FIRST, counter=counter - 1)
    assert nv.discard_lifecycle(owned.conn, SLOT)
    nv.define_lifecycle(owned.conn, owned.index)
    with pytest.raises(MidRefused):
        owned.write(kept)
    with PolicyRunner(owned.conn, [step]) as runner, pytest.raises(Exception, match="NV"):
        runner.run_steps()  # unwritten: PolicyNV fails, K stays dead


def test_a_foreign_unwritten_index_is_reclaimed_a_written_one_is_not(owned: Owned) -> None:
    from trelab.errors import Unavailable

    other = LifecycleBinding(operator_public(ec.generate_private_key(ec.SECP256R1())), b"x")
    nv.define_lifecycle(owned.conn, other.index(SLOT))  # reclaims the unwritten one
    _public, name = owned.conn.esys.nv_read_public(
        owned.conn.esys.tr_from_tpmpublic(owned.index.handle)
    )
    assert bytes(name.marshal())[2:] == other.index(SLOT).name(written=False)
    nv.define_lifecycle(owned.conn, owned.index)  # and back
    _installed(owned)
    with pytest.raises(Unavailable, match="another MID"):
        nv.define_lifecycle(owned.conn, other.index(SLOT))
