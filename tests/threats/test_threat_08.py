"""Threat 8 (§7.1.2.1): another MID or malicious software extracts information from or corrupts a MID — the check that `trelab threats --only 8`
runs, against the session lab (risk 9 (critical))."""

from __future__ import annotations

import pytest

from tests.threats.conftest import Checked, run_threat

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def checked(threat_lab) -> Checked:
    return run_threat(threat_lab, "8")


def test_every_counter_measure_is_checked(checked: Checked) -> None:
    checked.complete_and_clean()


def test_attacks(checked: Checked) -> None:
    checked.expect("cross-mid-load", "blocked", tpm_rc="TPM_RC_INTEGRITY")
    checked.expect("other-sho-orders", "blocked", refused="foreign-mid")
    assert checked.get("shared-functions").outcome == "not-run"
    checked.expect("loaded-then-suspended", "blocked")
    checked.expect("unseal-opc", "blocked", tpm_rc="TPM_RC_AUTH_UNAVAILABLE")
    checked.expect("suspended-mid-aka", "blocked")
    rollback = checked.expect("registry-rollback", "blocked")
    assert rollback is not None and "older" in rollback.result
    checked.expect("mid-code-modified", "blocked")
    audit = checked.expect("audit-tampered", "blocked", control=True)
    assert audit is not None and "append-only" in audit.evidence["sql_trigger"]
    assert "altered" in audit.evidence["network"]
    checked.finish()
