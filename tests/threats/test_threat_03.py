"""Threat 3 (§7.1.2.1): malicious software in the M2ME or host terminal obtains MIDs — the check that `trelab threats --only 3`
runs, against the session lab (risk 9 (critical))."""

from __future__ import annotations

import pytest

from tests.threats.conftest import Checked, run_threat

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def checked(threat_lab) -> Checked:
    return run_threat(threat_lab, "3")


def test_every_counter_measure_is_checked(checked: Checked) -> None:
    checked.complete_and_clean()


def test_attacks(checked: Checked) -> None:
    autn = checked.expect("replayed-autn", "blocked", result="sync_failure", auts_verified=True)
    assert autn is not None and autn.extra == "replayed-autn"
    checked.expect("replayed-autn-usim", "blocked", result="sync_failure")
    checked.expect("mid-into-used-slot", "blocked")
    checked.expect("mid-to-other-m2me", "blocked")
    used = checked.expect("installed-mid-used", "blocked", active_mid="success")
    assert used is not None and "MID_STATE" in used.result
    checked.expect("malware-reads-k", "blocked", unseal="TPM_RC_AUTH_UNAVAILABLE")
    checked.expect("stale-verdict", "blocked", refused="stale-verdict")
    checked.expect("pcid-beyond-ro", "blocked", refused="ro-only")
    modified = checked.expect("modified-mid-manager", "blocked")
    assert modified is not None and "PCR" in modified.result
    checked.finish()
