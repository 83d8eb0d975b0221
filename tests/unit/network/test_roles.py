"""The roles through the in-process app (real store, real Operator, no TPM): SHO AuC with a
software USIM on the other end, SHO isolation of lifecycle orders, the DPF's verdict and
sequence rules, the ICF's PCID grants, idempotent retries."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from aka.keyholder import SoftwareAes
from aka.milenage import Milenage
from aka.sqn import SqnState
from aka.usim import AkaSuccess, AkaSyncFailure, usim_authenticate
from network.server import NetworkApp
from protocol import messages as m
from protocol.client import InProcessTransport
from protocol.errors import Refused, RemoteProtocolError, SignatureInvalid, Unavailable
from protocol.messages import INITIAL_TRANSCRIPT
from protocol.records import DeviceRecord, MidRecord, SessionRecord, VerdictRecord
from protocol.transitions import Session, SessionState

from .conftest import Clock, next_imsi


def subscriber(
    app: NetworkApp, sho: str = "sho-a", state: str = "active"
) -> tuple[str, bytes, bytes]:
    imsi, k, opc = (
        next_imsi(app.config.shos[sho].plmn if sho in app.config.shos else "00199"),
        os.urandom(16),
        os.urandom(16),
    )
    with app.store.transaction() as tx:
        app.operator.add_subscriber(
            tx,
            sho=sho,
            imsi=imsi,
            k=k,
            opc=opc,
            request_id=f"card:{imsi}",
            now=app.now(),
            state=state,
        )
    return imsi, k, opc


def attach(
    app: NetworkApp,
    imsi: str,
    k: bytes,
    opc: bytes,
    usim: SqnState | None = None,
    grant: bytes | None = None,
) -> m.AttachResult:
    transport = InProcessTransport(app)
    s = Session("device", SessionState(os.urandom(32)))
    state = usim or SqnState()
    challenge = s.receive(
        transport.post("sho/attach", s.send(s.make(m.AttachRequest, imsi=imsi)), grant=grant)
    )
    for _ in range(2):
        assert isinstance(challenge, m.AuthChallenge)
        result, state = usim_authenticate(
            Milenage(SoftwareAes(k), opc), state, challenge.rand, challenge.autn
        )
        if isinstance(result, AkaSuccess):
            answer = s.make(m.AuthResponse, res=result.res)
        else:
            assert isinstance(result, AkaSyncFailure)
            answer = s.make(m.AuthResponse, auts=result.auts)
        reply = s.receive(transport.post("sho/auth", s.send(answer)))
        if isinstance(reply, m.AttachResult):
            return reply
        challenge = reply
    raise AssertionError("no AttachResult")


# ---- SHO AuC --------------------------------------------------------------------------------


def test_attach_with_a_software_usim(app: NetworkApp) -> None:
    imsi, k, opc = subscriber(app)
    assert attach(app, imsi, k, opc).accepted
    with app.store.transaction() as tx:
        record = tx.hss(imsi)
    assert record is not None and record.sqn["seq_he"] == 1


def test_wrong_k_gives_a_refused_attach_not_an_error(app: NetworkApp) -> None:
    imsi, _k, opc = subscriber(app)
    with pytest.raises(AssertionError):  # the USIM itself refuses the network's MAC
        attach(app, imsi, os.urandom(16), opc)
    s = Session("device", SessionState(os.urandom(32)))
    transport = InProcessTransport(app)
    s.receive(transport.post("sho/attach", s.send(s.make(m.AttachRequest, imsi=imsi))))
    result = s.receive(
        transport.post("sho/auth", s.send(s.make(m.AuthResponse, res=os.urandom(8))))
    )
    assert isinstance(result, m.AttachResult) and not result.accepted and "RES" in result.reason


def test_usim_ahead_resynchronises_with_auts(app: NetworkApp) -> None:
    imsi, k, opc = subscriber(app)
    ahead = SqnState.starting_at((1000 << 5).to_bytes(6, "big"))
    assert attach(app, imsi, k, opc, usim=ahead).accepted
    with app.store.transaction() as tx:
        record = tx.hss(imsi)
    assert record is not None and record.sqn["seq_he"] > 1000
    assert "resync" in [e.event for e in app.store.audit_events()]


def test_forged_auts_is_refused(app: NetworkApp) -> None:
    imsi, _, _ = subscriber(app)
    s = Session("device", SessionState(os.urandom(32)))
    transport = InProcessTransport(app)
    s.receive(transport.post("sho/attach", s.send(s.make(m.AttachRequest, imsi=imsi))))
    result = s.receive(
        transport.post("sho/auth", s.send(s.make(m.AuthResponse, auts=os.urandom(14))))
    )
    assert isinstance(result, m.AttachResult) and not result.accepted and "AUTS" in result.reason


def test_inactive_and_unknown_subscribers_get_no_vectors(app: NetworkApp) -> None:
    imsi, k, opc = subscriber(app, state="suspended")
    with pytest.raises(Refused) as caught:
        attach(app, imsi, k, opc)
    assert caught.value.reason == "not-active"
    with pytest.raises(Refused) as caught:
        attach(app, next_imsi(), k, opc)
    assert caught.value.reason == "unknown-subscriber"


def test_a_retried_request_is_answered_from_the_store_and_moves_sqn_once(app: NetworkApp) -> None:
    imsi, _, _ = subscriber(app)
    s = Session("device", SessionState(os.urandom(32)))
    wire = s.send(s.make(m.AttachRequest, imsi=imsi))
    transport = InProcessTransport(app)
    first, second = transport.post("sho/attach", wire), transport.post("sho/attach", wire)
    assert first == second  # same RAND/AUTN: the stored reply, not a second vector
    with app.store.transaction() as tx:
        record = tx.hss(imsi)
    assert record is not None and record.sqn["seq_he"] == 1


# ---- lifecycle orders: SHO isolation --------------------------------------------------------


def install_mid(app: NetworkApp, sho: str, state: str = "INSTALLED") -> MidRecord:
    imsi, _, _ = subscriber(app, sho, state={"INSTALLED": "installed", "ACTIVE": "active"}[state])
    mid = MidRecord(f"mid-{imsi[-6:]}", "d" * 66, sho, imsi, state, 1, os.urandom(32), slot=4)
    with app.store.transaction() as tx:
        tx.put_device(DeviceRecord(mid.device_id, b"cert", b"ak", b"name", state="activated"))
        tx.put_mid(mid)
    return mid


def order(
    app: NetworkApp, mid_id: str, transition: str, signer: str, key_of: str | None = None
) -> bytes:
    key = app.config.shos[key_of or signer].key
    msg = m.LifecycleOrder(
        session_id=os.urandom(32),
        transcript=INITIAL_TRANSCRIPT,
        mid_id=mid_id,
        transition=transition,
    )
    signed = m.sign(msg, m.SigningKey(signer, key.private_key))
    return m.encode(signed)


def test_sho_a_can_never_order_sho_b_s_mid(app: NetworkApp) -> None:
    mid_b = install_mid(app, "sho-b")
    transport = InProcessTransport(app)
    with pytest.raises(Refused) as caught:
        transport.post("sho/order", order(app, mid_b.mid_id, "activate", "sho-a"))
    assert caught.value.reason == "foreign-mid"
    with pytest.raises(SignatureInvalid):  # claiming to be sho-b with sho-a's key
        transport.post("sho/order", order(app, mid_b.mid_id, "activate", "sho-b", key_of="sho-a"))
    with app.store.transaction() as tx:
        assert tx.order(mid_b.mid_id) is None
    wire = order(app, mid_b.mid_id, "activate", "sho-b")
    ack = m.decode(transport.post("sho/order", wire))
    assert isinstance(ack, m.Ack) and ack.state == "INSTALLED"
    assert transport.post("sho/order", wire) == m.encode(ack)  # a retry: the stored answer


def test_the_tre_fetches_an_order_signed_by_the_owner(app: NetworkApp) -> None:
    mid = install_mid(app, "sho-b")
    transport = InProcessTransport(app)
    transport.post("sho/order", order(app, mid.mid_id, "activate", "sho-b"))
    s = Session("device", SessionState(os.urandom(32)))
    command = s.receive(
        transport.post(
            "sho/lifecycle",
            s.send(s.make(m.LifecycleRequest, mid_id=mid.mid_id, transition="pending")),
        )
    )
    assert isinstance(command, m.LifecycleCommand)
    assert (command.signer, command.transition, command.sequence) == ("sho-b", "activate", 1)
    m.verify_signature(command, app.config.shos["sho-b"].key.public_key)
    with pytest.raises(SignatureInvalid):
        m.verify_signature(command, app.config.shos["sho-a"].key.public_key)
    # a second fetch (e.g. after a crash) re-delivers the same number, never a new one
    s2 = Session("device", SessionState(os.urandom(32)))
    again = s2.receive(
        transport.post(
            "sho/lifecycle",
            s2.send(s2.make(m.LifecycleRequest, mid_id=mid.mid_id, transition="pending")),
        )
    )
    assert isinstance(again, m.LifecycleCommand) and again.sequence == 1


def test_illegal_transitions_and_self_ordering_are_refused(app: NetworkApp) -> None:
    mid = install_mid(app, "sho-a")
    transport = InProcessTransport(app)
    with pytest.raises(Refused) as caught:
        transport.post(
            "sho/order", order(app, mid.mid_id, "suspend", "sho-a")
        )  # INSTALLED → SUSPENDED
    assert caught.value.reason == "illegal-transition"
    s = Session("device", SessionState(os.urandom(32)))
    with pytest.raises(Refused) as caught:
        transport.post(
            "sho/lifecycle",
            s.send(s.make(m.LifecycleRequest, mid_id=mid.mid_id, transition="delete")),
        )
    assert caught.value.reason == "not-authorised"


# ---- DPF ------------------------------------------------------------------------------------


def validated_session(
    app: NetworkApp, clock: Clock, *, verdict_life: int = 300, sequence: int = 0
) -> Session:
    """A provisioning session stored as the PVA leaves it (phase ``validated``); the TPM
    steps before it are covered in the integration tests."""
    device = DeviceRecord(
        "e" * 66, b"cert", b"ak", b"\x00\x0bname", state="activated", sequence=sequence
    )
    s = Session("device", SessionState(os.urandom(32), "validated", os.urandom(32)))
    now = app.now()
    with app.store.transaction() as tx:
        tx.put_device(device)
        tx.put_session(
            SessionRecord(
                s.session_id,
                "provision",
                "validated",
                s.transcript,
                now,
                now + 900,
                device.device_id,
                "sho-a",
                data={"ek_public": b"ek", "ak_public": b"ak", "ak_name": device.ak_name},
            )
        )
        tx.put_verdict(
            VerdictRecord(
                s.session_id,
                device.device_id,
                device.ak_name,
                bytes(32),
                now + verdict_life,
                b"cose",
            )
        )
    return s


def test_package_needs_a_live_verdict(app: NetworkApp, clock: Clock) -> None:
    s = validated_session(app, clock, verdict_life=300)
    clock.now += 301
    wire = s.send(s.make(m.PackageRequest, srk_public=b"srk", slot=1, counter=0))
    with pytest.raises(Refused) as caught:
        InProcessTransport(app).post("dpf/package", wire)
    assert caught.value.reason == "stale-verdict"
    with app.store.transaction() as tx:
        assert tx.hss_count() == 0 and tx.session(s.session_id).phase == "validated"  # type: ignore[union-attr]


def test_package_manifest_is_signed_and_numbered_counter_plus_one(
    app: NetworkApp, clock: Clock
) -> None:
    s = validated_session(app, clock)
    transport = InProcessTransport(app)
    wire = s.send(s.make(m.PackageRequest, srk_public=b"srk", slot=2, counter=6))
    manifest = s.receive(transport.post("dpf/package", wire))
    assert isinstance(manifest, m.MidPackage)
    m.verify_signature(manifest, app.config.dpf_key.public_key)
    assert manifest.sequence == 7 and manifest.sho == "sho-a" and manifest.imsi.startswith("00101")
    assert transport.post("dpf/package", wire) == manifest.cose  # a retry: same package
    with app.store.transaction() as tx:
        assert tx.hss_count() == 1  # … and no second HSS record
        mid = tx.mid(manifest.mid_id)
    assert mid is not None and (mid.state, mid.sequence, mid.slot) == ("PENDING", 7, 2)


def test_package_refuses_a_counter_that_went_back(app: NetworkApp, clock: Clock) -> None:
    s = validated_session(app, clock, sequence=9)
    with pytest.raises(Refused) as caught:
        InProcessTransport(app).post(
            "dpf/package", s.send(s.make(m.PackageRequest, srk_public=b"s", slot=1, counter=3))
        )
    assert caught.value.reason == "counter-rollback"


def test_no_builder_is_unavailable(config: object, store: object, clock: Clock) -> None:
    app = NetworkApp(config, store, clock=clock)  # type: ignore[arg-type]
    app.operator.builder = None
    s = validated_session(app, clock)
    with pytest.raises(Unavailable):
        InProcessTransport(app).post(
            "dpf/package", s.send(s.make(m.PackageRequest, srk_public=b"s", slot=1, counter=0))
        )


def test_revoked_device_gets_no_package(app: NetworkApp, clock: Clock) -> None:
    s = validated_session(app, clock)
    with app.store.transaction() as tx:
        app.operator.revoke(tx, "e" * 66, app.now())
    with pytest.raises(Refused) as caught:
        InProcessTransport(app).post(
            "dpf/package", s.send(s.make(m.PackageRequest, srk_public=b"s", slot=1, counter=0))
        )
    assert caught.value.reason == "revoked"


# ---- ICF ------------------------------------------------------------------------------------


def pcid(app: NetworkApp, life: int = 3600) -> tuple[str, bytes, bytes]:
    imsi, k, opc = next_imsi("00199"), os.urandom(16), os.urandom(16)
    with app.store.transaction() as tx:
        app.operator.register_pcid(tx, imsi=imsi, k=k, opc=opc, not_before=app.now(), not_after=app.now() + life,
                                   request_id=f"pcid:{imsi}", now=app.now())  # fmt: skip
    return imsi, k, opc


def test_pcid_grant_reaches_only_the_ro(config: object, store: object, clock: Clock) -> None:
    app = NetworkApp(replace(config, require_pcid=True), store, clock=clock)  # type: ignore[type-var, arg-type]
    imsi, k, opc = pcid(app)
    result = attach(app, imsi, k, opc)
    assert result.accepted and len(result.grant) == 32
    with app.store.transaction() as tx:
        assert app.operator.admit(tx, result.grant, "drf/register", app.now()) == imsi
        with pytest.raises(Refused, match="only the registration operator"):
            app.operator.admit(tx, result.grant, "sho/lifecycle", app.now())
        with pytest.raises(Refused, match="needs an ICF grant"):
            app.operator.admit(tx, None, "drf/register", app.now())
        with pytest.raises(Refused, match="unknown ICF grant"):
            app.operator.admit(tx, os.urandom(32), "pva/evidence", app.now())
    proof = m.CredentialProof(session_id=os.urandom(32), transcript=bytes(32), proof=bytes(32))
    with pytest.raises(Refused) as caught:  # over the app: refused at the gate, before the DRF
        InProcessTransport(app).post("drf/proof", m.encode(proof))
    assert caught.value.reason == "no-grant"


def test_pcid_outside_its_validity_period_is_refused(app: NetworkApp, clock: Clock) -> None:
    imsi, k, opc = pcid(app, life=60)
    clock.now += 61
    with pytest.raises(Refused) as caught:
        attach(app, imsi, k, opc)
    assert caught.value.reason == "pcid-expired"


def test_unknown_endpoint_and_wrong_message_type(app: NetworkApp) -> None:
    s = Session("device", SessionState(os.urandom(32)))
    wire = s.send(s.make(m.AttachRequest, imsi=next_imsi()))
    with pytest.raises(RemoteProtocolError, match="takes AuthResponse"):
        InProcessTransport(app).post("sho/auth", wire)
    assert (
        app.handle("POST", "/v1/nope/x", {"Content-Type": "application/cbor"}, wire).status == 404
    )
