"""Threat 3a-2 (§7.1.2.3.1): the original MNO attacks subscribers after their transfer (it still knows K) — the check that `trelab threats --only 3a-2`
runs, against the session lab (risk 3 (minor))."""

from __future__ import annotations

import pytest

from tests.threats.conftest import Checked, run_threat

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def checked(threat_lab) -> Checked:
    return run_threat(threat_lab, "3a-2")


def test_every_counter_measure_is_checked(checked: Checked) -> None:
    checked.complete_and_clean()


def test_attacks(checked: Checked) -> None:
    kept = checked.expect(
        "old-operator-keeps-k",
        "not-blocked",
        before_rotation_impersonation=True,
        before_rotation_false_network=True,
    )
    assert kept is None or not kept.should_block  # TR 33.812 rates it minor: contracts, OTA
    checked.expect(
        "k-rotation",
        "blocked",
        k_rotated=True,
        after_rotation_impersonation=False,
        after_rotation_false_network=False,
    )
    imsi = checked.expect("old-imsi", "blocked")
    assert imsi is None or imsi.evidence["card_imsi"] != imsi.evidence["old_imsi"]
    ota = checked.expect("old-operator-ota", "blocked")
    assert ota is None or ota.evidence["por"] != "PoR OK"
    replay = checked.expect("replayed-ota", "blocked", por="CNTR low")
    assert replay is None or replay.extra == "replayed-ota"
    assert checked.get("fraud-detection").outcome == "not-run"
    checked.expect(
        "contract-old-records",
        "organisational",
        sho_a_record_state="transferred",
        sho_a_still_has_k=True,
    )
    checked.finish()
