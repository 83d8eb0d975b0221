"""Attach over 3G, EPS and 5G through the in-process app (real store, real Operator) with the
device's :class:`host.agent.AttachClient` and a software USIM: the SHO as HSS/UDM + AUSF
(+ SEAF), RES* checked at the home network and HRES* at the serving network, both ends
confirming the same K_ASME or K_SEAF, resynchronisation in each, and SUCI de-concealed by the
SIDF with rotated, retired and unknown key ids."""

from __future__ import annotations

import os
from typing import Any

import pytest

from aka.access import RATS, Rat, me_answer
from aka.keyholder import SoftwareAes
from aka.milenage import Milenage
from aka.sqn import SqnState
from aka.suci import Profile, conceal
from aka.usim import AkaResult, AkaSuccess, usim_authenticate
from host.agent import AttachClient, AttachDone, Authenticate
from network.server import NetworkApp
from protocol.client import InProcessTransport
from protocol.errors import Refused

from .test_roles import subscriber


def attach(
    app: NetworkApp,
    imsi: str,
    k: bytes,
    opc: bytes,
    rat: Rat,
    *,
    usim: SqnState | None = None,
    suci: str = "",
    tamper: Any = None,
) -> AttachDone:
    transport = InProcessTransport(app)
    state = [usim or SqnState()]

    def aka(rand: bytes, autn: bytes) -> AkaResult:
        result, state[0] = usim_authenticate(Milenage(SoftwareAes(k), opc), state[0], rand, autn)
        return result

    client, send = AttachClient.begin(os.urandom(32), imsi, rat, suci)
    while True:
        event = client.receive(transport.post(send.endpoint, send.wire))
        if isinstance(event, AttachDone):
            return event
        assert isinstance(event, Authenticate)
        if tamper is not None:
            event = tamper(event)
            client._challenge = event
        send = client.answered(aka(event.rand, event.autn))


@pytest.mark.parametrize("rat", RATS)
def test_attach_over_each_rat(app: NetworkApp, rat: Rat) -> None:
    imsi, k, opc = subscriber(app)
    done = attach(app, imsi, k, opc, rat)
    assert done.accepted and done.rat == rat and not done.resynchronised
    assert done.keys_match is True
    want = {"3g": "authenticated", "eps": "K_ASME confirmed", "5g": "K_SEAF confirmed"}[rat]
    assert want in done.reason
    events = [e for e in app.store.audit_events() if e.subject == imsi]
    assert [e.event for e in events][-2:] == ["vector", "attach"]
    assert events[-1].detail["rat"] == rat


@pytest.mark.parametrize("rat", RATS)
def test_resynchronisation_in_each_rat(app: NetworkApp, rat: Rat) -> None:
    imsi, k, opc = subscriber(app)
    ahead = SqnState.starting_at((5000 << 5).to_bytes(6, "big"))
    done = attach(app, imsi, k, opc, rat, usim=ahead)
    assert done.accepted and done.resynchronised and done.keys_match is True
    with app.store.transaction() as tx:
        record = tx.hss(imsi)
    assert record is not None and record.sqn["seq_he"] > 5000


def test_eps_me_on_another_plmn_derives_another_kasme(app: NetworkApp) -> None:
    """RES still matches (EPS checks RES), but K_ASME binds the serving network: refused."""
    imsi, k, opc = subscriber(app)

    def elsewhere(event: Authenticate) -> Authenticate:
        return Authenticate(event.rand, event.autn, "99999", event.abba)

    done = attach(app, imsi, k, opc, "eps", tamper=elsewhere)
    assert not done.accepted and "K_ASME" in done.reason and done.keys_match is None


def test_5g_res_star_bound_to_the_serving_network(app: NetworkApp) -> None:
    imsi, k, opc = subscriber(app)

    def elsewhere(event: Authenticate) -> Authenticate:
        return Authenticate(event.rand, event.autn, "5G:mnc099.mcc999.3gppnetwork.org", b"\0\0")

    done = attach(app, imsi, k, opc, "5g", tamper=elsewhere)
    assert not done.accepted and "HRES*" in done.reason


