"""Threat 11 (§7.1.2.1): users lose network access or data through malfunction or erasure of MIDs or a TRE — the check that `trelab threats --only 11`
runs, against the session lab (risk 9 (critical))."""

from __future__ import annotations

import pytest

from tests.threats.conftest import Checked, run_threat

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def checked(threat_lab) -> Checked:
    return run_threat(threat_lab, "11")


def test_every_counter_measure_is_checked(checked: Checked) -> None:
    checked.complete_and_clean()


def test_attacks(checked: Checked) -> None:
    reset = checked.expect(
        "reset-and-recover",
        "blocked",
        ek_unchanged=True,
        old_mid="dead",
        attach_before="authenticated",
        attach_after="authenticated",
    )
    assert reset is not None
    checked.finish()
