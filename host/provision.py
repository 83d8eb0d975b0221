"""Edge: TPM, filesystem, network. The host agent's provisioning runner (``trelab provision``):
it drives :class:`host.agent.ProvisioningClient` with a real TPM (:class:`TpmDevice`, on
:mod:`tpm`) and a :class:`protocol.client.Transport` (HTTP or in-process), journaling every
step so a killed agent resumes or rolls back (TR 33.812 §7.1.2.1 threat 11).

Crash safety. Once the TPM is about to change, the client state
(:class:`host.agent.ProvisionState`) is journaled — written atomically (fsync) to the agent
file beside the MID registry — before the import and before each receipt (the two requests
whose bytes a retry must repeat exactly: an ECDSA receipt is never the same twice). A retry
first resumes that journal: it sends the journaled request again (the server stores each reply
with its effects, so a request it already handled gets the same reply, and nothing happens
twice), redoes an interrupted import or transition idempotently, and otherwise rolls back:

- nothing imported yet (no journal) → start again; the network's PENDING package is superseded
  by the next one (its HSS record is deleted with it: never two live records for one
  subscription);
- import interrupted after MID_CTR moved (the sequence number is spent) → the slot, if already
  marked, is set DELETED; a new package is fetched;
- installed but the session is gone (expired) → the local MID is deleted, never half-kept.

The SQN state lives in the TPM registry, committed before any RES leaves (:mod:`tpm.aka`):
nothing here can roll it back.

Test hooks. ``TRELAB_TEST_CRASH_AT=<point>`` (:data:`host.agent.CRASH_POINTS`) makes the agent
SIGKILL itself at that point — ``before:<endpoint>``/``after:<endpoint>`` around a request,
``before-import``/``after-import``/``after-transition``, or ``<step>/tpm:<command>`` right
after that TPM command inside a step, the command named as its ESAPI method
(e.g. ``import/tpm:nv_increment``).

Receipts are AK-signed TPM2_NV_Certify of MID_STATE[slot] (and of MID_CTR at install). A
TPM2_Certify of K itself is impossible by design: K has adminWithPolicy set and no policy of
it names TPM2_Certify (tpm.package), so the TPM refuses the ADMIN role that Certify needs —
the NV state is what proves the install.

TPM time. :func:`instrumented` observes the connection's transport so every TPM command is
timed (and hooked) where its bytes go out and come back; benchmarks split end-to-end time
into TPM time and our own.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from host.agent import (
    Activate,
    AgentRefused,
    AgentState,
    ApplyTransition,
    Certify,
    DescribeTarget,
    DeviceTrust,
    Event,
    Finished,
    Install,
    MidInfo,
    PcidInfo,
    ProvisioningClient,
    ProvisionState,
    Quote,
    parse_device_trust,
)
from host.attach import attach_tpm
from host.send import post, report
from protocol.client import Transport
from protocol.errors import Refused
from tpm.connection import TpmConnection
from tpm.registry import Registry
from trelab.atomic import atomic_write_text, file_lock
from trelab.errors import BadInput, CheckFailed, RemoteProtocolError, Unavailable
from trelab.jsontext import load_json

__all__ = [
    "CRASH_ENV",
    "AgentFiles",
    "Hook",
    "Identity",
    "ProvisionResult",
    "TpmClock",
    "TpmDevice",
    "abandon",
    "chain",
    "crash_hook",
    "flush_stale",
    "install_pcid",
    "instrumented",
    "load_trust",
    "provision",
]

CRASH_ENV = "TRELAB_TEST_CRASH_AT"
Hook = Callable[[str], None]


def _no_hook(point: str) -> None:
    """Default hook: nothing happens at any point."""


def crash_hook(point: str | None = None, *, kill: Callable[[], None] | None = None) -> Hook | None:
    """The ``TRELAB_TEST_CRASH_AT`` test hook (:func:`trelab.crash.crash_hook`): SIGKILL this
    process on reaching ``point`` (``point#n``: its n-th time) — a real kill -9: no cleanup, no
    flush, no atexit. None when unset."""
    from trelab.crash import crash_hook as make

    return make(CRASH_ENV, target=point, kill=kill)


def chain(*hooks: Hook | None) -> Hook:
    """One hook calling each given hook in turn."""
    present = [h for h in hooks if h is not None]

    def hook(point: str) -> None:
        for h in present:
            h(point)

    return hook


# ---- TPM timing ------------------------------------------------------------------------------


@dataclass
class TpmClock:
    """TPM commands seen by :func:`instrumented`: count and seconds, per command (named as
    its ESAPI method)."""

    seconds: float = 0.0
    calls: int = 0
    by_command: dict[str, list[float]] = field(default_factory=dict)
    label: str = ""

    def add(self, name: str, elapsed: float) -> None:
        self.seconds += elapsed
        self.calls += 1
        entry = self.by_command.setdefault(name, [0, 0.0])
        entry[0] += 1
        entry[1] += elapsed

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        """Label the TPM commands of one agent step (for ``<step>/tpm:<method>`` hooks)."""
        previous, self.label = self.label, label
        try:
            yield
        finally:
            self.label = previous


@contextlib.contextmanager
def instrumented(conn: TpmConnection, hook: Hook | None = None) -> Iterator[TpmClock]:
    """Time (and hook) every TPM command on ``conn`` inside the block, as the connection's
    transport sees it (:meth:`tpm.tss.Transport.observe`); yields the clock."""
    from tpm.tss import CommandEvent

    clock = TpmClock()
    call = hook or _no_hook

    def observe(event: CommandEvent) -> None:
        clock.add(event.name, event.seconds)
        if clock.label:
            call(f"{clock.label}/tpm:{event.name}")

    with conn.transport.observe(observe):
        yield clock


def flush_stale(conn: TpmConnection) -> int:
    """Flush transient objects and sessions a killed predecessor left in a TPM without a
    resource manager (swtpm holds only three objects). Under /dev/tpmrm0 there are none to see.
    Returns how many were flushed."""
    from tpm import lean, lean_commands

    if conn.tcti.startswith("device:") and "tpmrm" in conn.tcti:
        return 0
    flushed = 0
    for first in (0x80000000, 0x02000000):  # transient objects; loaded sessions (HMAC, policy)
        try:
            found = lean_commands.handles(conn, first, 64)
        except (lean.TpmRefused, RemoteProtocolError) as exc:
            raise Unavailable(f"cannot list the TPM's loaded handles: {exc}") from None
        for handle in found:  # policy sessions are listed with 0x03… among the loaded ones
            with contextlib.suppress(lean.TpmRefused):
                command = lean.wrap_flush_context(handle)
                lean.unwrap_plain(lean.CC.FLUSH_CONTEXT, conn.transport.execute(command))
                flushed += 1
    return flushed


# ---- the TPM side of the agent -----------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """The TRE identity the agent presents: EK certificate (DER), EK name, the AK."""

    ek_cert: bytes = field(repr=False)
    ek_name: bytes
    ak: Any = field(repr=False)

    @property
    def device_id(self) -> str:
        """How the network names this TRE: hex of the EK's TPM name."""
        return self.ek_name.hex()


class TpmDevice:
    """The TPM work of the agent, on :mod:`tpm` (identity, activation, quote, target report,
    import, NV_Certify receipts, lifecycle states)."""

    def __init__(
        self, conn: TpmConnection, registry: Registry, *, layer: Literal["lean", "esys"] = "lean"
    ) -> None:
        self.conn = conn
        self.registry = registry
        #: the client stack of the sessions the provisioning commands need (credential
        #: activation, import, lifecycle writes): the lean layer, or ESYS (the reference)
        self.layer: Literal["lean", "esys"] = layer
        self._ek_name: bytes | None = None

    def ek_name(self) -> bytes:
        """The RSA EK's name (read once: loading the EK costs a dozen TPM commands)."""
        if self._ek_name is None:
            from tpm.mid import ek_name

            self._ek_name = ek_name(self.conn)
        return self._ek_name

    def identity(self) -> Identity:
        """EK certificate (RSA-2048 EK: the package transport key), its name, the ECC AK.

        Raises:
            Unavailable: no EK certificate or the TPM refuses.
        """
        from cryptography.hazmat.primitives import serialization

        from tpm.ek import ek_public_area, find_ek_certificate
        from tpm.identity import ensure_ak

        hit = find_ek_certificate(self.conn, "rsa2048")
        if hit is None:
            raise Unavailable("this TPM has no RSA-2048 EK certificate (NV 0x01c00002)")
        cert = hit[2]
        if self._ek_name is None:
            # the name the network computes from the certificate: if the TPM's EK did not
            # match it, credential activation and every import would fail anyway
            self._ek_name = ek_public_area(cert).name()
        ak, _ = ensure_ak(self.conn, "ecc")
        return Identity(cert.public_bytes(serialization.Encoding.DER), self._ek_name, ak)

    def activate(self, ak: Any, event: Activate) -> bytes:
        from tpm.identity import activate_credential

        return activate_credential(
            self.conn, ak, event.credential_blob, event.encrypted_secret, layer=self.layer
        )

    def quote(self, ak: Any, event: Quote) -> Any:
        from tpm.pcrsel import parse_selection
        from tpm.quote import quote

        return quote(self.conn, ak, event.qualifying, parse_selection(event.selection))

    def pcr_digest(self, selection: str) -> bytes:
        from tpm.mid import pcr_values
        from tpm.policy import pcr_digest

        return pcr_digest(pcr_values(self.conn, selection))

    def check_platform(self, selection: str, validated: bytes) -> None:
        """The PCRs still hold the state the PVA validated (a host-side check before import;
        the TPM enforces it again at every use of K through PolicyPCR).

        Raises:
            AgentRefused: ``platform-changed``.
        """
        import hmac

        if not hmac.compare_digest(self.pcr_digest(selection), validated):
            raise AgentRefused(
                "platform-changed",
                f"PCRs {selection} changed since the PVA validated them: refusing the MID",
            )

    def target(self) -> tuple[bytes, bytes, int, int]:
        """(SRK TPM2B_PUBLIC, SRK name, a free MID slot, MID_CTR).

        Raises:
            Unavailable: no free slot or the TPM refuses.
        """
        from tpm import nv
        from tpm.mid import ensure_srk, object_name

        nv.ensure_indices(self.conn)
        _srk, public = ensure_srk(self.conn)
        free = nv.free_slots(self.conn)
        if not free:
            raise Unavailable("no free MID slot left", fix="trelab tpm mid reset --yes")
        counter = nv.read_counter(self.conn, nv.MID_CTR)
        return bytes(public.marshal()), object_name(public), free[0], counter

    def counter(self) -> int:
        from tpm import nv

        return nv.read_counter(self.conn, nv.MID_CTR)

    def installed(self, mid_id: str) -> Any:
        """The registry record of ``mid_id`` or None (registry checked against REG_CTR)."""
        with self.registry.locked():
            data = self.registry.read_checked(self.conn, self.ek_name())
        return data.mids.get(mid_id)

    def install(self, package: Any) -> Any:
        """TPM2_Import + MID_CTR++ + INSTALLED + AUDIT (:func:`tpm.mid.import_package`)."""
        from tpm.mid import import_package

        return import_package(self.conn, self.registry, package, layer=self.layer)

    def mark_dead(self, slot: int) -> bool:
        """An interrupted import's slot (marked, but without a registry record): DELETED (its
        lifecycle index discarded), so it is never reused or mistaken for a MID. Returns
        whether it changed."""
        from tpm import nv
        from tpm.mid import log_event, repair_audit

        with self.registry.locked():  # the orphan event goes into the log and AUDIT alike
            name = self.ek_name()
            data = self.registry.read_checked(self.conn, name)
            repair_audit(self.conn, data)
            if not nv.discard_lifecycle(self.conn, slot):
                state = nv.read_state(self.conn, slot)
                if state in (nv.MidState.EMPTY, nv.MidState.DELETED):
                    return False
                nv.write_state(self.conn, slot, nv.MidState.DELETED)
            event = json.dumps({"event": "orphan", "slot": slot}, separators=(",", ":"))
            log_event(self.conn, self.registry, data, event, name)
            return True

    def repair_audit(self) -> str | None:
        """Complete an AUDIT extension an interrupt cut off (:func:`tpm.mid.repair_audit`)."""
        from tpm.mid import repair_audit

        with self.registry.locked():
            data = self.registry.read_checked(self.conn, self.ek_name())
            return repair_audit(self.conn, data)

    def certify(self, ak: Any, event: Certify) -> dict[str, bytes]:
        """AK-signed TPM2_NV_Certify of the MID's state — its lifecycle index (state ‖ version)
        or its MID_STATE byte — (and MID_CTR), extraData = qualifying.

        Raises:
            Unavailable: the TPM refuses.
        """
        from tpm import nv
        from tpm.identity import open_ak
        from tpm.tss import TPM2_ALG, TPMT_SIG_SCHEME, TSS2_Exception

        esys = self.conn.esys
        wanted = [("state", *nv.state_location(self.conn, event.slot))]
        if event.counter is not None:
            wanted.append(("counter", nv.MID_CTR, 8, 0))
        evidence: dict[str, bytes] = {}
        if self.layer == "lean":
            return self._certify_lean(ak, event, wanted)
        try:
            with open_ak(self.conn, ak) as ak_tr:
                for label, index, size, offset in wanted:
                    handle = nv.resource(self.conn, index)
                    attest, sig = esys.nv_certify(
                        ak_tr,
                        handle,
                        event.qualifying,
                        TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL),
                        size,
                        offset,
                        auth_handle=handle,
                    )
                    evidence[f"{label}.attest"] = bytes(attest)
                    evidence[f"{label}.sig"] = bytes(sig.marshal())
        except TSS2_Exception as exc:
            raise Unavailable(f"TPM2_NV_Certify refused: {exc}") from None
        return evidence

    def _certify_lean(
        self, ak: Any, event: Certify, wanted: list[tuple[str, int, int, int]]
    ) -> dict[str, bytes]:
        """:meth:`certify` on the lean layer: two password authorisations, so no session
        and no look-up of the AK's or the index's ESYS object."""
        from tpm.lean import TpmRefused
        from tpm.lean_commands import LeanObject, nv_certify

        signer = LeanObject(ak.handle, b"")  # a password session: no name enters an HMAC
        evidence: dict[str, bytes] = {}
        try:
            for label, index, size, offset in wanted:
                attest, sig = nv_certify(self.conn, signer, index, event.qualifying, size, offset)
                evidence[f"{label}.attest"] = attest
                evidence[f"{label}.sig"] = sig
        except TpmRefused as exc:
            raise Unavailable(f"TPM2_NV_Certify refused: {exc}") from None
        return evidence

    def apply(self, event: ApplyTransition, *, check: bool = True) -> str:
        """Apply a transition (idempotent: a repeat after a crash changes nothing; ``check=False``
        skips that look-up when the state is known); returns what happened. MID_STATE moves; a
        use-gated K's PolicyNV then allows or refuses it.

        Raises:
            BadInput: unknown transition.
        """
        from tpm import nv
        from tpm.mid import delete_mid, set_state

        if not check and event.transition != "delete":
            targets = {"activate": nv.MidState.ACTIVE, "resume": nv.MidState.ACTIVE}
            if event.transition in targets:
                set_state(
                    self.conn,
                    self.registry,
                    event.mid_id,
                    targets[event.transition],
                    approval=event.approval,
                    layer=self.layer,
                )
                return "active"
        record = self.installed(event.mid_id)
        if event.transition == "delete":
            if record is None:
                return "already deleted"
            delete_mid(
                self.conn, self.registry, event.mid_id, approval=event.approval, layer=self.layer
            )
            return "deleted"
        targets = {
            "activate": nv.MidState.ACTIVE,
            "resume": nv.MidState.ACTIVE,
            "suspend": nv.MidState.SUSPENDED,
        }
        if event.transition not in targets:
            raise BadInput(f"unknown transition {event.transition!r}")
        if record is None:
            raise AgentRefused("unknown-mid", f"MID {event.mid_id} is not in this TPM")
        target = targets[event.transition]
        if record.state == target.name.lower() and nv.read_state(self.conn, record.slot) == target:
            return "already applied"
        set_state(
            self.conn, self.registry, event.mid_id, target, approval=event.approval,
            layer=self.layer,
        )  # fmt: skip
        return target.name.lower()


