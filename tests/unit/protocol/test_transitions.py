"""The transition table and Session: both ends paired in memory (h11 ConnectionPair style);
illegal, replayed, reordered and cross-session messages are refused and change nothing."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from protocol import messages as m
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.transitions import NEXT, PHASES, Session, SessionState, advance

KEY = m.SigningKey("dpf", ec.generate_private_key(ec.SECP256R1()))


class Pair:
    """Device and network ends of one session; ``step`` sends from one, receives at the other
    and checks both ends agree."""

    def __init__(self, session_id: bytes) -> None:
        self.device = Session("device", SessionState(session_id))
        self.network = Session("network", SessionState(session_id))

    def step(self, sender: Session, cls: type[m.Message], **fields: object) -> bytes:
        receiver = self.network if sender is self.device else self.device
        msg = sender.make(cls, **fields)
        if isinstance(msg, m.SignedMessage):
            msg = m.sign(msg, KEY)
        wire = sender.send(msg)
        assert receiver.receive(wire) == msg
        assert receiver.state == sender.state
        return wire


def provision_until(pair: Pair, last: str) -> list[bytes]:
    """Drive the provisioning sequence up to (and including) the message named ``last``."""
    d, n = pair.device, pair.network
    steps: list[tuple[Session, type[m.Message], dict[str, object]]] = [
        (n, m.CredentialChallenge, {"credential_blob": b"b", "encrypted_secret": b"e"}),
        (d, m.CredentialProof, {"proof": bytes(32)}),
        (n, m.ValidationChallenge, {"nonce": bytes(16), "pcr_selection": "sha256:0"}),
        (
            d,
            m.Evidence,
            {"quote_msg": b"q", "quote_sig": b"s", "pcrs": bytes(32), "pcrlist": "sha256:0"},
        ),
        (
            n,
            m.Verdict,
            {
                "ak_name": b"an",
                "pcr_digest": bytes(32),
                "pcr_selection": "sha256:0",
                "not_after": 1,
            },
        ),
        (d, m.PackageRequest, {"srk_public": b"p", "slot": 0, "counter": 0}),
        (
            n,
            m.MidPackage,
            {
                "mid_id": "m1",
                "imsi": "001010000000001",
                "sho": "sho-a",
                "sequence": 1,
                "amf": b"\x80\x00",
                "algorithm": "milenage",
                "not_after": 1,
                "package": b"x",
            },
        ),
        (d, m.Receipt, {"mid_id": "m1", "sequence": 1, "event": "install"}),
        (n, m.LifecycleCommand, {"mid_id": "m1", "transition": "activate", "sequence": 1}),
        (d, m.Receipt, {"mid_id": "m1", "sequence": 1, "event": "activate"}),
        (n, m.Ack, {"mid_id": "m1", "state": "ACTIVE"}),
    ]
    wires = []
    for sender, cls, fields in steps:
        wires.append(pair.step(sender, cls, **fields))
        if cls.__name__ == last:
            break
    return wires


def new_pair() -> tuple[Pair, bytes]:
    ek, ak, nonce = b"e" * 40, b"a" * 40, os.urandom(16)
    pair = Pair(m.derive_session_id(ek, ak, nonce))
    first = pair.step(
        pair.device, m.RegisterRequest, ek_cert=ek, ak_public=ak, device_nonce=nonce, sho="sho-a"
    )
    return pair, first


def test_full_provisioning_sequence_pairs_in_memory() -> None:
    pair, _ = new_pair()
    provision_until(pair, "Ack")
    assert pair.device.phase == pair.network.phase == "done"


def test_every_phase_is_reachable_and_every_table_entry_is_a_known_phase() -> None:
    targets = {phase for phase in NEXT.values()} | {phase for phase, _ in NEXT}
    assert targets == set(PHASES)


def test_illegal_transition_raises_and_changes_nothing() -> None:
    msg = m.Ack(
        session_id=os.urandom(32), transcript=m.INITIAL_TRANSCRIPT, mid_id="m1", state="ACTIVE"
    )
    with pytest.raises(RemoteProtocolError, match="not allowed in phase start"):
        advance("start", msg)
    pair, _ = new_pair()
    before = pair.network.state
    skipping = pair.device.make(
        m.Evidence, quote_msg=b"q", quote_sig=b"s", pcrs=b"", pcrlist="sha256:0"
    )
    with pytest.raises(LocalProtocolError):
        pair.device.send(skipping)  # our own rule break: local
    with pytest.raises(RemoteProtocolError):
        pair.network.receive(m.encode(skipping))  # the peer's: remote
    assert pair.network.state == before


def test_replayed_message_is_refused_without_change() -> None:
    pair, first = new_pair()
    wires = provision_until(pair, "Evidence")
    state = pair.network.state
    for old in (first, wires[1], wires[3]):  # RegisterRequest, CredentialProof, Evidence again
        with pytest.raises(RemoteProtocolError):
            pair.network.receive(old)
        assert pair.network.state == state


def test_reordered_messages_are_refused() -> None:
    pair, _ = new_pair()
    challenge = pair.network.make(
        m.CredentialChallenge, credential_blob=b"b", encrypted_secret=b"e"
    )
    pair.device.receive(pair.network.send(challenge))
    proof_wire = pair.device.send(pair.device.make(m.CredentialProof, proof=bytes(32)))
    # the network answers the proof; a stale copy of the challenge reaching the device now
    # (a reorder) does not fit its transcript any more
    pair.network.receive(proof_wire)
    with pytest.raises(RemoteProtocolError):
        pair.device.receive(m.encode(challenge))


def test_message_from_session_a_is_refused_in_session_b() -> None:
    a, _ = new_pair()
    b, _ = new_pair()
    challenge_a = a.network.make(m.CredentialChallenge, credential_blob=b"b", encrypted_secret=b"e")
    wire_a = a.network.send(challenge_a)
    with pytest.raises(RemoteProtocolError, match="another session"):
        b.device.receive(wire_a)
    # same session id, other transcript: rebuilt for B's id but with A's transcript
    forged = m.CredentialChallenge(
        session_id=b.device.session_id,
        transcript=challenge_a.transcript,
        credential_blob=b"b",
        encrypted_secret=b"e",
    )
    with pytest.raises(RemoteProtocolError, match="transcript"):
        b.device.receive(m.encode(forged))
    assert b.device.phase == "registered"


def test_wrong_sender_is_refused() -> None:
    pair, _ = new_pair()
    own = pair.device.make(m.CredentialChallenge, credential_blob=b"b", encrypted_secret=b"e")
    with pytest.raises(LocalProtocolError, match="sent by the network"):
        pair.device.send(own)
    with pytest.raises(RemoteProtocolError, match="sent by the network"):
        pair.network.receive(m.encode(own))  # a device posing as the network


def test_error_never_moves_a_session() -> None:
    pair, _ = new_pair()
    state = pair.device.state
    error = pair.network.error("unknown-ca", "no")
    assert isinstance(pair.device.receive(pair.network.send(error)), m.Error)
    assert pair.device.state == state and pair.network.phase == "registered"


def test_attach_resync_loop_and_lifecycle_paths_exist() -> None:
    pair = Pair(os.urandom(32))
    d, n = pair.device, pair.network
    pair.step(d, m.AttachRequest, imsi="001010000000001")
    pair.step(n, m.AuthChallenge, rand=bytes(16), autn=bytes(16))
    pair.step(d, m.AuthResponse, auts=bytes(14))
    pair.step(n, m.AuthChallenge, rand=bytes(16), autn=bytes(16))
    pair.step(d, m.AuthResponse, res=bytes(8))
    pair.step(n, m.AttachResult, accepted=True, reason="authenticated")
    assert d.phase == "done"
    pair = Pair(os.urandom(32))
    pair.step(pair.device, m.LifecycleRequest, mid_id="m1", transition="pending")
    pair.step(pair.network, m.Ack, mid_id="m1", state="ACTIVE")
    assert pair.network.phase == "done"
