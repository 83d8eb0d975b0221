"""Threat 7 (§7.1.2.1): attacking the permissions of an installed MID (service, data theft or DoS) — the check that `trelab threats --only 7`
runs, against the session lab (risk 6 (major))."""

from __future__ import annotations

import pytest

from tests.threats.conftest import Checked, run_threat

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def checked(threat_lab) -> Checked:
    return run_threat(threat_lab, "7")


def test_every_counter_measure_is_checked(checked: Checked) -> None:
    checked.complete_and_clean()


def test_attacks(checked: Checked) -> None:
    checked.expect("self-ordered-transition", "blocked", refused="not-authorised")
    checked.expect("rewritten-mid-attach", "blocked", refused="not-active")
    checked.expect("wrong-pin", "blocked")
    checked.expect("forged-receipt", "blocked", refused="bad-receipt")
    assert checked.get("discovery").outcome == "not-run"
    order = checked.expect("unauthorised-order", "blocked", other_sho="foreign-mid")
    assert order is not None and "signature" in order.evidence["impostor"]
    checked.expect("k-outside-tre", "blocked", unseal="TPM_RC_AUTH_UNAVAILABLE")
    checked.expect("deleted-mid-revived", "blocked")
    checked.expect("forged-command", "blocked")
    checked.expect(
        "forged-command-agent",
        "blocked",
        rewritten=1,
        agent_refused="not-owner",
        mid_state="ACTIVE",
    )
    assert checked.get("standard-protocols").outcome == "not-run"
    checked.finish()


def test_lifecycle_state_cannot_be_rewritten_by_the_host(checked: Checked) -> None:
    """Once a gap of this suite: the MID's state was an owner-writable byte. A network MID now
    has its own lifecycle index that only the owning SHO's single-use approvals write: an
    owner-authorised write and a replayed activation approval are refused by the TPM, and K
    stays unusable. The SHO refuses the MID too (rewritten-mid-attach)."""
    found = checked.expect("state-byte-rewrite", "blocked", sho_state="SUSPENDED")
    assert found is not None and found.should_block and not found.failed
    assert "authorization" in found.evidence["owner_write"]
    assert "replayed or out of order" in found.evidence["replayed_approval"]
    assert "not ACTIVE" in found.evidence["use_after"]
    checked.finish()
