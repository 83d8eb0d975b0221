"""The provisioning-throughput curve's pure parts: levels, /proc parsing, one level's summary,
the verdict, the report section's schema (and old reports staying valid), and its rendering.
Synthetic samples; no timing is asserted."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from bench.report import (
    render_html,
    render_markdown,
    render_throughput_html,
    render_throughput_markdown,
)
from bench.schema import SCHEMA_VERSION, THROUGHPUT, validate_report, validate_throughput
from bench.throughput import (
    ProvisionSample,
    cpu_ticks,
    host_busy_ticks,
    parse_levels,
    summarize_level,
    verdict,
)
from tests.unit.bench.test_harness_report import FakeTre, report_from
from trelab.errors import BadInput

# /proc/PID/stat of a process whose comm holds a space and a ')': utime 250, stime 50
_STAT = "4242 (py (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 3 0 123 4 5\n"


def test_levels_are_parsed_sorted_and_deduplicated() -> None:
    assert parse_levels("1,2,4,8") == (1, 2, 4, 8)
    assert parse_levels(" 4, 1,4 ,2 ") == (1, 2, 4)


@pytest.mark.parametrize("text", ["", "0,1", "1,x", "1;2", "-1", "65", "1.5"])
def test_bad_levels_are_refused(text: str) -> None:
    with pytest.raises(BadInput, match=r"^levels: "):
        parse_levels(text)


def test_cpu_ticks_reads_utime_and_stime_after_the_last_paren() -> None:
    assert cpu_ticks(_STAT) == 300


@pytest.mark.parametrize("text", ["", "4242 S 1 2 3", "4242 (x) S 1 2", "1 (x) S" + " a" * 20])
def test_cpu_ticks_refuses_other_text(text: str) -> None:
    with pytest.raises(BadInput):
        cpu_ticks(text)


def test_host_busy_ticks_leaves_out_idle_and_iowait() -> None:
    stat = "cpu  100 5 20 1000 40 3 2 1 9 9\ncpu0 50 2 10 500 20 1 1 0 0 0\n"
    assert host_busy_ticks(stat) == 100 + 5 + 20 + 3 + 2 + 1
    with pytest.raises(BadInput):
        host_busy_ticks("intr 1 2 3\n")


def _samples(concurrency: int, per_device: int, *, fail: int | None = None) -> list[Any]:
    """Devices provisioning back to back: device d's n-th run from 10 + n·0.5 to + 0.4 + d·0.1."""
    out = []
    for d in range(concurrency):
        for n in range(per_device):
            start = 10.0 + n * 0.5
            if fail is not None and (d, n) == (0, fail):
                out.append(ProvisionSample(d, start, start + 0.2, error="Refused: unknown-ca"))
            else:
                out.append(ProvisionSample(d, start, start + 0.4 + d * 0.1, "ACTIVE", 0.1))
    return out


def _cpu() -> dict[str, float]:
    return {"server": 0.3, "agents": 1.2, "swtpm": 0.3, "host": 2.5}


def test_a_level_counts_throughput_latency_and_cpu() -> None:
    level = summarize_level(2, 3, _samples(2, 3), _cpu())
    assert (level["attempted"], level["succeeded"], level["failed"]) == (6, 6, 0)
    assert level["states"] == {"ACTIVE": 6}
    # first start 10.0, last end 11.0 + 0.5 → 1.5 s for 6 provisionings
    assert level["wall_s"] == pytest.approx(1.5)
    assert level["throughput_per_s"] == pytest.approx(4.0)
    assert level["latency_ms"] == {"median": 450.0, "p95": 500.0, "min": 400.0, "max": 500.0}
    assert level["tpm_ms_median"] == 100.0
    assert level["cores_busy"] == pytest.approx(1.8 / 1.5, abs=0.01)  # host CPU not ours
    assert level["server_cpu_ms_per_provisioning"] == 50.0
    assert level["errors"] == []


