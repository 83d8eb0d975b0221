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
    checked.complete_and_timed()


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


def test_known_gap_lifecycle_byte_is_owner_writable(checked: Checked) -> None:
    """A gap this suite documents: MID_STATE is written with (empty) owner authorisation, so
    host software can re-enable a suspended MID in the TPM. When provisioning.md's
    PolicySigned(DPF) write policy lands, this finding turns "blocked" and this test must
    change with it. The SHO still refuses the MID (rewritten-mid-attach)."""
    gap = checked.expect(
        "state-byte-rewrite", "not-blocked", sho_state="SUSPENDED", nv_write="accepted"
    )
    assert gap is not None and gap.should_block and gap.failed
    assert "MID_STATE" in gap.evidence["suspended_use"]  # the TPM refused it before the rewrite
    checked.finish()
