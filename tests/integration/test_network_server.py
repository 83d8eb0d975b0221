"""The operator side against the real lab TPM (swtpm with EK certificates from swtpm_localca):
register with the real EK certificate, activate the AK credential in the TPM, quote, receive a
MID package built by tpm.package, import it with tpm.mid, receipt it with AK-signed
NV_Certify, get activated by the SHO, and attach with K inside the TPM — in-process and over
HTTP (``trelab network serve`` in a subprocess on a free port, stopped with SIGTERM).

The device side is the host agent (:mod:`host.provision`, :mod:`host.attach`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from lab.lab import LabStatus
from network.config import NetworkConfig, init_config, load_config
from network.server import NetworkApp
from network.store import Store
from protocol.client import HttpTransport, InProcessTransport, Transport
from protocol.errors import Refused, RemoteProtocolError
from protocol.messages import (
    CredentialProof,
    RegisterRequest,
    credential_proof,
    derive_session_id,
)
from protocol.transitions import Session, SessionState

SELECTION = "sha256:0,1,2,3,4,5,6,7"


def _reference(tcti: str) -> dict[str, dict[int, bytes]]:
    from tpm.connection import TpmConnection
    from tpm.pcrsel import parse_selection
    from tpm.quote import read_pcrs
    from tpm.verify import split_pcr_values

    selection = parse_selection(SELECTION)
    with TpmConnection(tcti) as conn:
        return split_pcr_values(selection, read_pcrs(conn, selection))


@pytest.fixture(scope="module")
def config_path(lab: LabStatus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_config(
        tmp_path_factory.mktemp("network"),
        ca_bundle=lab.ca.bundle,
        reference=_reference(lab.tcti),
        pcr_selection=SELECTION,
    )


@pytest.fixture
def app(config_path: Path, tmp_path: Path) -> Any:
    config = load_config(config_path)
    store = Store(tmp_path / "network.db", config.store_key)
    yield NetworkApp(config, store)
    store.close()


def agent_provision(
    lab: LabStatus, transport: Transport, config: NetworkConfig, sho: str
) -> tuple[Any, Any]:
    """The host agent (host.provision) on the lab TPM, with its one MID registry (REG_CTR is
    TPM-wide), against this network: (ProvisionResult, Registry)."""
    from host.agent import parse_device_trust
    from host.provision import provision
    from network.config import device_trust
    from tpm.connection import TpmConnection
    from tpm.registry import Registry

    registry = Registry(lab.lab_dir / "mids.json")
    trust = parse_device_trust(device_trust(config))
    with TpmConnection(lab.tcti) as conn:
        result = provision(conn, registry, transport, trust, sho=sho, network="test")
    return result, registry


def agent_attach(tcti: str, transport: Transport, registry: Any, mid_id: str) -> Any:
    from host.attach import attach_tpm
    from tpm.connection import TpmConnection

    with TpmConnection(tcti) as conn:
        return attach_tpm(conn, registry, transport, mid_id=mid_id)


@pytest.mark.lab
def test_provision_and_attach_in_process(app: NetworkApp, lab: LabStatus, tmp_path: Path) -> None:
    transport = InProcessTransport(app)
    provisioned, registry = agent_provision(lab, transport, app.config, "sho-a")
    mid = provisioned.finished
    assert mid.state == "ACTIVE"
    result = agent_attach(lab.tcti, transport, registry, mid.mid_id)
    assert result.accepted and result.reason == "authenticated"
    with app.store.transaction() as tx:
        stored = tx.mid(mid.mid_id)
        hss = tx.hss(mid.imsi)
    assert stored is not None and stored.state == "ACTIVE" and stored.sho == "sho-a"
    assert hss is not None and hss.state == "active"
    events = [e.event for e in app.store.audit_events()]
    for event in (
        "register",
        "activated",
        "verdict",
        "package",
        "installed",
        "command",
        "activate",
        "attach",
    ):
        assert event in events
    assert app.store.verify_audit() == len(events)
    raw = app.store.path.read_bytes() + Path(f"{app.store.path}-wal").read_bytes()
    assert hss.k not in raw and hss.opc not in raw  # K and OPc are sealed at rest


@pytest.mark.lab
def test_real_ek_from_another_ca_is_refused(
    app: NetworkApp, lab: LabStatus, lab_factory: Any
) -> None:
    """A genuine swtpm EK certificate, but from another lab's manufacturer CA: unknown CA."""
    from tpm.connection import TpmConnection
    from tpm.ek import read_ek_certificates
    from tpm.identity import ensure_ak

    other_lab = lab_factory("other-ca")
    other = other_lab.up()
    try:
        with TpmConnection(other.tcti) as conn:
            ak, _ = ensure_ak(conn, "ecc")
            ek_cert = read_ek_certificates(conn)["rsa2048"].public_bytes(serialization.Encoding.DER)
    finally:
        other_lab.down()  # its card must not hold a reader the later modules' labs need
    nonce = os.urandom(16)
    s = Session("device", SessionState(derive_session_id(ek_cert, ak.public_blob, nonce)))
    wire = s.send(
        s.make(
            RegisterRequest,
            ek_cert=ek_cert,
            ak_public=ak.public_blob,
            device_nonce=nonce,
            sho="sho-a",
        )
    )
    before = app.store.audit_head()
    with pytest.raises(Refused) as caught:
        InProcessTransport(app).post("drf/register", wire)
    assert caught.value.reason == "unknown-ca"
    with app.store.transaction() as tx:
        assert tx.session(s.session_id) is None
    refused = app.store.audit_events()[before[0] :]
    assert [(e.event, e.detail["code"]) for e in refused] == [("refused", "unknown-ca")]


