"""The host agent end to end on the lab: ``trelab network serve`` + ``trelab provision`` +
``trelab attach`` as processes; resynchronisation; several SHOs' MIDs on one TPM, isolated, with
their lifecycle ordered by the owner and enforced in the TPM; the PCID bootstrap; change of
subscription with and without rollback; Alternative 2 cards over PC/SC and a modem.

The operator side runs in this process (``network.server.running_server``, a thread on a free
port) unless the test is about the served process itself; the TPM is the session lab's swtpm,
with the lab TPM's one MID registry (REG_CTR is TPM-wide).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from host.agent import AgentRefused, parse_device_trust
from lab.lab import LabStatus
from network.config import NetworkConfig, device_trust, init_config, load_config
from network.server import NetworkApp, running_server
from network.store import Store
from protocol.client import HttpTransport, InProcessTransport
from protocol.errors import Refused
from protocol.messages import INITIAL_TRANSCRIPT, Ack, LifecycleOrder, decode, encode, sign
from tpm.connection import TpmConnection
from tpm.registry import Registry

SELECTION = "sha256:0,1,2,3,4,5,6,7"
pytestmark = pytest.mark.lab


# ---- helpers shared with test_agent_robustness.py ---------------------------------------------


def reference(tcti: str) -> dict[str, dict[int, bytes]]:
    from tpm.pcrsel import parse_selection
    from tpm.quote import read_pcrs
    from tpm.verify import split_pcr_values

    selection = parse_selection(SELECTION)
    with TpmConnection(tcti) as conn:
        return split_pcr_values(selection, read_pcrs(conn, selection))


class Network:
    """An operator side for one test: config folder, store, app, served on a free port."""

    def __init__(
        self,
        tmp: Path,
        lab: LabStatus,
        *,
        ca_bundle: Path | None = None,
        edit: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] | None = None,
        builder: Any = None,
    ) -> None:
        self.dir = tmp / "network"
        self.config_path = init_config(
            self.dir,
            ca_bundle=ca_bundle or lab.ca.bundle,
            reference=reference(lab.tcti),
            pcr_selection=SELECTION,
            force=True,
        )
        if edit is not None:
            doc = json.loads(self.config_path.read_text())
            edit(doc)
            self.config_path.write_text(json.dumps(doc))
        self.config: NetworkConfig = load_config(self.config_path)
        self.trust_path = self.dir / "device-trust.json"
        self.db = tmp / "network.db"
        self.store = Store(self.db, self.config.store_key)
        kwargs: dict[str, Any] = {}
        if clock is not None:
            kwargs["clock"] = clock
        if builder is not None:
            kwargs["builder"] = builder
        self.app = NetworkApp(self.config, self.store, **kwargs)
        self.trust = parse_device_trust(device_trust(self.config))
        self._stack = ExitStack()
        self._url: str | None = None
        self.inproc = InProcessTransport(self.app)

    @property
    def url(self) -> str:
        """The app served over HTTP on a free port (started on first use)."""
        if self._url is None:
            self._url = self._stack.enter_context(running_server(self.app))
        return self._url

    @property
    def http(self) -> HttpTransport:
        return HttpTransport(self.url)

    def close(self) -> None:
        self._stack.close()
        self.store.close()

    def events(self, since: int = 0) -> list[tuple[str, str, dict[str, Any]]]:
        return [(e.event, e.subject, dict(e.detail)) for e in self.store.audit_events()[since:]]

    def order(self, mid_id: str, transition: str, sho: str, *, key_of: str | None = None) -> Ack:
        """The owning SHO's signed lifecycle order (``key_of``: sign with another SHO's key)."""
        key = self.config.shos[key_of or sho].key
        msg = LifecycleOrder(
            session_id=os.urandom(32),
            transcript=INITIAL_TRANSCRIPT,
            mid_id=mid_id,
            transition=transition,
        )
        from protocol.messages import SigningKey

        reply = decode(
            self.inproc.post("sho/order", encode(sign(msg, SigningKey(sho, key.private_key))))
        )
        assert isinstance(reply, Ack)
        return reply


@contextmanager
def network(tmp: Path, lab: LabStatus, **kw: Any) -> Iterator[Network]:
    net = Network(tmp, lab, **kw)
    try:
        yield net
    finally:
        net.close()


def trelab(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    """``python -m host.cli ARGS`` as a process; returns CompletedProcess (text)."""
    full = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full,
        check=False,
    )


def agent_args(lab: LabStatus, net: Network, registry: Path) -> list[str]:
    return [
        "--tpm", lab.tcti, "--registry", str(registry), "--network", net.url,
        "--trust", str(net.trust_path), "--json",
    ]  # fmt: skip


def provision(lab: LabStatus, net: Network, registry: Registry, sho: str, **kw: Any) -> Any:
    from host.provision import provision as run

    with TpmConnection(lab.tcti) as conn:
        return run(conn, registry, net.inproc, net.trust, sho=sho, network="in-process", **kw)


def attach(lab: LabStatus, net: Network, registry: Registry, mid_id: str) -> Any:
    from host.attach import attach_tpm

    with TpmConnection(lab.tcti) as conn:
        return attach_tpm(conn, registry, net.inproc, mid_id=mid_id)


def tpm_states(tcti: str) -> bytes:
    from tpm import nv

    with TpmConnection(tcti) as conn:
        return nv.slot_states(conn)


def _never(rand: bytes, autn: bytes) -> Any:
    raise AssertionError("the network must refuse before any AKA")


# ---- end to end, as processes -----------------------------------------------------------------


def test_serve_provision_attach_as_processes(
    lab: LabStatus, lab_registry: Registry, tmp_path: Path
) -> None:
    """The issue's "done when": a fresh network served by ``trelab network serve`` (port 0,
    SIGTERM), then ``trelab provision`` and ``trelab attach`` from the command line."""
    config = init_config(
        tmp_path / "net", ca_bundle=lab.ca.bundle, reference=reference(lab.tcti), force=True
    )
    db = tmp_path / "served.db"
    argv = [sys.executable, "-m", "host.cli", "network", "serve", "--listen", "127.0.0.1:0"]
    argv += ["--db", str(db), "--config", str(config), "--json"]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    registry = lab_registry.path
    try:
        assert server.stdout is not None
        url = json.loads(server.stdout.readline())["listening"]
        common = ["--tpm", lab.tcti, "--registry", str(registry), "--network", url, "--json"]
        trust = ["--trust", str(config.parent / "device-trust.json")]
        done = trelab("provision", "--sho", "sho-a", *common, *trust)
        assert done.returncode == 0, done.stderr
        mid = json.loads(done.stdout)
        assert mid["state"] == "ACTIVE" and mid["sho"] == "sho-a" and mid["resumed"] is False
        assert "impossible" in mid["receipt"]["certify_k"]
        assert mid["aka"] == {  # swtpm has EncryptDecrypt2: K as an AES key runs inside
            "algorithm": "milenage", "k_form": "symcipher", "mode": "symcipher",
            "k_inside": True, "note": None,
        }  # fmt: skip
        attached = trelab("attach", "--mid", mid["mid"], *common, *trust)
        assert attached.returncode == 0, attached.stderr
        result = json.loads(attached.stdout)
        assert (
            result["accepted"] is True and result["imsi"] == mid["imsi"] and result["tre"] == "tpm"
        )
        listed = trelab("mid", "list", "--tpm", lab.tcti, "--registry", str(registry), "--json")
        rows = {r["mid"]: r for r in json.loads(listed.stdout)["mids"]}
        assert rows[mid["mid"]]["tpm_state"] == "ACTIVE" and rows[mid["mid"]]["sho"] == "sho-a"
        unknown = trelab("provision", "--sho", "sho-z", *common, *trust)
        assert unknown.returncode == 1 and "sho-z" in unknown.stderr
        assert json.loads(unknown.stdout)["error"]["type"] == "AgentRefused"
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    assert server.returncode == 0
    audit = trelab("network", "audit", "--db", str(db), "--config", str(config), "--json")
    assert audit.returncode == 0 and json.loads(audit.stdout)["verified"] is True


# ---- in process: the library the CLI runs ------------------------------------------------------


def test_device_id_and_files_match_what_the_network_recorded(
    lab: LabStatus, lab_registry: Registry, tmp_path: Path
) -> None:
    from host.provision import AgentFiles

    registry = lab_registry
    with network(tmp_path, lab) as net:
        result = provision(lab, net, registry, "sho-a")
        f = result.finished
        with net.store.transaction() as tx:
            stored = tx.mid(f.mid_id)
            device = tx.device(result.device_id)
        assert stored is not None and device is not None
        assert (stored.state, stored.slot, stored.sequence) == ("ACTIVE", f.slot, f.sequence)
        assert device.sequence == f.sequence
        state = AgentFiles(registry).read()
        assert state.journal is None and state.mids[f.mid_id].state == "ACTIVE"
        assert oct(AgentFiles(registry).path.stat().st_mode & 0o777) == "0o600"
        record = registry.read().mids[f.mid_id]
        assert (record.state, record.slot, record.seq, record.imsi) == (
            "active", f.slot, f.sequence, f.imsi,
        )  # fmt: skip
        assert tpm_states(lab.tcti)[f.slot] == 2  # MID_STATE ACTIVE
        assert result.timing["tpm_commands"] > 0


def test_attach_resynchronises_after_the_hss_went_back(
    lab: LabStatus, lab_registry: Registry, tmp_path: Path
) -> None:
    """An HSS restored from an old backup: its SQN_HE is behind the TRE's SQN_MS; the TRE
    answers AUTS, the SHO resynchronises and the second vector is accepted — and the TRE's
    SQN state never goes back."""
    registry = lab_registry
    with network(tmp_path, lab) as net:
        mid = provision(lab, net, registry, "sho-a").finished
        for _ in range(3):
            assert attach(lab, net, registry, mid.mid_id).accepted
        seq_ms_before = registry.read().mids[mid.mid_id].sqn.sqn_ms
        with net.store.transaction() as tx:
            hss = tx.hss(mid.imsi)
            assert hss is not None
            tx.put_hss(dataclasses.replace(hss, sqn={**hss.sqn, "seq_he": 0, "ind": 0}))
        done = attach(lab, net, registry, mid.mid_id)
        assert done.accepted and done.resynchronised
        assert ("resync", mid.imsi) in [(e, s) for e, s, _ in net.events()]
        assert registry.read().mids[mid.mid_id].sqn.sqn_ms > seq_ms_before
        again = attach(lab, net, registry, mid.mid_id)
        assert again.accepted and not again.resynchronised


def test_two_shos_on_one_tpm_are_isolated_and_the_owner_drives_the_lifecycle(
    lab: LabStatus, lab_registry: Registry, tmp_path: Path
) -> None:
    from host.lifecycle import apply_order
    from tpm.aka import authenticate
    from tpm.mid_errors import MidRefused

    registry = lab_registry
    with network(tmp_path, lab) as net:
        a = provision(lab, net, registry, "sho-a").finished
        b = provision(lab, net, registry, "sho-b").finished
        assert a.slot != b.slot and a.imsi[:5] != b.imsi[:5]

        def lifecycle(mid_id: str, verb: str) -> Any:
            with TpmConnection(lab.tcti) as conn:
                return apply_order(conn, registry, net.inproc, net.trust, mid_id=mid_id, verb=verb)

        with pytest.raises(Refused) as caught:  # SHO-A can never order SHO-B's MID
            net.order(b.mid_id, "suspend", "sho-a")
        assert caught.value.reason == "foreign-mid"
        with pytest.raises(AgentRefused) as refused:  # nothing ordered: the TRE cannot act alone
            lifecycle(a.mid_id, "suspend")
        assert refused.value.code == "no-order"
        assert net.order(a.mid_id, "suspend", "sho-a").state == "ACTIVE"
        with pytest.raises(AgentRefused) as refused:  # the order is for suspend, not delete
            lifecycle(a.mid_id, "delete")
        assert refused.value.code == "unexpected-order"
        outcome = lifecycle(a.mid_id, "suspend")
        assert (outcome.applied, outcome.state) == ("suspend", "SUSPENDED")
        assert outcome.to_json()["receipt"] == ["state"]
        assert tpm_states(lab.tcti)[a.slot] == 3  # SUSPENDED in MID_STATE
        # enforced by the TPM: PolicyNV(MID_STATE == ACTIVE) refuses K even if the host tries
        record = registry.read().mids[a.mid_id]
        with TpmConnection(lab.tcti) as conn, pytest.raises(MidRefused):
            authenticate(conn, registry, a.mid_id, bytes(16), bytes(16), check_state=False)
        with pytest.raises(Refused) as caught:
            attach(lab, net, registry, a.mid_id)
        assert caught.value.reason == "not-active"  # the SHO's HSS follows the receipt
        assert attach(lab, net, registry, b.mid_id).accepted  # SHO-B's MID is untouched
        assert record.state == "suspended"
        net.order(a.mid_id, "resume", "sho-a")
        assert lifecycle(a.mid_id, "activate").state == "ACTIVE"
        assert attach(lab, net, registry, a.mid_id).accepted
        net.order(b.mid_id, "delete", "sho-b")
        assert lifecycle(b.mid_id, "delete").state == "DELETED"
        assert b.mid_id not in registry.read().mids and tpm_states(lab.tcti)[b.slot] == 0xFF
        with net.store.transaction() as tx:
            hss_b = tx.hss(b.imsi)
        assert hss_b is not None and hss_b.state == "deleted" and hss_b.k == b""
        assert attach(lab, net, registry, a.mid_id).accepted


def test_operator_order_and_mid_verbs_from_the_command_line(
    lab: LabStatus, lab_registry: Registry, tmp_path: Path
) -> None:
    registry = lab_registry.path
    with network(tmp_path, lab) as net:
        mid = provision(lab, net, Registry(registry), "sho-a").finished
        store = ["--config", str(net.config_path), "--network", net.url, "--json"]
        foreign = trelab("operator", "order", "--mid", mid.mid_id, "--transition", "suspend",
                         "--sho", "sho-b", *store)  # fmt: skip
        assert foreign.returncode == 1 and "does not own" in foreign.stderr
        ordered = trelab("operator", "order", "--mid", mid.mid_id, "--transition", "suspend",
                         "--sho", "sho-a", *store)  # fmt: skip
        assert ordered.returncode == 0, ordered.stderr
        assert json.loads(ordered.stdout)["state"] == "ACTIVE"
        applied = trelab("mid", "suspend", "--mid", mid.mid_id, *agent_args(lab, net, registry))
        assert applied.returncode == 0, applied.stderr
        out = json.loads(applied.stdout)
        assert (out["applied"], out["state"], out["command_seq"]) == ("suspend", "SUSPENDED", 2)
        again = trelab("mid", "suspend", "--mid", mid.mid_id, *agent_args(lab, net, registry))
        assert again.returncode == 0 and json.loads(again.stdout)["applied"] is None
        # a suspended MID comes back by the owner's "resume": the device verb says that order
        early = trelab("mid", "activate", "--mid", mid.mid_id, *agent_args(lab, net, registry))
        assert early.returncode == 1 and "--transition resume --sho sho-a" in early.stderr
        # an unknown MID is bad input in `operator order` as in `attach`
        unknown = trelab("operator", "order", "--mid", "no-such-mid", "--transition", "suspend",
                         "--sho", "sho-a", *store)  # fmt: skip
        assert unknown.returncode == 2, unknown.stderr
        attach_args = ["--tpm", lab.tcti, "--registry", str(registry), "--network", net.url]
        no_mid = trelab("attach", "--mid", "no-such-mid", *attach_args)
        assert no_mid.returncode == 2 and "no MID 'no-such-mid'" in no_mid.stderr, no_mid.stderr
        # deleted: `mid list` keeps it as a record, and using it says it is deleted
        trelab("operator", "order", "--mid", mid.mid_id, "--transition", "delete",
               "--sho", "sho-a", *store)  # fmt: skip
        gone = trelab("mid", "delete", "--mid", mid.mid_id, *agent_args(lab, net, registry))
        assert gone.returncode == 0, gone.stderr
        listed = trelab("mid", "list", "--tpm", lab.tcti, "--registry", str(registry), "--json")
        assert mid.mid_id in {r["mid"] for r in json.loads(listed.stdout)["mids"]}
        used = trelab("attach", "--mid", mid.mid_id, *attach_args)
        assert used.returncode == 2 and "is DELETED" in used.stderr, used.stderr


def test_pcid_bootstrap_reaches_only_the_ro_and_is_released(
    lab: LabStatus, lab_registry: Registry, tmp_path: Path
) -> None:
    """With ``require_pcid`` the RO answers only a device holding an ICF grant; a PCID (imported
    at manufacturing like a MID) gets it by AKA; once the MID is ACTIVE the PCID is released."""
    from host.provision import AgentFiles, install_pcid

    def pcid_required(doc: dict[str, Any]) -> None:
        doc["icf"]["require_pcid"] = True

    registry = lab_registry
    with network(tmp_path, lab, edit=pcid_required) as net:
        with pytest.raises(Refused) as caught:  # no PCID yet: the RO is out of reach
            provision(lab, net, registry, "sho-a")
        assert caught.value.reason == "no-grant"
        assert AgentFiles(registry).read().journal is None  # refused before the TPM: no journal
        k, opc, now = os.urandom(16), os.urandom(16), int(net.app.now())
        with net.store.transaction() as tx:
            net.app.operator.register_pcid(
                tx, imsi="001990000000042", k=k, opc=opc, not_before=now - 5,
                not_after=now + 600, request_id="pcid:42", now=now,
            )  # fmt: skip
        with TpmConnection(lab.tcti) as conn:
            pcid = install_pcid(conn, registry, imsi="001990000000042", k=k, opc=opc)
        before = len(net.events())
        result = provision(lab, net, registry, "sho-a")
        assert result.finished.state == "ACTIVE" and result.pcid is not None
        assert result.pcid["imsi"] == pcid.imsi and result.pcid["state"].startswith("released")
        events = [e for e, _, _ in net.events(before)]
        for expected in ("vector", "attach", "grant", "register", "activate", "pcid-released"):
            assert expected in events
        with net.store.transaction() as tx:
            record = tx.pcid(pcid.imsi)
        assert (
            record is not None
            and record.state == "released"
            and record.device_id == result.device_id
        )
        assert pcid.mid_id not in registry.read().mids  # its MID is gone from the TPM too
        assert AgentFiles(registry).read().pcid.released  # type: ignore[union-attr]
        from host.attach import attach as attach_with

        with pytest.raises(Refused) as caught:  # a released PCID attaches no more
            attach_with(net.inproc, imsi=pcid.imsi, aka=_never)
        assert caught.value.reason == "pcid-released"
        # the new MID is operational connectivity, not bound to the RO
        assert attach(lab, net, registry, result.finished.mid_id).accepted


# ---- change of subscription -------------------------------------------------------------------


def change(lab: LabStatus, net: Network, registry: Registry, mid_id: str, to: str) -> Any:
    from host.subscription import change as run

    with TpmConnection(lab.tcti) as conn:
        return run(
            conn, registry, net.inproc, net.trust, mid_id=mid_id, to_sho=to, network="in-process"
        )


def test_change_of_subscription_deletes_the_old_mid_with_a_tpm_signed_proof(
    lab: LabStatus, lab_registry: Registry, tmp_path: Path
) -> None:
    registry = lab_registry
    with network(tmp_path, lab) as net:
        a = provision(lab, net, registry, "sho-a").finished
        before = len(net.events())
        result = change(lab, net, registry, a.mid_id, "sho-b")
        assert not result.rolled_back, result.failure
        out = result.to_json()
        assert out["attach_test"] is True and out["deletion_proof"]["state"] == "DELETED"
        assert out["deletion_proof"]["nv_certify"] == ["state"]
        new = result.new_mid
        with net.store.transaction() as tx:
            mid_a, mid_b, hss_a = tx.mid(a.mid_id), tx.mid(new), tx.hss(a.imsi)
        assert mid_a is not None and mid_a.state == "DELETED"
        assert mid_b is not None and mid_b.state == "ACTIVE" and mid_b.sho == "sho-b"
        assert hss_a is not None and hss_a.k == b"" and hss_a.state == "deleted"
        events = [(e, d.get("transition")) for e, _, d in net.events(before)]
        assert ("release", None) in events and ("command", "delete") in events
        assert ("delete", None) in events  # the SHO-A side recorded the TPM's receipt
        assert tpm_states(lab.tcti)[a.slot] == 0xFF and a.mid_id not in registry.read().mids
        assert attach(lab, net, registry, str(new)).accepted
        from host.attach import attach as attach_with

        with pytest.raises(Refused) as caught:  # SHO-A gives no vector for the moved subscriber
            attach_with(net.inproc, imsi=a.imsi, aka=_never)
        assert caught.value.reason == "not-active"


@pytest.mark.parametrize("failure", ["no-activation", "attach-test"])
def test_change_of_subscription_rolls_back_to_a_working_mid_a(
    lab: LabStatus,
    lab_registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    """SHO-B never activates (a real refusal: ``auto_activate`` off, no order) — or the attach
    test fails (``TRELAB_TEST_FAIL_AT``): MID-B is deleted through SHO-B, MID-A still works."""
    from host.subscription import FAIL_ENV

    def no_auto_activation(doc: dict[str, Any]) -> None:
        doc["shos"]["sho-b"]["auto_activate"] = False

    edit = no_auto_activation if failure == "no-activation" else None
    if failure == "attach-test":
        monkeypatch.setenv(FAIL_ENV, "change:attach")
    registry = lab_registry
    earlier = set(registry.read().mids)  # other tests' MIDs on the session TPM
    with network(tmp_path, lab, edit=edit) as net:
        monkeypatch.delenv(FAIL_ENV, raising=False)
        a = provision(lab, net, registry, "sho-a").finished
        if failure == "attach-test":
            monkeypatch.setenv(FAIL_ENV, "change:attach")
        result = change(lab, net, registry, a.mid_id, "sho-b")
        monkeypatch.delenv(FAIL_ENV, raising=False)
        assert result.rolled_back and result.old_still_works is True
        assert result.failure and result.failure.split(":")[0] in ("activate", "attach")
        with net.store.transaction() as tx:
            mids = tx.mids(device_id=tx.mid(a.mid_id).device_id)  # type: ignore[union-attr]
        states = {m.sho: m.state for m in mids}
        assert states == {"sho-a": "ACTIVE", "sho-b": "DELETED"}
        assert set(registry.read().mids) - earlier == {a.mid_id}  # MID-B is gone again
        assert attach(lab, net, registry, a.mid_id).accepted


# ---- Alternative 2: pre-personalised cards ------------------------------------------------------


def _card_subscriber(net: Network, tmp_path: Path) -> Path:
    from firmware_stubs.usim.personalise import hss_record
    from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile

    path = tmp_path / "card-hss.json"
    path.write_text(json.dumps(hss_record(parse_profile(DEFAULT_PROFILE)).to_json()))
    added = trelab(
        "operator", "add-subscriber", "--hss-record", str(path), "--sho", "sho-a",
        "--config", str(net.config_path), "--db", str(net.db), "--json",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["state"] == "active"
    again = trelab(
        "operator", "add-subscriber", "--hss-record", str(path), "--sho", "sho-a",
        "--config", str(net.config_path), "--db", str(net.db), "--json",
    )  # fmt: skip
    assert again.returncode == 0  # idempotent: no second HSS record
    with net.store.transaction() as tx:
        assert tx.hss_count() == 1
    return path


def test_alternative_2_card_attaches_through_pcsc(
    lab: LabStatus, usim_reader: str, tmp_path: Path
) -> None:
    with network(tmp_path, lab) as net:
        _card_subscriber(net, tmp_path)
        args = ["attach", "--reader", usim_reader, "--pin", "1234", "--network", net.url, "--json"]
        first = trelab(*args)
        assert first.returncode == 0, first.stderr
        out = json.loads(first.stdout)
        assert out["accepted"] is True and out["tre"] == "uicc" and out["imsi"] == "001010123456789"
        second = trelab(*args)  # whatever the card's SQN was, the SHO is now in step
        assert json.loads(second.stdout)["resynchronised"] is False


def test_alternative_2_card_attaches_through_a_modem(
    lab: LabStatus, modem_pty: Any, tmp_path: Path
) -> None:
    with network(tmp_path, lab) as net:
        _card_subscriber(net, tmp_path)
        done = trelab(
            "attach", "--serial", modem_pty.device, "--pin", "1234", "--network", net.url, "--json"
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["accepted"] is True
