"""The provisioning-throughput bench for real (issue 5, performance): one ``trelab network
serve`` process, fresh swtpms and one agent process per device. Checks what was recorded —
every provisioning ACTIVE, counts that add up, the server's store holding exactly those MIDs —
and that every process it started is gone afterwards, also after Ctrl-C. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.provision_throughput import run_throughput
from bench.schema import validate_throughput
from network.config import load_config
from network.store import Store
from tests.conftest import lab_failed
from tpm.registry import Registry
from trelab import proc

pytestmark = pytest.mark.lab


@pytest.fixture(autouse=True)
def _swtpm_tools() -> None:
    missing = [t for t in ("swtpm", "swtpm_setup", "swtpm_localca") if not shutil.which(t)]
    if missing:
        lab_failed(f"swtpm tools missing: {', '.join(missing)}")


def processes_naming(path: Path) -> list[int]:
    """Live processes whose command line mentions ``path`` (swtpm state dirs, the server's
    --db, the agents' --registry all live under it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and proc.is_alive(int(entry.name)):
            argv = proc.cmdline(int(entry.name)) or []
            if any(str(path) in arg for arg in argv):
                found.append(int(entry.name))
    return found


def test_levels_1_and_2_provision_every_mid_and_stop_every_process(tmp_path: Path) -> None:
    started: list[int] = []
    section = run_throughput([1, 2], 1, work_dir=tmp_path, started=started)
    validate_throughput(section)
    assert section["ok"] is True and section["interrupted"] is False, section["verdict"]
    levels = {lv["concurrency"]: lv for lv in section["levels"]}
    assert sorted(levels) == [1, 2]
    for c, lv in levels.items():
        assert (lv["attempted"], lv["succeeded"], lv["failed"]) == (c, c, 0), lv["errors"]
        assert lv["states"] == {"ACTIVE": c} and lv["errors"] == []
        assert lv["latency_ms"] is not None and lv["throughput_per_s"] is not None
    warm = section["warmup"]
    assert warm["succeeded"] == 1 and warm["states"] == {"ACTIVE": 1}
    assert section["server"]["active_mids"] == 1 + 1 + 2
    assert section["environment"]["cores"] == os.cpu_count()
    assert section["environment"]["swtpm"].startswith("TPM emulator")

    # the server's store, read here on its own: exactly those MIDs, ACTIVE, one per device
    (work,) = tmp_path.iterdir()
    config = load_config(work / "network" / "network.json")
    store = Store(work / "network.db", config.store_key)
    try:
        with store.transaction() as tx:
            mids = tx.mids()
    finally:
        store.close()
    assert [m.state for m in mids] == ["ACTIVE"] * 4
    assert len({m.device_id for m in mids}) == 4  # a fresh TPM per device, none reused
    assert len({m.imsi for m in mids}) == 4
    # and each agent's own registry holds the one MID it provisioned
    registries = sorted((work / "agents").glob("*/mids.json"))
    assert len(registries) == 4
    installed = {mid for path in registries for mid in Registry(path).read().mids}
    assert installed == {m.mid_id for m in mids}

    # server + 4 swtpms + 4 agents, all stopped
    assert len(started) == 9 and len(set(started)) == 9
    assert [pid for pid in started if proc.is_alive(pid)] == []
    assert processes_naming(work) == []


def test_engines_and_workers_side_by_side_each_run_whole(tmp_path: Path) -> None:
    """Two worker counts side by side (SQLite; the engines differ only by the store URL the
    server is given): one curve each, with its own server and store, every provisioning ACTIVE
    in each, every process stopped."""
    from bench.provision_throughput import run_throughput_matrix

    started: list[int] = []
    section = run_throughput_matrix(
        [2], 1, stores=("sqlite",), worker_counts=(1, 2), work_dir=tmp_path, started=started,
        warmup=False,
    )  # fmt: skip
    validate_throughput(section)
    assert section["ok"] is True, section["verdict"]
    runs = section["matrix"]
    assert [(r["store"], r["workers"]) for r in runs] == [("sqlite", 1), ("sqlite", 2)]
    for run in runs:
        (level,) = run["levels"]
        assert (level["concurrency"], level["succeeded"], level["failed"]) == (2, 2, 0)
        assert run["server"]["active_mids"] == 2 and run["ok"] is True
    assert section["levels"] == runs[0]["levels"]
    assert len(list(tmp_path.iterdir())) == 2  # a folder, a server and a store per curve
    assert len(started) == 2 * (1 + 2 + 2)  # per curve: server, 2 swtpms, 2 agents
    assert [pid for pid in started if proc.is_alive(pid)] == []


def _trelab(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "host.cli", "bench", "throughput", *args]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def test_cli_writes_the_curve_as_json_markdown_and_html(tmp_path: Path) -> None:
    """Under gunicorn (2 workers), with the server-side passes: CPU per provisioning against
    the cryptography alone, and the server alone under fresh registrations."""
    out = tmp_path / "out"
    run = _trelab("--levels", "1", "--per-device", "1", "--no-warmup", "--keep-files",
                  "--workers", "2", "--server-alone", "2", "--out", str(out), "--json")  # fmt: skip
    stdout, stderr = run.communicate(timeout=240)
    assert run.returncode == 0, stderr
    data = json.loads(stdout)
    assert data["ok"] is True
    section = data["provisioning_throughput"]
    validate_throughput(section)
    assert section["warmup"] is None and section["server"]["active_mids"] == 1
    assert json.loads((out / "throughput.json").read_text()) == section
    assert "| 1 | 1/1 |" in (out / "throughput.md").read_text()
    assert "<svg" in (out / "throughput.html").read_text()
    assert "gunicorn, 2 sync worker processes" in section["method"]["server"]
    cpu = section["server_cpu"]
    assert cpu["server_cpu_ms"] > 0 and cpu["crypto_alone_ms"] > 0
    timed = {row["call"]: row for row in cpu["calls"] if row["alone_us_each"] is not None}
    assert timed["ECPrivateKey.sign"]["per_provisioning"] >= 1  # the server signs …
    assert timed["RSAPublicKey.encrypt"]["per_provisioning"] >= 1  # … and wraps to the EK
    (alone,) = section["server_alone"]["levels"]
    assert alone["workers"] == 2 and alone["succeeded"] == alone["requests"], alone["errors"]
    assert processes_naming(out) == []


def test_bad_levels_are_a_usage_error(tmp_path: Path) -> None:
    run = _trelab("--levels", "2,zero", "--out", str(tmp_path), "--json")
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 2 and "--levels" in stderr
    assert json.loads(stdout)["error"]["type"] == "BadInput"
    run = _trelab("--server-alone", "1,²", "--out", str(tmp_path), "--json")
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 2 and "--server-alone" in stderr
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing started


def test_ctrl_c_keeps_the_levels_done_and_stops_every_process(tmp_path: Path) -> None:
    """Ctrl-C as a terminal sends it: SIGINT to the whole foreground process group (the bench,
    its server and agents; swtpm daemons run in sessions of their own)."""
    out = tmp_path / "out"
    run = _trelab("--levels", "1,2", "--per-device", "1", "--no-warmup", "--keep-files",
                  "--out", str(out), start_new_session=True)  # fmt: skip
    assert run.stderr is not None
    seen = []
    for line in run.stderr:  # progress: interrupt once level 2 is being set up
        seen.append(line)
        if "2 devices" in line:
            os.killpg(run.pid, signal.SIGINT)
            break
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode in (1, 130), "".join(seen) + stderr + stdout
    if run.returncode == 1:  # caught between levels: level 1 kept, marked interrupted
        section = json.loads((out / "throughput.json").read_text())
        validate_throughput(section)
        assert section["interrupted"] is True and section["ok"] is False
        assert section["levels"][0]["concurrency"] == 1
        assert section["levels"][0]["succeeded"] == 1
    assert processes_naming(out) == []
