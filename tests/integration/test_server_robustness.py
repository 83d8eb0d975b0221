"""Robustness of the operator side (issue 5): the real ``trelab network serve`` killed with
SIGKILL at every provisioning step — just before its store transaction commits (the request is
lost) and just after (the reply is lost) — through its ``TRELAB_TEST_SERVER_CRASH_AT`` hook;
the agent then fails with one clear line (exit 3), the server is restarted on the same store,
and a retry completes with exactly one more ACTIVE MID and the invariants of
:func:`tests.robustness.check_consistent`. Then a change of
subscription killed at every step (agent and server), and SHO-B's OTA driver (``trelab
transfer ki``) killed between the secured packets of Alternative 3a.

The TPM is a lab of this module's own (``lab_factory``); the Ki-transfer cases use their own
emulated card on vpcd reader 1 (:class:`tests.card_process.CardProcess`).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from lab.lab import LabStatus
from protocol.client import HttpTransport
from tests.helpers import REPO
from tests.integration import test_ki_transfer
from tests.integration.test_agent_provision import Network, network, trelab
from tests.robustness import check_consistent, own_lab
from tpm.connection import TpmConnection
from tpm.registry import Registry
from trelab.crash import CRASH_ONCE_ENV, SERVER_CRASH_ENV, TRANSFER_CRASH_ENV

pytestmark = pytest.mark.lab

ota_card = test_ki_transfer.card  # fixtures shared with test_ki_transfer: a card on reader 1,
ota_operators = test_ki_transfer.operators  # an operator configuration and store


# ---- a served network: `trelab network serve` on one store, restartable on its port ----------


class Served:
    """``trelab network serve`` on ``net``'s config and store, on one loopback port for the
    module (restarts rebind it: the agent's retry is the same command line)."""

    def __init__(self, net: Network, log: Path) -> None:
        self.net, self.log = net, log
        self.port = 0
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(
        self,
        crash_at: str | None = None,
        *,
        workers: int | None = None,
        env_extra: dict[str, str] | None = None,
    ) -> Served:
        self.stop()  # the previous one (a failed test may have left it running); its pipe
        argv = [sys.executable, "-m", "host.cli", "network", "serve"]
        argv += ["--listen", f"127.0.0.1:{self.port}", "--db", str(self.net.db)]
        argv += ["--config", str(self.net.config_path), "--json", "--plain-http"]
        argv += ["--workers", str(workers)] if workers is not None else []
        env = {k: v for k, v in os.environ.items() if k != SERVER_CRASH_ENV}
        env.update(env_extra or {})
        if crash_at is not None:
            env[SERVER_CRASH_ENV] = crash_at
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=REPO
            )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.stop()
            pytest.fail(
                f"trelab network serve did not start ({self.process.returncode}): {self.log}"
            )
        url = json.loads(line)["listening"]
        self.port = int(url.rsplit(":", 1)[1])
        return self

    def wait(self, timeout: float = 30) -> int:
        """The exit status of a server that is to die by itself (its crash hook)."""
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> int | None:
        """SIGTERM (a graceful stop) and reap; None if it was never started."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return self.process.returncode


@pytest.fixture(scope="module")
def server_lab(lab_factory: Callable[..., Any]) -> Iterator[LabStatus]:
    with own_lab(lab_factory, "server-crash") as status:  # its TPM takes many MIDs
        yield status


@pytest.fixture(scope="module")
def server_net(
    server_lab: LabStatus, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Network]:
    """The network's configuration and store (opened here too, to check what it recorded)."""
    with network(tmp_path_factory.mktemp("server-net"), server_lab) as net:
        yield net


@contextmanager
def serving(net: Network, log: Path) -> Iterator[Served]:
    """A :class:`Served` for ``net``, stopped on the way out whatever state it is in."""
    server = Served(net, log)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def served(server_net: Network) -> Iterator[Served]:
    with serving(server_net, server_net.dir.parent / "serve.log") as server:
        yield server


