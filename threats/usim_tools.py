"""Edge: PC/SC. The operator's and the attacker's USIM tools for threat checks: an HSS for the
lab card's subscription (SHO-A's record), an AKA that resynchronises first if the card has
seen higher SQNs, raw APDUs for what :class:`uicc.usim.UsimClient` deliberately does not
offer (UPDATE BINARY without ADM).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from aka.hss import AuthVector, Hss
from aka.usim import AkaResult, AkaSuccess, AkaSyncFailure
from trelab.errors import RemoteProtocolError

if TYPE_CHECKING:
    from firmware_stubs.usim.profile import CardProfile
    from uicc.links.base import Link
    from uicc.links.pcsc import PcscLink
    from uicc.usim import UsimClient

__all__ = [
    "ServedCard",
    "card_hss",
    "fresh_success",
    "new_iccid",
    "update_imsi_without_adm",
    "usim_client",
]


def usim_client(link: Link, profile: CardProfile) -> UsimClient:
    """A client on ``link`` with the USIM selected and PIN1 verified if enabled."""
    from uicc.usim import UsimClient

    client = UsimClient(link)
    status = client.pin_status()
    if status.state == "enabled" and not status.verified:
        client.verify_pin(profile.pin1)
    return client


def card_hss(profile: CardProfile) -> Hss:
    """An HSS that holds the card's subscription (K, OPc, AMF) — SHO-A's AuC."""
    from firmware_stubs.usim.personalise import hss_subscriber

    hss = Hss(os.urandom)
    hss.add(hss_subscriber(profile))
    return hss


def fresh_success(client: UsimClient, hss: Hss, imsi: str) -> tuple[AuthVector, AkaSuccess]:
    """One successful AKA: a vector; if the card reports a synchronisation failure (it has
    seen higher SQNs), resynchronise from AUTS (TS 33.102 §6.3.5) and try once more.

    Raises:
        RemoteProtocolError: the card still does not accept the vector.
    """
    result: AkaResult | None = None
    for _ in range(2):
        vector = hss.generate_vectors(imsi)[0]
        result = client.authenticate(vector.rand, vector.autn)
        if isinstance(result, AkaSuccess):
            return vector, result
        if isinstance(result, AkaSyncFailure):
            hss.resynchronise(imsi, vector.rand, result.auts)
            continue
        break
    outcome = result.to_json()["result"] if result is not None else "nothing"
    raise RemoteProtocolError(f"the card answered {outcome} to its own operator's vector")


def update_imsi_without_adm(link: Link, imsi_bytes: bytes) -> int:
    """UPDATE BINARY EF.IMSI (6F07 under ADF.USIM) with only PIN1 verified: the status word."""
    from uicc import apdu
    from uicc.usim import FID_IMSI

    link.transmit(apdu.build_select_fid(FID_IMSI).encode())
    command = bytes([0x00, 0xD6, 0x00, 0x00, len(imsi_bytes)]) + imsi_bytes
    return apdu.parse_response(link.transmit(command)).sw


class ServedCard:
    """A USIM engine served on a vpcd reader from a thread of this process (no subprocess):
    the card a destructive check may rewrite, on the real PC/SC stack. :meth:`stop` ends the
    thread and releases the reader.

    Raises (constructor):
        Unavailable: the reader did not take this card (another card holds it).
    """

    def __init__(
        self,
        profile_data: dict[str, object],
        directory: Path,
        *,
        vpcd: tuple[str, int],
        reader: str,
        wait: float = 15.0,
    ) -> None:
        import threading

        from firmware_stubs.card_serve import CardServer, read_status
        from firmware_stubs.usim.engine import UsimEngine
        from firmware_stubs.usim.profile import parse_profile
        from firmware_stubs.usim.state import CardStore
        from trelab import proc
        from trelab.errors import Unavailable
        from uicc.errors import CardRefused
        from uicc.links.pcsc import PcscLink
        from uicc.usim import UsimClient

        directory.mkdir(parents=True, exist_ok=True)
        self.profile = parse_profile(profile_data)
        self.reader = reader
        self.engine = UsimEngine(self.profile, CardStore(directory / "state.json"))
        status = directory / "status.json"
        self._log = (directory / "card.log").open("a")
        self.server = CardServer(
            self.engine, vpcd, status_file=status, log=self._log, label="threat-card"
        )
        self._stopped = False
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

        def attached() -> bool:
            state = read_status(status)
            return bool(state and state.get("state") == "attached")

        def ours() -> bool:
            try:
                with PcscLink(reader) as link:
                    link.reset_on_close = True
                    return UsimClient(link).read_iccid() == self.profile.iccid
            except (Unavailable, CardRefused):
                return False

        if not (
            proc.wait_until(attached, wait, interval=0.05)
            and proc.wait_until(ours, wait, interval=0.1)
        ):
            self.stop()
            raise Unavailable(
                f"{reader} did not take the threat check's card (another card holds the reader?)"
            )

    def link(self) -> PcscLink:
        """A PC/SC link to this card, reset when closed."""
        from uicc.links.pcsc import PcscLink

        link = PcscLink(self.reader)
        link.reset_on_close = True
        return link

    def stop(self) -> None:
        """Stop serving (idempotent): the reader is free again."""
        if self._stopped:
            return
        self._stopped = True
        self.server.stop()
        self._thread.join(10)
        self.server.close()
        self._log.close()


def new_iccid() -> str:
    """A random 19-digit ICCID (89 = telecom, 88 = test country) with its Luhn digit."""
    body = "898821" + "".join(str(b % 10) for b in os.urandom(12))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)
