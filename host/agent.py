"""Sans-I/O (not "Pure.": it reads MID packages with :mod:`tpm.package`, whose module also
marshals TPM structures through tpm2-pytss). The host agent's protocol clients — provisioning, lifecycle and attach — as sans-I/O
state machines over :mod:`protocol.transitions` and :mod:`protocol.messages` (TR 33.812 §7.1.2.1;
docs/provisioning.md §1.1 M2–M9). Runners at the edge (:mod:`host.provision`, :mod:`host.lifecycle`,
:mod:`host.attach`) do the TPM, card and network I/O and feed the results back in.

A client never touches a TPM, a socket or a clock. It turns the network's replies into the
next piece of work (an :data:`Event`: activate a credential, quote, describe the target,
install a package, certify NV, apply a transition, answer an AKA challenge) and the results of
that work into the next request (:class:`Send`). What it checks on the device's side, so a
compromised or confused network cannot make the TRE accept anything (threats 2, 5, 7):

- every reply belongs to this session and transcript, in order (:class:`protocol.transitions.Session`);
- the Verdict is signed by the pinned PVA key, names this TRE's AK and the quoted PCRs, and is
  still fresh (threat 1 CM 4, threat 5 CM 5);
- the MidPackage manifest is signed by the pinned DPF key, is for the SHO asked for, for this
  TRE (EK and SRK names), numbered MID_CTR + 1, into the slot offered, and its K/OPc policy is
  bound to the PCR state the PVA validated (threat 2 CM 4, threat 5 CM 3/4);
- a LifecycleCommand is signed by the pinned key of the SHO that *owns* the MID, names that
  MID, is one of the transitions expected, and carries a sequence number above the last one
  applied (threat 7 CM 1/10, threat 8 CM 1: SHO-A's orders never touch SHO-B's MID).

A refusal raises :class:`AgentRefused` (a stable ``code`` and a one-line reason); the runner
then reports it to the network's audit trail (:meth:`_Client.report`, endpoint ``drf/report``).

:class:`ProvisionState` is the whole of a provisioning client between two messages: the
runner journals it before every request, so an agent killed at any point resumes by sending the
journaled request again (the server answers a repeated request with its stored reply).
:class:`AgentState` is the host file beside the MID registry that holds the journal and, per
MID, what the TPM registry does not: owning SHO, network, last command number.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aka.access import MeAnswer, Rat, amf_separation_ok, key_proof, me_answer
from aka.usim import AkaMacFailure, AkaResult, AkaSuccess, AkaSyncFailure
from protocol.errors import SignatureInvalid
from protocol.messages import (
    REPORT_ENDPOINT,
    SESSION_ID_SIZE,
    STATE_AFTER,
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
    SignedMessage,
    ValidationChallenge,
    Verdict,
    credential_proof,
    decode,
    derive_session_id,
    quote_qualifying_data,
    receipt_qualifying_data,
    verify_signature,
)
from protocol.transitions import PHASES, Phase, Session, SessionState
from tpm.package import Package, operator_public
from tpm.pcrsel import format_selection, parse_selection
from trelab.errors import BadInput, CheckFailed, LocalProtocolError, RemoteProtocolError
from trelab.jsontext import load_json

__all__ = [
    "AGENT_FORMAT",
    "CRASH_POINTS",
    "REPORT_ENDPOINT",
    "STATE_AFTER",
    "STEP_AFTER",
    "Activate",
    "AgentRefused",
    "AgentState",
    "ApplyTransition",
    "AttachClient",
    "AttachDone",
    "Authenticate",
    "Certify",
    "DescribeTarget",
    "DeviceTrust",
    "Event",
    "Finished",
    "Install",
    "LifecycleClient",
    "MidInfo",
    "PcidInfo",
    "ProvisionState",
    "ProvisioningClient",
    "Quote",
    "Send",
    "parse_device_trust",
]

AGENT_FORMAT = "trelab.agent-state"
#: Where ``TRELAB_TEST_CRASH_AT`` can kill a provisioning agent (see :mod:`host.provision`):
#: before a request is sent (journaled, not sent), after its reply arrived (not processed), and
#: around the TPM steps; ``<step>/tpm:<esys method>`` kills right after that TPM command.
CRASH_POINTS = (
    "before:drf/register",
    "after:drf/register",
    "before:drf/proof",
    "after:drf/proof",
    "before:pva/evidence",
    "after:pva/evidence",
    "before:dpf/package",
    "after:dpf/package",
    "before-import",
    "import/tpm:import_",
    "import/tpm:nv_define_space",
    "import/tpm:nv_write",
    "import/tpm:nv_increment",
    "import/tpm:nv_extend",
    "after-import",
    "before:dpf/receipt",
    "after:dpf/receipt",
    "transition/tpm:nv_write",
    "after-transition",
    "before:dpf/receipt#2",
    "after:dpf/receipt#2",
)


class AgentRefused(CheckFailed):
    """The device refused what the network sent (TR 33.812 §7.1.2.1 threats 2, 5, 7): ``code``
    is a short stable name for the report, the message one line without secrets."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# ---- pinned trust ---------------------------------------------------------------------------------