def test_a_failed_provisioning_is_counted_and_named_not_timed() -> None:
    level = summarize_level(2, 2, _samples(2, 2, fail=1), _cpu(), errors=["agent 1: exit 3"])
    assert (level["attempted"], level["succeeded"], level["failed"]) == (4, 3, 1)
    assert level["states"] == {"ACTIVE": 3, "none": 1}
    assert level["latency_ms"]["min"] == 400.0  # the 0.2 s failure is not a latency
    assert level["errors"] == ["agent 1: exit 3", "device 0: Refused: unknown-ca"]


def test_an_agent_that_reported_nothing_still_counts_as_failed() -> None:
    level = summarize_level(2, 2, _samples(1, 2), _cpu(), errors=["agent 1: killed"])
    assert (level["attempted"], level["succeeded"], level["failed"]) == (4, 2, 2)
    empty = summarize_level(1, 1, [], _cpu(), errors=["agent 0: no result"])
    assert empty["throughput_per_s"] is None and empty["latency_ms"] is None
    assert empty["failed"] == 1


def test_samples_from_a_worker_are_checked() -> None:
    sample = ProvisionSample.from_json(3, {"start": 1, "end": 2.5, "state": "ACTIVE"})
    assert sample.ok and sample.device == 3 and sample.tpm_seconds is None
    assert not ProvisionSample.from_json(0, {"start": 1, "end": 2, "state": "INSTALLED"}).ok
    for bad in ({"end": 2}, {"start": "a", "end": 2}, {"start": 1, "end": 2, "state": 7},
                {"start": 1, "end": 2, "tpm_seconds": True}):  # fmt: skip
        with pytest.raises(BadInput):
            ProvisionSample.from_json(0, bad)


def section() -> dict[str, Any]:
    """A section as run_throughput builds it, from synthetic levels."""
    levels = [summarize_level(c, 2, _samples(c, 2), _cpu()) for c in (1, 2, 4)]
    data: dict[str, Any] = {
        "generated": "2026-11-28T00:00:00+00:00",
        "method": {"levels": [1, 2, 4], "per_device": 2, "sho": "sho-a"},
        "environment": {"cores": 2, "swtpm": "TPM emulator version 0.7.1", "cpu": "x"},
        "warmup": summarize_level(1, 1, _samples(1, 1), _cpu()),
        "levels": levels,
        "server": {"responses": {"200": 99}, "mids_by_state": {"ACTIVE": 15}, "active_mids": 15},
        "interrupted": False,
    }
    data["ok"], data["verdict"] = verdict(data)
    return json.loads(json.dumps(data))  # what a reader of the file gets


def test_verdict_needs_every_provisioning_active_and_the_store_to_agree() -> None:
    good = section()
    assert good["ok"] is True and "14/14" in good["verdict"] and "1 from the warm-up" in good[
        "verdict"]  # fmt: skip
    short = copy.deepcopy(good)
    short["server"].update(active_mids=14, mids_by_state={"ACTIVE": 14})
    assert verdict(short)[0] is False  # a MID the agents saw ACTIVE is missing in the store
    failed = copy.deepcopy(good)
    failed["levels"][1] = summarize_level(2, 2, _samples(2, 2, fail=0), _cpu())
    assert verdict(failed)[0] is False
    assert verdict({**good, "levels": []})[0] is False
    cut = verdict({**good, "interrupted": True})
    assert cut[0] is False and cut[1].endswith("(interrupted)")


def test_section_follows_the_schema_inside_a_report_and_alone() -> None:
    validate_throughput(section())
    run_report = report_from_fake()
    validate_report(run_report)  # a report without the section (what v2 wrote) stays valid
    old = {**run_report, "schema_version": 2}
    validate_report(old)
    validate_report({**run_report, THROUGHPUT: section()})
    with pytest.raises(BadInput, match="needs schema v3"):
        validate_report({**old, THROUGHPUT: section()})