# ---- the agent's files -------------------------------------------------------------------------


class AgentFiles:
    """The agent's host file (``<registry stem>.agent.json`` beside the MID registry) under an
    exclusive lock: one agent at a time per TPM."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.path = registry.path.with_name(registry.path.stem + ".agent.json")
        self._held = 0
        #: the state last read or written while :meth:`locked` is held (no other agent can
        #: change the file then); forgotten when the lock is released
        self._known: AgentState | None = None

    def __repr__(self) -> str:
        return f"AgentFiles({str(self.path)!r})"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            self._held += 1
            try:
                yield
            finally:
                self._held -= 1
                if not self._held:
                    self._known = None

    def read(self) -> AgentState:
        """The state on disk (under :meth:`locked`, the one this object last read or wrote:
        the lock keeps every other writer out).

        Raises:
            BadInput: unreadable or malformed.
        """
        if self._held and self._known is not None:
            return self._known
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            state = AgentState()
        except OSError as exc:
            raise BadInput(f"agent state {self.path}: {exc.strerror}") from None
        else:
            state = AgentState.from_json(load_json(text, f"agent state {self.path}"))
        if self._held:
            self._known = state
        return state

    def write(self, state: AgentState) -> None:
        """Atomic (temp + fsync + rename), mode 0600 (the journal may hold an ICF grant).

        Raises:
            Unavailable: the file cannot be written.
        """
        self._known = None
        try:
            atomic_write_text(self.path, _agent_text(state.to_json()))
        except OSError as exc:
            raise Unavailable(f"cannot write the agent state {self.path}: {exc.strerror}") from None
        if self._held:
            self._known = state


def _agent_text(doc: dict[str, Any]) -> str:
    """The agent file's text: one line per top-level key and per MID, each through json's C
    encoder (``indent`` would bypass it; the file is rewritten at every journaled step)."""
    lines = []
    for key, value in doc.items():
        if key == "mids" and isinstance(value, list) and value:
            items = ",\n  ".join(json.dumps(item) for item in value)
            lines.append(f" {json.dumps(key)}: [\n  {items}\n ]")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def load_trust(path: str | os.PathLike[str]) -> DeviceTrust:
    """The pinned network keys from a ``device-trust.json`` (``trelab network init-config``).

    Raises:
        BadInput: not a device-trust document.
        Unavailable: no such file.
    """
    where = Path(path)
    try:
        text = where.read_text()
    except FileNotFoundError:
        raise Unavailable(
            f"no pinned device trust at {where}",
            fix="pass --trust device-trust.json (from `trelab network init-config`)",
        ) from None
    except OSError as exc:
        raise BadInput(f"device trust {where}: {exc.strerror}") from None
    try:
        return parse_device_trust(load_json(text, f"device trust {where}"))
    except json.JSONDecodeError:
        raise BadInput(f"device trust {where}: not JSON") from None


# ---- the runner ----------------------------------------------------------------------------------


@dataclass
class ProvisionResult:
    """What ``trelab provision`` reports."""

    finished: Finished
    device_id: str
    network: str
    resumed: bool = False
    rolled_back: list[str] = field(default_factory=list)
    pcid: dict[str, Any] | None = None
    repaired: list[str] = field(default_factory=list)
    flushed: int = 0
    timing: dict[str, float] = field(default_factory=dict)
    tpm_commands: dict[str, tuple[int, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        f = self.finished
        return {
            "mid": f.mid_id,
            "imsi": f.imsi,
            "sho": f.sho,
            "state": f.state,
            "sequence": f.sequence,
            "slot": f.slot,
            "device_id": self.device_id,
            "network": self.network,
            "resumed": self.resumed,
            "rolled_back": list(self.rolled_back),
            "repaired": list(self.repaired),
            "pcid": self.pcid,
            "receipt": {
                "nv_certify": ["MID_STATE", "MID_CTR"],
                "certify_k": "impossible: K has adminWithPolicy and no policy names TPM2_Certify",
            },
        }


_BEFORE_INSTALL = frozenset(
    {"registering", "challenged", "proving", "validating", "evidencing", "validated", "requesting"}
)


class _Restart(Exception):
    """The journaled session cannot go on: roll back and start again."""


@dataclass
class _Run:
    """One provisioning run's context."""

    device: TpmDevice
    identity: Identity
    transport: Transport
    trust: DeviceTrust
    files: AgentFiles
    network: str
    grant: bytes | None
    hook: Hook
    clock: Callable[[], float]
    tpm: TpmClock
    resuming: bool = False

    def now(self) -> int:
        return int(self.clock())

    def journal(self, client: ProvisioningClient) -> None:
        state = self.files.read()
        entry = {
            "kind": "provision",
            "network": self.network,
            "grant": self.grant.hex() if self.grant else None,
            "client": client.state.to_json(),
        }
        self.files.write(replace(state, journal=entry))

    def refuse(self, client: ProvisioningClient, exc: AgentRefused) -> None:
        report(self.transport, client.report(exc.code, str(exc)))

    def clear_journal(self) -> None:
        self.files.write(replace(self.files.read(), journal=None))

    def drive(self, client: ProvisioningClient, event: Event | None) -> Finished:
        """Alternate between the network and the TPM until the session finishes. A refusal
        before anything reached the TPM ends the session: its journal is dropped."""
        try:
            return self._drive(client, event)
        except CheckFailed:
            if client.state.step in _BEFORE_INSTALL:
                self.clear_journal()
            raise

    def _drive(self, client: ProvisioningClient, event: Event | None) -> Finished:
        while True:
            if event is None:
                send = client.pending
                if send is None:
                    raise BadInput("agent journal: nothing to resume")
                if send.endpoint == "dpf/receipt":
                    # the TPM has changed: this exact receipt must be what a retry resends
                    self.journal(client)
                self.hook(f"before:{send.endpoint}")
                reply = post(self.transport, send, self.grant)
                self.hook(f"after:{send.endpoint}")
                try:
                    event = client.receive(reply, now=self.now())
                except AgentRefused as exc:
                    self.refuse(client, exc)
                    raise
                except RemoteProtocolError as exc:  # replayed, reordered, altered reply
                    report(self.transport, client.report("protocol", str(exc)))
                    raise
            if isinstance(event, Finished):
                return event
            try:
                with self.device.conn.transport.kept():  # one TPM connection per burst
                    self._work(client, event)
                event = None
            except AgentRefused as exc:
                self.refuse(client, exc)
                raise
            except CheckFailed as exc:  # the TPM refused (PackageRejected, MidRefused, …)
                report(self.transport, client.report("tre-refused", str(exc)))
                raise

    def _work(self, client: ProvisioningClient, event: Event) -> None:
        """Do one event's TPM work and hand the client its result (the next request is then
        client.pending); returns None so the loop sends it."""
        ak = self.identity.ak
        device = self.device
        if isinstance(event, Activate):
            with self.tpm.step("activate"):
                client.activated(device.activate(ak, event))
        elif isinstance(event, Quote):
            with self.tpm.step("quote"):
                files = device.quote(ak, event)
            client.quoted(
                quote_msg=files.message,
                quote_sig=files.signature,
                pcrs=files.pcrs,
                pcrlist=files.pcrlist,
            )
        elif isinstance(event, DescribeTarget):
            with self.tpm.step("target"):
                srk_public, srk_name, slot, counter = device.target()
            client.target(srk_public=srk_public, srk_name=srk_name, slot=slot, counter=counter)
        elif isinstance(event, Install):
            self.install(client, event)
        elif isinstance(event, ApplyTransition):
            # no journal entry: a retry resends the install receipt and gets this command again
            with self.tpm.step("transition"):
                device.apply(event, check=self.resuming)
            self.hook("after-transition")
            self.certify(client, client.transitioned())
        else:  # pragma: no cover - the client yields nothing else here
            raise BadInput(f"unexpected event {type(event).__name__}")

    def install(self, client: ProvisioningClient, event: Install) -> None:
        """Import the package — or finish/undo an import a killed agent left (module doc)."""
        self.journal(client)
        self.hook("before-import")
        device, sequence = self.device, event.manifest.sequence
        with self.tpm.step("import"):
            # a fresh delivery cannot be installed yet; only a resumed one is looked up
            record = device.installed(event.mid_id) if self.resuming else None
            if record is None:
                counter = device.counter()
                if counter >= sequence:  # spent by an interrupted import: never installable
                    dead = device.mark_dead(client.state.slot)
                    raise _Restart(
                        f"import of MID {event.mid_id} was interrupted after MID_CTR reached "
                        f"{sequence}" + ("; its slot is now DELETED" if dead else "")
                    )
                device.check_platform(event.package.policy.selection, event.pcr_digest)
                device.install(event.package)
        self.hook("after-import")
        self.certify(client, client.installed())

    def certify(self, client: ProvisioningClient, certify: Certify) -> None:
        with self.tpm.step("certify"):
            evidence = self.device.certify(self.identity.ak, certify)
        client.certified(evidence)


