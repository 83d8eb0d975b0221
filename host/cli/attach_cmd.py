"""Edge: CLI. ``trelab attach`` — AKA over the network with the SHO (TS 33.102 §6.3): the SHO
makes a vector, the TRE answers, the SHO checks RES; a synchronisation failure resynchronises
with AUTS. The TRE is a TPM MID (``--mid ID``) or a UICC (Alternative 2, a pre-personalised
card registered with ``trelab operator add-subscriber``) through PC/SC (``--reader``) or a
modem's AT+CSIM (``--serial``). Exit 0 when the SHO accepts, 1 when it does not.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from host.cli import defaults, output
from host.cli.output import Outcome
from host.cli.provision_cmd import network_url

__all__ = ["register"]


def _attach(args: argparse.Namespace) -> Outcome:
    from protocol.client import HttpTransport

    url = network_url(args, _mid_network(args))
    transport = HttpTransport(url)
    if args.mid:
        from host.attach import attach_tpm
        from host.provision import flush_stale
        from tpm.connection import TpmConnection
        from tpm.registry import Registry

        with TpmConnection(defaults.tcti(args.tpm)) as conn:
            flush_stale(conn)
            registry = Registry(defaults.registry_path(args.registry))
            done = attach_tpm(conn, registry, transport, mid_id=args.mid, imsi=args.imsi)
            imsi = args.imsi or registry.read().get(args.mid).imsi
        tre = "tpm"
    else:
        from host.attach import attach_card
        from host.cli.card_cmd import PIN_ENV, open_link
        from uicc.usim import UsimClient

        with open_link(args) as link:
            client = UsimClient(link)
            pin = args.pin if args.pin is not None else os.environ.get(PIN_ENV)
            if pin:
                if hasattr(link, "reset_on_close"):
                    link.reset_on_close = True
                client.verify_pin(pin)
            imsi, done = attach_card(client, transport, imsi=args.imsi)
        tre = "uicc"
    data = {
        "version": output.JSON_VERSION,
        "tre": tre,
        "mid": args.mid,
        "imsi": imsi,
        "network": url,
        "accepted": done.accepted,
        "reason": done.reason,
        "resynchronised": done.resynchronised,
    }
    resync = " after resynchronisation (AUTS)" if done.resynchronised else ""
    verdict = "accepted" if done.accepted else "refused"
    text = f"attach {imsi} ({tre}): {verdict} by the SHO{resync}: {done.reason}"
    return Outcome(data=data, text=text, exit_code=0 if done.accepted else 1)


def _mid_network(args: argparse.Namespace) -> str | None:
    """The network a TPM MID was provisioned from (agent state), if known."""
    if not args.mid:
        return None
    from host.provision import AgentFiles
    from tpm.registry import Registry

    info = AgentFiles(Registry(defaults.registry_path(args.registry))).read().mids.get(args.mid)
    return info.network if info else None


def register(nouns: Any) -> None:
    p = nouns.add_parser("attach", help="AKA with the SHO over the network (TPM MID or UICC)")
    tre = p.add_mutually_exclusive_group(required=True)
    tre.add_argument("--mid", help="a TPM MID id (trelab mid list)")
    tre.add_argument("--reader", help="PC/SC reader of a card: index, exact name or regex")
    tre.add_argument("--serial", metavar="PORT", help="modem serial port (AT+CSIM)")
    p.add_argument("--imsi", help="IMSI (default: from the registry or the card's EF.IMSI)")
    p.add_argument("--pin", help="card PIN1 to verify first (or $TRELAB_CARD_PIN)")
    p.add_argument("--protocol", choices=("auto", "T0", "T1"), default="auto", help="PC/SC")
    p.add_argument("--baud", type=int, default=115200, help="serial speed (default 115200)")
    p.add_argument("--timeout", type=float, default=5.0, help="serial answer timeout, s")
    p.add_argument(
        "--tpm", metavar="TCTI", help="TCTI for --mid (default: $TRELAB_TPM, else the lab)"
    )
    p.add_argument("--registry", metavar="PATH", help="MID registry file (default: lab dir)")
    p.add_argument(
        "--network", metavar="URL", help="operator side (default: the MID's, $TRELAB_NETWORK)"
    )
    output.add_json_flag(p)
    p.set_defaults(func=_attach)
