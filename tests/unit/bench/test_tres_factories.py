"""TRE factories of the harness when their part is not there: each raises Unavailable with a
reason and a fix, and build_providers reports it as "not run" instead of dropping it.

No lab, no sockets: the lab rows are asked without a lab; the physical rows get hardware
detection replaced by fixed answers (mocks, because no physical TPM, reader or modem can be
plugged in here — ``tests/integration/test_bench_tres.py`` asks the real detection)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.tres import tpm as tpm_tres
from bench.tres import uicc as uicc_tres
from bench.tres.registry import TRE_FACTORIES, LabContext, build_providers
from firmware_stubs.tpm_proxy import profiles
from lab import detect as lab_detect
from lab.detect import Reader, SerialPort, TpmDevice
from trelab.errors import Unavailable

NO_LAB = LabContext(lab=None, subscribers=10, quick=True)
LAB_ROWS = (
    "tpm (ecb, load-gated)",
    "tpm (cfb-only)",
    "tpm (use-gated policy)",
    "tpm (sealed K)",
    "usim over PC/SC (emulated)",
    "modem over AT+CSIM (emulated)",
    *(f"tpm part {name}" for name in profiles.names()),  # the bench swtpm as each real part
)
PHYSICAL_ROWS = (
    "tpm (physical)",
    "usim over PC/SC (physical reader)",
    "modem over AT+CSIM (physical)",
)


@pytest.fixture
def no_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab_detect, "detect_tpms", lambda: [])
    monkeypatch.setattr(lab_detect, "detect_readers", lambda: ([], [], "ok"))
    monkeypatch.setattr(lab_detect, "detect_serial_ports", lambda: ([], []))


def test_every_row_of_the_issue_has_a_factory() -> None:
    names = list(TRE_FACTORIES)
    for row in ("software (native kernel)", *LAB_ROWS, *PHYSICAL_ROWS):
        assert row in names
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("row", LAB_ROWS)
def test_lab_rows_without_a_lab_are_unavailable_with_a_fix(row: str) -> None:
    with pytest.raises(Unavailable) as caught:
        TRE_FACTORIES[row](NO_LAB)
    assert "no lab" in str(caught.value) and "--no-lab" in (caught.value.fix or "")


def test_without_lab_or_hardware_only_software_runs_and_the_rest_says_why(
    no_hardware: None,
) -> None:
    providers, skipped = build_providers(NO_LAB)
    try:
        assert {p.tre for p in providers} == {
            "software (native kernel)",
            "software (python kernel)",
            # the emulated card's engine in-process needs no lab either
            "usim in-process (milenage)",
            "usim in-process (hmac-sha256)",
        }
        reasons = {s.tre: s.reason for s in skipped}
        assert set(reasons) == set(LAB_ROWS) | set(PHYSICAL_ROWS)
        assert all(reasons[row].startswith("no lab") for row in LAB_ROWS)
        assert reasons["tpm (physical)"].startswith("no physical TPM found")
        assert reasons["usim over PC/SC (physical reader)"].startswith("no physical PC/SC reader")
        assert reasons["modem over AT+CSIM (physical)"].startswith("no serial modem found")
    finally:
        for provider in providers:
            provider.close()


def test_physical_tpm_needs_permission_for_nv_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chip = TpmDevice("/dev/tpmrm0", "device:/dev/tpmrm0", "IFX", "SLB9670", "7.85.4555.0")
    monkeypatch.setattr(lab_detect, "detect_tpms", lambda: [chip])
    monkeypatch.delenv(tpm_tres.HARDWARE_ENV, raising=False)
    with pytest.raises(Unavailable) as caught:
        tpm_tres.physical_tpm_factory(NO_LAB)
    assert "/dev/tpmrm0 (IFX 7.85.4555.0) found" in str(caught.value)
    assert caught.value.fix == f"set {tpm_tres.HARDWARE_ENV}=1 to allow it"


def test_physical_tpm_that_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = TpmDevice("/dev/tpm0", "device:/dev/tpm0", error="PermissionError: denied")
    monkeypatch.setattr(lab_detect, "detect_tpms", lambda: [broken])
    with pytest.raises(Unavailable, match="/dev/tpm0 does not answer: PermissionError"):
        tpm_tres.physical_tpm_factory(NO_LAB)


def test_physical_reader_needs_the_cards_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = Reader("Gemalto PC Twin Reader 00 00", "3b9f96801f", card_present=True)
    monkeypatch.setattr(lab_detect, "detect_readers", lambda: ([reader], [], "ok"))
    monkeypatch.delenv(uicc_tres.CARD_PROFILE_ENV, raising=False)
    with pytest.raises(Unavailable) as caught:
        uicc_tres.physical_reader_factory(NO_LAB)
    assert "'Gemalto PC Twin Reader 00 00' with a card" in str(caught.value)
    assert uicc_tres.CARD_PROFILE_ENV in (caught.value.fix or "")


def test_physical_reader_without_a_card(monkeypatch: pytest.MonkeyPatch) -> None:
    empty = Reader("Gemalto PC Twin Reader 00 00")
    monkeypatch.setattr(lab_detect, "detect_readers", lambda: ([empty], [], "ok"))
    with pytest.raises(Unavailable, match=r"no physical PC/SC reader with a card \(1 without"):
        uicc_tres.physical_reader_factory(NO_LAB)


def test_physical_modem_needs_its_port_named(monkeypatch: pytest.MonkeyPatch) -> None:
    port = SerialPort("/dev/ttyUSB2", "EG25", "USB VID:PID=2C7C:0125", 0x2C7C, 0x125)
    monkeypatch.setattr(lab_detect, "detect_serial_ports", lambda: ([port], []))
    monkeypatch.delenv(uicc_tres.MODEM_PORT_ENV, raising=False)
    with pytest.raises(Unavailable) as caught:
        uicc_tres.physical_modem_factory(NO_LAB)
    assert "/dev/ttyUSB2" in str(caught.value)
    assert uicc_tres.MODEM_PORT_ENV in (caught.value.fix or "")


def test_lab_card_that_is_not_running_is_unavailable() -> None:
    class Card:
        state, note, pid = "crashed", "exit 1", None

    class Lab:
        card = Card()
        modem = None
        lab_dir = "/nonexistent"

    ctx: Any = LabContext(lab=Lab(), subscribers=10, quick=True)
    with pytest.raises(Unavailable, match="virtual card is crashed: exit 1"):
        uicc_tres.lab_card_factory(ctx)
    with pytest.raises(Unavailable, match="lab's modem is absent"):
        uicc_tres.lab_modem_factory(ctx)