def _fresh(run: _Run, sho: str, random_bytes: Callable[[int], bytes]) -> Finished:
    ident = run.identity
    client, _send = ProvisioningClient.begin(
        run.trust,
        sho=sho,
        ek_cert=ident.ek_cert,
        ek_name=ident.ek_name,
        ak_public=ident.ak.public_blob,
        ak_name=ident.ak.name,
        device_nonce=random_bytes(32),
    )
    return run.drive(client, None)


def _resume(run: _Run, state: ProvisionState) -> Finished:
    """Carry on from the journal: resend the pending request, or redo the TPM step."""
    from tpm.package import Package

    client = ProvisioningClient(run.trust, state)
    run.resuming = True
    event: Event | None = None
    if state.pending is None:
        if state.step == "delivered":
            manifest = state.decoded_manifest()
            verdict = state.decoded_verdict()
            if manifest is None or verdict is None:
                raise _Restart("journal at step delivered without its manifest and verdict")
            package = Package.from_json(load_json(manifest.package, "MID package"))
            event = Install(manifest, package, verdict.pcr_digest)
        elif state.step == "commanded":
            from protocol.messages import LifecycleCommand, decode

            command = decode(state.command) if state.command else None
            if not isinstance(command, LifecycleCommand):
                raise _Restart("journal at step commanded without its command")
            event = ApplyTransition.of(command, state.slot)
        else:
            raise _Restart(f"journal at step {state.step} without a request to resend")
    try:
        return run.drive(client, event)
    except (Refused, RemoteProtocolError, AgentRefused) as exc:
        # the network no longer knows this session (expired), will not go on with it, or what
        # it stored has gone stale (verdict, package)
        raise _Restart(f"the interrupted session cannot go on: {exc}") from None
    finally:
        run.resuming = False


