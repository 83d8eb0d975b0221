"""The agent's pure clients against a network end built from the real message layer (Session,
COSE signatures with fresh P-256 keys): every device-side check refuses with its code and
leaves the client able to take the right message. No TPM here; the TPM flows are in
tests/integration/test_agent_*.py."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

import pytest

from aka.usim import AkaMacFailure, AkaSuccess, AkaSyncFailure
from host.agent import (
    Activate,
    AgentRefused,
    AgentState,
    ApplyTransition,
    AttachClient,
    AttachDone,
    Authenticate,
    Certify,
    DescribeTarget,
    DeviceTrust,
    Finished,
    Install,
    LifecycleClient,
    MidInfo,
    PcidInfo,
    ProvisioningClient,
    ProvisionState,
    Quote,
    Send,
    parse_device_trust,
)
from network.config import NetworkConfig, device_trust
from protocol import messages as m
from protocol.transitions import Session, SessionState
from tests.unit.network.conftest import make_config
from tpm.package import (
    AlgorithmSpec,
    LifecycleBinding,
    MidPolicy,
    Package,
    WrappedObject,
    operator_public,
)
from trelab.errors import BadInput, LocalProtocolError, RemoteProtocolError

NOW = 1_800_000_000
SELECTION = "sha256:0,1,2,3,4,5,6,7"
EK_NAME = b"\x00\x0b" + hashlib.sha256(b"ek").digest()
SRK_NAME = b"\x00\x0b" + hashlib.sha256(b"srk").digest()
AK_NAME = b"\x00\x0b" + hashlib.sha256(b"ak").digest()
DIGEST = hashlib.sha256(b"validated pcrs").digest()


@pytest.fixture
def config() -> NetworkConfig:
    return make_config()


@pytest.fixture
def trust(config: NetworkConfig) -> DeviceTrust:
    return parse_device_trust(device_trust(config))


class Net:
    """The network end of one session, driven by hand."""

    def __init__(self, first: Send) -> None:
        self.session = Session("network", SessionState(m.decode(first.wire).session_id))
        self.session.receive(first.wire)

    def take(self, send: Send) -> m.Message:
        return self.session.receive(send.wire)

    def reply(self, cls: type[m.Message], key: m.SigningKey | None = None, **fields: Any) -> bytes:
        msg = self.session.make(cls, **fields)
        if key is not None:
            msg = m.sign(msg, key)
        return self.session.send(msg)

    def peek(self, cls: type[m.Message], key: m.SigningKey | None = None, **fields: Any) -> bytes:
        """A reply that does not move the network end (to try several variants)."""
        saved = self.session.state
        wire = self.reply(cls, key, **fields)
        self.session = Session("network", saved)
        return wire


def _obj(label: str) -> WrappedObject:
    return WrappedObject(
        public=label.encode(),
        duplicate=b"dup",
        seed=b"seed",
        name=b"\x00\x0b" + hashlib.sha256(label.encode()).digest(),
    )


def make_package(
    *,
    seq: int,
    slot: int,
    owner: Any,
    ek: bytes = EK_NAME,
    digest: bytes = DIGEST,
    imsi: str = "001010000000001",
) -> Package:
    """``owner``: the key the MID's lifecycle index is bound to (the asked SHO's, normally)."""
    binding = LifecycleBinding(operator_public(owner), b"ref")
    return Package(
        seq=seq,
        imsi=imsi,
        algorithm=AlgorithmSpec(),
        amf=b"\x80\x00",
        sqn_ms=bytes(6),
        policy=MidPolicy(
            kind="use", selection=SELECTION, pcr_digest=digest, slot=slot, lifecycle=binding
        ),
        ek_name=ek,
        srk_name=SRK_NAME,
        parent=_obj("parent"),
        k=_obj("k"),
        secret=_obj("opc"),
    )


def manifest_fields(pkg: Package, /, **over: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "mid_id": pkg.mid_id,
        "imsi": pkg.imsi,
        "sho": "sho-a",
        "sequence": pkg.seq,
        "amf": pkg.amf,
        "algorithm": "milenage",
        "policy": m.pairs({"kind": "use", "slot": pkg.policy.slot}),
        "names": m.pairs(
            {
                "ek": pkg.ek_name,
                "srk": pkg.srk_name,
                "parent": pkg.parent.name,
                "k": pkg.k.name,
                "opc": pkg.secret.name,
            }
        ),
        "not_after": NOW + 3600,
        "package": pkg.dumps().encode(),
    }
    fields.update(over)
    return fields


def begin(trust: DeviceTrust) -> tuple[ProvisioningClient, Net]:
    client, send = ProvisioningClient.begin(
        trust,
        sho="sho-a",
        ek_cert=b"cert",
        ek_name=EK_NAME,
        ak_public=b"ak-public",
        ak_name=AK_NAME,
        device_nonce=os.urandom(32),
    )
    return client, Net(send)


def resumed(client: ProvisioningClient, trust: DeviceTrust) -> ProvisioningClient:
    """The client as a restarted agent rebuilds it from its journal (JSON round trip)."""
    state = ProvisionState.from_json(json.loads(json.dumps(client.state.to_json())))
    assert state == client.state
    return ProvisioningClient(trust, state)


def to_validated(
    client: ProvisioningClient, net: Net, config: NetworkConfig, trust: DeviceTrust
) -> tuple[ProvisioningClient, DescribeTarget]:
    event = client.receive(
        net.reply(m.CredentialChallenge, credential_blob=b"b", encrypted_secret=b"e"), now=NOW
    )
    assert isinstance(event, Activate)
    net.take(client.activated(b"S" * 32))
    event = client.receive(
        net.reply(m.ValidationChallenge, nonce=os.urandom(32), pcr_selection=SELECTION), now=NOW
    )
    assert isinstance(event, Quote) and event.selection == SELECTION
    net.take(client.quoted(quote_msg=b"q", quote_sig=b"s", pcrs=b"", pcrlist=SELECTION))
    client = resumed(client, trust)
    event = client.receive(
        net.reply(
            m.Verdict,
            config.pva_key,
            ak_name=AK_NAME,
            pcr_digest=DIGEST,
            pcr_selection=SELECTION,
            not_after=NOW + 300,
        ),
        now=NOW,
    )
    assert isinstance(event, DescribeTarget) and event.pcr_digest == DIGEST
    return client, event


def test_device_trust_parses_and_refuses_what_is_not_pinnable(config: NetworkConfig) -> None:
    doc = device_trust(config)
    trust = parse_device_trust(doc)
    assert set(trust.shos) == {"sho-a", "sho-b"} and trust.pcr_selection == SELECTION
    with pytest.raises(AgentRefused) as caught:
        trust.sho_key("sho-z")
    assert caught.value.code == "unknown-sho"
    for broken in (
        {**doc, "version": 2},
        {**doc, "pva": "not a key"},
        {**doc, "shos": {}},
        {**doc, "pcr_selection": "sha999:1"},
        [],
    ):
        with pytest.raises(BadInput):
            parse_device_trust(broken)
    assert "PRIVATE" not in repr(trust) and "BEGIN" not in repr(trust)


def test_happy_path_to_active_survives_a_restart_at_every_step(
    config: NetworkConfig, trust: DeviceTrust
) -> None:
    client, net = begin(trust)
    client, _ = to_validated(client, net, config, trust)
    assert m.decode(client.target(srk_public=b"srk", srk_name=SRK_NAME, slot=3, counter=6).wire)
    net.take(client.pending)  # type: ignore[arg-type]
    client = resumed(client, trust)
    package = make_package(seq=7, slot=3, owner=config.shos["sho-a"].key.public_key)
    event = client.receive(
        net.reply(m.MidPackage, config.dpf_key, **manifest_fields(package)), now=NOW
    )
    assert isinstance(event, Install) and event.package.seq == 7 and event.pcr_digest == DIGEST
    client = resumed(client, trust)
    certify = client.installed()
    assert isinstance(certify, Certify) and (certify.slot, certify.counter) == (3, 7)
    expected = m.receipt_qualifying_data(
        client.session.session_id, client.session.transcript, "install"
    )
    assert certify.qualifying == expected
    receipt = net.take(client.certified({"state.attest": b"a", "state.sig": b"s"}))
    assert isinstance(receipt, m.Receipt) and (receipt.event, receipt.sequence) == ("install", 7)
    owner = config.shos["sho-a"].key
    event = client.receive(
        net.reply(
            m.LifecycleCommand, owner, mid_id=package.mid_id, transition="activate", sequence=1
        ),
        now=NOW,
    )
    assert isinstance(event, ApplyTransition) and (event.transition, event.slot) == ("activate", 3)
    client = resumed(client, trust)
    certify = client.transitioned()
    assert certify.counter is None and certify.event == "activate"
    receipt = net.take(client.certified({"state.attest": b"a", "state.sig": b"s"}))
    assert isinstance(receipt, m.Receipt) and (receipt.event, receipt.sequence) == ("activate", 1)
    event = client.receive(net.reply(m.Ack, mid_id=package.mid_id, state="ACTIVE"), now=NOW)
    assert isinstance(event, Finished)
    assert (event.state, event.sequence, event.slot, event.command_seq) == ("ACTIVE", 7, 3, 1)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"key": "dpf"}, "verdict-signature"),  # the DPF's key posing as the PVA
        ({"ak_name": b"\x00\x0b" + bytes(32)}, "verdict-ak"),
        ({"pcr_selection": "sha256:0,1"}, "verdict-pcrs"),
        ({"not_after": NOW}, "stale-verdict"),
    ],
)
def test_a_verdict_that_does_not_fit_is_refused_and_changes_nothing(
    config: NetworkConfig, trust: DeviceTrust, change: dict[str, Any], code: str
) -> None:
    client, net = begin(trust)
    client.receive(
        net.reply(m.CredentialChallenge, credential_blob=b"b", encrypted_secret=b"e"), now=NOW
    )
    net.take(client.activated(b"S" * 32))
    client.receive(
        net.reply(m.ValidationChallenge, nonce=os.urandom(32), pcr_selection=SELECTION), now=NOW
    )
    net.take(client.quoted(quote_msg=b"q", quote_sig=b"s", pcrs=b"", pcrlist=SELECTION))
    before = client.state
    fields: dict[str, Any] = {
        "ak_name": AK_NAME,
        "pcr_digest": DIGEST,
        "pcr_selection": SELECTION,
        "not_after": NOW + 300,
    }
    key = config.pva_key
    if change.pop("key", None) == "dpf":
        key = m.SigningKey("pva", config.dpf_key.private_key)
    fields.update(change)
    with pytest.raises(AgentRefused) as caught:
        client.receive(net.peek(m.Verdict, key, **fields), now=NOW)
    assert caught.value.code == code
    assert client.state == before  # all or nothing: the good verdict still fits
    good = net.reply(
        m.Verdict, config.pva_key, ak_name=AK_NAME, pcr_digest=DIGEST, pcr_selection=SELECTION,
        not_after=NOW + 300,
    )  # fmt: skip
    assert isinstance(client.receive(good, now=NOW), DescribeTarget)


@pytest.mark.parametrize(
    ("package_kw", "manifest_kw", "code"),
    [
        ({"ek": b"\x00\x0b" + bytes(32)}, {}, "wrong-tre"),  # a package for another TRE
        ({"seq": 5}, {"sequence": 5}, "sequence"),  # replayed: not MID_CTR + 1
        ({"digest": bytes(32)}, {}, "unbound-policy"),  # K not bound to the validated PCRs
        ({}, {"sho": "sho-b"}, "wrong-sho"),
        ({}, {"imsi": "001019999999999"}, "manifest"),
        ({}, {"not_after": NOW - 1}, "stale-package"),
        ({"slot": 4}, {}, "slot"),
        ({"owner": "sho-b"}, {}, "lifecycle-owner"),  # its state writable by another SHO
        ({}, {"package": b"{not json"}, "bad-package"),
    ],
)
def test_a_package_that_does_not_fit_is_refused(
    config: NetworkConfig,
    trust: DeviceTrust,
    package_kw: dict[str, Any],
    manifest_kw: dict[str, Any],
    code: str,
) -> None:
    client, net = begin(trust)
    client, _ = to_validated(client, net, config, trust)
    net.take(client.target(srk_public=b"srk", srk_name=SRK_NAME, slot=3, counter=6))
    owner = config.shos["sho-a"].key.public_key
    if package_kw.get("owner") == "sho-b":
        package_kw = {**package_kw, "owner": config.shos["sho-b"].key.public_key}
    package = make_package(**{"seq": 7, "slot": 3, "owner": owner, **package_kw})
    with pytest.raises(AgentRefused) as caught:
        client.receive(
            net.peek(m.MidPackage, config.dpf_key, **manifest_fields(package, **manifest_kw)),
            now=NOW,
        )
    assert caught.value.code == code
    unsigned_by_dpf = m.SigningKey("dpf", config.pva_key.private_key)
    with pytest.raises(AgentRefused) as caught:
        client.receive(
            net.peek(
                m.MidPackage,
                unsigned_by_dpf,
                **manifest_fields(make_package(seq=7, slot=3, owner=owner)),
            ),
            now=NOW,
        )
    assert caught.value.code == "package-signature"


def test_replies_from_another_session_transcript_or_order_are_protocol_errors(
    config: NetworkConfig, trust: DeviceTrust
) -> None:
    client, net = begin(trust)
    _other, other_net = begin(trust)
    foreign = other_net.reply(m.CredentialChallenge, credential_blob=b"b", encrypted_secret=b"e")
    with pytest.raises(RemoteProtocolError, match="another session"):
        client.receive(foreign, now=NOW)
    out_of_order = m.encode(  # well bound, but M4 where M3 is due
        m.ValidationChallenge(
            session_id=client.session.session_id,
            transcript=client.session.transcript,
            nonce=os.urandom(32),
            pcr_selection=SELECTION,
        )
    )
    with pytest.raises(RemoteProtocolError, match="not allowed"):
        client.receive(out_of_order, now=NOW)
    first = net.reply(m.CredentialChallenge, credential_blob=b"b", encrypted_secret=b"e")
    client.receive(first, now=NOW)
    with pytest.raises(LocalProtocolError):  # the reply was taken: nothing is pending
        client.receive(first, now=NOW)
    net.take(client.activated(b"S" * 32))
    with pytest.raises(RemoteProtocolError, match=r"transcript|not allowed"):  # replayed
        client.receive(first, now=NOW)
    with pytest.raises(RemoteProtocolError):
        client.receive(b"\xff\x00", now=NOW)


def test_a_lifecycle_command_must_come_from_the_owner_be_expected_and_new(
    config: NetworkConfig, trust: DeviceTrust
) -> None:
    mid = MidInfo("m1", "sho-b", "001020000000001", 5, 2, "net", "ACTIVE", command_seq=3)
    client, send = LifecycleClient.begin(trust, os.urandom(32), mid=mid, allowed=("suspend",))
    net = Net(send)
    sho_a, sho_b = config.shos["sho-a"].key, config.shos["sho-b"].key
    cases = [
        (m.SigningKey("sho-b", sho_a.private_key), "m1", "suspend", 4, "not-owner"),
        (sho_a, "m1", "suspend", 4, "not-owner"),  # SHO-A's order for SHO-B's MID
        (sho_b, "m2", "suspend", 4, "wrong-mid"),
        (sho_b, "m1", "delete", 4, "unexpected-order"),
        (sho_b, "m1", "suspend", 3, "replayed-command"),
    ]
    for key, mid_id, transition, seq, code in cases:
        wire = net.peek(m.LifecycleCommand, key, mid_id=mid_id, transition=transition, sequence=seq)
        with pytest.raises(AgentRefused) as caught:
            client.receive(wire)
        assert caught.value.code == code, (mid_id, transition, seq)
    event = client.receive(
        net.reply(m.LifecycleCommand, sho_b, mid_id="m1", transition="suspend", sequence=4)
    )
    assert isinstance(event, ApplyTransition) and event.slot == 5
    net.take(client.certified({"state.attest": b"a", "state.sig": b"s"}))
    with pytest.raises(AgentRefused) as caught:
        client.receive(net.peek(m.Ack, mid_id="m1", state="ACTIVE"))
    assert caught.value.code == "wrong-ack"
    done = client.receive(net.reply(m.Ack, mid_id="m1", state="SUSPENDED"))
    assert isinstance(done, Finished) and (done.state, done.command_seq) == ("SUSPENDED", 4)


def test_attach_answers_res_resynchronises_once_and_refuses_a_network_failing_aka() -> None:
    client, send = AttachClient.begin(os.urandom(32), "001010000000001")
    net = Net(send)
    event = client.receive(net.reply(m.AuthChallenge, rand=bytes(16), autn=bytes(16)))
    assert isinstance(event, Authenticate)
    auts = net.take(client.answered(AkaSyncFailure(bytes(14), "not fresh")))
    assert isinstance(auts, m.AuthResponse) and auts.auts == bytes(14)
    client.receive(net.reply(m.AuthChallenge, rand=bytes(16), autn=bytes(16)))
    with pytest.raises(AgentRefused) as caught:
        client.answered(AkaSyncFailure(bytes(14), "again"))
    assert caught.value.code == "resync"
    with pytest.raises(AgentRefused) as caught:
        client.answered(AkaMacFailure())
    assert caught.value.code == "network-auth"
    res = net.take(client.answered(AkaSuccess(b"R" * 8, bytes(16), bytes(16))))
    assert isinstance(res, m.AuthResponse) and res.res == b"R" * 8
    done = client.receive(net.reply(m.AttachResult, accepted=True, reason="authenticated"))
    assert isinstance(done, AttachDone) and done.accepted and done.resynchronised


def test_a_report_is_an_error_of_the_session_and_moves_nothing(trust: DeviceTrust) -> None:
    client, _net = begin(trust)
    before = client.session
    report = client.report("wrong-tre", "package for another TRE\nsecond line")
    assert report.endpoint == "drf/report"
    error = m.decode(report.wire)
    assert isinstance(error, m.Error) and error.reason == "package for another TRE"
    assert client.session == before and client.pending is not None


def test_agent_state_round_trips_and_refuses_malformed_files() -> None:
    state = AgentState(
        mids={"m1": MidInfo("m1", "sho-a", "001010000000001", 0, 2, "http://x", "ACTIVE", 1)},
        pcid=PcidInfo("001990000000001", "p1"),
        journal={"kind": "provision"},
        change={"from": "m1", "to": "sho-b", "step": "attach", "new": "m2"},
    )
    again = AgentState.from_json(json.loads(json.dumps(state.to_json())))
    assert again == state
    assert dataclasses.replace(again, pcid=None).pcid is None
    for broken in (
        {},
        {"format": "x"},
        {**state.to_json(), "version": 9},
        {**state.to_json(), "mids": {}},
    ):
        with pytest.raises(BadInput):
            AgentState.from_json(broken)
    with pytest.raises(BadInput, match="no MID"):
        state.mid("m9")
    with pytest.raises(BadInput):
        ProvisionState.from_json({"step": "nowhere"})


@pytest.mark.parametrize("rat", ["eps", "5g"])
def test_attach_over_eps_and_5g_checks_amf_separation_and_the_key_proof(rat: str) -> None:
    from aka.access import key_proof, me_answer

    serving = "00101" if rat == "eps" else "5G:mnc001.mcc001.3gppnetwork.org"
    rand, autn = os.urandom(16), os.urandom(6) + b"\x80\x00" + os.urandom(8)
    ck, ik, res = os.urandom(16), os.urandom(16), os.urandom(8)

    def challenge(net: Net, amf: bytes = b"\x80\x00") -> Authenticate:
        event = client.receive(
            net.reply(
                m.AuthChallenge,
                rand=rand,
                autn=autn[:6] + amf + autn[8:],
                serving_network=serving,
                abba=b"\0\0",
            )
        )
        assert isinstance(event, Authenticate) and event.serving_network == serving
        return event

    client, send = AttachClient.begin(os.urandom(32), "001010000000001", rat)  # type: ignore[arg-type]
    net = Net(send)
    challenge(net, b"\x00\x00")
    with pytest.raises(AgentRefused) as caught:
        client.answered(AkaSuccess(res, ck, ik))
    assert caught.value.code == "amf-separation"

    client, send = AttachClient.begin(os.urandom(32), "001010000000001", rat)  # type: ignore[arg-type]
    net = Net(send)
    challenge(net)
    answer = net.take(client.answered(AkaSuccess(res, ck, ik)))
    assert isinstance(answer, m.AuthResponse)
    mine = me_answer(
        rat,  # type: ignore[arg-type]
        res=res,
        ck=ck,
        ik=ik,
        rand=rand,
        autn=autn,
        serving_network=serving,
        supi="imsi-001010000000001",
    )
    assert answer.res == mine.response and len(answer.res) == (16 if rat == "5g" else 8)
    assert answer.key_proof == key_proof(mine.anchor, rand)
    saved = net.session.state
    with pytest.raises(RemoteProtocolError, match="key proof"):
        client.receive(net.peek(m.AttachResult, accepted=True, reason="ok"))
    net.session = type(net.session)("network", saved)
    wrong = client.receive(
        net.peek(m.AttachResult, accepted=True, reason="ok", key_proof=bytes(16))
    )
    assert isinstance(wrong, AttachDone) and wrong.keys_match is False
