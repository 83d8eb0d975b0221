"""Robustness of the host agent (issue 5): ``trelab provision`` killed with SIGKILL at each
step (``TRELAB_TEST_CRASH_AT``) and retried — the retry completes or rolls back, and never
leaves a half-installed MID, a lost MID, a duplicated HSS record or an SQN rollback; and the
refusals — an unknown CA, a revoked TRE, a stale verdict, replayed and reordered messages, a
package for another TRE, a platform changed after validation — each with a clear reason and
an entry in the network's audit trail.

Destructive work (kills, PCR extensions) runs on labs of its own (``lab_factory``); the
operator side runs in this process on a free port.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from host.agent import CRASH_POINTS, AgentRefused
from lab.lab import LabStatus
from protocol.client import InProcessTransport
from protocol.errors import Refused, RemoteProtocolError
from tests.integration.test_agent_provision import (
    Network,
    agent_args,
    network,
    provision,
    trelab,
)
from tests.robustness import check_consistent, own_lab
from tpm.connection import TpmConnection
from tpm.registry import Registry

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def crash_lab(lab_factory: Callable[..., Any]) -> Iterator[LabStatus]:
    with own_lab(lab_factory, "agent-crash") as status:
        yield status


@pytest.fixture(scope="module")
def crash_net(crash_lab: LabStatus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    net = Network(tmp_path_factory.mktemp("crash-net"), crash_lab)
    try:
        yield net
    finally:
        net.close()


@pytest.fixture(scope="module")
def crash_registry(crash_net: Network) -> Path:
    """The crash lab TPM's one MID registry (REG_CTR is TPM-wide: one registry per TPM)."""
    return crash_net.dir.parent / "mids.json"


# ---- kill -9 at every step --------------------------------------------------------------------

_POINTS = (  # one per recovery path; "after-import" is the command-line test's
    "after:drf/register",
    "after:dpf/package",
    "before-import",
    "import/tpm:import_",
    "import/tpm:nv_define_space",  # the MID's lifecycle index, not written yet
    "import/tpm:nv_write",  # (INSTALLED, 1) written with the owner's approval, MID_CTR not yet
    "import/tpm:nv_increment",
    "import/tpm:nv_increment#2",
    "after:dpf/receipt",
    "transition/tpm:nv_write",
    "before:dpf/receipt#2",
    "after:dpf/receipt#2",
)


#: Kills before the journal's first entry (nothing in the TPM changed yet).
_EARLY = frozenset(
    {"after:drf/register", "before:drf/proof", "after:pva/evidence", "after:dpf/package"}
)


def test_the_crash_points_tested_are_declared() -> None:
    declared = {p.partition("#")[0] for p in CRASH_POINTS}
    assert {p.partition("#")[0] for p in _POINTS} <= declared


@pytest.mark.parametrize("point", _POINTS)
def test_kill_9_during_provisioning_then_retry(
    crash_lab: LabStatus, crash_net: Network, tmp_path_factory: pytest.TempPathFactory, point: str
) -> None:
    from host.attach import attach_tpm
    from host.provision import AgentFiles
    from host.provision import provision as run

    registry_path = crash_net.dir.parent / "mids.json"  # one registry for this TPM
    registry = Registry(registry_path)
    before = check_consistent(crash_net, crash_lab, registry)
    args = agent_args(crash_lab, crash_net, registry_path)
    killed = trelab("provision", "--sho", "sho-a", *args, env={"TRELAB_TEST_CRASH_AT": point})
    assert killed.returncode == -9, (point, killed.returncode, killed.stderr[-800:])
    journaled = AgentFiles(registry).read().journal is not None  # once the TPM is to change
    assert journaled == (point not in _EARLY)
    with TpmConnection(crash_lab.tcti) as conn:  # the retry: the same code `trelab provision` runs
        result = run(
            conn, registry, crash_net.http, crash_net.trust, sho="sho-a", network=crash_net.url
        )
    assert result.finished.state == "ACTIVE"
    after = check_consistent(crash_net, crash_lab, registry)
    assert after["active"] == before["active"] | {result.finished.mid_id}  # exactly one more
    assert AgentFiles(registry).read().journal is None
    with TpmConnection(crash_lab.tcti) as conn:
        done = attach_tpm(conn, registry, crash_net.http, mid_id=result.finished.mid_id)
    assert done.accepted
    if point in _EARLY:
        assert not result.resumed and not result.rolled_back  # a new session supersedes
    elif point == "import/tpm:nv_increment":
        assert not result.resumed and result.rolled_back  # sequence spent: a new package
    else:  # incl. import/tpm:nv_increment#2: the registry commit repaired from REG_CTR
        assert result.resumed and not result.rolled_back


