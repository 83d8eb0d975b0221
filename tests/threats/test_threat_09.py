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
    checked.complete_and_clean()


def test_attacks(checked: Checked) -> None:
    sniff = checked.expect("bus-sniff-auth-values", "blocked", aka="success")
    assert sniff is not None and sniff.evidence["bytes_recorded"] > 1000
    assert checked.get("untrusted-components").outcome == "organisational"
    checked.expect("pcid-beyond-ro", "blocked", refused="ro-only")
    checked.finish()


def test_bus_protection_blocks_the_aka_sniff(checked: Checked) -> None:
    """Was the gap: EncryptDecrypt2 ran without parameter encryption. Now the default AKA runs
    it in a session salted to the MID parent with decrypt|encrypt: the sniffer saw every
    session start (a salted one among them) and all three E_K exchanges, encrypted both ways,
    and recovered neither OPc nor RES/CK/IK — while its decoder did recover the plaintext of
    an unsalted control session (so the failure is the salt's doing)."""
    sniff = checked.expect(
        "bus-sniff-aka",
        "blocked",
        bus_protection=True,
        aka="success",
        ek_commands=3,
        ek_parameters_encrypted=3,
        opc_in_clear=False,
        opc_recovered=False,
        res_ck_ik_recovered=False,
        control_unsalted_decoded=True,
    )
    assert sniff is not None
    assert sniff.evidence["salted_sessions"] >= 1 and sniff.evidence["encrypted_salt_bytes"] > 0
    assert sniff.evidence["sessions_started"] >= sniff.evidence["salted_sessions"]
    checked.finish()


def test_the_opt_out_still_leaks_and_says_so(checked: Checked) -> None:
    """``bus_protection=False`` (``--no-bus-protection``) is the old behaviour, kept for
    benchmarks: the same sniffer derives OPc and the AKA's RES/CK/IK from it (never K, never
    the PIN). An accepted, labelled residual risk, not a gap of the default."""
    leak = checked.expect(
        "bus-sniff-aka-opt-out",
        "not-blocked",
        bus_protection=False,
        aka="success",
        ek_commands=3,
        ek_parameters_encrypted=0,
        opc_in_clear=False,
        opc_recovered=True,
        res_ck_ik_recovered=True,
        pin_on_bus=False,
    )
    assert leak is not None and not leak.should_block and not leak.failed
    assert "opt-out" in leak.result
    checked.finish()
