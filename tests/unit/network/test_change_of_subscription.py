"""Change of subscription (TR 33.812: a TRE holding an ACTIVE MID of SHO-A takes one of SHO-B,
then deletes SHO-A's) for many devices at once, through two workers on one store — on each
engine (SQLite file; PostgreSQL database of the session's cluster). Each worker serves HTTP
on its own port (two servers, one database); every request of every device is sent to both at
the same moment (a retry that overtook the original, landing on the other server).

What must hold: one reply per request wherever it lands (idempotent retries), no two live MIDs
of one device with one number, one HSS record per MID, SHO-A's MID deleted and SHO-B's active
on every device, and an audit trail that verifies with exactly one entry per effect.

The operator's roles, store and WSGI app are the real ones; two parts of the TPM are replaced
as in the other unit tests (the TPM package builder by :func:`opaque_builder`, and the TPM's
NV_Certify receipt by :class:`EchoReceipts`, which still binds each receipt to its session and
to the NV state the DPF expects): the same flow against real TPMs runs in
tests/integration/test_agent_provision.py."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

from network.config import NetworkConfig
from network.server import NetworkApp, running_server
from network.store import Store
from network.trust import TpmTrust
from protocol import messages as m
from protocol.client import HttpTransport, Transport
from protocol.errors import Refused
from protocol.records import DeviceRecord, MidRecord, SessionRecord, VerdictRecord
from protocol.transitions import Session, SessionState

from .conftest import Clock, opaque_builder

DEVICES = 6


class EchoReceipts(TpmTrust):
    """The TPM-signed NV_Certify receipt replaced by a plain one: the device echoes the
    receipt's qualifying data (session, transcript, event) and the NV facts it proves; the
    check refuses anything else, as the real one does (:meth:`TpmTrust.verify_receipt`)."""

    def verify_receipt(
        self,
        *,
        ak_public: bytes,
        evidence: Mapping[str, bytes],
        qualifying: bytes,
        expect_nv: Mapping[bytes, tuple[int, bytes]],
    ) -> None:
        shown = evidence.get("echo.qualifying"), evidence.get("echo.nv")
        if shown != (qualifying, _nv_bytes(expect_nv)):
            raise Refused("bad-receipt", "the receipt does not prove the expected state")


def _nv_bytes(facts: Mapping[bytes, tuple[int, bytes]]) -> bytes:
    return json.dumps(
        sorted((name.hex(), offset, value.hex()) for name, (offset, value) in facts.items())
    ).encode()


@pytest.fixture
def worker_trust() -> type[TpmTrust]:
    """The workers here take the device's receipts as :class:`EchoReceipts` does."""
    return EchoReceipts


class Device:
    """One TRE with an ACTIVE MID of SHO-A (MID_CTR 1) and a validated provisioning session
    for SHO-B, as the DRF and PVA leave it."""

    def __init__(self, app: NetworkApp, index: int) -> None:
        self.app = app
        self.device_id = f"{0x10 + index:02x}" * 33
        self.slot_a, self.slot_b = 1, 2
        now = app.now()
        self.imsi_a = f"00101{index + 1:010d}"
        self.mid_a = f"mid-a-{index:02d}"
        self.session = Session("device", SessionState(os.urandom(32), "validated", os.urandom(32)))
        with app.store.transaction() as tx:
            app.operator.add_subscriber(tx, sho="sho-a", imsi=self.imsi_a, k=os.urandom(16),
                                        opc=os.urandom(16), request_id=f"card:{self.imsi_a}",
                                        now=now)  # fmt: skip
            tx.put_device(DeviceRecord(self.device_id, b"cert", b"ak", b"\x00\x0bname",
                                       state="activated", sequence=1))  # fmt: skip
            tx.put_mid(MidRecord(self.mid_a, self.device_id, "sho-a", self.imsi_a, "ACTIVE", 1,
                                 os.urandom(32), slot=self.slot_a))  # fmt: skip
            s = self.session
            tx.put_session(
                SessionRecord(s.session_id, "provision", "validated", s.transcript, now, now + 900,
                              self.device_id, "sho-b",
                              data={"ek_public": b"ek", "ak_public": b"ak", "ak_name": b"\x00\x0bname"})
            )  # fmt: skip
            tx.put_verdict(
                VerdictRecord(s.session_id, self.device_id, b"\x00\x0bname", bytes(32), now + 300,
                              b"c")
            )  # fmt: skip
        self.lifecycle = Session("device", SessionState(os.urandom(32)))
        self.mid_b: str | None = None

    def receipt(
        self, s: Session, mid_id: str, sequence: int, event: str, state: str, counter: int | None
    ) -> bytes:
        """The TRE's receipt of ``event`` (see :class:`EchoReceipts`)."""
        slot = self.slot_b if mid_id == self.mid_b else self.slot_a
        facts = self.app.operator.trust.receipt_expectations(state, slot, counter)
        evidence = {
            "echo.qualifying": m.receipt_qualifying_data(s.session_id, s.transcript, event),
            "echo.nv": _nv_bytes(facts),
        }
        return s.send(s.make(m.Receipt, mid_id=mid_id, sequence=sequence, event=event,
                             evidence=tuple(sorted(evidence.items()))))  # fmt: skip


