"""The real lab: swtpm + EK chain, pcscd + vpcd readers, ownership, crashes, ports, the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509

from host.cli import main
from lab import pcscd, swtpm
from lab.detect import describe_tpm, detect
from lab.lab import Lab, LabStatus
from trelab import proc
from trelab.errors import CheckFailed, Unavailable

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


def _tpm_info(tcti: str) -> dict[str, str]:
    name, _, conf = tcti.partition(":")
    return describe_tpm(name, conf)


@pytest.fixture(scope="module")
def spare(lab_factory: Callable[..., Lab], lab: LabStatus) -> Iterator[Lab]:
    """A second lab next to the session one, for tests that break things."""
    instance = lab_factory("spare")
    instance.up()
    yield instance
    instance.down()


# ---- up / status ---------------------------------------------------------------------------


def test_lab_is_up(lab: LabStatus) -> None:
    assert lab.running
    assert lab.swtpm.state == "running"
    assert lab.tcti == f"swtpm:host=127.0.0.1,port={lab.swtpm.port}"
    assert lab.swtpm.ctrl_port == lab.swtpm.port + 1  # type: ignore[operator]
    assert proc.matches(lab.swtpm.pid or 0, program="swtpm")
    record = json.loads((lab.lab_dir / "lab.json").read_text())
    assert record["swtpm"]["pid"] == lab.swtpm.pid


def test_tpm_answers_on_the_tcti(lab_tcti: str) -> None:
    info = _tpm_info(lab_tcti)
    assert info["manufacturer"] == "IBM"
    assert info["vendor"] == "SW TPM"


def test_vpcd_readers_listed(lab: LabStatus) -> None:
    assert {"Virtual PCD 00 00", "Virtual PCD 00 01"} <= set(lab.readers)
    assert {"Virtual PCD 00 00", "Virtual PCD 00 01"} <= set(pcscd.list_readers())


def test_up_twice_is_idempotent(lab: LabStatus) -> None:
    again = Lab(lab.lab_dir).up()
    assert again.swtpm.pid == lab.swtpm.pid
    assert again.swtpm.port == lab.swtpm.port
    assert again.pcscd.pid == lab.pcscd.pid
    assert any("already running" in action for action in again.actions)


def test_status_changes_nothing(lab: LabStatus) -> None:
    before = (lab.lab_dir / "lab.json").read_bytes()
    status = Lab(lab.lab_dir).status()
    assert status.running and status.swtpm.pid == lab.swtpm.pid
    assert (lab.lab_dir / "lab.json").read_bytes() == before
    assert status.actions == ()


# ---- EK certificate chain ------------------------------------------------------------------


def test_ek_chain_verifies_with_openssl(lab: LabStatus) -> None:
    for name in ("ek-rsa2048", "ek-ecc-p384", "platform"):
        done = subprocess.run(
            ["openssl", "verify", "-CAfile", str(lab.ca.root), "-untrusted",
             str(lab.ca.intermediate), str(lab.ca.certs[name])],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip().endswith(": OK")


def test_ek_certs_match_nv_and_key_types(lab: LabStatus) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    nv = swtpm.read_nv_certificates(lab.swtpm.port or 0)
    for name, path in lab.ca.certs.items():
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        assert cert == x509.load_der_x509_certificate(nv[name])
    rsa_key = x509.load_pem_x509_certificate(lab.ca.certs["ek-rsa2048"].read_bytes()).public_key()
    ecc_key = x509.load_pem_x509_certificate(lab.ca.certs["ek-ecc-p384"].read_bytes()).public_key()
    assert isinstance(rsa_key, rsa.RSAPublicKey) and rsa_key.key_size == 2048
    assert isinstance(ecc_key, ec.EllipticCurvePublicKey) and ecc_key.curve.name == "secp384r1"


def test_bundle_is_root_plus_intermediate(lab: LabStatus) -> None:
    bundle = x509.load_pem_x509_certificates(lab.ca.bundle.read_bytes())
    root = x509.load_pem_x509_certificate(lab.ca.root.read_bytes())
    intermediate = x509.load_pem_x509_certificate(lab.ca.intermediate.read_bytes())
    assert bundle == [root, intermediate]
    assert lab.ca.verified
    private = lab.lab_dir / "ca" / "private"
    assert private.stat().st_mode & 0o077 == 0  # the CA keys are not for others


# ---- two labs, ownership -------------------------------------------------------------------


def test_two_labs_side_by_side(lab: LabStatus, spare: Lab) -> None:
    other = spare.status()
    assert other.running
    assert {lab.swtpm.port, lab.swtpm.ctrl_port}.isdisjoint(
        {other.swtpm.port, other.swtpm.ctrl_port}
    )
    assert other.swtpm.pid != lab.swtpm.pid
    assert other.pcscd.pid == pcscd.running_pid()  # one pcscd per host, shared
    assert _tpm_info(lab.tcti)["manufacturer"] == _tpm_info(other.tcti)["manufacturer"]
    # Each lab has its own supplier CA: the other lab's EK does not chain to ours.
    ours_root = x509.load_pem_x509_certificate(lab.ca.root.read_bytes())
    ours_issuer = x509.load_pem_x509_certificate(lab.ca.intermediate.read_bytes())
    their_ek = x509.load_pem_x509_certificate(other.ca.certs["ek-rsa2048"].read_bytes())
    with pytest.raises(CheckFailed, match="does not chain"):
        swtpm.verify_ek_chain(their_ek, ours_root, ours_issuer)


def test_down_of_one_lab_leaves_shared_pcscd(
    lab: LabStatus, lab_factory: Callable[..., Lab]
) -> None:
    visitor = lab_factory("visitor")
    up = visitor.up()
    shared = pcscd.running_pid()
    assert shared is not None and up.pcscd.pid == shared
    assert str(visitor.path) in up.pcscd.users
    down = visitor.down()
    assert down.swtpm.state == "stopped"
    assert pcscd.running_pid() == shared
    assert any("left running" in action for action in down.actions)
    assert str(visitor.path) not in Lab(lab.lab_dir).status().pcscd.users
    assert Lab(lab.lab_dir).status().running


def test_down_leaves_a_pcscd_it_did_not_start(
    lab: LabStatus, lab_factory: Callable[..., Lab], tmp_path: Path
) -> None:
    # A registry of its own: for this lab the running pcscd is someone else's.
    outsider = lab_factory("outsider", registry=pcscd.PcscdRegistry(tmp_path / "registry"))
    shared = pcscd.running_pid()
    up = outsider.up()
    assert not up.pcscd.owned
    assert "pcscd already running" in " ".join(up.actions)
    down = outsider.down()
    assert "not started by trelab" in " ".join(down.actions)
    assert shared is not None and pcscd.running_pid() == shared


# ---- failures: crash, stale pid file, port in use, missing tools ---------------------------


def test_crashed_swtpm_detected_and_restarted(spare: Lab) -> None:
    before = spare.up()
    ek_before = before.ca.certs["ek-rsa2048"].read_bytes()
    os.kill(before.swtpm.pid or 0, signal.SIGKILL)
    assert proc.wait_until(lambda: not proc.is_alive(before.swtpm.pid or 0), 5.0)
    crashed = spare.status()
    assert crashed.swtpm.state == "crashed" and not crashed.running
    assert "restarts" in crashed.swtpm.note
    again = spare.up()
    assert again.swtpm.state == "running"
    assert again.swtpm.pid != before.swtpm.pid
    assert again.swtpm.port == before.swtpm.port  # same TCTI for its clients
    assert any("crashed" in action for action in again.actions)
    nv = swtpm.read_nv_certificates(again.swtpm.port or 0)
    same = x509.load_der_x509_certificate(nv["ek-rsa2048"])
    assert same == x509.load_pem_x509_certificate(ek_before)  # same TPM state


def test_crashed_swtpm_whose_port_was_taken_moves(spare: Lab) -> None:
    before = spare.up()
    os.kill(before.swtpm.pid or 0, signal.SIGKILL)
    assert proc.wait_until(lambda: not proc.is_alive(before.swtpm.pid or 0), 5.0)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", before.swtpm.port or 0))
        squatter.listen()
        again = spare.up()
    assert again.running and again.swtpm.port != before.swtpm.port
    assert any("taken" in action for action in again.actions)


def test_stale_lab_json_and_pid_file(spare: Lab) -> None:
    spare.down()
    me = os.getpid()  # a live process that is not swtpm: must never be signalled
    start = proc.starttime(me)
    record = {
        "version": 1,
        "swtpm": {"pid": me, "start": start, "port": 1, "ctrl_port": 2},
        "ca": {"verified": True},
    }
    (spare.path / "lab.json").write_text(json.dumps(record))
    (spare.path / "swtpm" / "swtpm.pid").write_text(f"{me}\n")
    status = spare.status()
    assert status.swtpm.state == "crashed"
    up = spare.up()
    assert up.swtpm.state == "running" and up.swtpm.pid != me
    spare.down()
    (spare.path / "swtpm" / "swtpm.pid").write_text(f"{me}\n")  # pid file only, no lab.json
    assert "stale pid file" in spare.status().swtpm.note
    down = spare.down()
    assert not (spare.path / "swtpm" / "swtpm.pid").exists()
    assert any("pid file" in action for action in down.actions)
    up = spare.up()
    assert up.running


def test_port_in_use_is_a_clear_error(spare: Lab) -> None:
    spare.down()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(swtpm.PortInUse) as caught:
            Lab(spare.path, port=port, registry=spare.registry).up()
    message = str(caught.value)
    assert f"port {port}" in message and "fix:" in message and "\n" not in message
    assert isinstance(caught.value, Unavailable)
    assert spare.status().swtpm.state == "stopped"  # nothing half-up left behind
    spare.up()


def test_missing_binary_is_unavailable(spare: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(Unavailable, match=r"swtpm not found on PATH \(fix: apt-get install"):
        Lab(spare.path).up()


def test_lost_lab_json_is_recovered(spare: Lab) -> None:
    running = spare.up()
    (spare.path / "lab.json").unlink()
    status = spare.status()
    assert status.swtpm.state == "running" and "lab.json missing" in status.swtpm.note
    adopted = spare.up()
    assert adopted.swtpm.pid == running.swtpm.pid
    assert any("adopted" in action for action in adopted.actions)
    (spare.path / "lab.json").unlink()
    down = spare.down()
    assert any("lab.json had lost" in action for action in down.actions)
    assert proc.wait_until(lambda: not proc.is_alive(running.swtpm.pid or 0), 5.0)
    spare.up()


# ---- detect --------------------------------------------------------------------------------


def test_detect_finds_no_hardware_here(lab: LabStatus) -> None:
    found = detect()
    if not any(Path(f"/dev/{n}").exists() for n in ("tpmrm0", "tpm0")):
        assert found.tpms == []
    assert found.pcsc == "ok"
    assert {"Virtual PCD 00 00", "Virtual PCD 00 01"} <= {r.name for r in found.virtual_readers}
    hardware = [r for r in pcscd.list_readers() if not r.startswith("Virtual PCD")]
    assert [r.name for r in found.readers] == hardware
    assert all(p.hwid not in ("", "n/a") for p in found.serial_ports)
    if os.environ.get("TRELAB_HARDWARE") is None:  # this lab machine has none
        assert found.tpms == [] and found.readers == [] and found.serial_ports == []


def test_detect_reports_unreadable_tpm_without_failing(tmp_path: Path) -> None:
    from lab.detect import detect_tpms

    (tmp_path / "tpmrm0").write_bytes(b"")  # a node that is no TPM
    (entry,) = detect_tpms(tmp_path)
    assert entry.error and entry.manufacturer is None


# ---- CLI -----------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    code = "import sys; from host.cli import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=60, check=False,
    )  # fmt: skip


def test_cli_status_json(lab: LabStatus, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "status", "--lab-dir", str(lab.lab_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["version"] == 1
    assert data["tcti"] == lab.tcti
    parts = data["components"]
    assert parts["swtpm"]["state"] == "running" and parts["swtpm"]["pid"] == lab.swtpm.pid
    assert parts["swtpm"]["port"] == lab.swtpm.port
    assert parts["pcscd"]["state"] == "running"
    assert "Virtual PCD 00 00" in parts["pcscd"]["readers"]
    assert parts["pcscd"]["ports"] == [35963, 35964]
    assert parts["ca"]["bundle"] == str(lab.ca.bundle) and parts["ca"]["verified"]


def test_cli_detect_json(lab: LabStatus, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "detect", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"tpms", "readers", "serial_ports", "virtual_readers", "pcsc"} <= set(data)
    if os.environ.get("TRELAB_HARDWARE") is None:
        assert data["tpms"] == [] and data["readers"] == [] and data["serial_ports"] == []


def test_cli_up_and_down_are_separate_processes(spare: Lab) -> None:
    spare.down()
    up = _cli("lab", "up", "--lab-dir", str(spare.path), "--json")
    assert up.returncode == 0, up.stderr
    started = json.loads(up.stdout)
    pid = started["components"]["swtpm"]["pid"]
    assert proc.matches(pid, program="swtpm")  # survived the CLI process
    status = _cli("lab", "status", "--lab-dir", str(spare.path), "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["components"]["swtpm"]["pid"] == pid
    down = _cli("lab", "down", "--lab-dir", str(spare.path), "--json")
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["components"]["swtpm"]["state"] == "stopped"
    assert proc.wait_until(lambda: not proc.is_alive(pid), 5.0)
    stopped = _cli("lab", "status", "--lab-dir", str(spare.path))
    assert stopped.returncode == 3 and "swtpm  stopped" in stopped.stdout


def test_cli_status_exits_3_when_the_modem_or_card_is_down(spare: Lab) -> None:
    """As its help says: any part not running is exit 3, not only swtpm and pcscd."""
    status = spare.up()
    assert status.modem is not None and status.modem.pid is not None
    os.kill(status.modem.pid, signal.SIGKILL)
    assert proc.wait_until(lambda: not proc.is_alive(status.modem.pid or 0), 5.0)
    result = _cli("lab", "status", "--dir", str(spare.path), "--json")
    assert result.returncode == 3, result.stdout
    data = json.loads(result.stdout)
    assert data["running"] is True and data["complete"] is False
    assert data["components"]["modem"]["state"] == "crashed"
    spare.up()  # restarts the modem for the tests after this one


def test_cli_errors_are_one_line(spare: Lab, tmp_path: Path) -> None:
    spare.down()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = str(squatter.getsockname()[1])
        taken = _cli("lab", "up", "--lab-dir", str(spare.path), "--port", port, "--json")
    assert taken.returncode == 3
    assert taken.stderr.count("\n") == 1 and taken.stderr.startswith("trelab: error: ")
    assert json.loads(taken.stdout)["error"]["type"] == "PortInUse"
    missing = _cli("lab", "up", "--lab-dir", str(tmp_path / "x"), env={"PATH": "/nonexistent"})
    assert missing.returncode == 3
    assert missing.stderr == (
        "trelab: error: swtpm not found on PATH (fix: apt-get install swtpm swtpm-tools)\n"
    )
    bad = _cli("lab", "up", "--lab-dir", str(spare.path), "--port", "80")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


# ---- last: disturbs the shared pcscd -------------------------------------------------------


def test_crashed_pcscd_detected_and_restarted(lab: LabStatus) -> None:
    current = Lab(lab.lab_dir).status().pcscd
    if not current.owned:
        pytest.skip("pcscd here was not started by trelab: not ours to crash")
    os.kill(current.pid or 0, signal.SIGKILL)
    assert proc.wait_until(lambda: pcscd.running_pid() is None, 5.0)
    crashed = Lab(lab.lab_dir).status()
    assert crashed.pcscd.state == "crashed" and not crashed.running
    again = Lab(lab.lab_dir).up()
    assert again.running and again.pcscd.owned
    assert again.pcscd.pid not in (None, current.pid)
    assert {"Virtual PCD 00 00", "Virtual PCD 00 01"} <= set(pcscd.list_readers())


def test_a_crashed_lab_does_not_keep_pcscd_in_use(lab: LabStatus, tmp_path: Path) -> None:
    """pcscd is stopped by the last lab that uses it; a lab killed without ``lab down`` keeps
    its lab.json, and must not count as a user once its swtpm is gone."""
    from lab.lab import _lab_still_up

    assert _lab_still_up(str(lab.lab_dir))
    record = json.loads((lab.lab_dir / "lab.json").read_text())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record["swtpm"]["pid"] = dead.pid
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    (crashed / "lab.json").write_text(json.dumps(record))
    assert not _lab_still_up(str(crashed))
    (crashed / "lab.json").write_text("{not json")
    assert _lab_still_up(str(crashed))  # unreadable: never stop pcscd under it
    assert not _lab_still_up(str(tmp_path / "never-up"))
