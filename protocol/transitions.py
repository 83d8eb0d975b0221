"""Pure. The provisioning state machine: one role-agnostic transition table (h11 ``_state``
style) and a :class:`Session` that either end drives without I/O (TR 33.812 §7.1.2.1 threat 2
CM 5: a session cannot be interrupted or hijacked — every message must come from the right
side, in order, for this session, on top of this transcript).

Three session kinds share the table: provisioning (RegisterRequest … Receipt, then the SHO's
activation), lifecycle (LifecycleRequest → LifecycleCommand → Receipt → Ack) and attach
(AttachRequest → AuthChallenge → AuthResponse [→ AuthChallenge after AUTS] → AttachResult).
:class:`~protocol.messages.Error` is outside the table: it never moves a session.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.messages import (
    INITIAL_TRANSCRIPT,
    SESSION_ID_SIZE,
    Ack,
    AttachRequest,
    AttachResult,
    AuthChallenge,
    AuthResponse,
    CredentialChallenge,
    CredentialProof,
    Error,
    Evidence,
    LifecycleCommand,
    LifecycleRequest,
    Message,
    MidPackage,
    PackageRequest,
    Receipt,
    RegisterRequest,
    Sender,
    ValidationChallenge,
    Verdict,
    decode,
    encode,
    extend_transcript,
)

__all__ = ["NEXT", "PHASES", "Phase", "Session", "SessionState", "advance"]

Phase = Literal[
    "start",
    "registered",
    "challenged",
    "proven",
    "validating",
    "evidenced",
    "validated",
    "requested",
    "delivered",
    "installed",
    "lc_requested",
    "commanded",
    "receipted",
    "attaching",
    "authenticating",
    "responded",
    "done",
]
PHASES: tuple[Phase, ...] = Phase.__args__  # type: ignore[attr-defined]

#: (phase, message type) → next phase; an absent pair is a protocol error.
NEXT: dict[tuple[Phase, type[Message]], Phase] = {
    # provisioning: M2 … M8 of docs/provisioning.md §1.1
    ("start", RegisterRequest): "registered",
    ("registered", CredentialChallenge): "challenged",
    ("challenged", CredentialProof): "proven",
    ("proven", ValidationChallenge): "validating",
    ("validating", Evidence): "evidenced",
    ("evidenced", Verdict): "validated",
    ("validated", PackageRequest): "requested",
    ("requested", MidPackage): "delivered",
    ("delivered", Receipt): "installed",
    ("installed", LifecycleCommand): "commanded",  # the SHO activates at once
    ("installed", Ack): "done",  # … or later, in a lifecycle session
    # lifecycle, asked for by the device
    ("start", LifecycleRequest): "lc_requested",
    ("lc_requested", LifecycleCommand): "commanded",
    ("lc_requested", Ack): "done",  # nothing to do
    ("commanded", Receipt): "receipted",
    ("receipted", Ack): "done",
    # attach: AKA with the SHO (TS 33.102 §6.3)
    ("start", AttachRequest): "attaching",
    ("attaching", AuthChallenge): "authenticating",
    ("authenticating", AuthResponse): "responded",
    ("responded", AuthChallenge): "authenticating",  # after a resynchronisation (AUTS)
    ("responded", AttachResult): "done",
}


def advance(phase: Phase, msg: Message) -> Phase:
    """The phase after ``msg``; pure, so a refusal changes nothing.

    Raises:
        RemoteProtocolError: ``msg`` is not allowed in ``phase``.
    """
    try:
        return NEXT[phase, type(msg)]
    except KeyError:
        raise RemoteProtocolError(f"{type(msg).__name__} is not allowed in phase {phase}") from None


@dataclass(frozen=True, slots=True)
class SessionState:
    """What a session end must remember between messages (the server stores it)."""

    session_id: bytes
    phase: Phase = "start"
    transcript: bytes = INITIAL_TRANSCRIPT

    def __post_init__(self) -> None:
        if not isinstance(self.session_id, bytes) or len(self.session_id) != SESSION_ID_SIZE:
            raise LocalProtocolError("session id: 32 bytes expected")
        if self.phase not in PHASES:
            raise LocalProtocolError(f"unknown phase {self.phase!r}")


M = TypeVar("M", bound=Message)


class Session:
    """One end of one session (h11 ``Connection`` style): :meth:`send` turns our message into
    bytes, :meth:`receive` turns the peer's bytes into a message; each does all or nothing."""

    __slots__ = ("_state", "our_role")

    def __init__(self, our_role: Sender, state: SessionState) -> None:
        if our_role not in ("device", "network"):
            raise LocalProtocolError(f"role {our_role!r}: expected device or network")
        self.our_role: Sender = our_role
        self._state = state

    def __repr__(self) -> str:
        return f"Session({self.our_role}, {self._state.session_id.hex()[:16]}…, {self.phase})"

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def phase(self) -> Phase:
        return self._state.phase

    @property
    def transcript(self) -> bytes:
        return self._state.transcript

    @property
    def session_id(self) -> bytes:
        return self._state.session_id

    def make(self, cls: type[M], **fields: Any) -> M:
        """A ``cls`` message bound to this session and its transcript so far."""
        return cls(session_id=self.session_id, transcript=self.transcript, **fields)

    def error(self, code: str, reason: str) -> Error:
        """An :class:`Error` for this session (sent with :meth:`send`, changes nothing)."""
        return Error(
            session_id=self.session_id, transcript=self.transcript, code=code, reason=reason
        )

    def _check(self, msg: Message, sender: Sender, fail: type[Exception]) -> Phase:
        if msg.SENDER is not None and sender != msg.SENDER:
            raise fail(f"{type(msg).__name__} is sent by the {msg.SENDER}, not the {sender}")
        if not hmac.compare_digest(msg.session_id, self.session_id):
            raise fail(f"{type(msg).__name__} belongs to another session")
        if isinstance(msg, Error):
            return self.phase
        if not hmac.compare_digest(msg.transcript, self.transcript):
            raise fail(
                f"{type(msg).__name__} is bound to another transcript (replayed, reordered or"
                " altered in transit)"
            )
        try:
            return advance(self.phase, msg)
        except RemoteProtocolError as exc:
            raise fail(str(exc)) from None

    def send(self, msg: Message) -> bytes:
        """Our message → wire bytes; the session moves on.

        Raises:
            LocalProtocolError: the message is not ours to send now, or not bound to this
                session and transcript (a bug on our side).
        """
        phase = self._check(msg, self.our_role, LocalProtocolError)
        wire = encode(msg)
        if not isinstance(msg, Error):
            self._state = SessionState(
                self.session_id, phase, extend_transcript(self.transcript, wire)
            )
        return wire

    def receive(self, data: bytes) -> Message:
        """The peer's bytes → its message; the session moves on (an Error leaves it).

        Raises:
            RemoteProtocolError: malformed, from the wrong side, another session, another
                transcript, or not allowed in this phase; nothing changes.
        """
        return self.accept(decode(data), data)

    def accept(self, msg: Message, wire: bytes) -> Message:
        """Like :meth:`receive` for a message already decoded from ``wire``.

        Raises:
            RemoteProtocolError: as :meth:`receive`.
        """
        peer: Sender = "network" if self.our_role == "device" else "device"
        phase = self._check(msg, peer, RemoteProtocolError)
        if not isinstance(msg, Error):
            self._state = SessionState(
                self.session_id, phase, extend_transcript(self.transcript, wire)
            )
        return msg