def test_a_killed_agent_retried_from_the_command_line(
    crash_lab: LabStatus, crash_net: Network
) -> None:
    registry_path = crash_net.dir.parent / "mids.json"
    args = agent_args(crash_lab, crash_net, registry_path)
    killed = trelab(
        "provision", "--sho", "sho-b", *args, env={"TRELAB_TEST_CRASH_AT": "after-import"}
    )
    assert killed.returncode == -9
    retry = trelab("provision", "--sho", "sho-b", *args)
    assert retry.returncode == 0, retry.stderr
    out = json.loads(retry.stdout)
    assert out["resumed"] is True and out["state"] == "ACTIVE" and out["sho"] == "sho-b"
    check_consistent(crash_net, crash_lab, Registry(registry_path))


# ---- refusals, each with a reason and an audit entry ------------------------------------------


def test_unknown_ca_is_refused_and_audited(
    lab: LabStatus, crash_lab: LabStatus, crash_registry: Path, tmp_path: Path
) -> None:
    """The crash lab's genuine EK certificate, against a network that trusts only the session
    lab's manufacturer CA."""
    with network(tmp_path, crash_lab, ca_bundle=lab.ca.bundle) as net:
        with pytest.raises(Refused) as caught:
            provision(crash_lab, net, Registry(crash_registry), "sho-a")
        assert caught.value.reason == "unknown-ca"
        assert [(e, d["code"]) for e, _, d in net.events()] == [("refused", "unknown-ca")]


def test_revoked_device_is_refused_and_audited(
    crash_lab: LabStatus, crash_registry: Path, tmp_path: Path
) -> None:
    registry = crash_registry
    with network(tmp_path, crash_lab) as net:
        first = provision(crash_lab, net, Registry(registry), "sho-a")
        revoked = trelab(
            "operator", "revoke", "--device", first.device_id, "--config", str(net.config_path),
            "--db", str(net.db), "--json",
        )  # fmt: skip
        assert revoked.returncode == 0, revoked.stderr
        again = trelab("provision", "--sho", "sho-a", *agent_args(crash_lab, net, registry))
        assert again.returncode == 1 and "revoked" in again.stderr
        events = [(e, d.get("code")) for e, _, d in net.events()]
        assert ("revoked", None) in events and ("refused", "revoked") in events


def test_stale_verdict_is_refused_and_a_retry_completes(
    crash_lab: LabStatus, crash_registry: Path, tmp_path: Path
) -> None:
    """The DPF refuses a package once the PVA's verdict has expired (the network's clock
    jumps past the verdict's lifetime between validation and the package request)."""
    from host.provision import AgentFiles

    clock = _Clock(time.time())
    registry = Registry(crash_registry)
    with network(tmp_path, crash_lab, clock=clock) as net:
        late = _Late(net.inproc, clock, after="pva/evidence", jump=net.config.verdict_lifetime + 1)
        with TpmConnection(crash_lab.tcti) as conn:
            from host.provision import provision as run

            with pytest.raises(Refused) as caught:
                run(conn, registry, late, net.trust, sho="sho-a", network="t")
            assert caught.value.reason == "stale-verdict"
            assert AgentFiles(registry).read().journal is None
            result = run(conn, registry, net.inproc, net.trust, sho="sho-a", network="t")
        assert result.finished.state == "ACTIVE" and not result.resumed
        assert ("refused", "stale-verdict") in [(e, d.get("code")) for e, _, d in net.events()]


class _Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class _Late:
    """A transport after which the network's clock jumps (``after`` an endpoint)."""

    def __init__(self, inner: Any, clock: _Clock, *, after: str, jump: int) -> None:
        self.inner, self.clock, self.after, self.jump = inner, clock, after, jump

    def post(self, endpoint: str, wire: bytes, *, grant: bytes | None = None) -> bytes:
        reply: bytes = self.inner.post(endpoint, wire, grant=grant)
        if endpoint == self.after:
            self.clock.now += self.jump
        return reply


