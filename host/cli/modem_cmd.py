"""Edge: CLI. ``trelab modem serve`` — a cellular modem with the emulated USIM behind it, on a
pty (prints its path) or an existing serial device; AT commands per TS 27.007."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from host.cli.output import Outcome

__all__ = ["register"]


def _serve(args: argparse.Namespace) -> Outcome:
    from firmware_stubs.modem.at import AtModem
    from firmware_stubs.modem.serve import ModemServer, run
    from firmware_stubs.usim.engine import open_card

    card = open_card(args.profile, args.state)
    server = ModemServer(AtModem(card), device=args.device, baudrate=args.baud, link=args.link)
    # The first line is the contract with scripts and the lab: where to point pyserial.
    print(f"modem on {server.path}", flush=True)
    try:
        run(server)
    finally:
        server.close()
    data = {
        "device": server.device,
        "link": str(args.link) if args.link else None,
        "iccid": card.profile.iccid,
        "lines": server.modem.lines,
    }
    return Outcome(data=data, text=f"modem on {server.path} stopped after {data['lines']} lines")


def register(nouns: Any) -> None:
    parser = nouns.add_parser(
        "modem", help="emulate a cellular modem (AT+CSIM, +CRSM, +CIMI, +CPIN) on a serial port"
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=type(parser))
    verbs.required = True
    p = verbs.add_parser("serve", help="serve AT commands until stopped; prints the device path")
    p.add_argument("--profile", type=Path, required=True, help="card profile (JSON or TOML)")
    p.add_argument("--state", type=Path, help="card state file (default: memory only)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true", help="a new pseudo-terminal (default)")
    where.add_argument("--device", help="an existing serial device or pyserial URL")
    p.add_argument("--link", type=Path, help="with --pty: a stable symlink to the pty")
    p.add_argument("--baud", type=int, default=115200, help="with --device: speed")
    p.set_defaults(func=_serve)