def _public_key(value: Any, what: str) -> ec.EllipticCurvePublicKey:
    if not isinstance(value, str):
        raise BadInput(f"device trust: {what} must be a PEM public key")
    try:
        key = serialization.load_pem_public_key(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm):
        raise BadInput(f"device trust: {what} is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise BadInput(f"device trust: {what} is not a P-256 key (ES256)")
    return key


@dataclass(frozen=True)
class DeviceTrust:
    """What a TRE pins (``device-trust.json`` of :func:`network.config.device_trust`): the PVA's,
    the DPF's and each SHO's ES256 public key, the PCR selection the PVA validates, and the CA
    the network's TLS certificate must chain to (PEM; None for a network served without TLS)."""

    pva: ec.EllipticCurvePublicKey = field(repr=False)
    dpf: ec.EllipticCurvePublicKey = field(repr=False)
    shos: Mapping[str, ec.EllipticCurvePublicKey] = field(repr=False)
    pcr_selection: str = "sha256:0,1,2,3,4,5,6,7"
    tls_ca: str | None = field(default=None, repr=False)

    def sho_key(self, name: str) -> ec.EllipticCurvePublicKey:
        """Raises:
        AgentRefused: the SHO is not pinned (``unknown-sho``).
        """
        key = self.shos.get(name)
        if key is None:
            raise AgentRefused("unknown-sho", f"SHO {name!r} is not in the pinned device trust")
        return key


def parse_device_trust(doc: Any) -> DeviceTrust:
    """``device-trust.json`` decoded → :class:`DeviceTrust`.

    Raises:
        BadInput: not that document, or a key that is not P-256.
    """
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise BadInput("device trust: expected a version 1 device-trust.json document")
    shos = doc.get("shos")
    if not isinstance(shos, dict) or not shos:
        raise BadInput("device trust: shos must map SHO names to PEM keys")
    selection = doc.get("pcr_selection", "sha256:0,1,2,3,4,5,6,7")
    if not isinstance(selection, str):
        raise BadInput("device trust: pcr_selection must be text")
    selection = format_selection(parse_selection(selection, what="device trust pcr_selection"))
    tls_ca = doc.get("tls_ca")
    if tls_ca is not None:
        try:
            x509.load_pem_x509_certificate(str(tls_ca).encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise BadInput("device trust: tls_ca is not a PEM certificate") from None
    return DeviceTrust(
        pva=_public_key(doc.get("pva"), "pva"),
        dpf=_public_key(doc.get("dpf"), "dpf"),
        shos={str(name): _public_key(pem, f"shos.{name}") for name, pem in shos.items()},
        pcr_selection=selection,
        tls_ca=None if tls_ca is None else str(tls_ca),
    )


def _verify(msg: SignedMessage, signer: str, key: ec.EllipticCurvePublicKey, code: str) -> None:
    if msg.signer != signer:
        raise AgentRefused(
            code, f"{type(msg).__name__} is signed by {msg.signer!r}, expected {signer!r}"
        )
    try:
        verify_signature(msg, key)
    except SignatureInvalid as exc:
        raise AgentRefused(code, f"{exc} (pinned {signer} key)") from None


# ---- what a client asks its runner to do --------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """POST ``wire`` to ``endpoint`` and hand the reply to the client's ``receive``."""

    endpoint: str
    wire: bytes = field(repr=False)


@dataclass(frozen=True)
class Activate:
    """TPM2_ActivateCredential(AK, EK) of the DRF's challenge → :meth:`ProvisioningClient.activated`."""

    credential_blob: bytes = field(repr=False)
    encrypted_secret: bytes = field(repr=False)


@dataclass(frozen=True)
class Quote:
    """TPM2_Quote(AK, ``qualifying``, ``selection``) → :meth:`ProvisioningClient.quoted`."""

    qualifying: bytes
    selection: str


@dataclass(frozen=True)
class DescribeTarget:
    """Report SRK public, a free MID_STATE slot and MID_CTR → :meth:`ProvisioningClient.target`.
    ``pcr_digest`` is what the PVA validated: the runner may check the PCRs still match."""

    selection: str
    pcr_digest: bytes


@dataclass(frozen=True)
class Install:
    """Import the checked package (TPM2_Import, MID_CTR++, INSTALLED, AUDIT) →
    :meth:`ProvisioningClient.installed`."""

    manifest: MidPackage = field(repr=False)
    package: Package = field(repr=False)
    pcr_digest: bytes = b""

    @property
    def mid_id(self) -> str:
        return self.manifest.mid_id


@dataclass(frozen=True)
class Certify:
    """AK-signed TPM2_NV_Certify of MID_STATE[slot] (and MID_CTR = ``counter`` if given), with
    extraData ``qualifying`` → the client's ``certified``."""

    event: str
    qualifying: bytes
    slot: int
    counter: int | None


@dataclass(frozen=True)
class ApplyTransition:
    """Apply the owner's signed command in the TPM (its state, AUDIT) → ``transitioned``;
    ``approval`` is the owner's approval of the lifecycle-index write (empty: MID_STATE byte)."""

    mid_id: str
    transition: str
    sequence: int
    slot: int
    approval: bytes = field(default=b"", repr=False)

    @classmethod
    def of(cls, command: LifecycleCommand, slot: int) -> ApplyTransition:
        return cls(
            command.mid_id, command.transition, command.sequence, slot, command.state_approval
        )


@dataclass(frozen=True)
class Finished:
    """The session is over: the MID's state as the network acknowledged it."""

    mid_id: str
    imsi: str
    sho: str
    state: str
    sequence: int
    slot: int
    command_seq: int


@dataclass(frozen=True)
class Authenticate:
    """Run AKA in the TRE (TPM MID or card) on ``rand``/``autn`` → :meth:`AttachClient.answered`;
    the serving network and ABBA are what the ME's key derivations need."""

    rand: bytes
    autn: bytes
    serving_network: str = ""
    abba: bytes = b""


@dataclass(frozen=True)
class AttachDone:
    """The SHO's verdict on the attach; ``grant`` is an ICF grant for a PCID attach."""

    accepted: bool
    reason: str
    resynchronised: bool
    grant: bytes = field(default=b"", repr=False)
    rat: str = "3g"
    keys_match: bool | None = None  # None: no key proof exchanged (refused)


Event = (
    Activate
    | Quote
    | DescribeTarget
    | Install
    | Certify
    | ApplyTransition
    | Finished
    | Authenticate
    | AttachDone
)


# ---- the shared client machinery ----------------------------------------------------------------


class _Client:
    """One device end of one session; every method does all or nothing."""

    def __init__(self, session: SessionState, pending: Send | None = None) -> None:
        self._session = Session("device", session)
        self._pending = pending

    @property
    def session(self) -> SessionState:
        return self._session.state

    @property
    def pending(self) -> Send | None:
        """The request on the wire whose reply has not been processed."""
        return self._pending

    def _send(self, endpoint: str, msg: Message) -> Send:
        wire = self._session.send(msg)
        self._pending = Send(endpoint, wire)
        return self._pending

    def _accept(self, wire: bytes) -> tuple[Session, Message]:
        """Decode and check the reply on a copy of the session (committed by the caller)."""
        if self._pending is None:
            raise LocalProtocolError("no request is waiting for a reply")
        trial = Session("device", self._session.state)
        msg = trial.receive(wire)
        if isinstance(msg, Error):
            raise RemoteProtocolError(f"network error {msg.code}: {msg.reason}")
        return trial, msg

    def _commit(self, trial: Session) -> None:
        self._session = trial
        self._pending = None

    def report(self, code: str, reason: str) -> Send:
        """An Error for this session, for the network's audit trail (changes no state)."""
        error = self._session.error(code, reason.splitlines()[0][:300] if reason else code)
        return Send(REPORT_ENDPOINT, self._session.send(error))


def _expect(ok: bool, code: str, message: str) -> None:
    if not ok:
        raise AgentRefused(code, message)


# ---- provisioning ---------------------------------------------------------------------------------

Step = Literal[
    "registering",
    "challenged",
    "proving",
    "validating",
    "evidencing",
    "validated",
    "requesting",
    "delivered",
    "certifying",
    "receipting",
    "commanded",
    "done",
]
_STEPS: tuple[str, ...] = Step.__args__  # type: ignore[attr-defined]

#: The provisioning client's own steps (journaled, so a killed agent resumes where it was):
#: (step, what happened) → next step. What happened is the network's reply (a message type,
#: already in order by :data:`protocol.transitions.NEXT`) or the runner's result (the name of
#: the client method that takes it). An absent pair is a bug in the runner.
STEP_AFTER: dict[tuple[Step, type[Message] | str], Step] = {
    ("registering", CredentialChallenge): "challenged",
    ("challenged", "activated"): "proving",
    ("proving", ValidationChallenge): "validating",
    ("validating", "quoted"): "evidencing",
    ("evidencing", Verdict): "validated",
    ("validated", "target"): "requesting",
    ("requesting", MidPackage): "delivered",
    ("delivered", "installed"): "certifying",
    ("certifying", "certified"): "receipting",
    ("receipting", LifecycleCommand): "commanded",  # the SHO activates at once
    ("commanded", "transitioned"): "certifying",
    ("receipting", Ack): "done",
}
_REPLIES = {h for _, h in STEP_AFTER if not isinstance(h, str)}


def _hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise BadInput(f"agent journal: {what} must be hex")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise BadInput(f"agent journal: {what} is not hex") from None


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadInput(f"agent journal: {what} must be an integer")
    return value


def _session_json(state: SessionState) -> dict[str, Any]:
    return {
        "id": state.session_id.hex(),
        "phase": state.phase,
        "transcript": state.transcript.hex(),
    }


def _session_from(doc: Any) -> SessionState:
    if not isinstance(doc, dict) or doc.get("phase") not in PHASES:
        raise BadInput("agent journal: malformed session")
    session_id = _hex(doc.get("id"), "session id")
    if len(session_id) != SESSION_ID_SIZE:
        raise BadInput("agent journal: session id must be 32 bytes")
    phase: Phase = doc["phase"]
    return SessionState(session_id, phase, _hex(doc.get("transcript"), "transcript"))


def _send_json(send: Send | None) -> dict[str, str] | None:
    return None if send is None else {"endpoint": send.endpoint, "wire": send.wire.hex()}


def _send_from(doc: Any) -> Send | None:
    if doc is None:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("endpoint"), str):
        raise BadInput("agent journal: malformed pending request")
    return Send(doc["endpoint"], _hex(doc.get("wire"), "pending wire"))


@functools.lru_cache(maxsize=8)
def _stored(wire: bytes) -> Message:
    """:func:`decode` of a wire the session keeps (manifest, verdict, command): the session
    looks at each several times; decoding is a function of the bytes and messages are frozen,
    so each wire is decoded once. Signatures are checked where the wire arrived, not here.

    Raises:
        RemoteProtocolError: malformed (never cached: the next look-up raises again).
    """
    return decode(wire)


@dataclass(frozen=True)
class ProvisionState:
    """A provisioning client between two messages (the journal entry). Wires are kept as sent
    or received, so every check can be redone on resume."""

    sho: str
    session: SessionState
    step: Step
    ek_name: bytes
    ak_name: bytes
    pending: Send | None = None
    selection: str = ""
    verdict: bytes = field(default=b"", repr=False)
    srk_name: bytes = b""
    slot: int = -1
    counter: int = -1
    manifest: bytes = field(default=b"", repr=False)
    event: str = ""
    command: bytes = field(default=b"", repr=False)
    last_command_seq: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "sho": self.sho,
            "session": _session_json(self.session),
            "step": self.step,
            "ek_name": self.ek_name.hex(),
            "ak_name": self.ak_name.hex(),
            "pending": _send_json(self.pending),
            "selection": self.selection,
            "verdict": self.verdict.hex(),
            "srk_name": self.srk_name.hex(),
            "slot": self.slot,
            "counter": self.counter,
            "manifest": self.manifest.hex(),
            "event": self.event,
            "command": self.command.hex(),
            "last_command_seq": self.last_command_seq,
        }

    @classmethod
    def from_json(cls, doc: Any) -> ProvisionState:
        """Raises:
        BadInput: malformed journal entry.
        """
        if not isinstance(doc, dict) or doc.get("step") not in _STEPS:
            raise BadInput("agent journal: malformed provisioning state")
        for key in ("sho", "selection", "event"):
            if not isinstance(doc.get(key), str):
                raise BadInput(f"agent journal: {key} must be text")
        step: Step = doc["step"]
        return cls(
            sho=doc["sho"],
            session=_session_from(doc.get("session")),
            step=step,
            ek_name=_hex(doc.get("ek_name"), "ek_name"),
            ak_name=_hex(doc.get("ak_name"), "ak_name"),
            pending=_send_from(doc.get("pending")),
            selection=doc["selection"],
            verdict=_hex(doc.get("verdict"), "verdict"),
            srk_name=_hex(doc.get("srk_name"), "srk_name"),
            slot=_int(doc.get("slot"), "slot"),
            counter=_int(doc.get("counter"), "counter"),
            manifest=_hex(doc.get("manifest"), "manifest"),
            event=doc["event"],
            command=_hex(doc.get("command"), "command"),
            last_command_seq=_int(doc.get("last_command_seq"), "last_command_seq"),
        )

    def decoded_manifest(self) -> MidPackage | None:
        if not self.manifest:
            return None
        msg = _stored(self.manifest)
        if not isinstance(msg, MidPackage):
            raise BadInput("agent journal: the stored manifest is not a MidPackage")
        return msg

    def decoded_verdict(self) -> Verdict | None:
        if not self.verdict:
            return None
        msg = _stored(self.verdict)
        if not isinstance(msg, Verdict):
            raise BadInput("agent journal: the stored verdict is not a Verdict")
        return msg