class _Recorder:
    """A transport that records every request and can replay an earlier reply instead."""

    def __init__(self, inner: Any, *, replay_at: str | None = None) -> None:
        self.inner, self.replay_at = inner, replay_at
        self.sent: list[tuple[str, bytes, bytes]] = []

    def post(self, endpoint: str, wire: bytes, *, grant: bytes | None = None) -> bytes:
        reply: bytes = self.inner.post(endpoint, wire, grant=grant)
        if endpoint == self.replay_at and self.sent:
            reply = self.sent[-1][2]  # the previous answer, replayed by a man in the middle
        self.sent.append((endpoint, wire, reply))
        return reply


def test_replayed_and_reordered_messages_are_refused(
    crash_lab: LabStatus, crash_registry: Path, tmp_path: Path
) -> None:
    from host.provision import provision as run

    registry = Registry(crash_registry)
    with network(tmp_path, crash_lab) as net:
        # device side: an earlier reply replayed in place of the verdict
        mitm = _Recorder(net.inproc, replay_at="pva/evidence")
        with TpmConnection(crash_lab.tcti) as conn, pytest.raises(RemoteProtocolError):
            run(conn, registry, mitm, net.trust, sho="sho-a", network="t")
        events = net.events()
        assert ("device-refused", "protocol") in [(e, d.get("code")) for e, _, d in events]
        # network side: a whole session recorded, then replayed and reordered
        recorder = _Recorder(net.inproc)
        with TpmConnection(crash_lab.tcti) as conn:
            run(conn, registry, recorder, net.trust, sho="sho-a", network="t")
        before = len(net.events())
        for endpoint, wire, reply in recorder.sent:  # byte-identical replays: same answer,
            assert net.inproc.post(endpoint, wire) == reply  # nothing happens twice
        assert len(net.events()) == before
        sent = dict((e, w) for e, w, _ in recorder.sent)
        with pytest.raises(RemoteProtocolError):  # the PackageRequest where Evidence is due
            net.inproc.post("pva/evidence", sent["dpf/package"])
        proof = sent["drf/proof"]
        with pytest.raises(RemoteProtocolError):  # altered in transit: one byte flipped
            net.inproc.post("drf/proof", proof[:-1] + bytes([proof[-1] ^ 1]))
        codes = [(e, d.get("code")) for e, _, d in net.events(before)]
        assert codes == [("refused", "protocol"), ("refused", "protocol")]


def test_package_for_another_tre_is_refused_by_the_device(
    lab: LabStatus, crash_lab: LabStatus, crash_registry: Path, tmp_path: Path
) -> None:
    """A DPF that wraps the MID to another TPM (the session lab's EK) — signed, in this session:
    the agent refuses before any TPM command, reports it, and MID_CTR does not move."""
    from network.trust import tpm_package_builder
    from tpm import nv
    from tpm.ek import loaded_ek

    with TpmConnection(lab.tcti) as conn, loaded_ek(conn) as (_ek, public):
        other_ek = bytes(public.marshal())

    def misdirected(inputs: Any) -> Any:
        import dataclasses

        return tpm_package_builder(dataclasses.replace(inputs, ek_public=other_ek))

    with network(tmp_path, crash_lab, builder=misdirected) as net:
        with TpmConnection(crash_lab.tcti) as conn:
            counter = nv.read_counter(conn, nv.MID_CTR)
        with pytest.raises(AgentRefused) as caught:
            provision(crash_lab, net, Registry(crash_registry), "sho-a")
        assert caught.value.code == "wrong-tre" and "another TRE" in str(caught.value)
        with TpmConnection(crash_lab.tcti) as conn:
            assert nv.read_counter(conn, nv.MID_CTR) == counter
        assert ("device-refused", "wrong-tre") in [(e, d.get("code")) for e, _, d in net.events()]


def _extend_pcr7(tcti: str) -> None:
    from tpm2_pytss import TPML_DIGEST_VALUES, TPMT_HA
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG

    with TpmConnection(tcti) as conn:
        digest = TPMT_HA(hashAlg=TPM2_ALG.SHA256)
        digest.digest.sha256 = os.urandom(32)
        conn.esys.pcr_extend(ESYS_TR.PCR7, TPML_DIGEST_VALUES([digest]))