@pytest.fixture(scope="module")
def server_registry(server_net: Network) -> Registry:
    """The server lab TPM's one MID registry (REG_CTR is TPM-wide: one registry per TPM)."""
    return Registry(server_net.dir.parent / "mids.json")


def cli_args(lab: LabStatus, net: Network, registry: Registry, url: str) -> list[str]:
    return [
        "--tpm", lab.tcti, "--registry", str(registry.path), "--network", url,
        "--trust", str(net.trust_path), "--json",
    ]  # fmt: skip


def stored_replies(db: Path) -> int:
    """Replies the store holds (one per request it committed): read-only, outside the app."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])


def assert_unavailable(done: subprocess.CompletedProcess[str]) -> str:
    """The agent's answer to a server that died mid-request: exit 3, one line, no traceback."""
    assert done.returncode == 3, (done.returncode, done.stderr[-800:])
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["type"] == "Unavailable"
    return str(error["message"])


# ---- 1. the server killed at every provisioning step --------------------------------------------

#: The requests of one provisioning session, in order (host.agent.ProvisioningClient): the
#: second receipt answers the SHO's activation command (M8).
PROVISIONING = (
    "drf/register",
    "drf/proof",
    "pva/evidence",
    "dpf/package",
    "dpf/receipt",
    "dpf/receipt#2",
)


@pytest.mark.parametrize("when", ["before-commit", "after-commit"])
@pytest.mark.parametrize("step", PROVISIONING)
def test_server_killed_at_each_provisioning_step_then_retry(
    server_lab: LabStatus,
    server_net: Network,
    served: Served,
    server_registry: Registry,
    step: str,
    when: str,
) -> None:
    from host.attach import attach_tpm
    from host.provision import AgentFiles
    from host.provision import provision as run

    registry = server_registry
    before = check_consistent(server_net, server_lab, registry)
    endpoint, _, nth = step.partition("#")
    served.start(crash_at=f"{endpoint}:{when}" + (f"#{nth}" if nth else ""))
    replies = stored_replies(server_net.db)
    killed = trelab(
        "provision", "--sho", "sho-a", *cli_args(server_lab, server_net, registry, served.url)
    )
    message = assert_unavailable(killed)
    assert served.url in message and "again" in message
    assert served.wait() == -signal.SIGKILL
    position = PROVISIONING.index(step) + 1  # the n-th request of the session
    committed = position if when == "after-commit" else position - 1
    assert stored_replies(server_net.db) - replies == committed
    journaled = AgentFiles(registry).read().journal is not None
    assert journaled == endpoint.startswith("dpf/receipt")  # a receipt must be resent as is
    served.start()  # same store, same port, no hook
    url = served.url
    with TpmConnection(server_lab.tcti) as conn:  # the retry: what `trelab provision` runs
        result = run(conn, registry, HttpTransport(url), server_net.trust, sho="sho-a", network=url)
    assert result.finished.state == "ACTIVE"
    after = check_consistent(server_net, server_lab, registry)
    assert after["active"] == before["active"] | {result.finished.mid_id}  # exactly one more
    assert AgentFiles(registry).read().journal is None
    # a lost receipt is resent byte for byte and answered from the store; a lost request
    # before any receipt leaves nothing to resume: a new session supersedes the old one
    assert result.resumed == journaled and not result.rolled_back
    with TpmConnection(server_lab.tcti) as conn:
        assert attach_tpm(
            conn, registry, HttpTransport(url), mid_id=result.finished.mid_id
        ).accepted
    assert served.stop() == 0