def test_5g_home_network_checks_res_star_after_the_serving_network(app: NetworkApp) -> None:
    """A RES* whose hash matches HXRES* but that is not XRES* cannot exist short of a SHA-256
    collision, so the home check is driven directly: a fresh vector, the right RES*, a wrong
    one, and the refusal reason of each."""
    from protocol import messages as m
    from protocol.transitions import Session, SessionState

    imsi, k, opc = subscriber(app)
    transport = InProcessTransport(app)
    s = Session("device", SessionState(os.urandom(32)))
    challenge = s.receive(
        transport.post("sho/attach", s.send(s.make(m.AttachRequest, imsi=imsi, rat="5g")))
    )
    assert isinstance(challenge, m.AuthChallenge)
    assert challenge.serving_network == "5G:mnc001.mcc001.3gppnetwork.org"
    assert challenge.abba == b"\0\0"
    result, _ = usim_authenticate(
        Milenage(SoftwareAes(k), opc), SqnState(), challenge.rand, challenge.autn
    )
    assert isinstance(result, AkaSuccess)
    plain_res = s.make(m.AuthResponse, res=result.res)  # a 3G answer to a 5G challenge
    reply = s.receive(transport.post("sho/auth", s.send(plain_res)))
    assert isinstance(reply, m.AttachResult) and not reply.accepted
    assert reply.reason == "HRES* does not match HXRES*" and not reply.key_proof
    answer = me_answer(
        "5g",
        res=result.res,
        ck=result.ck,
        ik=result.ik,
        rand=challenge.rand,
        autn=challenge.autn,
        serving_network=challenge.serving_network,
    )
    assert len(answer.response) == 16 and answer.response != result.res


# ---- SIDF -----------------------------------------------------------------------------------


def rotate(app: NetworkApp, profile: str) -> Any:
    with app.store.transaction() as tx:
        return app.operator.rotate_hn_key(tx, sho="sho-a", profile=profile, now=app.now())


@pytest.mark.parametrize("profile", ["A", "B"])
def test_5g_attach_with_a_suci(app: NetworkApp, profile: str) -> None:
    imsi, k, opc = subscriber(app)
    key = rotate(app, profile)
    suci = conceal(f"imsi-{imsi}", profile, hn_public=key.public, key_id=key.key_id).to_string()
    done = attach(app, imsi, k, opc, "5g", suci=suci)
    assert done.accepted and done.keys_match is True
    suci_events = [e for e in app.store.audit_events() if e.event == "suci"]
    assert suci_events[-1].subject == imsi and suci_events[-1].detail["key_id"] == key.key_id
    assert key.private.hex() not in repr(app.store.audit_events())


def test_null_scheme_suci_is_read_in_clear(app: NetworkApp) -> None:
    imsi, k, opc = subscriber(app)
    suci = conceal(f"imsi-{imsi}", Profile.NULL).to_string()
    assert attach(app, imsi, k, opc, "5g", suci=suci).accepted


def test_rotation_keeps_the_previous_key_until_it_is_retired(app: NetworkApp) -> None:
    imsi, k, opc = subscriber(app)
    old = rotate(app, "A")
    new = rotate(app, "A")
    assert new.key_id != old.key_id and new.public != old.public
    with app.store.transaction() as tx:
        states = {key.key_id: key.state for key in tx.hn_keys("sho-a")}
    assert states[old.key_id] == "previous" and states[new.key_id] == "current"
    made_before = conceal(f"imsi-{imsi}", "A", hn_public=old.public, key_id=old.key_id)
    assert attach(app, imsi, k, opc, "5g", suci=made_before.to_string()).accepted
    with app.store.transaction() as tx:
        app.operator.retire_hn_key(tx, sho="sho-a", key_id=old.key_id, now=app.now())
    with pytest.raises(Refused) as caught:
        attach(app, imsi, k, opc, "5g", suci=made_before.to_string())
    assert caught.value.reason == "unknown-hn-key"


def test_unknown_key_id_and_tampered_tag_are_refused(app: NetworkApp) -> None:
    imsi, k, opc = subscriber(app)
    key = rotate(app, "B")
    wrong_id = conceal(f"imsi-{imsi}", "B", hn_public=key.public, key_id=(key.key_id + 1) % 256)
    with pytest.raises(Refused) as caught:
        attach(app, imsi, k, opc, "5g", suci=wrong_id.to_string())
    assert caught.value.reason == "unknown-hn-key"
    good = conceal(f"imsi-{imsi}", "B", hn_public=key.public, key_id=key.key_id).to_string()
    tampered = good[:-1] + ("0" if good[-1] != "0" else "1")
    with pytest.raises(Refused) as caught:
        attach(app, imsi, k, opc, "5g", suci=tampered)
    assert caught.value.reason == "suci-mac"
    foreign = conceal("imsi-999990123456789", "B", hn_public=key.public, key_id=key.key_id)
    with pytest.raises(Refused) as caught:
        attach(app, imsi, k, opc, "5g", suci=foreign.to_string())
    assert caught.value.reason == "unknown-subscriber"
    codes = [e.detail.get("code") for e in app.store.audit_events() if e.event == "refused"]
    assert codes[-3:] == ["unknown-hn-key", "suci-mac", "unknown-subscriber"]