class ProvisioningClient(_Client):
    """Device end of one provisioning session (M2 … M8): see the module docstring for what it
    checks. Drive it with :meth:`begin`, then alternately ``receive`` a reply (→ an event) and
    report the event's result (→ the next :class:`Send`)."""

    def __init__(self, trust: DeviceTrust, state: ProvisionState) -> None:
        super().__init__(state.session, state.pending)
        self.trust = trust
        self._state = state

    @classmethod
    def begin(
        cls,
        trust: DeviceTrust,
        *,
        sho: str,
        ek_cert: bytes,
        ek_name: bytes,
        ak_public: bytes,
        ak_name: bytes,
        device_nonce: bytes,
    ) -> tuple[ProvisioningClient, Send]:
        """M2: RegisterRequest for ``sho``.

        Raises:
            AgentRefused: ``sho`` is not pinned.
        """
        trust.sho_key(sho)
        session_id = derive_session_id(ek_cert, ak_public, device_nonce)
        state = ProvisionState(
            sho=sho,
            session=SessionState(session_id),
            step="registering",
            ek_name=ek_name,
            ak_name=ak_name,
        )
        client = cls(trust, state)
        send = client._send(
            "drf/register",
            client._session.make(
                RegisterRequest,
                ek_cert=ek_cert,
                ak_public=ak_public,
                device_nonce=device_nonce,
                sho=sho,
            ),
        )
        client._update(step="registering")
        return client, send

    @property
    def state(self) -> ProvisionState:
        return self._state

    def _update(self, **changes: Any) -> None:
        self._state = replace(
            self._state, session=self._session.state, pending=self._pending, **changes
        )

    def _next(self, happened: type[Message] | str) -> Step:
        """The step after ``happened`` (:data:`STEP_AFTER`); changes nothing.

        Raises:
            LocalProtocolError: not allowed at the current step (the runner's bug).
        """
        step = STEP_AFTER.get((self._state.step, happened))
        if step is None:
            what = happened if isinstance(happened, str) else happened.__name__
            raise LocalProtocolError(f"provisioning client is at {self._state.step}: no {what}")
        return step

    # -- replies ----------------------------------------------------------------------------------

    def receive(self, wire: bytes, *, now: int) -> Event:
        """The network's reply to :attr:`pending` → the next event. ``now`` is Unix seconds.

        Raises:
            RemoteProtocolError: malformed, out of order, another session or transcript.
            AgentRefused: a signature, binding or freshness check failed (nothing changes).
        """
        trial, msg = self._accept(wire)
        st = self._state
        if type(msg) not in _REPLIES:
            raise RemoteProtocolError(f"unexpected {type(msg).__name__} in provisioning")
        step = self._next(type(msg))
        if isinstance(msg, CredentialChallenge):
            self._commit(trial)
            self._update(step=step)
            return Activate(msg.credential_blob, msg.encrypted_secret)
        if isinstance(msg, ValidationChallenge):
            _expect(
                msg.pcr_selection == self.trust.pcr_selection,
                "pcr-selection",
                f"the PVA asks for {msg.pcr_selection}, the pinned selection is "
                f"{self.trust.pcr_selection}",
            )
            self._commit(trial)
            qualifying = quote_qualifying_data(msg.nonce, trial.session_id, trial.transcript)
            self._update(step=step, selection=msg.pcr_selection)
            return Quote(qualifying, msg.pcr_selection)
        if isinstance(msg, Verdict):
            self._check_verdict(msg, now)
            self._commit(trial)
            self._update(step=step, verdict=wire)
            return DescribeTarget(msg.pcr_selection, msg.pcr_digest)
        if isinstance(msg, MidPackage):
            package = self._check_package(msg, now)
            self._commit(trial)
            self._update(step=step, manifest=wire)
            verdict = st.decoded_verdict()
            return Install(msg, package, verdict.pcr_digest if verdict else b"")
        if isinstance(msg, LifecycleCommand):
            manifest = self._manifest()
            self._check_command(msg, manifest.mid_id, manifest.sho, ("activate",))
            self._commit(trial)
            self._update(step=step, command=wire)
            return ApplyTransition.of(msg, st.slot)
        if isinstance(msg, Ack):
            manifest = self._manifest()
            expected = "INSTALLED" if st.event == "install" else STATE_AFTER.get(st.event, "")
            _expect(
                msg.mid_id == manifest.mid_id and msg.state == expected,
                "wrong-ack",
                f"the network acknowledged MID {msg.mid_id} as {msg.state}, expected "
                f"{manifest.mid_id} {expected}",
            )
            self._commit(trial)
            command_seq = st.last_command_seq
            self._update(step=step)
            return Finished(
                manifest.mid_id,
                manifest.imsi,
                manifest.sho,
                msg.state,
                manifest.sequence,
                st.slot,
                command_seq,
            )
        raise LocalProtocolError(f"{type(msg).__name__} has a step but no handler")

    def _command(self) -> LifecycleCommand:
        command = _stored(self._state.command) if self._state.command else None
        if not isinstance(command, LifecycleCommand):
            raise LocalProtocolError("no lifecycle command in this session yet")
        return command

    def _manifest(self) -> MidPackage:
        manifest = self._state.decoded_manifest()
        if manifest is None:
            raise LocalProtocolError("no MID package in this session yet")
        return manifest

    def _check_verdict(self, msg: Verdict, now: int) -> None:
        st = self._state
        _verify(msg, "pva", self.trust.pva, "verdict-signature")
        _expect(
            hmac.compare_digest(msg.ak_name, st.ak_name),
            "verdict-ak",
            "the verdict is about another AK than this TRE's",
        )
        _expect(
            msg.pcr_selection == st.selection,
            "verdict-pcrs",
            f"the verdict covers {msg.pcr_selection}, the TRE quoted {st.selection}",
        )
        _expect(
            now < msg.not_after,
            "stale-verdict",
            f"the verdict expired {now - msg.not_after} s ago: validate again",
        )

    def _check_package(self, msg: MidPackage, now: int) -> Package:
        st = self._state
        _verify(msg, "dpf", self.trust.dpf, "package-signature")
        _expect(msg.sho == st.sho, "wrong-sho", f"package from SHO {msg.sho}, {st.sho} was asked")
        _expect(now < msg.not_after, "stale-package", "the MID package has expired")
        try:
            package = Package.from_json(load_json(msg.package, "MID package"))
        except (BadInput, ValueError, UnicodeDecodeError) as exc:
            raise AgentRefused("bad-package", f"the MID package does not parse: {exc}") from None
        _expect(
            hmac.compare_digest(package.ek_name, st.ek_name),
            "wrong-tre",
            "the MID package is for another TRE (its EK name is not this TPM's)",
        )
        _expect(
            hmac.compare_digest(package.srk_name, st.srk_name),
            "wrong-tre",
            "the MID package is for another owner epoch of this TPM (SRK name differs)",
        )
        _expect(
            package.seq == msg.sequence == st.counter + 1,
            "sequence",
            f"package number {msg.sequence} (inner {package.seq}) is not MID_CTR + 1 = "
            f"{st.counter + 1}: replayed or out of order",
        )
        _expect(
            (package.mid_id, package.imsi, package.amf, package.algorithm.name)
            == (msg.mid_id, msg.imsi, msg.amf, msg.algorithm),
            "manifest",
            "the manifest does not describe the package it carries",
        )
        names = dict(msg.names)
        for label, value in (
            ("ek", package.ek_name),
            ("srk", package.srk_name),
            ("parent", package.parent.name),
            ("k", package.k.name),
            (package.secret_label, package.secret.name),
        ):
            _expect(
                hmac.compare_digest(names.get(label, b""), value),
                "manifest",
                f"the manifest's {label} name does not match the package",
            )
        binding = package.policy.lifecycle
        _expect(
            binding is not None
            and hmac.compare_digest(binding.authority, operator_public(self.trust.sho_key(st.sho))),
            "lifecycle-owner",
            f"the MID's lifecycle index is not bound to SHO {st.sho}'s pinned key: another"
            " party could change its state",
        )
        _expect(
            package.policy.slot == st.slot,
            "slot",
            f"package for slot {package.policy.slot}, the TRE offered {st.slot}",
        )
        verdict = st.decoded_verdict()
        _expect(
            verdict is not None
            and package.policy.selection == verdict.pcr_selection
            and hmac.compare_digest(package.policy.pcr_digest, verdict.pcr_digest),
            "unbound-policy",
            "K's policy is not bound to the PCR state the PVA validated",
        )
        return package

    def _check_command(
        self, msg: LifecycleCommand, mid_id: str, owner: str, allowed: tuple[str, ...]
    ) -> None:
        _check_command(self.trust, msg, mid_id, owner, allowed, self._state.last_command_seq)

    # -- results of the runner's work ------------------------------------------------------------

    def activated(self, secret: bytes) -> Send:
        """M3 answer: the secret TPM2_ActivateCredential released."""
        step = self._next("activated")
        send = self._send(
            "drf/proof",
            self._session.make(
                CredentialProof, proof=credential_proof(secret, self._session.transcript)
            ),
        )
        self._update(step=step)
        return send

    def quoted(self, *, quote_msg: bytes, quote_sig: bytes, pcrs: bytes, pcrlist: str) -> Send:
        """M4 answer: TPM2_Quote output and the PCR values."""
        step = self._next("quoted")
        send = self._send(
            "pva/evidence",
            self._session.make(
                Evidence, quote_msg=quote_msg, quote_sig=quote_sig, pcrs=pcrs, pcrlist=pcrlist
            ),
        )
        self._update(step=step)
        return send

    def target(
        self,
        *,
        srk_public: bytes,
        srk_name: bytes,
        slot: int,
        counter: int,
        certify_info: bytes = b"",
        certify_sig: bytes = b"",
    ) -> Send:
        """M5: what the DPF binds the package to (SRK, slot, MID_CTR)."""
        step = self._next("target")
        send = self._send(
            "dpf/package",
            self._session.make(
                PackageRequest,
                srk_public=srk_public,
                slot=slot,
                counter=counter,
                certify_info=certify_info,
                certify_sig=certify_sig,
            ),
        )
        self._update(step=step, srk_name=srk_name, slot=slot, counter=counter)
        return send

    def installed(self) -> Certify:
        """The TPM accepted the package: certify MID_STATE = INSTALLED and MID_CTR = sequence."""
        step = self._next("installed")
        manifest = self._manifest()
        self._update(step=step, event="install")
        return self._certify("install", manifest.sequence)

    def transitioned(self) -> Certify:
        """The commanded transition is applied in the TPM: certify the new MID_STATE byte."""
        step = self._next("transitioned")
        command = self._command()
        self._update(step=step, event=command.transition)
        return self._certify(command.transition, None)

    def _certify(self, event: str, counter: int | None) -> Certify:
        qualifying = receipt_qualifying_data(
            self._session.session_id, self._session.transcript, event
        )
        return Certify(event, qualifying, self._state.slot, counter)

    def certified(self, evidence: Mapping[str, bytes]) -> Send:
        """M7/M8: the receipt (AK-signed NV_Certify attestations) of the last event."""
        step = self._next("certified")
        st = self._state
        manifest = self._manifest()
        sequence = manifest.sequence
        if st.event != "install":
            sequence = self._command().sequence
        send = self._send(
            "dpf/receipt",
            self._session.make(
                Receipt,
                mid_id=manifest.mid_id,
                sequence=sequence,
                event=st.event,
                evidence=tuple(sorted(evidence.items())),
            ),
        )
        last = st.last_command_seq if st.event == "install" else sequence
        self._update(step=step, last_command_seq=last)
        return send