def test_one_gunicorn_worker_killed_mid_request_the_others_go_on_and_the_retry_succeeds(
    server_lab: LabStatus,
    server_net: Network,
    served: Served,
    server_registry: Registry,
    tmp_path: Path,
) -> None:
    """``--workers 2``: the worker handling the package request dies by SIGKILL after its
    commit (the reply is lost); the arbiter stays up and replaces it, and the device's retry
    — answered by whichever worker takes it — completes with exactly one more ACTIVE MID."""
    from host.provision import provision as run

    registry = server_registry
    before = check_consistent(server_net, server_lab, registry)
    fired = tmp_path / "fired"  # the hook fires once, whichever worker reaches it first
    served.start("dpf/package:after-commit", workers=2, env_extra={CRASH_ONCE_ENV: str(fired)})
    assert served.process is not None
    arbiter = served.process.pid
    killed = trelab(
        "provision", "--sho", "sho-a", *cli_args(server_lab, server_net, registry, served.url)
    )
    message = assert_unavailable(killed)
    assert "dropped the connection" in message and fired.exists()
    assert served.process.poll() is None and served.process.pid == arbiter  # the server stays
    url = served.url
    with TpmConnection(server_lab.tcti) as conn:  # the device's retry
        result = run(conn, registry, HttpTransport(url), server_net.trust, sho="sho-a", network=url)
    assert result.finished.state == "ACTIVE"
    after = check_consistent(server_net, server_lab, registry)
    assert after["active"] == before["active"] | {result.finished.mid_id}
    assert served.stop() == 0  # SIGTERM: a graceful stop of the arbiter and its workers
    log = served.log.read_text()
    assert "was sent SIGKILL" in log  # the arbiter saw its worker die …
    assert log.count("Booting worker") >= 3  # … and booted a replacement
    assert "POST /v1/dpf/package 200" in log  # gunicorn's access log names the request


# ---- 2. change of subscription: the agent killed at every step, the server at some -------------


def provision_mid_a(lab: LabStatus, net: Network, registry: Registry, url: str) -> str:
    from host.provision import provision as run

    with TpmConnection(lab.tcti) as conn:
        done = run(conn, registry, HttpTransport(url), net.trust, sho="sho-a", network=url)
    return done.finished.mid_id


def check_changed(net: Network, lab: LabStatus, registry: Registry, out: dict[str, Any]) -> None:
    """A completed change: MID-B ACTIVE (attach-tested, unless only the deletion was left to
    do), MID-A DELETED — which the network records only on its owner's verified, TPM-signed
    deletion receipt (a killed run may have delivered it: the retry then shows no new one)."""
    old, new = out["from"]["mid"], out["to"]["mid"]
    only_deletion = any(note.endswith("at step delete") for note in out["notes"])
    assert out["rolled_back"] is False, out
    assert out["attach_test"] is (None if only_deletion else True), out
    assert out["deletion_proof"]["state"] == "DELETED"
    with net.store.transaction() as tx:
        assert tx.mid(old).state == "DELETED"  # type: ignore[union-attr]
        assert tx.mid(new).state == "ACTIVE"  # type: ignore[union-attr]
    receipted = [(e, d.get("state")) for e, s, d in net.events() if s == old]
    assert receipted.count(("delete", "DELETED")) == 1
    active = check_consistent(net, lab, registry)["active"]
    assert new in active and old not in active


def change_args(lab: LabStatus, net: Network, registry: Registry, mid: str, url: str) -> list[str]:
    change = ["subscription", "change", "--mid", mid, "--to", "sho-b"]
    return change + cli_args(lab, net, registry, url)


#: Every declared step but ``attach`` (test_agent_robustness kills the change there), and a kill
#: inside the change's own provisioning (MID-B imported, its receipt not sent yet).
CHANGE_POINTS = ("change:provision", "change:activate", "change:delete", "after-import")


def test_every_declared_change_step_is_killed_somewhere() -> None:
    from host.subscription import STEPS

    killed = {p.removeprefix("change:") for p in CHANGE_POINTS} | {"attach"}
    assert set(STEPS) <= killed


