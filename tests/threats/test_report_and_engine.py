"""The parts of ``trelab threats`` that need no lab: findings and their exit semantics, the
attack recorder (nothing passes silently), threat selection, and the report renderings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from threats.catalogue import threat
from threats.context import ThreatLab
from threats.engine import complete, select_threats
from threats.report import build_document, render_html, render_json, render_text
from threats.result import Attempt, Finding, Recorder
from trelab.errors import BadInput, Unavailable


def finding(threat_id: str, measures: tuple[str, ...], outcome: str, **kw: object) -> Finding:
    return Finding(threat_id, measures, kw.pop("attack", "a"), outcome, "tried", "result", **kw)  # type: ignore[arg-type]


def test_what_fails_a_run() -> None:
    assert finding("1", ("1",), "error").failed
    assert finding("1", ("1",), "not-blocked").failed
    assert not finding("1", ("1",), "not-blocked", should_block=False).failed
    for outcome in ("blocked", "not-run", "organisational", "ffs"):
        assert not finding("1", ("1",), outcome).failed


def test_an_attempt_concludes_exactly_once() -> None:
    attempt = Attempt("1", ("3",), "x", "tried")
    attempt.blocked("DRF refused unknown-ca", refused="unknown-ca")
    with pytest.raises(RuntimeError):
        attempt.not_blocked("twice")
    rec = Recorder("1")
    done = rec.add(attempt, 0.25)
    assert done.seconds == 0.25 and done.evidence == {"refused": "unknown-ca"}
    with pytest.raises(RuntimeError):
        rec.add(Attempt("1", ("3",), "y", "tried"), 0.0)  # never concluded
    with pytest.raises(KeyError):
        rec.attempt(("1",), "z", "tried", extra="no-such-extra")


class _NoLab:
    tcti = "swtpm:host=127.0.0.1,port=1"


def test_attack_context_never_passes_silently(tmp_path: Path) -> None:
    ctx = ThreatLab(_NoLab(), tmp_path)  # type: ignore[arg-type]
    rec = Recorder("2")
    with ctx.attack(rec, ("1",), "silent", "forgets to conclude"):
        pass
    with ctx.attack(rec, ("1",), "bug", "raises"):
        raise ZeroDivisionError("boom")
    with ctx.attack(rec, ("1",), "lab", "needs a lab part"):
        raise Unavailable("pcscd is down")
    with ctx.attack(rec, ("1",), "scratch", "needs a second TPM"):
        ctx.scratch()
    outcomes = {f.attack: (f.outcome, f.missing) for f in rec.findings}
    assert outcomes == {
        "silent": ("error", ""),
        "bug": ("error", ""),
        "lab": ("not-run", "environment"),
        "scratch": ("not-run", "environment"),
    }
    assert "pcscd is down" in rec.findings[2].result
    assert "ZeroDivisionError: boom" in rec.findings[1].result


def test_select_threats() -> None:
    assert len(select_threats(None)) == 16
    assert select_threats(["3a", "2", "2"]) == ["2", "3a-1", "3a-2", "3a-3", "3a-4"]
    with pytest.raises(BadInput, match="no threat '13'"):
        select_threats(["13"])


def test_complete_names_what_no_check_exercised() -> None:
    entry = threat("10")
    out = complete(entry, [finding("10", ("1", "2"), "blocked")])
    missing = {f.measures[0]: f for f in out[1:]}
    assert missing["8"].attack == "void" and not missing["8"].failed
    assert missing["3"].attack == "not-exercised" and missing["3"].outcome == "not-run"
    assert set(missing) == {"3", "4", "5", "6", "7", "8", "9", "10", "11", "12"}


def _doc(findings: list[Finding]) -> dict[str, object]:
    return build_document(
        findings,
        threat_ids=["1", "3a-2"],
        seconds={"1": 1.5},
        generated="2025-01-01T00:00:00Z",
        total_seconds=2.0,
        lab={"dir": "/tmp/lab", "tcti": "swtpm:host=127.0.0.1,port=2321"},
    )


def test_report_document_and_renderings() -> None:
    findings = [
        finding(
            "1", ("3",), "blocked", attack="ek-self-made-ca", evidence={"refused": "unknown-ca"}
        ),
        finding("1", ("4",), "blocked", attack="relabel", extra="pcr-selection-relabel"),
        finding("3a-2", ("8",), "not-blocked", attack="keeps-k", should_block=False),
        finding("3a-2", ("10",), "not-run", attack="fraud", missing="part"),
        finding("1", ("1", "2"), "not-blocked", attack="<gap>"),
    ]
    doc = _doc(findings)
    assert doc["ok"] is False and len(doc["failed"]) == 1  # type: ignore[arg-type]
    assert doc["counts"] == {
        "blocked": 2,
        "not-blocked": 2,
        "not-run": 1,
        "organisational": 0,
        "ffs": 0,
        "error": 0,
    }
    t1 = doc["threats"][0]  # type: ignore[index]
    assert t1["risk_text"] == "9 (critical)" and t1["seconds"] == 1.5
    cm1 = t1["measures"][0]
    assert cm1["number"] == "1" and [f["attack"] for f in cm1["findings"]] == ["<gap>"]
    extras = {x["tag"]: x["findings"] for x in doc["extras"]}  # type: ignore[attr-defined]
    assert [f["attack"] for f in extras["pcr-selection-relabel"]] == ["relabel"]
    assert extras["replayed-ota"] == []
    assert json.loads(render_json(doc)) == doc
    text = render_text(doc)
    assert "Threat 1 (§7.1.2.1)" in text and "risk 9 (critical)" in text
    assert "not blocked (accepted)" in text and "FAIL:" in text
    assert "pcr-selection-relabel    BLOCKED" in text
    page = render_html(doc)
    assert page.startswith("<!doctype html>") and "&lt;gap&gt;" in page and "<gap>" not in page
    assert "src=" not in page and "href='http" not in page and "<link" not in page
    ok = _doc([f for f in findings if f.attack != "<gap>"])
    assert ok["ok"] is True and "honestly classified" in str(ok["verdict"])