def _roll_back(run: _Run, state: ProvisionState) -> list[str]:
    """Undo what an abandoned session left in the TPM: an installed MID the network never
    acknowledged is deleted (no half-installed MID survives a failed retry)."""
    done: list[str] = []
    manifest = state.decoded_manifest()
    if manifest is None:
        return done
    record = run.device.installed(manifest.mid_id)
    if record is not None:
        from tpm.mid import delete_mid

        delete_mid(run.device.conn, run.device.registry, manifest.mid_id)
        done.append(f"deleted MID {manifest.mid_id} (installed, never acknowledged)")
    elif (
        state.slot >= 0
        and run.device.counter() >= manifest.sequence
        and run.device.mark_dead(state.slot)
    ):
        done.append(f"slot {state.slot} marked DELETED (interrupted import)")
    client = ProvisioningClient(run.trust, replace(state, pending=None))
    report(run.transport, client.report("rolled-back", "; ".join(done) or "session abandoned"))
    return done


def _pcid_grant(run: _Run, pcid: PcidInfo, random_bytes: Callable[[int], bytes]) -> bytes:
    """M1: attach with the PCID (AKA in the TPM) to get the ICF's RO-only grant.

    Raises:
        AgentRefused: the ICF refused the attach.
    """

    with run.tpm.step("pcid"):
        done = attach_tpm(
            run.device.conn,
            run.device.registry,
            run.transport,
            mid_id=pcid.mid_id,
            imsi=pcid.imsi,
            random_bytes=random_bytes,
        )
    if not done.accepted or not done.grant:
        raise AgentRefused("pcid", f"the ICF refused the PCID attach: {done.reason}")
    return bytes(done.grant)