@pytest.mark.lab
def test_wrong_credential_proof_is_refused_and_changes_nothing(
    app: NetworkApp, lab: LabStatus
) -> None:
    from tpm.connection import TpmConnection
    from tpm.ek import read_ek_certificates
    from tpm.identity import ensure_ak

    with TpmConnection(lab.tcti) as conn:
        ak, _ = ensure_ak(conn, "ecc")
        ek_cert = read_ek_certificates(conn)["rsa2048"].public_bytes(serialization.Encoding.DER)
    transport = InProcessTransport(app)
    nonce = os.urandom(16)
    s = Session("device", SessionState(derive_session_id(ek_cert, ak.public_blob, nonce)))
    s.receive(
        transport.post(
            "drf/register",
            s.send(
                s.make(
                    RegisterRequest,
                    ek_cert=ek_cert,
                    ak_public=ak.public_blob,
                    device_nonce=nonce,
                    sho="sho-a",
                )
            ),
        )
    )
    guessed = s.send(s.make(CredentialProof, proof=credential_proof(os.urandom(32), s.transcript)))
    with pytest.raises(Refused) as caught:
        transport.post("drf/proof", guessed)
    assert caught.value.reason == "credential"
    with app.store.transaction() as tx:
        record = tx.session(s.session_id)
    assert record is not None and record.phase == "challenged"  # unchanged: the step can be retried


@pytest.mark.lab
def test_server_subprocess_round_trip_over_http(
    config_path: Path, lab: LabStatus, tmp_path: Path
) -> None:
    """``trelab network serve --listen 127.0.0.1:0`` in a subprocess; a full provisioning and
    attach over HTTP; SIGTERM stops it cleanly (exit 0, JSON report)."""
    argv = [
        sys.executable, "-m", "host.cli", "network", "serve", "--listen", "127.0.0.1:0",
        "--db", str(tmp_path / "served.db"), "--config", str(config_path), "--json",
        "--plain-http",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        assert first, proc.stderr.read() if proc.stderr else "no output"
        url = json.loads(first)["listening"]
        with urllib.request.urlopen(f"{url}/v1/health", timeout=10) as reply:
            assert json.loads(reply.read()) == {"status": "ok"}
        config = load_config(config_path)
        provisioned, registry = agent_provision(lab, HttpTransport(url), config, "sho-b")
        assert agent_attach(
            lab.tcti, HttpTransport(url), registry, provisioned.finished.mid_id
        ).accepted
        with pytest.raises(RemoteProtocolError):  # malformed CBOR over the wire: 400 + Error
            HttpTransport(url).post("drf/register", b"\xff\x00")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert (
        report["stopped"] is True
        and report["responses"]["200"] >= 9
        and report["responses"]["400"] == 1
    )


_CRASH_CHILD = """
import os, sys
from network.config import load_config
from network.roles import Operator
from protocol.records import SessionRecord
from network.store import Store
from network.trust import TpmTrust

config = load_config(sys.argv[1])
store = Store(sys.argv[2], config.store_key)
operator = Operator(config, TpmTrust(config.trusted_cas), random_bytes=os.urandom)
for i in range(int(sys.argv[3])):
    with store.transaction() as tx:  # several writes per transaction: a kill lands inside one
        operator.add_subscriber(tx, sho="sho-a", imsi=f"00101{i:010d}", k=os.urandom(16),
                                opc=os.urandom(16), request_id=f"req-{i}", now=i)
        tx.put_session(SessionRecord(i.to_bytes(32, "big"), "attach", "start", bytes(32), i, i + 1,
                                     secrets={"xres": os.urandom(8)}))
    print(i, flush=True)
store.close()
"""


def test_store_survives_kill_9_mid_loop(tmp_path: Path) -> None:
    """SIGKILL a process in the middle of a transaction loop, reopen: the store is consistent,
    nothing committed is lost, nothing is duplicated, and re-running the loop (the retries)
    adds exactly the missing records."""
    from tests.unit.network.conftest import make_ca

    cert, _ = make_ca()
    ca = tmp_path / "ca.pem"
    ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    config_path = init_config(tmp_path / "net", ca_bundle=ca)
    db, total = tmp_path / "crash.db", 400
    argv = [sys.executable, "-c", _CRASH_CHILD, str(config_path), str(db), str(total)]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = -1
    try:
        assert child.stdout is not None
        while last < 60:
            line = child.stdout.readline()
            assert line, child.stderr.read() if child.stderr else "child ended early"
            last = int(line)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    config = load_config(config_path)
    store = Store(db, config.store_key)
    try:
        with store.transaction() as tx:
            assert tx._one("PRAGMA integrity_check")[0] == "ok"
            count = tx.hss_count()
            for i in range(count):  # committed records are whole, readable and in order
                record = tx.hss(f"00101{i:010d}")
                assert (
                    record is not None and record.request_id == f"req-{i}" and len(record.k) == 16
                )
                assert tx.session(i.to_bytes(32, "big")) is not None
        assert last + 1 <= count <= last + 2  # printed after commit: at most one unreported
        assert store.verify_audit() == count  # one audit entry per record, chain intact
    finally:
        store.close()
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    store = Store(db, config.store_key)
    try:
        with store.transaction() as tx:
            assert tx.hss_count() == total  # the retries added the missing ones, no duplicate
        assert store.verify_audit() == total
    finally:
        store.close()
