"""Several workers, and several servers, on one store — on each engine (SQLite, PostgreSQL): real
concurrent requests from threads, each worker with its own Store (its own connections), the
operator's real roles (the TPM package builder replaced as in the other unit tests).

What must hold: no two live MIDs of one device with one number, one HSS record and one reply
per request however often and wherever it is sent, distinct subscriber numbers, and an audit
trail that verifies with exactly one entry per effect."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from network.server import NetworkApp, running_server
from network.store import Store
from protocol import messages as m
from protocol.client import HttpTransport, InProcessTransport, Transport
from protocol.errors import Refused, Unavailable
from protocol.records import DeviceRecord, SessionRecord, VerdictRecord
from protocol.transitions import Session, SessionState


def validated_sessions(app: NetworkApp, device_id: str, count: int) -> list[Session]:
    """``count`` provisioning sessions of one device, as the PVA leaves them (validated, with a
    live verdict)."""
    now = app.now()
    sessions = []
    with app.store.transaction() as tx:
        tx.put_device(DeviceRecord(device_id, b"cert", b"ak", b"\x00\x0bname", state="activated"))
        for _ in range(count):
            s = Session("device", SessionState(os.urandom(32), "validated", os.urandom(32)))
            tx.put_session(
                SessionRecord(s.session_id, "provision", "validated", s.transcript, now, now + 900,
                              device_id, "sho-a",
                              data={"ek_public": b"ek", "ak_public": b"ak", "ak_name": b"\x00\x0bname"})
            )  # fmt: skip
            tx.put_verdict(
                VerdictRecord(s.session_id, device_id, b"\x00\x0bname", bytes(32), now + 300, b"c")
            )
            sessions.append(s)
    return sessions


def package_wire(s: Session) -> bytes:
    return s.send(s.make(m.PackageRequest, srk_public=b"srk", slot=1, counter=0))


def all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls on as many threads, released together; each result or the exception."""
    gate = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        gate.wait()
        try:
            return call()
        except (Refused, Unavailable) as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def check_store(store: Store, *, packages: int) -> None:
    """The invariants, read back from the database."""
    with store.transaction() as tx:
        mids = tx.mids()
        hss_count = tx.hss_count()
    live = [mid for mid in mids if mid.state != "DELETED"]
    numbers = Counter((mid.device_id, mid.sequence) for mid in live)
    assert max(numbers.values(), default=0) == 1, f"two live MIDs with one number: {numbers}"
    assert len({mid.imsi for mid in mids}) == len(mids) == hss_count == packages
    events = Counter(e.event for e in store.audit_events())
    assert events["package"] == events["hss-record"] == packages
    assert store.verify_audit() == sum(events.values())


def test_two_workers_one_request_each_twice_at_once(workers: list[NetworkApp]) -> None:
    """Every device's package request reaches both workers at the same moment (a retry that
    overtook the original): one package, one HSS record, one reply, per device."""
    devices = [f"{i:02x}" * 33 for i in range(6)]
    wires = [package_wire(validated_sessions(workers[0], d, 1)[0]) for d in devices]
    transports = [InProcessTransport(app) for app in workers]
    calls = [
        (lambda t=t, w=w: t.post("dpf/package", w)) for w in wires for t in transports
    ]  # fmt: skip
    replies = all_at_once(calls)
    assert all(isinstance(r, bytes) for r in replies), replies
    for i in range(len(devices)):
        assert replies[2 * i] == replies[2 * i + 1]  # the same reply from both workers
    check_store(workers[0].store, packages=len(devices))


def test_one_device_two_sessions_at_once_never_share_a_mid_number(
    workers: list[NetworkApp],
) -> None:
    """Two packages for one device, with the same TPM counter, requested through two workers
    at once: serialised on the device, so the second supersedes the first — never two live
    MIDs numbered 1."""
    rounds = 4
    replies = []
    for r in range(rounds):
        device = f"{0xA0 + r:02x}" * 33
        wires = [package_wire(s) for s in validated_sessions(workers[0], device, 2)]
        replies += all_at_once(
            [
                (lambda app=app, w=w: InProcessTransport(app).post("dpf/package", w))
                for app, w in zip(workers, wires, strict=True)
            ]
        )
    assert all(isinstance(r, bytes) for r in replies), replies
    check_store(workers[0].store, packages=2 * rounds)
    with workers[1].store.transaction() as tx:
        states = Counter(mid.state for mid in tx.mids())
    assert states == {"PENDING": rounds, "DELETED": rounds}


def test_two_servers_share_one_store_and_a_retry_lands_on_the_other(
    workers: list[NetworkApp],
) -> None:
    """Two HTTP servers on their own ports, one database: devices spread across them; each
    device's request sent again to the other server gets the same reply and changes nothing."""
    devices = [f"{0xC0 + i:02x}" * 33 for i in range(6)]
    wires = [package_wire(validated_sessions(workers[0], d, 1)[0]) for d in devices]
    with running_server(workers[0]) as url_a, running_server(workers[1]) as url_b:
        assert url_a != url_b
        servers: list[Transport] = [HttpTransport(url_a), HttpTransport(url_b)]
        firsts = all_at_once(
            [(lambda i=i, w=w: servers[i % 2].post("dpf/package", w)) for i, w in enumerate(wires)]
        )
        retries = all_at_once(
            [
                (lambda i=i, w=w: servers[(i + 1) % 2].post("dpf/package", w))
                for i, w in enumerate(wires)
            ]
        )
    assert all(isinstance(r, bytes) for r in firsts), firsts
    assert retries == firsts
    check_store(workers[1].store, packages=len(devices))