def _release_pcid(run: _Run, pcid: PcidInfo) -> str:
    """After provisioning the network has released the PCID; delete its MID here too."""
    from tpm.mid import delete_mid

    note = "released"
    if run.device.installed(pcid.mid_id) is not None:
        delete_mid(run.device.conn, run.device.registry, pcid.mid_id)
        note = "released; its MID deleted from the TPM"
    state = run.files.read()
    run.files.write(replace(state, pcid=replace(pcid, released=True)))
    return note


def provision(
    conn: TpmConnection,
    registry: Registry,
    transport: Transport,
    trust: DeviceTrust,
    *,
    sho: str,
    network: str,
    grant: bytes | None = None,
    use_pcid: bool = True,
    hook: Hook | None = None,
    clock: Callable[[], float] = time.time,
    random_bytes: Callable[[int], bytes] = os.urandom,
    layer: Literal["lean", "esys"] = "lean",
) -> ProvisionResult:
    """Provision one MID of ``sho`` into the TPM on ``conn`` (register → validate → package →
    import → receipt → activation), resuming or rolling back an interrupted run first. With an
    unreleased PCID in the agent state (and no ``grant``), it first attaches with the PCID to
    get the ICF's RO-only grant (M1), and releases the PCID once the new MID is ACTIVE.
    ``layer``: the sessions of its TPM commands on the lean layer (default) or through ESYS
    (the reference, :class:`TpmDevice`).

    Raises:
        AgentRefused: the device refused a network message (reported to the network).
        Refused, RemoteProtocolError, SignatureInvalid: the network refused.
        PackageRejected, MidRefused: the TPM refused.
        Unavailable: TPM or network unreachable (the journal is kept: run again).
    """
    files = AgentFiles(registry)
    hooks = chain(crash_hook(), hook)
    with instrumented(conn, hooks) as tpm, files.locked():
        with conn.transport.kept():
            flushed = flush_stale(conn)
            device = TpmDevice(conn, registry, layer=layer)
            with tpm.step("identity"):
                identity = device.identity()
            audit_note = device.repair_audit()
        run = _Run(device, identity, transport, trust, files, network, grant, hooks, clock, tpm)
        notes: list[str] = []
        repaired = [] if audit_note is None else [audit_note]
        finished: Finished | None = None
        resumed = False
        journal = files.read().journal
        if journal is not None and journal.get("kind") == "provision":
            previous = ProvisionState.from_json(journal.get("client"))
            if grant is None and journal.get("grant"):
                run.grant = _hex_grant(journal["grant"])
            if previous.sho == sho:
                try:
                    finished = _resume(run, previous)
                    resumed = True
                except _Restart as exc:
                    notes.append(str(exc))
                    notes += _roll_back(run, previous)
            else:
                notes.append(f"abandoned the interrupted provisioning for {previous.sho}")
                notes += _roll_back(run, previous)
            if finished is None:
                run.clear_journal()
                run.grant = grant
        pcid = files.read().pcid
        if pcid is not None and pcid.released:
            pcid = None
        if finished is None:
            if run.grant is None and use_pcid and pcid is not None:
                run.grant = _pcid_grant(run, pcid, random_bytes)
            try:
                finished = _fresh(run, sho, random_bytes)
            except _Restart as exc:  # only a journal resume meets an interrupted import
                raise CheckFailed(str(exc)) from None
        state = files.read()
        info = MidInfo(
            mid_id=finished.mid_id,
            sho=finished.sho,
            imsi=finished.imsi,
            slot=finished.slot,
            sequence=finished.sequence,
            network=network,
            state=finished.state,
            command_seq=finished.command_seq,
        )
        files.write(replace(state.with_mid(info), journal=None))
        pcid_out: dict[str, Any] | None = None
        if pcid is not None and run.grant is not None:
            note = _release_pcid(run, pcid) if finished.state == "ACTIVE" else "in use"
            pcid_out = {"imsi": pcid.imsi, "mid": pcid.mid_id, "state": note}
    return ProvisionResult(
        finished=finished,
        device_id=identity.device_id,
        network=network,
        resumed=resumed,
        rolled_back=notes,
        repaired=repaired,
        pcid=pcid_out,
        flushed=flushed,
        timing={"tpm_seconds": tpm.seconds, "tpm_commands": float(tpm.calls)},
        tpm_commands={k: (int(v[0]), v[1]) for k, v in tpm.by_command.items()},
    )