def test_platform_changed_after_validation_is_refused_at_import_and_at_aka(
    lab_factory: Callable[..., Any], tmp_path: Path
) -> None:
    """PCR 7 extended (a changed boot component) between the verdict and the import: the agent
    refuses the MID; the PVA then refuses the platform; with a MID provisioned on the new
    state, a later change makes the TPM itself refuse K (PolicyPCR) at attach."""
    tamper_lab = lab_factory("agent-tamper")
    tamper: LabStatus = tamper_lab.up()
    try:
        _tamper(tamper, tmp_path)
    finally:
        tamper_lab.down()


def _tamper(tamper: LabStatus, tmp_path: Path) -> None:
    from host.attach import attach_tpm
    from host.provision import provision as run
    from tpm import nv
    from tpm.mid_errors import MidRefused

    registry = Registry(tmp_path / "mids.json")
    with network(tmp_path / "one", tamper) as net:
        with TpmConnection(tamper.tcti) as conn:
            nv.ensure_indices(conn)
            counter = nv.read_counter(conn, nv.MID_CTR)

        def extend_before_import(point: str) -> None:
            if point == "before-import":
                _extend_pcr7(tamper.tcti)

        with TpmConnection(tamper.tcti) as conn, pytest.raises(AgentRefused) as caught:
            run(
                conn,
                registry,
                net.inproc,
                net.trust,
                sho="sho-a",
                network="t",
                hook=extend_before_import,
            )
        assert caught.value.code == "platform-changed"
        with TpmConnection(tamper.tcti) as conn:
            assert nv.read_counter(conn, nv.MID_CTR) == counter  # nothing imported
        assert ("device-refused", "platform-changed") in [
            (e, d.get("code")) for e, _, d in net.events()
        ]
        with pytest.raises(Refused) as refused:  # the retry: the PVA sees the changed PCR
            provision(tamper, net, registry, "sho-a")
        assert refused.value.code.startswith("quote-")
    with network(tmp_path / "two", tamper) as net:  # reference values of the new state
        mid = provision(tamper, net, registry, "sho-a").finished
        _extend_pcr7(tamper.tcti)
        with TpmConnection(tamper.tcti) as conn, pytest.raises(MidRefused):
            attach_tpm(conn, registry, net.inproc, mid_id=mid.mid_id)
        assert ("device-refused", "tre-refused") in [(e, d.get("code")) for e, _, d in net.events()]


def test_report_of_an_unknown_session_is_refused(crash_net: Network) -> None:
    from protocol.messages import INITIAL_TRANSCRIPT, Error, encode

    error = Error(session_id=os.urandom(32), transcript=INITIAL_TRANSCRIPT, code="x", reason="y")
    with pytest.raises(RemoteProtocolError):
        InProcessTransport(crash_net.app).post("drf/report", encode(error))


def test_a_change_of_subscription_killed_midway_is_continued(
    crash_lab: LabStatus, crash_net: Network
) -> None:
    """Killed after MID-B is ACTIVE, before the attach test: the next ``subscription change``
    of the same MID continues (attach test, MID-A deleted with its TPM-signed receipt)."""
    registry_path = crash_net.dir.parent / "mids.json"
    registry = Registry(registry_path)
    with TpmConnection(crash_lab.tcti) as conn:
        from host.provision import provision as run

        old = run(
            conn, registry, crash_net.http, crash_net.trust, sho="sho-a", network=crash_net.url
        )
    args = ["subscription", "change", "--mid", old.finished.mid_id, "--to", "sho-b"]
    args += agent_args(crash_lab, crash_net, registry_path)
    killed = trelab(*args, env={"TRELAB_TEST_CRASH_AT": "change:attach"})
    assert killed.returncode == -9, killed.stderr[-800:]
    done = trelab(*args)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["rolled_back"] is False and out["attach_test"] is True
    assert out["deletion_proof"]["state"] == "DELETED"
    assert any("continuing" in note for note in out["notes"])
    with crash_net.store.transaction() as tx:
        assert tx.mid(old.finished.mid_id).state == "DELETED"  # type: ignore[union-attr]
        assert tx.mid(out["to"]["mid"]).state == "ACTIVE"  # type: ignore[union-attr]
    check_consistent(crash_net, crash_lab, registry)