def report_from_fake() -> dict[str, Any]:
    from bench.harness import run_cases

    run = run_cases([FakeTre("A")], rounds=2, quick=True, seed=3, progress=lambda _: None)
    report = report_from(run)
    assert report["schema_version"] == SCHEMA_VERSION
    return report


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s.pop("levels"),
        lambda s: s.update(ok="yes"),
        lambda s: s["environment"].pop("swtpm"),
        lambda s: s["environment"].pop("cores"),
        lambda s: s["levels"][0].pop("throughput_per_s"),
        lambda s: s["levels"][0].update(succeeded=5),  # succeeded + failed != attempted
        lambda s: s["levels"][1].update(attempted=3, failed=-1),
        lambda s: s["levels"][1].update(concurrency=3),  # attempted != c × per_device
        lambda s: s["levels"][0]["latency_ms"].pop("p95"),
        lambda s: s["levels"][0].update(latency_ms=None),  # successes without a latency
        lambda s: s["levels"][2]["cpu_s"].update(server="fast"),
        lambda s: s["levels"][2]["cpu_s"].update(host=None),
        lambda s: s["levels"][2].update(errors=[1]),
        lambda s: s["levels"][2].update(states={"ACTIVE": -1}),
        lambda s: s["warmup"].pop("wall_s"),
        lambda s: s["server"].update(active_mids=3),  # disagrees with mids_by_state
        lambda s: s["server"].update(responses={"200": "many"}),
    ],
)
def test_damaged_sections_are_refused(damage: Any) -> None:
    data = section()
    damage(data)
    with pytest.raises(BadInput, match=THROUGHPUT):
        validate_throughput(data)
    with pytest.raises(BadInput, match=THROUGHPUT):
        validate_report({**report_from_fake(), THROUGHPUT: data})


def test_renderers_show_the_curve() -> None:
    data = section()
    md = render_throughput_markdown(data)
    assert md.startswith("# Provisioning throughput") and "**PASS" in md
    assert "| 4 | 8/8 |" in md and "2 cores" in md and "TPM emulator version 0.7.1" in md
    page = render_throughput_html(data)
    assert page.startswith("<!doctype html>") and "<svg" in page
    assert "devices provisioning at once" in page  # the plot's axis
    for external in ("src=", "<link", "@import", "url(http"):
        assert external not in page
    report = {**report_from_fake(), THROUGHPUT: data}
    assert "## Provisioning throughput" in render_markdown(report)
    assert "Latency per provisioning" in render_html(report)
    assert "Provisioning throughput" not in render_markdown(report_from_fake())


def test_server_side_sections_render_when_present() -> None:
    from bench.report import render_throughput_html, render_throughput_markdown

    plain = section()
    assert "The server alone" not in render_throughput_markdown(plain)
    data = copy.deepcopy(plain)
    data["server_cpu"] = {
        "provisionings": 5, "server_cpu_ms": 15.0, "crypto_alone_ms": 3.0,
        "crypto_in_profile_ms": 4.0, "ratio_to_crypto_alone": 5.0,
        "calls": [{"call": "ECPrivateKey.sign", "per_provisioning": 5.0, "alone_us_each": 32.0,
                   "ms_per_provisioning": 0.16}],
        "top_other_ms": [{"function": "store.py:230(put_session)", "ms_per_provisioning": 2.1}],
    }  # fmt: skip
    data["server_alone"] = {
        "load": "fresh registrations",
        "levels": [{"workers": 2, "clients": 4, "requests": 10, "succeeded": 10, "per_s": 99.0,
                    "server_cpu_ms_per_request": 4.0, "server_cores_busy": 0.5,
                    "database_cpu_ms_per_request": None, "host_cores_busy": 2.0}],
    }  # fmt: skip
    validate_throughput(data)
    text = render_throughput_markdown(data)
    assert "15.0 ms of server CPU per provisioning" in text and "5.0×" in text
    assert "| ECPrivateKey.sign | 5.0 | 32.0 | 0.16 |" in text
    assert "| 2 | 4 | 10/10 | 99.0 | 4.0 | 0.5 | None | 2.0 |" in text
    assert "put_session" in render_throughput_html(data)


