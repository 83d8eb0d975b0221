"""Threat 12 (§7.1.2.1): registering with a stolen or not-yet-registered identity to obtain MIDs — the check that `trelab threats --only 12`
runs, against the session lab (risk 9 (critical))."""

from __future__ import annotations

import pytest

from tests.threats.conftest import Checked, run_threat

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def checked(threat_lab) -> Checked:
    return run_threat(threat_lab, "12")


def test_every_counter_measure_is_checked(checked: Checked) -> None:
    checked.complete_and_clean()


def test_attacks(checked: Checked) -> None:
    assert checked.get("trustworthy-registration").outcome == "organisational"
    checked.expect("stolen-pcid", "blocked", refused="pcid-in-use")
    bound = checked.expect("verdict-of-another-session", "blocked")
    assert bound is not None and "not allowed in phase" in bound.evidence["answer"]
    checked.finish()