def _check_command(
    trust: DeviceTrust,
    msg: LifecycleCommand,
    mid_id: str,
    owner: str,
    allowed: tuple[str, ...],
    last_seq: int,
) -> None:
    """A lifecycle command is the owner's, for this MID, expected, and new (threat 7, 8)."""
    _expect(
        msg.mid_id == mid_id,
        "wrong-mid",
        f"the command is for MID {msg.mid_id}, not {mid_id}",
    )
    _verify(msg, owner, trust.sho_key(owner), "not-owner")
    _expect(
        msg.transition in allowed,
        "unexpected-order",
        f"the owner's pending order is {msg.transition}, not {' or '.join(allowed)}",
    )
    _expect(
        msg.sequence > last_seq,
        "replayed-command",
        f"command number {msg.sequence} is not above the last one applied ({last_seq})",
    )


# ---- lifecycle ------------------------------------------------------------------------------------


class LifecycleClient(_Client):
    """Device end of a lifecycle session: ask the owning SHO for its pending order (or, on a
    change of subscription, for the deletion of this MID), apply it, receipt it."""

    def __init__(
        self,
        trust: DeviceTrust,
        session: SessionState,
        *,
        mid: MidInfo,
        allowed: tuple[str, ...],
    ) -> None:
        super().__init__(session)
        self.trust = trust
        self.mid = mid
        self.allowed = allowed
        self.command: LifecycleCommand | None = None

    @classmethod
    def begin(
        cls,
        trust: DeviceTrust,
        session_id: bytes,
        *,
        mid: MidInfo,
        allowed: tuple[str, ...],
        request: str = "pending",
    ) -> tuple[LifecycleClient, Send]:
        """LifecycleRequest(``request``) for ``mid``; ``allowed`` = transitions to accept.

        Raises:
            AgentRefused: the owner SHO is not pinned.
        """
        trust.sho_key(mid.sho)
        client = cls(trust, SessionState(session_id), mid=mid, allowed=allowed)
        send = client._send(
            "sho/lifecycle",
            client._session.make(LifecycleRequest, mid_id=mid.mid_id, transition=request),
        )
        return client, send

    def receive(self, wire: bytes) -> ApplyTransition | Finished:
        """The owner's command (→ apply it) or an Ack (nothing ordered, or done).

        Raises:
            RemoteProtocolError, AgentRefused: as :meth:`ProvisioningClient.receive`.
        """
        trial, msg = self._accept(wire)
        if isinstance(msg, LifecycleCommand):
            _check_command(
                self.trust, msg, self.mid.mid_id, self.mid.sho, self.allowed, self.mid.command_seq
            )
            self._commit(trial)
            self.command = msg
            return ApplyTransition.of(msg, self.mid.slot)
        if isinstance(msg, Ack):
            _expect(msg.mid_id == self.mid.mid_id, "wrong-ack", "Ack for another MID")
            if self.command is not None:
                expected = STATE_AFTER[self.command.transition]
                _expect(
                    msg.state == expected,
                    "wrong-ack",
                    f"the network recorded {msg.state}, expected {expected}",
                )
            self._commit(trial)
            seq = self.command.sequence if self.command else self.mid.command_seq
            return Finished(
                self.mid.mid_id,
                self.mid.imsi,
                self.mid.sho,
                msg.state,
                self.mid.sequence,
                self.mid.slot,
                seq,
            )
        raise RemoteProtocolError(f"unexpected {type(msg).__name__} in a lifecycle session")

    def transitioned(self) -> Certify:
        if self.command is None:
            raise LocalProtocolError("no command to receipt")
        event = self.command.transition
        qualifying = receipt_qualifying_data(
            self._session.session_id, self._session.transcript, event
        )
        return Certify(event, qualifying, self.mid.slot, None)

    def certified(self, evidence: Mapping[str, bytes]) -> Send:
        if self.command is None:
            raise LocalProtocolError("no command to receipt")
        return self._send(
            "dpf/receipt",
            self._session.make(
                Receipt,
                mid_id=self.mid.mid_id,
                sequence=self.command.sequence,
                event=self.command.transition,
                evidence=tuple(sorted(evidence.items())),
            ),
        )