@pytest.mark.parametrize("point", CHANGE_POINTS)
def test_change_of_subscription_killed_at_each_step_then_continued(
    server_lab: LabStatus,
    server_net: Network,
    served: Served,
    server_registry: Registry,
    point: str,
) -> None:
    from host.provision import AgentFiles

    registry = server_registry
    url = served.start().url
    try:
        old = provision_mid_a(server_lab, server_net, registry, url)
        before = check_consistent(server_net, server_lab, registry)["active"]
        args = change_args(server_lab, server_net, registry, old, url)
        killed = trelab(*args, env={"TRELAB_TEST_CRASH_AT": point})
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-800:]
        marker = AgentFiles(registry).read().change
        assert marker is not None and marker["from"] == old  # the change is remembered
        done = trelab(*args)
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert any("continuing" in note for note in out["notes"])
        check_changed(server_net, server_lab, registry, out)
        after = check_consistent(server_net, server_lab, registry)["active"]
        assert after == (before - {old}) | {out["to"]["mid"]}  # one MID-B, no other
        assert AgentFiles(registry).read().change is None
    finally:
        assert served.stop() == 0


#: Server kills during a change (dpf/receipt #1, #2 are MID-B's, #3 is MID-A's deletion): the
#: reply with SHO-B's package lost (the change rolls back, the next one supersedes the package);
#: the reply to MID-B's activation receipt lost; MID-A's deletion receipt lost before the network
#: committed it (MID-A is DELETED in the TPM, the network does not know yet); and its reply lost
#: after (the network has the TPM-signed proof, the agent does not know). The agent must not
#: roll back while the network is unreachable (it may have committed MID-B): found by these
#: tests, fixed in host.subscription.change().
SERVER_CHANGE_POINTS = (
    "dpf/package:after-commit",
    "dpf/receipt:after-commit",
    "dpf/receipt:before-commit#2",
    "dpf/receipt:after-commit#2",
    "sho/attach:after-commit",
    "dpf/receipt:before-commit#3",
    "dpf/receipt:after-commit#3",
)


@pytest.mark.parametrize("crash_at", SERVER_CHANGE_POINTS)
def test_change_of_subscription_with_the_server_killed_then_retried(
    server_lab: LabStatus, server_registry: Registry, tmp_path: Path, crash_at: str
) -> None:
    """On a network of its own (a failure must not spoil the module's network)."""
    from host.attach import attach_tpm
    from host.provision import AgentFiles
    from host.provision import provision as run

    registry = server_registry
    with network(tmp_path, server_lab) as net, serving(net, tmp_path / "serve.log") as served:
        with TpmConnection(server_lab.tcti) as conn:
            old = run(conn, registry, net.inproc, net.trust, sho="sho-a", network="t").finished
        before = check_consistent(net, server_lab, registry)["active"]
        url = served.start(crash_at=crash_at).url
        args = change_args(server_lab, net, registry, old.mid_id, url)
        first = trelab(*args)
        assert served.wait() == -signal.SIGKILL
        served.start()
        if first.returncode == 1:  # rolled back (the network untold): MID-A untouched, works
            assert "Traceback" not in first.stderr, first.stderr
            out = json.loads(first.stdout)
            assert out["rolled_back"] is True and "dropped the connection" in out["failure"]
            assert any("unreachable" in note for note in out["notes"])  # its attach test
            assert AgentFiles(registry).read().change is None
            with TpmConnection(server_lab.tcti) as conn:
                assert attach_tpm(conn, registry, HttpTransport(url), mid_id=old.mid_id).accepted
        else:  # interrupted (exit 3): the change is kept for the next run to continue
            assert_unavailable(first)
            assert AgentFiles(registry).read().change is not None
        done = trelab(*args)
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        check_changed(net, server_lab, registry, out)
        after = check_consistent(net, server_lab, registry)["active"]
        assert after == (before - {old.mid_id}) | {out["to"]["mid"]}


