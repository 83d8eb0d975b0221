"""Threat 4 (§7.1.2.1): logical or physical attacks against a TRE to obtain MIDs or keys to clone them — the check that `trelab threats --only 4`
runs, against the session lab (risk 9 (critical))."""

from __future__ import annotations

import pytest

from tests.threats.conftest import Checked, run_threat

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def checked(threat_lab) -> Checked:
    return run_threat(threat_lab, "4")


def test_every_counter_measure_is_checked(checked: Checked) -> None:
    checked.complete_and_clean()


def test_attacks(checked: Checked) -> None:
    ffs = checked.expect("proven-protection", "ffs", duplicate_policy="TPM_RC_POLICY_FAIL")
    assert ffs is not None and None not in ffs.evidence.values()
    checked.expect("k-outside-policy", "blocked", tpm_rc="TPM_RC_AUTH_UNAVAILABLE")
    checked.expect("corrupt-blob", "blocked", tpm_rc="TPM_RC_INTEGRITY", mid_after="success")
    trap = checked.expect(
        "signed-duplicate-policy",
        "blocked",
        plain="TPM_RC_POLICY_FAIL",
        with_lock="TPM_RC_VALUE",
        control_k_exported=True,
    )
    assert trap is not None and trap.extra == "signed-duplicate-policy"
    checked.expect("pcid-beyond-ro", "blocked", refused="ro-only")
    checked.finish()
