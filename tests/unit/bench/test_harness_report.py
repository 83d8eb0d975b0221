"""Harness, schema, compare and renderers on synthetic cases (no timing is asserted)."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from bench.compare import comparability_warnings, compare_reports, summary_line
from bench.harness import Case, run_cases
from bench.report import render_html, render_markdown
from bench.schema import SCHEMA_NAME, SCHEMA_VERSION, validate_report
from trelab.errors import BadInput, Unavailable


class FakeTre:
    def __init__(self, name: str, *, fail_env: bool = False, broken_op: bool = False) -> None:
        self.tre = name
        self.calls: list[tuple[str, int]] = []
        self._fail_env = fail_env
        self._broken_op = broken_op

    def environment(self) -> dict[str, Any]:
        if self._fail_env:
            raise Unavailable("no such device", fix="plug it in")
        return {"kind": "fake"}

    def cases(self, quick: bool) -> list[Case]:
        def make(op: str) -> Any:
            def body(n: int) -> None:
                self.calls.append((op, n))
                if self._broken_op and op == "aka-milenage":
                    raise BadInput("card said 6982")

            return body

        return [
            Case(self.tre, "raw: thing", make("raw"), batch=4, raw=True),
            Case(self.tre, "aka-milenage", make("aka-milenage"), batch=2),
            Case(self.tre, "quote", make("quote")),
        ]

    def close(self) -> None:
        return None


def test_rounds_interleave_and_every_case_gets_every_round() -> None:
    a, b = FakeTre("A"), FakeTre("B")
    run = run_cases([a, b], rounds=6, quick=True, seed=5, progress=lambda _: None)
    assert run.rounds == 6 and not run.interrupted
    assert all(len(c.samples_ns) == 6 for c in run.cases)
    assert ("raw", 4) in a.calls and ("aka-milenage", 2) in a.calls  # batch honoured
    # the order of cases is shuffled per round (seeded): not the same order every round
    ops = [op for op, _ in a.calls[3:]]  # after warm-up
    rounds = [tuple(ops[i : i + 3]) for i in range(0, len(ops), 3)]
    assert len(set(rounds)) > 1


def test_unreachable_tre_is_reported_not_dropped() -> None:
    run = run_cases([FakeTre("ok"), FakeTre("gone", fail_env=True)], rounds=2, quick=True,
                    seed=1, progress=lambda _: None)  # fmt: skip
    assert [s.tre for s in run.skipped] == ["gone"] and "plug it in" in run.skipped[0].reason
    assert {c.tre for c in run.cases} == {"ok"}


def test_failing_case_keeps_its_error_and_others_go_on() -> None:
    run = run_cases([FakeTre("X", broken_op=True)], rounds=3, quick=True, seed=1,
                    progress=lambda _: None)  # fmt: skip
    broken = next(c for c in run.cases if c.operation == "aka-milenage")
    assert broken.samples_ns == [] and "6982" in broken.errors[0]
    assert all(len(c.samples_ns) == 3 for c in run.cases if c is not broken)


def test_ctrl_c_keeps_what_finished() -> None:
    tre = FakeTre("I")
    count = {"n": 0}
    original = tre.cases

    def cases(quick: bool) -> list[Case]:
        out = original(quick)

        def body(n: int) -> None:
            count["n"] += 1
            if count["n"] > 4:  # warm-up + a few rounds, then the user presses Ctrl-C
                raise KeyboardInterrupt

        out[2].body = body
        return out

    tre.cases = cases  # type: ignore[method-assign]
    run = run_cases([tre], rounds=50, quick=True, seed=2, progress=lambda _: None)
    assert run.interrupted and 0 < run.rounds < 50
    assert all(len(c.samples_ns) >= run.rounds for c in run.cases)


def report_from(run: Any) -> dict[str, Any]:
    return {
        "schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, "generated": "2026-01-01",
        "ok": True, "verdict": "fine",
        "environment": {"trelab": "0", "python": "3", "openssl": "O", "cpu": "c", "cores": 2},
        "method": {"rounds": run.rounds, "quick": True, "seed": run.seed},
        "lab": None,
        "conformance": {"total": 1, "passed": 1, "outputs_checked": 7, "results": [
            {"algorithm": "milenage", "implementation": "python", "set": "1", "checked": 7,
             "passed": True, "mismatches": []}]},
        "tres": run.environments,
        "skipped": [{"tre": s.tre, "reason": s.reason} for s in run.skipped],
        "records": run.records(),
    }  # fmt: skip


def test_records_follow_the_schema_with_overhead_against_raw() -> None:
    run = run_cases([FakeTre("A"), FakeTre("B", fail_env=True)], rounds=4, quick=True, seed=3,
                    progress=lambda _: None)  # fmt: skip
    data = json.loads(json.dumps(report_from(run)))  # what a reader of the file gets
    validate_report(data)
    by_op = {r["operation"]: r for r in data["records"]}
    raw = by_op["raw: thing"]
    assert raw["raw"] and raw["overhead_vs_raw"] is None
    aka = by_op["aka-milenage"]
    assert aka["raw_reference"] == "raw: thing"
    assert aka["overhead_vs_raw"] == pytest.approx(
        aka["summary"]["median"] / raw["summary"]["median"]
    )
    lo, hi = aka["ci95_median"]
    assert lo <= aka["summary"]["median"] <= hi
    md = render_markdown(data)
    assert "| A | aka-milenage |" in md and "B: not run — no such device" in md
    page = render_html(data)
    assert page.startswith("<!doctype html>") and "<svg" in page
    for external in ("src=", "<link", "@import", "url(http"):  # self-contained: no fetches
        assert external not in page


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.update(schema_version=1),
        lambda d: d.pop("records"),
        lambda d: d["records"][0].pop("samples"),
        lambda d: d["records"][0]["summary"].update(median="fast"),
        lambda d: d["skipped"].append({"tre": "x"}),
        lambda d: d["records"][0].pop("overhead_vs_raw"),
    ],
)
def test_schema_rejects_damaged_reports(damage: Any) -> None:
    run = run_cases([FakeTre("A")], rounds=2, quick=True, seed=3, progress=lambda _: None)
    data = report_from(run)
    validate_report(data)
    damage(data)
    with pytest.raises(BadInput):
        validate_report(data)


def test_compare_flags_significant_changes_only() -> None:
    run = run_cases([FakeTre("A")], rounds=2, quick=True, seed=3, progress=lambda _: None)
    old = report_from(run)
    for r in old["records"]:
        r["samples"] = [1000.0 + i for i in range(30)]
    new = copy.deepcopy(old)
    new["records"][1]["samples"] = [500.0 + i for i in range(30)]  # twice as fast
    new["records"][2]["samples"] = [1000.0 + (i * 7) % 30 for i in range(30)]  # same values
    new["records"].append(dict(new["records"][0], operation="new-op"))
    changes, only = compare_reports(old, new, random.Random(1).randrange)
    verdicts = {c.operation: c.verdict for c in changes}
    assert verdicts["aka-milenage"] == "faster"
    assert verdicts["quote"] == "no significant change"
    assert only == ["only in new: A / new-op"]
    slower, _ = compare_reports(new, old, random.Random(1).randrange)
    assert {c.operation: c.verdict for c in slower}["aka-milenage"] == "slower"
    assert summary_line(changes).startswith("1 faster, 0 slower,")
    assert comparability_warnings(old, new) == []
    new["method"]["rounds"] = old["method"]["rounds"] + 26
    (warning,) = comparability_warnings(old, new)
    assert "rounds (old) vs" in warning and "wider" in warning