def at_once_on_both(servers: list[Transport], calls: list[tuple[str, bytes]]) -> list[bytes]:
    """Every (endpoint, wire) posted to every server, all released together; one reply per
    call (checked to be the same on every server)."""
    jobs: list[Callable[[], bytes]] = [
        (lambda server=server, e=e, w=w: server.post(e, w)) for e, w in calls for server in servers
    ]
    gate = threading.Barrier(len(jobs))

    def run(job: Callable[[], bytes]) -> bytes:
        gate.wait()
        return job()

    with ThreadPoolExecutor(len(jobs)) as pool:
        replies = list(pool.map(run, jobs))
    per_call = [replies[i : i + len(servers)] for i in range(0, len(replies), len(servers))]
    for same in per_call:
        assert all(r == same[0] for r in same), "a retry got another reply than the original"
    return [same[0] for same in per_call]


def test_change_of_subscription_for_many_devices_through_two_workers(
    workers: list[NetworkApp],
) -> None:
    devices = [Device(workers[0], i) for i in range(DEVICES)]
    with running_server(workers[0]) as url_a, running_server(workers[1]) as url_b:
        change_of_subscription(devices, [HttpTransport(url_a), HttpTransport(url_b)])
    check_store(workers[1].store, devices)


def change_of_subscription(devices: list[Device], servers: list[Transport]) -> None:
    """Every device's change of subscription, each step of all devices at once on both
    servers."""

    # 1. SHO-B's package: MID number MID_CTR + 1 = 2, a new HSS record of SHO-B
    wires = [d.session.send(d.session.make(m.PackageRequest, srk_public=b"srk", slot=d.slot_b,
                                           counter=1)) for d in devices]  # fmt: skip
    for d, reply in zip(devices, at_once_on_both(servers, [("dpf/package", w) for w in wires]),
                        strict=True):  # fmt: skip
        package = d.session.receive(reply)
        assert isinstance(package, m.MidPackage) and package.sequence == 2
        assert package.sho == "sho-b" and package.imsi.startswith("00102")
        d.mid_b = package.mid_id

    # 2. its install receipt: INSTALLED, and SHO-B activates at once
    wires = [d.receipt(d.session, str(d.mid_b), 2, "install", "INSTALLED", 2) for d in devices]
    commands = []
    for d, reply in zip(devices, at_once_on_both(servers, [("dpf/receipt", w) for w in wires]),
                        strict=True):  # fmt: skip
        command = d.session.receive(reply)
        assert isinstance(command, m.LifecycleCommand) and command.transition == "activate"
        commands.append(command)
    wires = [
        d.receipt(d.session, str(d.mid_b), c.sequence, "activate", "ACTIVE", None)
        for d, c in zip(devices, commands, strict=True)
    ]
    for d, reply in zip(devices, at_once_on_both(servers, [("dpf/receipt", w) for w in wires]),
                        strict=True):  # fmt: skip
        ack = d.session.receive(reply)
        assert isinstance(ack, m.Ack) and ack.state == "ACTIVE"

    # 3. the TRE, now holding SHO-B's ACTIVE MID, asks for SHO-A's to be deleted
    wires = [d.lifecycle.send(d.lifecycle.make(m.LifecycleRequest, mid_id=d.mid_a,
                                               transition="delete")) for d in devices]  # fmt: skip
    commands = []
    for d, reply in zip(devices, at_once_on_both(servers, [("sho/lifecycle", w) for w in wires]),
                        strict=True):  # fmt: skip
        command = d.lifecycle.receive(reply)
        assert isinstance(command, m.LifecycleCommand) and command.transition == "delete"
        commands.append(command)
    wires = [
        d.receipt(d.lifecycle, d.mid_a, c.sequence, "delete", "DELETED", None)
        for d, c in zip(devices, commands, strict=True)
    ]
    for d, reply in zip(devices, at_once_on_both(servers, [("dpf/receipt", w) for w in wires]),
                        strict=True):  # fmt: skip
        ack = d.lifecycle.receive(reply)
        assert isinstance(ack, m.Ack) and ack.state == "DELETED"


