"""Every lab TRE row of the benchmark on the real lab (quick, 2 rounds): records follow the
schema, each TRE has exactly one raw case, the environment says what each TRE is, and
everything a provider opened is released. Nothing here asserts a timing.

The TPM rows run on a bench swtpm of their own (see bench/tres/tpm.py), so the session lab's
TPM must come out of this untouched; the UICC rows use the session lab's card (reader 0) and
modem, whose SQN state they learn by resynchronising first.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.harness import RunResult, TreProvider, TreSkipped, run_cases
from bench.schema import SCHEMA_NAME, SCHEMA_VERSION, validate_report
from bench.tres.registry import LabContext, build_providers
from bench.tres.tpm import TpmTre
from firmware_stubs.usim.profile import load_profile
from lab.lab import Lab, LabStatus
from tpm.connection import TpmConnection
from trelab import proc

pytestmark = pytest.mark.lab

TPM_ROWS = {  # row → the AKA mode it must report
    "tpm (ecb, load-gated)": "ecb",
    "tpm (cfb-only)": "cfb",
    "tpm (use-gated policy)": "ecb",
    "tpm (sealed K)": "sealed",
}
CARD_ROW = "usim over PC/SC (emulated)"
MODEM_ROW = "modem over AT+CSIM (emulated)"
PHYSICAL_ROWS = (
    "tpm (physical)",
    "usim over PC/SC (physical reader)",
    "modem over AT+CSIM (physical)",
)


@dataclass
class BenchRun:
    run: RunResult
    names: list[str]
    skipped: list[TreSkipped]
    bench_handles: dict[str, list[int]] = field(default_factory=dict)
    bench_mids: int = -1
    bench_pid: int | None = None
    bench_dir: Path | None = None
    bench_tcti: str = ""
    open_fds_during: list[str] = field(default_factory=list)


def _handles(tcti: str) -> dict[str, list[int]]:
    from tpm2_pytss.constants import TPM2_CAP

    out = {}
    with TpmConnection(tcti) as conn:
        for label, first in (("transient", 0x80000000), ("loaded sessions", 0x02000000),
                             ("saved sessions", 0x03000000)):  # fmt: skip
            _, caps = conn.esys.get_capability(TPM2_CAP.HANDLES, first, 64)
            out[label] = [int(h) for h in caps.data.handles if int(h) >> 24 == first >> 24]
    return out


def _fds() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return out


def _lab_tpm_fingerprint(lab: LabStatus) -> Any:
    registry = lab.lab_dir / "mids.json"
    from tpm import nv

    with TpmConnection(lab.tcti) as conn:
        counters = tuple(
            nv.read_counter(conn, index) if nv.counter_defined(conn, index) else None
            for index in (nv.MID_CTR, nv.REG_CTR)
        )
    return registry.read_bytes() if registry.exists() else None, counters


def _measure(lab: LabStatus, rows: list[str]) -> BenchRun:
    """Build ``rows``, run 2 quick rounds, look at the bench TPM before closing everything."""
    now = Lab(lab.lab_dir).status()  # as it is now: an earlier test may have restarted its card
    ctx = LabContext(lab=now, subscribers=50, quick=True)
    providers: list[TreProvider]
    providers, skipped = build_providers(ctx, rows)
    try:
        run = run_cases(providers, rounds=2, quick=True, seed=7, progress=lambda _: None)
        result = BenchRun(run=run, names=[p.tre for p in providers], skipped=skipped)
        tpm_rows = [p for p in providers if isinstance(p, TpmTre)]
        if tpm_rows:
            site = tpm_rows[0].site
            assert all(p.site.tcti == site.tcti for p in tpm_rows)  # one bench TPM for all
            result.bench_tcti, result.bench_pid, result.bench_dir = site.tcti, site.pid, site.path
            result.bench_handles = _handles(site.tcti)
            result.bench_mids = len(site.registry.read().mids)
        result.open_fds_during = _fds()
    finally:
        for provider in providers:
            provider.close()
    return result


@pytest.fixture(scope="module")
def bench(lab: LabStatus) -> Any:
    """The TPM rows and the modem row (the card row needs reader 0: :func:`card_bench`)."""
    before = _lab_tpm_fingerprint(lab)
    return _measure(lab, [*TPM_ROWS, MODEM_ROW]), before


@pytest.fixture(scope="module")
def card_bench(lab: LabStatus, usim_reader: str) -> BenchRun:
    return _measure(lab, [CARD_ROW])


def _check_records(result: BenchRun) -> list[dict[str, Any]]:
    records = result.run.records()
    data = {
        "schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, "generated": "now",
        "ok": True, "verdict": "-", "environment": {}, "method": {}, "conformance": {},
        "tres": result.run.environments, "skipped": [], "records": records,
    }  # fmt: skip
    validate_report(data)
    assert {r["tre"] for r in records} == set(result.names)
    for record in records:
        where = f"{record['tre']} / {record['operation']}"
        assert record["errors"] == [], where
        assert record["summary"]["n"] == 2, where
        assert record["detail"], where
        if not record["raw"]:
            assert record["raw_reference"] and record["overhead_vs_raw"] > 0, where
    for name in result.names:  # exactly one raw case per TRE
        raws = [c.operation for c in result.run.cases if c.tre == name and c.raw]
        assert len(raws) == 1, (name, raws)
    return records


def test_tpm_and_modem_rows_run_and_their_records_follow_the_schema(bench: Any) -> None:
    result, _ = bench
    assert not result.skipped, result.skipped
    assert result.names == [*TPM_ROWS, MODEM_ROW]
    records = _check_records(result)
    operations = {(r["tre"], r["operation"]) for r in records}
    ecb = "tpm (ecb, load-gated)"
    for operation in ("aka-milenage", "aka-milenage (no registry)", "aka-resync", "quote",
                      "quote (bare TPM2_Quote)", "quote (bare TPM2_Quote, bytes)", "verify",
                      "verify (bare signature)",
                      "quote+verify", "mid-import", "aka-5g", "suci",
                      "aka-hmac-sha256"):  # fmt: skip
        assert (ecb, operation) in operations
    # the summary's goal ratios of the ECB row: each from this run's cases of that row
    from bench.summary import goal_ratios

    goals = {g.what for g in goal_ratios({"records": records}) if g.tre == ecb}
    assert "quote + verify ÷ (bare TPM2_Quote as bytes + bare signature verification)" in goals
    assert "real-path AKA: host ÷ (TPM commands + fsync)" in goals
    for row in TPM_ROWS:  # 5G AKA on every TPM row, next to its aka-milenage
        assert {(row, "aka-milenage"), (row, "aka-5g")} <= operations, row
    suci = next(r for r in records if (r["tre"], r["operation"]) == (ecb, "suci"))
    assert "TPM2_ECDH_KeyGen" in suci["detail"] and suci["overhead_vs_raw"] > 0
    assert ("tpm (sealed K)", "aka-tuak") in operations
    # full provisioning (issue 6): on the bench TPM, one provisioning per sample, each ACTIVE
    provisioning = [r for r in records if (r["tre"], r["operation"]) == (ecb, "provisioning")]
    assert len(provisioning) == 1
    assert len(provisioning[0]["samples"]) == 2 and all(s > 0 for s in provisioning[0]["samples"])
    assert "provision" in provisioning[0]["detail"] and provisioning[0]["batch"] == 1
    assert ("tpm (use-gated policy)", "aka-milenage (session per command)") in operations
    assert {(MODEM_ROW, "aka-milenage"), (MODEM_ROW, "aka-5g"), (MODEM_ROW, "aka-resync")} <= (
        operations
    )
    raw = {c.tre: c.operation for c in result.run.cases if c.raw}
    assert raw["tpm (ecb, load-gated)"] == "raw: EncryptDecrypt2 (ECB)"
    assert raw["tpm (cfb-only)"] == "raw: EncryptDecrypt2 (CFB)"
    assert raw["tpm (use-gated policy)"] == "raw: policy + EncryptDecrypt2"
    assert raw["tpm (sealed K)"] == "raw: Unseal"
    assert raw[MODEM_ROW] == "raw: AT+CSIM AUTHENTICATE + GET RESPONSE"


def test_environment_says_what_each_tre_is(bench: Any, lab: LabStatus) -> None:
    result, _ = bench
    env = result.run.environments
    for row, mode in TPM_ROWS.items():
        info = env[row]
        assert info["kind"] == "tpm" and info["aka_mode"] == mode, row
        assert info["tpm"].startswith("IBM") and info["firmware"]
        assert info["swtpm"].startswith("TPM emulator version")
        assert info["tcti"] == result.bench_tcti != lab.tcti  # not the lab's TPM
    assert env["tpm (sealed K)"]["k_form"] == "sealed"
    assert "ECC P-256" in env["tpm (ecb, load-gated)"]["ak"]
    modem = env[MODEM_ROW]
    assert lab.modem is not None and modem["device"].startswith(str(lab.modem.device))
    profile = load_profile(lab.modem.profile)
    assert modem["iccid"] == profile.iccid and modem["imsi"] == profile.imsi
    assert modem["modem"] and modem["modem"] != "unknown"
    assert "resynchronisation" in modem["sqn_catch_up"]
    assert profile.opc is not None
    text = json.dumps(env).lower()
    assert profile.k.hex() not in text and profile.opc.hex() not in text  # no secrets


def test_resources_are_released_and_the_lab_tpm_is_untouched(bench: Any, lab: LabStatus) -> None:
    result, before = bench
    # during the run, between samples: nothing loaded on the bench TPM
    assert result.bench_handles == {"transient": [], "loaded sessions": [], "saved sessions": []}
    # mid-import's and provisioning's teardowns deleted what they installed: only the rows'
    # own MIDs remain
    # (ecb, cfb, use-gated, sealed Milenage, sealed TUAK, and the ECB row's HMAC-SHA-256 set)
    assert result.bench_mids == 6
    # after close: the bench swtpm is stopped and its directory gone
    assert result.bench_pid is not None and not proc.is_alive(result.bench_pid)
    assert result.bench_dir is not None and not result.bench_dir.exists()
    # the modem's pty was open during the run and is closed now
    assert lab.modem is not None
    pty = os.path.realpath(lab.modem.device)
    assert pty in result.open_fds_during
    assert pty not in _fds()
    # the lab's own TPM: registry file and MID_CTR/REG_CTR as before the run
    assert _lab_tpm_fingerprint(lab) == before


def test_card_row_over_pcsc(card_bench: BenchRun, lab: LabStatus, usim_reader: str) -> None:
    from smartcard import scard

    from uicc.links.pcsc import PcscLink

    assert not card_bench.skipped and card_bench.names == [CARD_ROW]
    records = _check_records(card_bench)
    # the lab's card calculates SUCIs: GET IDENTITY is timed too
    operations = {"raw: AUTHENTICATE + GET RESPONSE", "suci", "aka-milenage", "aka-5g"}
    assert {r["operation"] for r in records} == operations | {"aka-resync"}
    card = card_bench.run.environments[CARD_ROW]
    with PcscLink(usim_reader) as link:
        atr = link.atr
    assert atr is not None and card["atr"] == atr.hex() and card["reader"] == usim_reader
    assert card["pcscd"].startswith("pcsc-lite version") and card["protocol"] == "T1"
    assert lab.card is not None and card["iccid"] == load_profile(lab.card.profile).iccid
    assert "resynchronisation" in card["sqn_catch_up"]
    # no PC/SC connection of ours is left: an exclusive connection to reader 0 succeeds
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert hresult == scard.SCARD_S_SUCCESS
    try:
        held: dict[str, Any] = {}

        def exclusive() -> bool:
            code, handle, _ = scard.SCardConnect(
                context,
                usim_reader,
                scard.SCARD_SHARE_EXCLUSIVE,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,  # whichever pcscd has set
            )
            held["card"] = handle
            return bool(code == scard.SCARD_S_SUCCESS)

        assert proc.wait_until(exclusive, 5.0, interval=0.1)
        scard.SCardDisconnect(held["card"], scard.SCARD_LEAVE_CARD)
    finally:
        scard.SCardReleaseContext(context)


def test_physical_rows_run_or_say_why_not(lab: LabStatus) -> None:
    """Absent hardware (the usual case here) is "not run" with a reason; present hardware
    that is not enabled (TRELAB_HARDWARE_TPM, the card's profile) says what to set."""
    now = Lab(lab.lab_dir).status()  # as it is now: an earlier test may have restarted its card
    ctx = LabContext(lab=now, subscribers=50, quick=True)
    providers, skipped = build_providers(ctx, list(PHYSICAL_ROWS))
    try:
        assert {p.tre for p in providers} | {s.tre for s in skipped} == set(PHYSICAL_ROWS)
        assert all(s.reason for s in skipped)
        for provider in providers:  # hardware that was allowed: it must name itself
            assert provider.environment()["kind"] in ("tpm", "uicc")
    finally:
        for provider in providers:
            provider.close()