# ---- attach ---------------------------------------------------------------------------------------


class AttachClient(_Client):
    """Device end of an attach over ``rat`` (TS 33.102 §6.3, TS 33.401 §6.1, TS 33.501
    §6.1.3.2): RAND/AUTN in, RES (RES* over 5G) or AUTS out, at most one resynchronisation; the
    ME derives its anchor key (CK ‖ IK, K_ASME, K_SEAF), proves it to the network and checks the
    network's proof of the same key."""

    def __init__(
        self, session: SessionState, imsi: str, rat: Rat = "3g", supi_known: bool = True
    ) -> None:
        super().__init__(session)
        self.imsi = imsi
        self.rat = rat
        self.resynchronised = False
        self._challenge: Authenticate | None = None
        self._answer: MeAnswer | None = None
        self._supi_known = supi_known

    @classmethod
    def begin(
        cls, session_id: bytes, imsi: str, rat: Rat = "3g", suci: str = ""
    ) -> tuple[AttachClient, Send]:
        """Start an attach; over 5G ``suci`` replaces the IMSI on the wire."""
        client = cls(SessionState(session_id), imsi, rat)
        if suci:
            msg = client._session.make(AttachRequest, suci=suci, rat=rat)
        else:
            msg = client._session.make(AttachRequest, imsi=imsi, rat=rat)
        return client, client._send("sho/attach", msg)

    def receive(self, wire: bytes) -> Authenticate | AttachDone:
        """Raises:
        RemoteProtocolError: as :meth:`ProvisioningClient.receive`, or an accepted attach
            without the network's key proof.
        """
        trial, msg = self._accept(wire)
        if isinstance(msg, AuthChallenge):
            if self.rat != "3g" and not msg.serving_network:
                raise RemoteProtocolError(f"a {self.rat} challenge without a serving network")
            self._commit(trial)
            self._challenge = Authenticate(msg.rand, msg.autn, msg.serving_network, msg.abba)
            return self._challenge
        if isinstance(msg, AttachResult):
            keys_match: bool | None = None
            if msg.accepted and self._answer is not None and (msg.key_proof or self.rat != "3g"):
                if not msg.key_proof:  # 3G may stop at RES (TS 33.102); EPS and 5G may not
                    raise RemoteProtocolError("attach accepted without the network's key proof")
                assert self._challenge is not None
                mine = key_proof(self._answer.anchor, self._challenge.rand)
                keys_match = hmac.compare_digest(mine, msg.key_proof)
            self._commit(trial)
            return AttachDone(
                msg.accepted,
                msg.reason,
                self.resynchronised,
                msg.grant,
                rat=self.rat,
                keys_match=keys_match,
            )
        raise RemoteProtocolError(f"unexpected {type(msg).__name__} in an attach")

    def answered(self, result: AkaResult) -> Send:
        """The TRE's AKA answer → AuthResponse (RES or RES* with the key proof, or AUTS).

        Raises:
            AgentRefused: MAC failure — the network did not prove it knows K (``network-auth``);
                an EPS/5G vector without the AMF separation bit (``amf-separation``).
        """
        if isinstance(result, AkaMacFailure):
            raise AgentRefused(
                "network-auth", "AUTN does not verify (MAC failure): the network is not authentic"
            )
        if isinstance(result, AkaSyncFailure):
            if self.resynchronised:
                raise AgentRefused("resync", "a second synchronisation failure after AUTS")
            self.resynchronised = True
            return self._send("sho/auth", self._session.make(AuthResponse, auts=result.auts))
        if not isinstance(result, AkaSuccess):
            raise LocalProtocolError(f"not an AKA result: {type(result).__name__}")
        challenge = self._challenge
        if challenge is None:
            raise LocalProtocolError("an AKA answer before any challenge")
        if not amf_separation_ok(self.rat, challenge.autn):
            raise AgentRefused(
                "amf-separation", f"AMF separation bit is 0: not a {self.rat} vector"
            )
        answer = me_answer(
            self.rat,
            res=result.res,
            ck=result.ck,
            ik=result.ik,
            rand=challenge.rand,
            autn=challenge.autn,
            serving_network=challenge.serving_network,
            supi=f"imsi-{self.imsi}" if self.imsi else None,
            abba=challenge.abba or b"\0\0",
        )
        self._answer = answer
        return self._send(
            "sho/auth",
            self._session.make(
                AuthResponse,
                res=answer.response,
                key_proof=key_proof(answer.anchor, challenge.rand),
            ),
        )


