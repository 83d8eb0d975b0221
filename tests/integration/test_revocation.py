"""Revoking a TRE stops the MIDs it already holds: ``trelab operator revoke`` suspends each of
them in the owning SHO (its AuC refuses authentication vectors), ``trelab attach`` with one of
them is refused, and no order can resume it. Real processes: ``trelab network serve`` over
HTTP, the agent and the operator commands from the command line, the lab's swtpm."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lab.lab import LabStatus
from network.config import init_config
from tests.integration.test_agent_provision import reference, trelab
from tpm.registry import Registry

pytestmark = pytest.mark.lab


def test_revoking_a_tre_stops_its_mids(
    lab: LabStatus, lab_registry: Registry, tmp_path: Path
) -> None:
    config = init_config(
        tmp_path / "net", ca_bundle=lab.ca.bundle, reference=reference(lab.tcti), force=True
    )
    db = tmp_path / "served.db"
    argv = [sys.executable, "-m", "host.cli", "network", "serve", "--listen", "127.0.0.1:0"]
    argv += ["--db", str(db), "--config", str(config), "--json"]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    registry = lab_registry.path
    store = ["--config", str(config), "--db", str(db)]
    try:
        assert server.stdout is not None
        url = json.loads(server.stdout.readline())["listening"]
        common = ["--tpm", lab.tcti, "--registry", str(registry), "--network", url, "--json"]
        trust = ["--trust", str(config.parent / "device-trust.json")]
        done = trelab("provision", "--sho", "sho-a", *common, *trust)
        assert done.returncode == 0, done.stderr
        mid = json.loads(done.stdout)
        before = trelab("attach", "--mid", mid["mid"], *common, *trust)
        assert before.returncode == 0 and json.loads(before.stdout)["accepted"] is True

        revoked = trelab("operator", "revoke", "--device", mid["device_id"], *store, "--json")
        assert revoked.returncode == 0, revoked.stderr
        changed = {m["mid"]: m["state"] for m in json.loads(revoked.stdout)["mids"]}
        assert changed == {mid["mid"]: "SUSPENDED"}

        after = trelab("attach", "--mid", mid["mid"], *common, *trust)
        assert after.returncode == 1, after.stdout
        assert "revoked" in after.stderr
        resume = trelab(
            "operator", "order", "--mid", mid["mid"], "--transition", "resume", "--sho", "sho-a",
            "--network", url, "--config", str(config), "--json",
        )  # fmt: skip
        assert resume.returncode == 1 and "revoked" in resume.stderr, resume.stderr
        again = trelab("provision", "--sho", "sho-a", *common, *trust)
        assert again.returncode == 1 and "revoked" in again.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    audit = trelab(
        "network", "audit", "--db", str(db), "--config", str(config), "--last", "50", "--json"
    )
    assert audit.returncode == 0 and json.loads(audit.stdout)["verified"] is True
    events = [(e["event"], e["subject"]) for e in json.loads(audit.stdout)["last"]]
    assert ("revoked-tre", mid["mid"]) in events
