"""The TPM front's bookkeeping without processes: choices checked before anything changes,
status from front.json, the tabrmd bus registry lookup."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from host.cli import main
from lab import abrmd
from lab.front import TpmFront, check_choice
from lab.lab import Lab
from tpm import connection
from trelab.errors import BadInput


def test_unknown_profile_or_manager_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="slb9670"):
        Lab(tmp_path / "lab", tpm_profile="slb-nothing")
    with pytest.raises(BadInput, match="abrmd"):
        check_choice(None, "systemd")
    check_choice("none", "none")  # "none" removes what runs


def test_cli_refuses_an_unknown_profile_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "lab"
    code = main(["lab", "up", "--lab-dir", str(target), "--tpm-profile", "nope"])
    assert code == 2 and not target.exists()
    assert "nope" in capsys.readouterr().err


def test_status_reads_front_json(tmp_path: Path) -> None:
    front = TpmFront(tmp_path)
    assert front.status().state == "stopped" and front.status().tcti is None
    front.dir.mkdir()
    record = {
        "proxy": {"pid": 2**22 + 7, "start": 1, "port": 40000, "profile": "slb9670",
                  "swtpm_port": 39000},
        "abrmd": None,
    }  # fmt: skip
    front.record_file.write_text(json.dumps(record))
    status = front.status()  # that pid is not a proxy: crashed, no TCTI to hand out
    assert status.state == "crashed" and status.profile == "slb9670" and status.tcti is None
    assert "proxy gone" in status.note


def test_tabrmd_tcti_finds_the_labs_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/somewhere/else")
    name = abrmd.bus_name_for(tmp_path / "lab")
    assert name.startswith(connection.TABRMD_BUS_PREFIX)
    registry = connection.bus_registry_dir()
    registry.mkdir(parents=True)
    (registry / name).write_text("unix:path=/tmp/lab-bus\n")
    connection._tabrmd_environment(f"bus_name={name},bus_type=session")
    assert os.environ["DBUS_SESSION_BUS_ADDRESS"] == "unix:path=/tmp/lab-bus"
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/mine")
    connection._tabrmd_environment("bus_name=com.example.Other,bus_type=session")
    assert os.environ["DBUS_SESSION_BUS_ADDRESS"] == "unix:path=/mine"  # not a lab's: untouched
    assert abrmd.tcti(name) == f"tabrmd:bus_name={name},bus_type=session"