# ---- the agent's host file ------------------------------------------------------------------------


@dataclass(frozen=True)
class MidInfo:
    """What the agent knows of a MID beyond the TPM registry: owner, network, last command."""

    mid_id: str
    sho: str
    imsi: str
    slot: int
    sequence: int
    network: str
    state: str
    command_seq: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "mid": self.mid_id,
            "sho": self.sho,
            "imsi": self.imsi,
            "slot": self.slot,
            "sequence": self.sequence,
            "network": self.network,
            "state": self.state,
            "command_seq": self.command_seq,
        }

    @classmethod
    def from_json(cls, doc: Any) -> MidInfo:
        if not isinstance(doc, dict):
            raise BadInput("agent state: malformed MID entry")
        for key in ("mid", "sho", "imsi", "network", "state"):
            if not isinstance(doc.get(key), str):
                raise BadInput(f"agent state: MID {key} must be text")
        return cls(
            mid_id=doc["mid"],
            sho=doc["sho"],
            imsi=doc["imsi"],
            slot=_int(doc.get("slot"), "slot"),
            sequence=_int(doc.get("sequence"), "sequence"),
            network=doc["network"],
            state=doc["state"],
            command_seq=_int(doc.get("command_seq"), "command_seq"),
        )


@dataclass(frozen=True)
class PcidInfo:
    """The provisional connectivity identity imported at manufacturing (docs/provisioning.md §1.2)."""

    imsi: str
    mid_id: str
    released: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"imsi": self.imsi, "mid": self.mid_id, "released": self.released}

    @classmethod
    def from_json(cls, doc: Any) -> PcidInfo:
        if not (
            isinstance(doc, dict)
            and isinstance(doc.get("imsi"), str)
            and isinstance(doc.get("mid"), str)
            and isinstance(doc.get("released"), bool)
        ):
            raise BadInput("agent state: malformed PCID entry")
        return cls(doc["imsi"], doc["mid"], doc["released"])


