"""What ``trelab provision`` says about how a MID will run, per K form and TPM command set
(docs/hmac-aka.md §7): the hmac-sha256 set is proposed exactly where K would otherwise be
outside the TPM or unusable; sealed K is labelled as the last resort."""

from __future__ import annotations

import pytest

from tpm.info import provisioned_outlook


@pytest.mark.parametrize("symmetric", [True, False])
def test_hmac_key_always_stays_inside(symmetric: bool) -> None:
    assert provisioned_outlook("hmac-sha256", "hmac", symmetric_command=symmetric) == {
        "mode": "hmac", "k_inside": True, "note": None,
    }  # fmt: skip


def test_aes_key_runs_where_encrypt_decrypt_exists_else_hmac_set_is_proposed() -> None:
    assert provisioned_outlook("milenage", "symcipher", symmetric_command=True)["note"] is None
    slb = provisioned_outlook("milenage", "symcipher", symmetric_command=False)
    assert slb["k_inside"] is False and slb["mode"] is None
    assert "cannot run" in slb["note"] and "hmac-sha256" in slb["note"]


def test_sealed_k_is_the_labelled_last_resort() -> None:
    here = provisioned_outlook("milenage", "sealed", symmetric_command=False)
    assert here["k_inside"] is False and "last resort" in here["note"]
    assert "hmac-sha256" in here["note"]
    tuak = provisioned_outlook("tuak", "sealed", symmetric_command=False)
    assert "last resort" in tuak["note"] and "hmac-sha256" not in tuak["note"]  # TUAK's choice
