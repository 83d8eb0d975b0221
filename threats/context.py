"""Edge: processes, filesystem, TPM, PC/SC. What a threat check stages its attack against.

:class:`ThreatLab` holds the running lab (its swtpm = the victim M2ME's TRE, its virtual USIM
on PC/SC), a *scratch* lab brought up on demand (a second real TPM: the attacker's equipment,
the replacement TRE, and the TPM that destructive checks — DA lockout, TPM2_Clear, PCR
extension — may break), and the operator side in-process (:class:`NetworkLab`, a
:class:`network.server.NetworkApp` over a fresh SQLite store, trusting both labs' manufacturer
CAs, reference PCR values read from the lab TPM), over HTTP on loopback when a check asks.

:meth:`ThreatLab.attack` runs one staged attack: it times it and turns whatever the attack
raised into an honest finding — a missing part or lab component is "not run", anything else
is "error"; an attack that never concluded is an error too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from threats.result import Attempt, Recorder
from trelab.errors import Unavailable

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from firmware_stubs.usim.profile import CardProfile
    from lab.lab import LabStatus
    from network.config import NetworkConfig
    from network.server import NetworkApp
    from network.store import Store
    from protocol.client import Transport
    from tpm.registry import Registry
    from uicc.links.pcsc import PcscLink

__all__ = [
    "MEASURED_PCR",
    "NETWORK_PCRS",
    "MitmTransport",
    "NetworkLab",
    "RecordingTransport",
    "ThreatLab",
    "hardware_tpm",
]

#: What the PVA asks the TRE to quote: the boot PCRs and PCR 16, where the lab "measures" the
#: MID manager (a resettable PCR, so a check can change it and put it back).
NETWORK_PCRS = "sha256:0,1,2,3,4,5,6,7,16"
MEASURED_PCR = 16
T = TypeVar("T")


class RecordingTransport:
    """A wire tap: forwards every request and keeps (endpoint, request, reply) bytes — what an
    eavesdropper on the provisioning channel sees."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.exchanges: list[tuple[str, bytes, bytes]] = []

    def post(self, endpoint: str, wire: bytes, *, grant: bytes | None = None) -> bytes:
        reply = self.inner.post(endpoint, wire, grant=grant)
        self.exchanges.append((endpoint, wire, reply))
        return reply

    def captured(self) -> bytes:
        return b"".join(request + reply for _, request, reply in self.exchanges)


class MitmTransport:
    """A man in the middle on the device's channel: forwards requests, and rewrites the first
    reply to ``endpoint`` with ``rewrite(request wire, reply wire) -> new reply wire``."""

    def __init__(
        self, inner: Transport, endpoint: str, rewrite: Callable[[bytes, bytes], bytes]
    ) -> None:
        self.inner = inner
        self.endpoint = endpoint
        self.rewrite = rewrite
        self.rewritten = 0

    def post(self, endpoint: str, wire: bytes, *, grant: bytes | None = None) -> bytes:
        reply = self.inner.post(endpoint, wire, grant=grant)
        if endpoint == self.endpoint and not self.rewritten:
            self.rewritten += 1
            return self.rewrite(wire, reply)
        return reply


@dataclass
class NetworkLab:
    """The operator side: one configuration, any number of apps (each with its own store)."""

    config_path: Path
    config: NetworkConfig
    work: Path
    apps: list[tuple[NetworkApp, Store]] = field(default_factory=list)

    @property
    def pins(self) -> dict[str, ec.EllipticCurvePublicKey]:
        """What a TRE pins (device-trust.json): PVA, DPF and SHO public keys by name."""
        return self.config.signer_keys()

    def app(self, *, clock: Callable[[], float] | None = None) -> NetworkApp:
        """A fresh operator (new store): for attacks that change the operator's state."""
        from network.server import NetworkApp
        from network.store import Store

        path = self.work / f"network-{len(self.apps)}.db"
        store = Store(path, self.config.store_key)
        kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
        app = NetworkApp(self.config, store, **kwargs)
        self.apps.append((app, store))
        return app

    def transport(self, app: NetworkApp) -> Transport:
        from protocol.client import InProcessTransport

        return InProcessTransport(app)

    @contextlib.contextmanager
    def http(self, app: NetworkApp) -> Iterator[Transport]:
        """``app`` served over HTTP on a free loopback port for the block."""
        from network.server import running_server
        from protocol.client import HttpTransport

        with running_server(app) as url:
            yield HttpTransport(url)

    def close(self) -> None:
        for _, store in self.apps:
            with contextlib.suppress(Exception):
                store.close()
        self.apps.clear()


