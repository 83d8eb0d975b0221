"""Threat 6 (§7.1.2.1): modifying the functions of a TRE (DoS, or control of its behaviour) — the check that `trelab threats --only 6`
runs, against the session lab (risk 4 or 6 (major))."""

from __future__ import annotations

import pytest

from tests.threats.conftest import Checked, run_threat

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def checked(threat_lab) -> Checked:
    return run_threat(threat_lab, "6")


def test_every_counter_measure_is_checked(checked: Checked) -> None:
    checked.complete_and_clean()


def test_attacks(checked: Checked) -> None:
    checked.expect("change-k-auth", "blocked", tpm_rc="TPM_RC_AUTH_TYPE")
    counter = checked.expect("counter-reset", "blocked", undefine="allowed")
    assert counter is not None
    assert counter.evidence["mid_ctr_after_recreate"] >= counter.evidence["mid_ctr_before"]
    checked.expect("attacker-signed-approval", "blocked", after_reset="success")
    upgrade = checked.expect("field-upgrade", "not-run", tpm_rc="TPM_RC_COMMAND_CODE")
    assert upgrade is not None and upgrade.missing == "hardware"
    checked.expect("tamper-detected", "blocked", load_gated=True, use_gated=True)
    checked.finish()
