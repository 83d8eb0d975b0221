"""The main job end to end on a real lab: report files, verdict, and the lab left as found."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

from bench.breakdown import FSYNC, HOST, LINK, TPM
from bench.main_job import load_vector_sets, run_main_job
from bench.schema import validate_report
from lab.lab import Lab


def test_shipped_vectors_cover_every_3gpp_set() -> None:
    sets = load_vector_sets()
    assert len(sets["milenage"]) >= 20  # TS 35.208 §4.3 test sets 1-20
    assert len(sets["tuak"]) == 6  # TS 35.233 test sets 1-6


def test_main_job_writes_report_and_stops_what_it_started(
    tmp_path: Path, lab_factory: Callable[..., Lab]
) -> None:
    lab = lab_factory("mainjob")
    # the PC/SC card row needs Virtual PCD 00 00, which the session lab's card holds while the
    # suite runs (labs wait for the reader): its rows run in test_bench_tres; here the modem's
    # card stands for the UICC side
    report = run_main_job(
        out_dir=tmp_path / "out", lab_dir=lab.path, subscribers=200, quick=True, rounds=3,
        tres=["software", "tpm (ecb", "modem over AT+CSIM (emulated)"], progress=lambda _: None,
    )  # fmt: skip
    assert report.exit_code == 0, report.summary
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    validate_report(data)
    assert data["ok"] is True and data["lab"]["ek_chain_verified"] is True
    conformance = data["conformance"]
    assert conformance["passed"] == conformance["total"] >= 46
    records = {(r["tre"], r["operation"]): r for r in data["records"]}
    aka = records["software (native kernel)", "aka-milenage"]
    assert aka["summary"]["n"] == 3 and aka["overhead_vs_raw"] > 0
    assert ("software (python kernel)", "av-generation") in records
    for operation in ("aka-5g", "suci"):  # 5G rows next to aka-milenage, with the raw ratio
        assert records["software (native kernel)", operation]["overhead_vs_raw"] > 0
    # every TPM and card AKA round split where its time went, the parts summing to the round
    kinds = {tre: env.get("kind") for tre, env in data["tres"].items()}
    split_kinds = set()
    for (tre, operation), record in records.items():
        if operation != "aka-milenage" or kinds.get(tre) not in ("tpm", "uicc"):
            continue
        parts = record["breakdown"]["samples"]
        measured = {TPM, FSYNC} if kinds[tre] == "tpm" else {LINK}
        assert set(parts) == measured | {HOST}, tre
        assert all(v > 0 for part in measured for v in parts[part]), tre
        for i, sample in enumerate(record["samples"]):
            assert math.isclose(sum(parts[p][i] for p in parts), sample, rel_tol=1e-9)
        split_kinds.add(kinds[tre])
    assert split_kinds == {"tpm", "uicc"}
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "**Verdict: PASS**" in markdown and "modem over AT+CSIM" in markdown
    assert f"{FSYNC} " in markdown and f"{LINK} " in markdown  # the summary's split
    assert "<svg" in (tmp_path / "out" / "report.html").read_text()
    assert not lab.status().running  # it started the lab, so it stopped it


def test_main_job_leaves_a_running_lab_running(
    tmp_path: Path, lab_factory: Callable[..., Lab]
) -> None:
    lab = lab_factory("mainjob-running")
    lab.up()
    report = run_main_job(
        out_dir=tmp_path, lab_dir=lab.path, subscribers=50, quick=True, rounds=2,
        tres=["software (native"], progress=lambda _: None,
    )  # fmt: skip
    try:
        assert report.exit_code == 0
        assert lab.status().swtpm.state == "running"
    finally:
        lab.down()  # its card must not hold a reader the later modules' labs need