@dataclass(frozen=True)
class AgentState:
    """The agent's host file (beside the MID registry): MIDs, the PCID, the journal."""

    mids: Mapping[str, MidInfo] = field(default_factory=dict)
    pcid: PcidInfo | None = None
    journal: Mapping[str, Any] | None = field(default=None, repr=False)
    change: Mapping[str, Any] | None = None  # a change of subscription under way

    def with_mid(self, info: MidInfo) -> AgentState:
        return replace(self, mids={**self.mids, info.mid_id: info})

    def mid(self, mid_id: str) -> MidInfo:
        """Raises:
        BadInput: the agent has no such MID.
        """
        info = self.mids.get(mid_id)
        if info is None:
            known = ", ".join(sorted(self.mids)) or "none"
            raise BadInput(f"the agent has no MID {mid_id!r} (known: {known})")
        return info

    def to_json(self) -> dict[str, Any]:
        return {
            "format": AGENT_FORMAT,
            "version": 1,
            "mids": [info.to_json() for info in self.mids.values()],
            "pcid": None if self.pcid is None else self.pcid.to_json(),
            "journal": None if self.journal is None else dict(self.journal),
            "change": None if self.change is None else dict(self.change),
        }

    @classmethod
    def from_json(cls, doc: Any) -> AgentState:
        """Raises:
        BadInput: not an agent state document.
        """
        if not isinstance(doc, dict) or doc.get("format") != AGENT_FORMAT:
            raise BadInput(f"agent state: not a {AGENT_FORMAT} document")
        if doc.get("version") != 1:
            raise BadInput(f"agent state: version {doc.get('version')!r} not supported")
        mids = doc.get("mids")
        journal = doc.get("journal")
        change = doc.get("change")
        if (
            not isinstance(mids, list)
            or not (journal is None or isinstance(journal, dict))
            or not (change is None or isinstance(change, dict))
        ):
            raise BadInput("agent state: malformed mids, journal or change")
        infos = [MidInfo.from_json(m) for m in mids]
        pcid = doc.get("pcid")
        return cls(
            mids={i.mid_id: i for i in infos},
            pcid=None if pcid is None else PcidInfo.from_json(pcid),
            journal=journal,
            change=change,
        )
