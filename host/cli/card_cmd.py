"""Edge: CLI. ``trelab card serve | info | aka | unblock | personalise`` — the UICC TRE.

``serve`` plugs the emulated USIM into pcscd through vpcd; the other verbs reach any card the
same way, through a PC/SC reader (``--reader``: index, exact name or regex) or a modem's
AT+CSIM (``--serial``). ``aka`` prints the JSON of ``trelab tpm aka``: ``result`` with ``res``,
``ck``, ``ik``, ``kc``, or ``auts``. Exit status of ``aka``: 0 for success *and* for a
synchronisation failure (a valid answer: the network resynchronises with AUTS), 1 for a MAC
failure (the card refused the network), per trelab's exit codes otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from host.cli.output import Outcome, add_json_flag
from trelab.atomic import atomic_write_text
from trelab.errors import BadInput
from trelab.hexargs import parse_hex

__all__ = ["PIN_ENV", "open_link", "register"]

PIN_ENV = "TRELAB_CARD_PIN"  # a PIN in the environment stays out of `ps` listings


def _lines(data: dict[str, Any]) -> str:
    width = max(len(k) for k in data)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in data.items())


# ---- links -------------------------------------------------------------------------------------


@contextlib.contextmanager
def open_link(args: argparse.Namespace) -> Iterator[Any]:
    """The link ``--reader``/``--serial`` name, held for the whole verb (a PC/SC transaction,
    so no other application's APDU lands between our SELECT and AUTHENTICATE)."""
    if args.reader is not None:
        from uicc.links.pcsc import PcscLink

        pcsc = PcscLink(args.reader, protocol=args.protocol)
        with pcsc, pcsc.transaction():
            yield pcsc
    else:
        from uicc.links.at_csim import AtCsimLink

        modem = AtCsimLink(args.serial, baudrate=args.baud, timeout=args.timeout)
        with modem:
            yield modem


def _add_link_options(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--reader", help="PC/SC reader: index, exact name or regex")
    where.add_argument("--serial", metavar="PORT", help="modem serial port (AT+CSIM)")
    p.add_argument("--protocol", choices=("auto", "T0", "T1"), default="auto", help="PC/SC")
    p.add_argument("--baud", type=int, default=115200, help="serial speed (default 115200)")
    p.add_argument("--timeout", type=float, default=5.0, help="serial answer timeout, s")


def _pin(args: argparse.Namespace) -> str | None:
    pin: str | None = args.pin if args.pin is not None else os.environ.get(PIN_ENV)
    return pin or None


def _verify(client: Any, link: Any, pin: str | None) -> None:
    if pin is None:
        return
    if hasattr(link, "reset_on_close"):
        link.reset_on_close = True  # the verified PIN must not outlive this command
    client.verify_pin(pin)


# ---- serve -------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> Outcome:
    from firmware_stubs.card_serve import CardServer, format_address, parse_vpcd_address, run
    from firmware_stubs.usim.engine import open_card

    address = parse_vpcd_address(args.vpcd)
    card = open_card(args.profile, args.state)
    iccid = card.profile.iccid
    server = CardServer(card, address, status_file=args.status_file, label=f"card {iccid}")
    where = f"state {args.state}" if args.state else "state in memory only"
    print(
        f"card {iccid} on vpcd {format_address(address)} ({where}); Ctrl-C or SIGTERM stops it",
        flush=True,
    )
    run(server)
    data = {
        "iccid": iccid,
        "vpcd": format_address(address),
        "state": str(args.state) if args.state else None,
        "sessions": server.counters.sessions,
        "apdus": server.counters.apdus,
    }
    return Outcome(data=data, text=f"card {iccid} stopped after {data['apdus']} APDUs")


# ---- info, aka, unblock ------------------------------------------------------------------------


def _info(args: argparse.Namespace) -> Outcome:
    from uicc.survey import survey
    from uicc.sw import explain_sw
    from uicc.usim import UsimClient

    with open_link(args) as link:
        client = UsimClient(link)
        _verify(client, link, _pin(args))
        info = client.info()
        found = survey(client)
        gsm = client.probe_gsm()
        data = {"link": link.name, **info.to_json(), **found.to_json(), "gsm_class": gsm.to_json()}
    pin = info.pin
    tries = f", {pin.tries_left} tries left" if pin.tries_left is not None else ""
    verified = ", verified" if pin.verified else ""
    apps = ", ".join(f"{a.label or '?'} {a.aid.hex()}" for a in found.applications)
    rules = found.access_rules
    if not rules.get("ara_m"):
        ara = "no ARA-M"
    elif "rules" in rules:
        ara = f"ARA-M, {len(rules['rules'])} rule(s)"
    else:
        ara = f"ARA-M ({rules.get('error')})"
    suci = found.suci
    summary = {
        "link": link.name,
        "atr": data["atr"] or "(not available over AT)",
        "iccid": info.iccid,
        "imsi": info.imsi or f"(unread: {info.imsi_error})",
        "usim": data["usim_aid"],
        "pin1": f"{pin.state}{verified}{tries}",
        "pin2": _pin_line(info.pin2) if info.pin2 is not None else "(none on this card)",
        "applications": apps,
        "suci": "(no subscription identifier privacy)"
        if suci is None
        else f"{suci.get('suci', suci.get('error'))} (by the {suci['calculated_by'].upper()})",
        "access rules": ara,
        "gsm class": (
            f"answers (TS 51.011), DF.GSM {'present' if gsm.df_gsm else 'absent'}"
            if gsm.answers
            else f"not answered ({gsm.sw:04X} {explain_sw(gsm.sw)})"
        ),
    }
    lines = [_lines(summary), ""]
    width = max(len(f.path) for f in found.files)
    for reading in found.files:
        if reading.status == "read":
            shown = json.dumps(reading.to_json()["value"], separators=(",", ":"))
        else:
            shown = f"({reading.status}{': ' + reading.detail if reading.detail else ''})"
        if reading.access is not None:
            shown += "  [" + " ".join(f"{op} {who}" for op, who in reading.access.items()) + "]"
        lines.append(f"{reading.path:<{width}}  {shown}")
    return Outcome(data=data, text="\n".join(lines))


def _pin_line(pin: Any) -> str:
    tries = f", {pin.tries_left} tries left" if pin.tries_left is not None else ""
    return f"{pin.state}{', verified' if pin.verified else ''}{tries}"


def _aka(args: argparse.Namespace) -> Outcome:
    from uicc.usim import UsimClient

    rand = parse_hex("--rand", args.rand, length=16)
    autn = None
    if not args.gsm:
        if args.autn is None:
            raise BadInput("--autn is required (or --gsm for the GSM context)")
        autn = parse_hex("--autn", args.autn, length=(16, 24, 40))
    elif args.autn is not None:
        raise BadInput("--autn: the GSM context takes RAND only")
    if args.gsm and args.isim:
        raise BadInput("--isim: IMS AKA has no GSM context")
    with open_link(args) as link:
        client = UsimClient(link)
        _verify(client, link, _pin(args))
        if autn is None:
            gsm = client.authenticate_gsm(rand)
            data = gsm.to_json()
            return Outcome(data=data, text=_lines(data))
        if args.isim:
            result = client.authenticate_ims(rand, autn)
        else:
            result = client.authenticate(rand, autn)
    data = result.to_json()
    if args.isim:
        data.pop("kc", None)  # IMS AKA gives RES, CK, IK only (TS 33.203 §6.1)
    return Outcome(
        data=data, text=_lines(data), exit_code=1 if data["result"] == "mac_failure" else 0
    )


def _unblock(args: argparse.Namespace) -> Outcome:
    from uicc.usim import UsimClient

    puk = args.puk if args.puk is not None else os.environ.get("TRELAB_CARD_PUK")
    if not puk:
        raise BadInput("--puk (or $TRELAB_CARD_PUK) is required")
    new_pin = _pin(args)
    if new_pin is None:
        raise BadInput(f"--new-pin (or ${PIN_ENV}) is required")
    with open_link(args) as link:
        if hasattr(link, "reset_on_close"):
            link.reset_on_close = True
        client = UsimClient(link)
        client.unblock_pin(puk, new_pin)
        status = client.pin_status()
    data = {"link": link.name, "pin": status.to_json()}
    return Outcome(data=data, text=f"PIN1 unblocked and set on {link.name}")


# ---- personalise (Alternative 2) ---------------------------------------------------------------


def _personalise(args: argparse.Namespace) -> Outcome:
    from firmware_stubs.usim.personalise import new_profile_data, personalise
    from firmware_stubs.usim.profile import load_profile

    profile_path: Path = args.profile
    if args.generate:
        if profile_path.exists():
            raise BadInput(f"--profile {profile_path} exists: --generate never overwrites")
        if not args.imsi or not args.iccid:
            raise BadInput("--generate needs --imsi and --iccid")
        fresh = new_profile_data(args.imsi, args.iccid, os.urandom, algorithm=args.algorithm)
        atomic_write_text(profile_path, json.dumps(fresh, indent=2) + "\n", mode=0o600)
    elif args.imsi or args.iccid:
        raise BadInput("--imsi/--iccid only go with --generate")
    card, record = personalise(load_profile(profile_path))
    # The record holds K and OPc: the Alternative 2 hand-over file, owner-readable only.
    atomic_write_text(args.out_hss, json.dumps(record.to_json(), indent=2) + "\n", mode=0o600)
    data = {
        "iccid": card.iccid,
        "imsi": card.imsi,
        "algorithm": card.algorithm,
        "profile": str(profile_path),
        "generated": bool(args.generate),
        "hss_record": str(args.out_hss),
        "next_sqn": record.next_sqn.hex(),
    }
    return Outcome(data=data, text=_lines(data))


# ---- registration ------------------------------------------------------------------------------


def register(nouns: Any) -> None:
    parser = nouns.add_parser(
        "card",
        help="the UICC TRE: serve the emulated USIM, read and authenticate any card",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=type(parser))
    verbs.required = True

    p = verbs.add_parser("serve", help="plug the emulated USIM into pcscd (vpcd) until stopped")
    p.add_argument("--profile", type=Path, required=True, help="card profile (JSON or TOML)")
    p.add_argument("--state", type=Path, help="card state file (default: memory only)")
    p.add_argument("--vpcd", default="127.0.0.1:35963", help="HOST:PORT of vpcd")
    p.add_argument("--status-file", type=Path, help="write connection state here (JSON)")
    p.set_defaults(func=_serve)

    p = verbs.add_parser(
        "info",
        help="ATR, ICCID, IMSI, PIN state, applications, every USIM/ISIM file, SUCI, access rules",
    )
    _add_link_options(p)
    p.add_argument("--pin", help=f"verify PIN1 first, so EF.IMSI can be read (or ${PIN_ENV})")
    add_json_flag(p)
    p.set_defaults(func=_info)

    p = verbs.add_parser(
        "aka",
        help="AUTHENTICATE: RAND, AUTN → RES/CK/IK/Kc, AUTS or MAC failure",
        epilog="exit 0: success or sync_failure (AUTS); 1: mac_failure, or the card refused "
        "(6982: PIN1 enabled and not verified, pass --pin; 6983: PIN1 blocked, see `card "
        "unblock`); 2: bad input (also a --reader that names no reader); 3: no reader or card",
    )
    _add_link_options(p)
    p.add_argument("--rand", required=True, help="RAND, 16 bytes hex")
    p.add_argument("--autn", help="AUTN, 16 bytes hex (longer for TUAK with long MACs)")
    p.add_argument("--gsm", action="store_true", help="GSM context: RAND → SRES, Kc")
    p.add_argument("--isim", action="store_true", help="IMS AKA in the ISIM: RES, CK, IK")
    p.add_argument("--pin", help=f"verify PIN1 first (or ${PIN_ENV})")
    add_json_flag(p)
    p.set_defaults(func=_aka)

    p = verbs.add_parser("unblock", help="UNBLOCK PIN1 with the PUK and set a new PIN")
    _add_link_options(p)
    p.add_argument("--puk", help="PUK1, 8 digits (or $TRELAB_CARD_PUK)")
    p.add_argument("--new-pin", dest="pin", help=f"the new PIN1 (or ${PIN_ENV})")
    add_json_flag(p)
    p.set_defaults(func=_unblock)

    p = verbs.add_parser(
        "personalise",
        help="Alternative 2: the HSS record for a card profile (optionally a fresh profile)",
    )
    p.add_argument("--profile", type=Path, required=True, help="card profile (JSON or TOML)")
    p.add_argument("--out-hss", type=Path, required=True, help="write the HSS record here")
    p.add_argument("--generate", action="store_true", help="draw a new profile into --profile")
    p.add_argument("--imsi", help="IMSI of the generated profile")
    p.add_argument("--iccid", help="ICCID of the generated profile")
    p.add_argument("--algorithm", choices=("milenage", "tuak", "hmac-sha256"), default="milenage")
    add_json_flag(p)
    p.set_defaults(func=_personalise)
