"""Threat 3a-3 (§7.1.2.3.1): the new MNO decrypts subscribers' traffic recorded before the transfer — the check that `trelab threats --only 3a-3`
runs, against the session lab (risk 1 (minor))."""

from __future__ import annotations

import pytest

from tests.threats.conftest import Checked, run_threat

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def checked(threat_lab) -> Checked:
    return run_threat(threat_lab, "3a-3")


def test_every_counter_measure_is_checked(checked: Checked) -> None:
    checked.complete_and_clean()


def test_attacks(checked: Checked) -> None:
    past = checked.expect("past-traffic", "not-blocked", past_ck_recovered=True)
    assert past is None or not past.should_block
    checked.finish()