# ---- 3. Alternative 3a: SHO-B's OTA driver killed between packets -------------------------------

#: Where ``trelab transfer ki`` (the process that runs SHO-B's OTA loop) dies: SHO-A exported,
#: SHO-B not yet imported; a PoR received but not acted on (the card did the command); a counter
#: reserved, the packet never sent; a step done, the journal not yet told; the card holding the
#: new K while the HSS still has the old one.
OTA_POINTS = (
    "ota:import:exported",
    "ota:keys-add:sent",
    "ota:keys-delete:sent",
    "ota:imsi:reserved",
    "ota:imsi:done",
    "ota:k-rotation:sent",
)


def _transfer_args(operators: dict[str, Path], card: Any) -> list[str]:
    from tests.card_process import READER_1

    return [
        "transfer", "ki", "--imsi", test_ki_transfer.OLD_IMSI, "--from", "sho-a", "--to", "sho-b",
        "--config", str(operators["config"]), "--db", str(operators["db"]),
        "--card-profile", str(card.profile_file), "--rotate-k", "--reader", READER_1, "--json",
    ]  # fmt: skip


@pytest.mark.parametrize("point", OTA_POINTS)
def test_ota_driver_killed_between_packets_then_retry_completes(
    ota_card: Any, ota_operators: dict[str, Path], point: str
) -> None:
    from network.config import load_config
    from network.store import Store

    cli, old_imsi = test_ki_transfer.cli, test_ki_transfer.OLD_IMSI
    args = _transfer_args(ota_operators, ota_card)
    pin = {"TRELAB_CARD_PIN": "1234"}
    killed = cli(*args, env={**pin, TRANSFER_CRASH_ENV: point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-800:]
    card_after_kill = json.loads(ota_card.state.read_text()).get("ota", {})  # written atomically
    accepted = {int(k): v for k, v in card_after_kill.get("counters", {}).items()}
    done = cli(*args, env=pin)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    report = json.loads(done.stdout)
    transfer = report["transfer"]
    new_imsi = transfer["new_imsi"]
    assert transfer["resumed"] is True and transfer["k_rotated"] is True
    # the counter never goes back: every packet of the retry is above what the card took
    for packet in transfer["packets"]:
        assert packet["por"] == "PoR OK" and packet["last_sw"] in ("9000", "6A88"), packet
        assert packet["counter"] > accepted.get(packet["kvn"], 0), (packet, accepted)
    # the card ends with the new subscription, once: SHO-B's IMSI, one new key set, the new K
    assert report["card"] == {"iccid": ota_card.iccid, "imsi": new_imsi}
    assert report["attach"]["after_k_rotation"]["accepted"] is True
    assert not report["threats"]["after_k_rotation"]["impersonation"]
    assert report["old_operator_ota"]["accepted"] is False
    on_card = json.loads(ota_card.state.read_text())["ota"]
    assert [ks["kvn"] for ks in on_card["keysets"]] == [2] and "credentials" in on_card
    # no duplicate at SHO-B, SHO-A's record handed over (marked, K kept: seed threat 2)
    config = load_config(ota_operators["config"] / "network.json")
    store = Store(ota_operators["db"], config.store_key)
    try:
        with store.transaction() as tx:
            assert tx.hss_count("sho-b") == 1
            record = tx.hss(new_imsi)
            assert record is not None and record.sho == "sho-b" and record.state == "active"
            old = tx.hss(old_imsi)
            assert old is not None and old.sho == "sho-a" and old.state == "transferred"
        exports = [e for e in store.audit_events() if e.event == "ki-export"]
        imports = [e for e in store.audit_events() if e.event == "ki-import"]
        assert len(imports) == 1 and {e.detail["transfer"] for e in exports} == {
            transfer["transfer_id"]
        }
        assert store.verify_audit() == len(store.audit_events())
    finally:
        store.close()
