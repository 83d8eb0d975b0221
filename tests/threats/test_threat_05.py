"""Threat 5 (§7.1.2.1): replacing a TRE in an M2ME by another TRE or an emulation — the check that `trelab threats --only 5`
runs, against the session lab (risk 4 or 6 (major))."""

from __future__ import annotations

import pytest

from tests.threats.conftest import Checked, run_threat

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def checked(threat_lab) -> Checked:
    return run_threat(threat_lab, "5")


def test_every_counter_measure_is_checked(checked: Checked) -> None:
    checked.complete_and_clean()


def test_attacks(checked: Checked) -> None:
    made = checked.expect("out-of-band-manufacture", "organisational")
    assert made is not None and "rsa2048" in made.evidence["certificates"]
    foreign = checked.expect("foreign-ak-genuine-ek", "blocked", refused="credential")
    assert foreign is not None and foreign.extra == "foreign-ak-genuine-ek"
    assert "ActivateCredential refused" in foreign.evidence["activate_credential"]
    checked.expect("swapped-tre-mids", "blocked")
    package = checked.expect("package-to-replacement", "blocked")
    assert package is not None and "another TPM" in package.evidence["host_check"]
    checked.expect("emulated-quote", "blocked", refused="quote-signature")
    checked.finish()