def check_store(store: Store, devices: list[Device]) -> None:
    """The invariants, read back from the database."""
    with store.transaction() as tx:
        mids = tx.mids()
        hss = {d.imsi_a: tx.hss(d.imsi_a) for d in devices}
        hss_count = tx.hss_count()
    live = Counter((mid.device_id, mid.sequence) for mid in mids if mid.state != "DELETED")
    assert max(live.values()) == 1, f"two live MIDs with one number: {live}"
    assert len(mids) == 2 * DEVICES  # SHO-A's and SHO-B's of each device, none more
    by_device = {d.device_id: {mid.sho: mid for mid in mids if mid.device_id == d.device_id}
                 for d in devices}  # fmt: skip
    for d in devices:
        mine = by_device[d.device_id]
        assert (mine["sho-a"].state, mine["sho-b"].state) == ("DELETED", "ACTIVE")
        assert (mine["sho-a"].sequence, mine["sho-b"].sequence) == (1, 2)
        record_a = hss[d.imsi_a]
        assert record_a is not None and record_a.k == b""  # K left SHO-A's HSS with its MID
        assert mine["sho-a"].command_seq == 1 and mine["sho-b"].command_seq == 1
    imsis_b = [mid.imsi for mid in mids if mid.sho == "sho-b"]
    assert len(set(imsis_b)) == DEVICES  # one SHO-B subscriber per device, no two per device
    assert hss_count == 2 * DEVICES  # one HSS record per MID
    events = Counter((e.actor, e.event) for e in store.audit_events())
    for key in [("sho-a", "hss-record"), ("sho-b", "hss-record"), ("dpf", "package"),
                ("dpf", "installed"), ("sho-b", "command"), ("sho-b", "activate"),
                ("sho-a", "release"), ("sho-a", "command"), ("sho-a", "delete")]:  # fmt: skip
        assert events[key] == DEVICES, (key, events[key])
    assert store.verify_audit() == sum(events.values())


@contextmanager
def gunicorn(config: NetworkConfig, store_url: str, clock: Clock) -> Iterator[str]:
    """The app of :func:`workers` served by gunicorn with 2 worker processes (what ``network
    serve --workers 2`` runs, :func:`network.workers.serve_workers`), each opening its own
    store after the fork, in a process of its own; yields its URL."""
    from network.workers import serve_workers

    context = multiprocessing.get_context("fork")
    reader, writer = context.Pipe(duplex=False)

    def make_app(counts: Any) -> NetworkApp:
        return NetworkApp(config, Store(store_url, config.store_key), clock=clock,
                          builder=opaque_builder, trust=EchoReceipts(config.trusted_cas),
                          counts=counts)  # fmt: skip

    def arbiter() -> None:
        serve_workers(make_app, "127.0.0.1", 0, workers=2, ready=writer.send, log_level="warning")

    process = context.Process(target=arbiter)
    process.start()
    try:
        assert reader.poll(90), "gunicorn did not start"
        yield str(reader.recv())
    finally:
        if process.pid is not None and process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
        process.join(60)
        if process.is_alive():
            process.kill()
            process.join()


def test_change_of_subscription_through_two_gunicorn_instances(
    store_url: str, config: NetworkConfig, clock: Clock
) -> None:
    """The same, through two gunicorn instances of 2 worker processes each on one store: each
    request sent to both instances at once."""
    with gunicorn(config, store_url, clock) as url_a, gunicorn(config, store_url, clock) as url_b:
        store = Store(store_url, config.store_key)  # opened after the forks: none inherits it
        try:
            app = NetworkApp(config, store, clock=clock, builder=opaque_builder,
                             trust=EchoReceipts(config.trusted_cas))  # fmt: skip
            devices = [Device(app, i) for i in range(DEVICES)]
            change_of_subscription(devices, [HttpTransport(url_a), HttpTransport(url_b)])
            check_store(store, devices)
        finally:
            store.close()