class ThreatLab:
    """The lab a check attacks. ``scratch`` brings up (or returns) a second lab; ``work`` is a
    directory for the operator's store and configuration. Close it to stop nothing but what it
    opened itself (stores); labs belong to whoever made them."""

    def __init__(
        self,
        lab: LabStatus,
        work: Path,
        *,
        scratch: Callable[[], LabStatus] | None = None,
    ) -> None:
        self.lab = lab
        self.work = work
        self._scratch_factory = scratch
        self._scratch: LabStatus | None = None
        self._scratch_error: str | None = None
        self._network: NetworkLab | None = None
        self._cache: dict[str, Any] = {}
        self._cleanups: list[Callable[[], None]] = []
        self._reader_held = False
        work.mkdir(parents=True, exist_ok=True)

    # ---- TPMs ------------------------------------------------------------------------------

    @property
    def tcti(self) -> str:
        return self.lab.tcti

    def registry(self, lab: LabStatus | None = None) -> Registry:
        """The lab's one MID registry (REG_CTR and AUDIT are TPM-wide): ``LABDIR/mids.json``."""
        from tpm.registry import Registry

        return Registry((lab or self.lab).lab_dir / "mids.json")

    def scratch(self) -> LabStatus:
        """The second lab (another real swtpm with its own EK certificates and CA).

        Raises:
            Unavailable: no scratch lab can be made here (the finding says "not run").
        """
        if self._scratch is not None:
            return self._scratch
        if self._scratch_error is not None:
            raise Unavailable(self._scratch_error)
        if self._scratch_factory is None:
            self._scratch_error = "no second lab available to this run"
            raise Unavailable(self._scratch_error)
        try:
            self._scratch = self._scratch_factory()
        except Unavailable as exc:
            self._scratch_error = f"the scratch lab did not come up: {exc}"
            raise Unavailable(self._scratch_error) from None
        return self._scratch

    def once(self, key: str, make: Callable[[], T]) -> T:
        """``make()`` the first time, the same object afterwards (expensive shared setup)."""
        if key not in self._cache:
            self._cache[key] = make()
        value: T = self._cache[key]
        return value

    # ---- the operator side --------------------------------------------------------------------

    def network(self) -> NetworkLab:
        """The operator configuration, made on first use: trusts the lab's manufacturer CA and,
        when a scratch lab can run, the scratch lab's (a second, equally genuine manufacturer);
        reference values = this lab's PCRs over :data:`NETWORK_PCRS`."""
        if self._network is None:
            from network.config import init_config, load_config
            from tpm.connection import TpmConnection
            from tpm.pcrsel import parse_selection
            from tpm.quote import read_pcrs
            from tpm.verify import split_pcr_values

            selection = parse_selection(NETWORK_PCRS)
            with TpmConnection(self.tcti) as conn:
                reference = split_pcr_values(selection, read_pcrs(conn, selection))
            bundle = self.work / "trusted-cas.pem"
            pems = [self.lab.ca.bundle.read_bytes()]
            with contextlib.suppress(Unavailable):
                pems.append(self.scratch().ca.bundle.read_bytes())
            bundle.write_bytes(b"".join(pems))
            directory = self.work / "network"
            if directory.exists():
                shutil.rmtree(directory)
            path = init_config(
                directory, ca_bundle=bundle, reference=reference, pcr_selection=NETWORK_PCRS
            )
            self._network = NetworkLab(path, load_config(path), self.work)
        return self._network

    # ---- the UICC side --------------------------------------------------------------------------

    def card_profile(self) -> CardProfile:
        """The lab card's personalisation (the SHO-A HSS record of the UICC alternatives).

        Raises:
            Unavailable: the lab has no virtual card.
        """
        from firmware_stubs.usim.profile import load_profile
        from lab.lab import Lab

        card = Lab(self.lab.lab_dir).status().card  # as it is now: `lab reset card` restarts it
        if card is None or card.state != "running":
            raise Unavailable("the lab's virtual card is not running")
        return load_profile(card.profile)

    def usim_link(self, *, wait: float = 15.0) -> PcscLink:
        """A PC/SC link to *this lab's* card in its reader (reset on close, so a verified PIN
        does not outlive the attack).

        Raises:
            Unavailable: the card is not running, or another lab's card holds the reader.
        """
        from firmware_stubs.card_serve import read_status
        from lab.lab import Lab
        from trelab import proc
        from uicc.links.pcsc import PcscLink

        card = Lab(self.lab.lab_dir).status().card  # as it is now: `lab reset card` restarts it
        if card is None or card.state != "running":
            raise Unavailable("the lab's virtual card is not running")
        status_file = self.lab.lab_dir / "card" / "status.json"

        def ours() -> bool:
            status = read_status(status_file)
            return bool(
                status and status.get("pid") == card.pid and status.get("state") == "attached"
            )

        # once the reader was found held by another lab's card, later checks look only briefly
        if not proc.wait_until(ours, 2.0 if self._reader_held else wait, interval=0.1):
            self._reader_held = True
            raise Unavailable(f"{card.reader} holds another lab's card: this lab's card waits")
        link: PcscLink | None = None

        def answers() -> bool:
            nonlocal link
            try:
                link = PcscLink(card.reader)
            except Unavailable:
                return False
            return True

        if not proc.wait_until(answers, wait, interval=0.2) or link is None:
            raise Unavailable(f"no card answers in {card.reader}")
        link.reset_on_close = True
        return link

    # ---- running one attack ---------------------------------------------------------------------

    @contextlib.contextmanager
    def attack(
        self,
        rec: Recorder,
        measures: tuple[str, ...],
        attack: str,
        attempted: str,
        *,
        tre: str | None = None,
        extra: str = "",
    ) -> Iterator[Attempt]:
        """One staged attack: yields the :class:`Attempt` to conclude; its finding (timed) is
        added to ``rec`` whatever happens. Exceptions do not escape (only Ctrl-C does)."""
        attempt = rec.attempt(measures, attack, attempted, tre=tre, extra=extra)
        start = time.perf_counter()
        try:
            yield attempt
        except Unavailable as exc:
            if attempt.finding is None:
                attempt.not_run(f"lab part unavailable: {exc}", missing="environment")
        except Exception as exc:  # the check broke: say so, never pass
            if attempt.finding is None:
                attempt.error(f"{type(exc).__name__}: {_one_line(exc)}")
        if attempt.finding is None:
            attempt.error("the check ended without a conclusion")
        rec.add(attempt, time.perf_counter() - start)

    def on_close(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` at :meth:`close` (last registered, first run)."""
        self._cleanups.append(cleanup)

    def close(self) -> None:
        while self._cleanups:
            with contextlib.suppress(Exception):
                self._cleanups.pop()()
        if self._network is not None:
            self._network.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def hardware_tpm() -> bool:
    """Is a kernel TPM resource manager (a physical TPM) present?"""
    return os.path.exists("/dev/tpmrm0")