def matrix_section() -> dict[str, Any]:
    """A section as run_throughput_matrix builds it: four combinations side by side, the
    second PostgreSQL one with a failed provisioning at 4 devices."""
    data = section()
    runs = []
    for store in ("sqlite", "postgres"):
        for workers in (1, 2):
            run = section()
            if (store, workers) == ("postgres", 2):
                run["levels"][2] = summarize_level(4, 2, _samples(4, 2, fail=0), _cpu())
                run["ok"], run["verdict"] = verdict(run)
            runs.append({"store": store, "workers": workers, "levels": run["levels"],
                         "server": run["server"], "ok": run["ok"], "verdict": run["verdict"]})  # fmt: skip
    data["matrix"] = runs
    data["server_alone"] = {
        "load": "fresh registrations", "store": "postgres",
        "levels": [{"workers": w, "clients": 2 * w, "requests": 10, "succeeded": 10,
                    "per_s": 50.0 * w, "server_cpu_ms_per_request": 4.0,
                    "server_cores_busy": 0.5 * w, "database_cpu_ms_per_request": 1.0,
                    "host_cores_busy": 1.0 * w} for w in (1, 2)],
    }  # fmt: skip
    return json.loads(json.dumps(data))


def test_engines_and_workers_render_side_by_side() -> None:
    from bench.report import matrix_rows

    data = matrix_section()
    validate_throughput(data)
    validate_report({**report_from_fake(), THROUGHPUT: data})
    headers, rows = matrix_rows(data)
    assert headers == ["devices at once", "SQLite, 1 worker(s)", "SQLite, 2 worker(s)",
                       "PostgreSQL, 1 worker(s)", "PostgreSQL, 2 worker(s)"]  # fmt: skip
    assert [row[0] for row in rows] == ["1", "2", "4"]
    level = data["matrix"][0]["levels"][2]
    assert rows[2][1].startswith(f"{level['throughput_per_s']:.2f} /s, p50 ")
    assert "FAILED" in rows[2][4] and "FAILED" not in rows[2][3]  # the failure shows in its cell
    for text in (render_throughput_markdown(data), render_markdown({**report_from_fake(),
                                                                    THROUGHPUT: data})):  # fmt: skip
        assert "## Engines × workers, side by side" in text
        assert "| devices at once | SQLite, 1 worker(s) |" in text
        assert "## The server alone" in text and "Store: PostgreSQL." in text
        assert "| 2 | 4 | 10/10 | 100.0 |" in text  # the server alone at 2 workers
    page = render_html({**report_from_fake(), THROUGHPUT: data})
    assert "Engines × workers, side by side" in page and "PostgreSQL, 2 worker(s)" in page
    assert "The server alone" in page
    assert matrix_rows(section()) == ([], [])  # a single curve has no side-by-side table


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s["matrix"][0].update(store="mysql"),
        lambda s: s["matrix"][1].update(workers=0),
        lambda s: s["matrix"][2].pop("ok"),
        lambda s: s["matrix"][3]["levels"][0].pop("wall_s"),
    ],
)
def test_damaged_matrices_are_refused(damage: Any) -> None:
    data = matrix_section()
    damage(data)
    with pytest.raises(BadInput, match=r"matrix\["):
        validate_throughput(data)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "mysql"], "--store 'mysql'"),
        (["--store", "sqlite,postgres"], "give --workers too"),
        (["--workers", "1,x"], "--workers '1,x'"),
        (["--workers", "0"], "--workers '0'"),
    ],
)
def test_throughput_cli_refuses_bad_engines_and_worker_counts(
    args: list[str], message: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from host.cli import main

    code = main(["bench", "throughput", "--out", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())  # nothing ran, nothing written
