"""Threat 10 (§7.1.2.1): access to TRE or MID functions by masquerading as the legitimate user — the check that `trelab threats --only 10`
runs, against the session lab (risk 9 (critical))."""

from __future__ import annotations

import pytest

from tests.threats.conftest import Checked, run_threat

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def checked(threat_lab) -> Checked:
    return run_threat(threat_lab, "10")


def test_every_counter_measure_is_checked(checked: Checked) -> None:
    checked.complete_and_clean()


def test_attacks(checked: Checked) -> None:
    tpm = checked.expect("masquerade-tpm", "blocked")
    assert tpm is not None and "wrong PIN" in tpm.result
    checked.expect("masquerade-usim", "blocked", sw="6982")
    checked.expect("pin-eavesdrop-tpm", "ffs", pin_on_bus=False)
    usim = checked.expect("pin-eavesdrop-usim", "not-blocked", pin_in_apdu=True)
    assert usim is None or not usim.should_block
    brute = checked.expect(
        "pin-brute-force-tpm", "blocked", tpm_rc="TPM_RC_LOCKOUT", wrong_guesses=3
    )
    assert brute is not None and brute.extra == "pin-brute-force"
    card = checked.expect(
        "pin-brute-force-usim", "blocked", sw="6983", right_pin_after="6983", restored="enabled"
    )
    assert card is None or card.evidence["answers"][-1] == "6983"
    checked.expect("remote-lockout", "blocked", pin_fields=[], noda_mid_during_lockout="success")
    checked.expect("clock-rollback", "blocked", tpm_rc="TPM_RC_VALUE")
    checked.expect("auth-after-reset", "ffs", sw="6982")
    checked.expect("remove-pin-tpm", "blocked", tpm_rc="TPM_RC_AUTH_TYPE")
    pin = checked.expect("disable-pin-usim", "not-blocked")
    assert pin is None or not pin.should_block
    assert checked.get("void").measures == ("8",)
    checked.finish()
