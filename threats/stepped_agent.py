"""Edge: TPM, network. The host agent, one request at a time, for attacks that stop it half-way.

A threat check drives the real device agent — :class:`host.agent.ProvisioningClient`, with
every check the device makes on what the network sends (pinned keys, session and transcript,
this TRE's names, MID_CTR, slot, owner), and :class:`host.provision.TpmDevice` for the TPM
work — and plays the attacker between two steps: it withholds the next request (stops), rewrites
it on its way out (:meth:`SteppedAgent.send`'s ``tamper``), answers in the network's place
(``answer``), or hands the client what another TPM, another AK or a guess produced instead of
the agent's own TPM. A whole run, with its journal and recovery, is
:func:`host.provision.provision`; lifecycle orders are :func:`host.lifecycle.apply_order`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from host.agent import (
    Activate,
    Certify,
    DescribeTarget,
    Event,
    Install,
    ProvisioningClient,
    Quote,
    Send,
)
from host.provision import TpmDevice
from host.send import post
from protocol.messages import Message, Verdict, decode, encode
from trelab.errors import LocalProtocolError

if TYPE_CHECKING:
    from host.agent import DeviceTrust
    from protocol.client import Transport
    from tpm.connection import TpmConnection
    from tpm.registry import Registry

__all__ = ["SteppedAgent", "Tamper"]

#: An attacker's rewrite of the agent's next request: the message the client made in, the
#: message that goes on the wire out.
Tamper = Callable[[Message], Message]

E = TypeVar("E")


class SteppedAgent:
    """One provisioning session of the host agent, advanced by the check one step at a time.

    :attr:`event` is what the client last asked its runner to do (the network's last reply,
    checked); a TPM step (:meth:`activate`, :meth:`quote`, :meth:`target`, :meth:`install`)
    does it and leaves the next request pending; :meth:`send` puts that request on the wire.
    """

    def __init__(
        self,
        client: ProvisioningClient,
        device: TpmDevice,
        ak: Any,
        transport: Transport,
        *,
        grant: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.device = device
        self.ak = ak
        self.transport = transport
        self.grant = grant
        self.clock = clock
        self.event: Event | None = None
        #: every reply the network sent this session, as it arrived (before ``answer``)
        self.replies: list[bytes] = []

    @classmethod
    def register(
        cls,
        conn: TpmConnection,
        registry: Registry,
        transport: Transport,
        trust: DeviceTrust,
        sho: str = "sho-a",
        *,
        ek_cert: bytes | None = None,
        grant: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> SteppedAgent:
        """M2: the agent registers this TPM's EK certificate (or ``ek_cert``, an attacker's, in
        its place) and ECC AK for ``sho``; returns with the DRF's challenge received.

        Raises:
            Refused: the DRF refused the registration.
            AgentRefused: ``sho`` is not pinned.
        """
        import os

        device = TpmDevice(conn, registry)
        identity = device.identity()
        client, _ = ProvisioningClient.begin(
            trust,
            sho=sho,
            ek_cert=identity.ek_cert if ek_cert is None else ek_cert,
            ek_name=identity.ek_name,
            ak_public=identity.ak.public_blob,
            ak_name=identity.ak.name,
            device_nonce=os.urandom(32),
        )
        agent = cls(client, device, identity.ak, transport, grant=grant, clock=clock)
        agent.send()
        return agent

    # -- the wire ---------------------------------------------------------------------------------

    def send(
        self, *, tamper: Tamper | None = None, answer: Callable[[bytes], bytes] | None = None
    ) -> Event:
        """Post the pending request — rewritten by ``tamper`` if given — and hand the client
        the reply (``answer(reply)`` if given: a man in the middle's); returns the next event.

        Raises:
            Refused, RemoteProtocolError: the network refused the request.
            AgentRefused, RemoteProtocolError: the client refused the reply (nothing changes).
        """
        pending = self.client.pending
        if pending is None:
            raise LocalProtocolError("the agent has no request to send")
        if tamper is not None:
            pending = Send(pending.endpoint, encode(tamper(decode(pending.wire))))
        reply = post(self.transport, pending, self.grant)
        self.replies.append(reply)
        if answer is not None:
            reply = answer(reply)
        self.event = self.client.receive(reply, now=int(self.clock()))
        return self.event

    def _event(self, kind: type[E]) -> E:
        if not isinstance(self.event, kind):
            got = type(self.event).__name__
            raise LocalProtocolError(f"the agent is at {got}, not {kind.__name__}")
        return self.event

    @property
    def verdict(self) -> Verdict | None:
        """The PVA's verdict this session received (checked by the client), if any."""
        return self.client.state.decoded_verdict()

    # -- the TPM steps ------------------------------------------------------------------------

    def activate(self, secret: bytes | None = None) -> None:
        """M3: TPM2_ActivateCredential on the DRF's challenge (or ``secret``, a guess, in the
        TPM's place) → the credential proof is pending.

        Raises:
            CredentialRejected: the TPM refuses the challenge.
        """
        challenge = self._event(Activate)
        if secret is None:
            secret = self.device.activate(self.ak, challenge)
        self.client.activated(secret)

    def quote(
        self,
        *,
        device: TpmDevice | None = None,
        ak: Any = None,
        qualifying: bytes | None = None,
        selection: str | None = None,
    ) -> None:
        """M4: TPM2_Quote for the PVA's challenge → the evidence is pending. An attacker may
        quote on another TPM with another AK, over other qualifying data or another PCR
        selection; the evidence still claims the selection the PVA asked for."""
        asked = self._event(Quote)
        made = (device or self.device).quote(
            ak or self.ak, Quote(qualifying or asked.qualifying, selection or asked.selection)
        )
        self.client.quoted(
            quote_msg=made.message,
            quote_sig=made.signature,
            pcrs=made.pcrs,
            pcrlist=asked.selection,
        )

    def target(self, device: TpmDevice | None = None) -> None:
        """M5: SRK, a free slot and MID_CTR (of ``device``'s TPM if given) → the package
        request is pending."""
        self._event(DescribeTarget)
        srk_public, srk_name, slot, counter = (device or self.device).target()
        self.client.target(srk_public=srk_public, srk_name=srk_name, slot=slot, counter=counter)

    def install(self) -> None:
        """M6/M7: import the checked package (the agent's own host check of the PCRs first),
        then the AK-signed NV_Certify receipt is pending."""
        delivered = self._event(Install)
        self.device.check_platform(delivered.package.policy.selection, delivered.pcr_digest)
        self.device.install(delivered.package)
        self.certify(self.client.installed())

    def certify(self, certify: Certify) -> None:
        """AK-signed TPM2_NV_Certify for ``certify`` → the receipt is pending."""
        self.client.certified(self.device.certify(self.ak, certify))

    # -- steps and their request together -------------------------------------------------------

    def prove(self) -> Quote:
        """M3 sent: → the PVA's challenge (a :class:`Quote` to make)."""
        self.activate()
        return self._expect(self.send(), Quote)

    def attest(self) -> DescribeTarget:
        """M4 sent: → the PVA's verdict, checked (a :class:`DescribeTarget` to answer)."""
        self.quote()
        return self._expect(self.send(), DescribeTarget)

    def request_package(self, device: TpmDevice | None = None) -> Install:
        """M5 sent: → the DPF's MID package, checked by the client (an :class:`Install`)."""
        self.target(device)
        return self._expect(self.send(), Install)

    @staticmethod
    def _expect(event: Event, kind: type[E]) -> E:
        if not isinstance(event, kind):
            raise LocalProtocolError(
                f"expected {kind.__name__}, the agent got {type(event).__name__}"
            )
        return event
