"""Threat 9 (§7.1.2.1): obtaining sensitive information by monitoring TRE–M2ME interactions — the check that `trelab threats --only 9`
runs, against the session lab (risk 4 (major))."""

from __future__ import annotations

import pytest

from tests.threats.conftest import Checked, run_threat

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def checked(threat_lab) -> Checked:
    return run_threat(threat_lab, "9")


def test_every_counter_measure_is_checked(checked: Checked) -> None:
    checked.complete_and_timed()


def test_attacks(checked: Checked) -> None:
    sniff = checked.expect("bus-sniff-auth-values", "blocked", aka="success")
    assert sniff is not None and sniff.evidence["bytes_recorded"] > 1000
    assert checked.get("untrusted-components").outcome == "organisational"
    checked.expect("pcid-beyond-ro", "blocked", refused="ro-only")
    checked.finish()


def test_known_gap_encrypt_decrypt_in_clear_on_the_bus(checked: Checked) -> None:
    """A gap this suite documents: EncryptDecrypt2 runs without parameter encryption, so a bus
    sniffer derives OPc and the AKA's RES/CK/IK from the recording alone (never K, never the
    PIN). When the keyholder encrypts its parameters this finding turns "blocked"."""
    gap = checked.expect(
        "bus-sniff-aka",
        "not-blocked",
        opc_in_clear=False,
        opc_recovered=True,
        res_ck_ik_recovered=True,
    )
    assert gap is not None and gap.should_block
    checked.finish()
