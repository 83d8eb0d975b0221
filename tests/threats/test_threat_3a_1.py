"""Threat 3a-1 (§7.1.2.3.1): the original MNO refuses to assist in transferring the subscription — the check that `trelab threats --only 3a-1`
runs, against the session lab (risk 2 (minor))."""

from __future__ import annotations

import pytest

from tests.threats.conftest import Checked, run_threat

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def checked(threat_lab) -> Checked:
    return run_threat(threat_lab, "3a-1")


def test_every_counter_measure_is_checked(checked: Checked) -> None:
    checked.complete_and_clean()


def test_attacks(checked: Checked) -> None:
    checked.expect("no-cooperation", "organisational", card_answer="mac_failure")
    checked.finish()
