"""Threat 2 (§7.1.2.1): attacking the MID provisioning process to obtain MIDs — the check that `trelab threats --only 2`
runs, against the session lab (risk 12 (critical))."""

from __future__ import annotations

import pytest

from tests.threats.conftest import Checked, run_threat

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def checked(threat_lab) -> Checked:
    return run_threat(threat_lab, "2")


def test_every_counter_measure_is_checked(checked: Checked) -> None:
    checked.complete_and_clean()


def test_attacks(checked: Checked) -> None:
    eavesdrop = checked.expect("eavesdrop", "blocked")
    assert eavesdrop is not None and eavesdrop.evidence["bytes_recorded"] > 1000
    assert eavesdrop.evidence["messages"] == 12  # M2…M8: six requests, six replies
    retarget = checked.expect("retargeted-package", "blocked", tpm_operational_after=True)
    assert retarget is not None and "another TPM" in retarget.evidence["host_check"]
    assert retarget.evidence["tpm_rc"].startswith("TPM_RC_")
    replay = checked.expect("replayed-package", "blocked")
    assert replay is not None and replay.extra == "replayed-package"
    assert replay.evidence["mid_ctr_before"] == replay.evidence["mid_ctr_after"]
    assert replay.evidence["package_seq"] <= replay.evidence["mid_ctr_after"]
    checked.expect("replayed-package-session", "blocked")
    checked.expect("mitm-alter-manifest", "blocked")
    checked.expect(
        "mitm-package-agent",
        "blocked",
        rewritten=1,
        agent_refused="package-signature",
        mid_ctr_unchanged=True,
    )
    checked.expect("spoofed-dpf", "blocked")
    checked.expect(
        "corrupted-duplicate", "blocked", tpm_rc="TPM_RC_INTEGRITY", mid_ctr_unchanged=True
    )
    checked.expect("stale-quote", "blocked", refused="quote-nonce")
    checked.expect("hijack-session", "blocked", refused="quote-signature")
    skip = checked.expect("skip-registration", "blocked")
    assert skip is not None and "unknown session" in skip.evidence["unregistered"]
    checked.expect("pcid-beyond-ro", "blocked", refused="ro-only")
    checked.finish()