def _hex_grant(value: Any) -> bytes:
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        raise BadInput("agent journal: the ICF grant is not hex") from None


def abandon(
    conn: TpmConnection, registry: Registry, transport: Transport, trust: DeviceTrust
) -> list[str]:
    """Roll back a journaled provisioning without starting a new one (a change of subscription
    that failed inside its provisioning step): an installed, unacknowledged MID is deleted.
    Returns what was undone."""
    files = AgentFiles(registry)
    with files.locked():
        journal = files.read().journal
        if journal is None or journal.get("kind") != "provision":
            return []
        device = TpmDevice(conn, registry)
        identity = device.identity()
        run = _Run(
            device, identity, transport, trust, files, "", None, _no_hook, time.time, TpmClock()
        )
        notes = _roll_back(run, ProvisionState.from_json(journal.get("client")))
        run.clear_journal()
    return notes


def install_pcid(
    conn: TpmConnection, registry: Registry, *, imsi: str, k: bytes, opc: bytes
) -> PcidInfo:
    """Manufacturing (M0, docs/provisioning.md §1.2): import a PCID into the TPM exactly like a MID
    (use-gated: the current PCRs and MID_STATE ACTIVE), ACTIVE at once, and note it in the
    agent state. The ICF side registers the same K/OPc (:meth:`network.roles.Operator.register_pcid`).

    Raises:
        PackageRejected, Unavailable: the TPM refused.
    """
    from tpm.mid import import_package, wrap_for_device
    from tpm.package import AlgorithmSpec, MidSecrets

    files = AgentFiles(registry)
    with files.locked():
        flush_stale(conn)
        package = wrap_for_device(
            conn,
            MidSecrets(k=k, secret=opc),
            imsi=imsi,
            algorithm=AlgorithmSpec(),
            amf=b"\x80\x00",
            sqn_ms=bytes(6),
            kind="use",
        )
        record = import_package(conn, registry, package, activate=True)
        info = PcidInfo(imsi, record.mid)
        files.write(replace(files.read(), pcid=info))
    return info
