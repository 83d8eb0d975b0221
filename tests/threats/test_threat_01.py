"""Threat 1 (§7.1.2.1): emulating a legitimate M2ME to obtain illicit downloads of MIDs — the check that `trelab threats --only 1`
runs, against the session lab (risk 9 (critical))."""

from __future__ import annotations

import pytest

from tests.threats.conftest import Checked, run_threat

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def checked(threat_lab) -> Checked:
    return run_threat(threat_lab, "1")


def test_every_counter_measure_is_checked(checked: Checked) -> None:
    checked.complete_and_clean()


def test_attacks(checked: Checked) -> None:
    f = checked.expect(
        "extract-k",
        "blocked",
        unseal="TPM_RC_AUTH_UNAVAILABLE",
        duplicate="TPM_RC_AUTH_TYPE",
        duplicate_policy="TPM_RC_POLICY_FAIL",
        encrypt_password="TPM_RC_AUTH_UNAVAILABLE",
    )
    assert f is None or f.evidence["bytes_searched"] > 1000
    checked.expect("clone-mid", "blocked", tpm_rc="TPM_RC_INTEGRITY")
    hw = checked.expect("hardware-separation", "not-run")
    assert hw is not None and hw.missing == "hardware"
    checked.expect("ek-self-made-ca", "blocked", refused="unknown-ca")
    checked.expect("copied-ek-certificate", "blocked", refused="credential", challenge_issued=True)
    checked.expect("revoked-tre", "blocked", refused="revoked")
    checked.expect("unvalidated-state", "blocked", refused="quote-reference")
    relabel = checked.expect("pcr-selection-relabel", "blocked", refused="quote-pcr-selection")
    assert relabel is not None and relabel.extra == "pcr-selection-relabel"
    assert relabel.evidence["signed_selection"] != relabel.evidence["claimed"]
    checked.expect("pcid-beyond-ro", "blocked", refused="ro-only", pcid_attach="accepted")
    checked.finish()
