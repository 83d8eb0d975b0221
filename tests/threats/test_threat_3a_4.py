"""Threat 3a-4 (§7.1.2.3.1): users lose service through a malfunction while being transferred — the check that `trelab threats --only 3a-4`
runs, against the session lab (risk 2 (minor))."""

from __future__ import annotations

import pytest

from tests.threats.conftest import Checked, run_threat

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def checked(threat_lab) -> Checked:
    return run_threat(threat_lab, "3a-4")


def test_every_counter_measure_is_checked(checked: Checked) -> None:
    checked.complete_and_clean()


def test_attacks(checked: Checked) -> None:
    resumed = checked.expect("interrupted-transfer", "blocked", resumed=True)
    assert resumed is None or resumed.evidence["interrupted_after_packets"] == 2
    checked.expect("sqn-lost", "blocked", answers=["sync_failure", "success"])
    checked.expect("no-common-profile", "organisational", card_answer="mac_failure")
    checked.expect("imsi-without-adm", "blocked", sw="6982", imsi_unchanged=True)
    checked.finish()
