"""Edge: CLI. ``trelab transfer ki`` — Alternative 3a (Ki transfer between operators, then the
card updated over the air) — and ``trelab ota send`` — one secured packet to a card.

``transfer ki`` runs on the lab's operator side (``trelab network init-config``: one
configuration with both SHOs, one store), or — with ``--holder URL`` — at SHO-B's own
deployment, SHO-A being another one pinned with ``trelab network add-peer``: SHO-A, which knows the card (its HSS record and OTA
keys, registered from the personalisation profile with ``--card-profile`` the first time),
hands the subscription to SHO-B over the signed, encrypted channel of
:mod:`network.transfer`; SHO-B sends the secured packets to the card through ``--reader``
(PC/SC) or ``--serial`` (the ENVELOPE inside AT+CSIM), each step reported. With a PIN
(``--pin`` or ``$TRELAB_CARD_PIN``) it then reads the new IMSI back, attaches with SHO-B's
HSS, and shows TR 33.812 §7.1.2.3.1 threat 2 (SHO-A still knows K): before the K rotation SHO-A computes the
subscriber's RES/CK/IK and its AUTN passes the card's MAC check; with ``--rotate-k``, after
the rotation, neither. The old operator's OTA keys are tried too (a harmless READ BINARY):
refused once the key sets are rotated. A run that was interrupted is resumed by running the
same command again.

JSON (``--json``, version 1): ``transfer`` (``transfer_id``, ``new_imsi``, ``old_imsi``,
``packets`` [{``step``, ``tar``, ``kvn``, ``counter``, ``por``, ``executed``, ``last_sw``}] …),
``card`` {``iccid``, ``imsi``}, ``attach`` {``before_k_rotation``, ``after_k_rotation``},
``threats`` {``before_k_rotation``, ``after_k_rotation``: {``impersonation``,
``false_network``, ``card_answer_to_old_operator``}}, ``old_operator_ota`` {``por``}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from host.cli import defaults, output
from host.cli.output import Outcome
from trelab.digits import is_decimal
from trelab.errors import BadInput, CheckFailed
from trelab.hexargs import parse_hex

__all__ = ["KIC_ENV", "KID_ENV", "PIN_ENV", "register"]

PIN_ENV = "TRELAB_CARD_PIN"
KIC_ENV = "TRELAB_OTA_KIC"  # keys in the environment stay out of `ps` listings
KID_ENV = "TRELAB_OTA_KID"
_READ_IMSI_BY_SFI = bytes.fromhex("00b0870009")  # RFM READ BINARY of EF.IMSI: harmless


@contextlib.contextmanager
def _link(args: argparse.Namespace) -> Iterator[Any]:
    if args.reader is not None:
        from uicc.links.pcsc import PcscLink

        pcsc = PcscLink(args.reader, protocol=args.protocol)
        with pcsc, pcsc.transaction():
            pcsc.reset_on_close = True  # a verified PIN must not outlive the command
            yield pcsc
    else:
        from uicc.links.at_csim import AtCsimLink

        with AtCsimLink(args.serial, baudrate=args.baud, timeout=args.timeout) as modem:
            yield modem


def _link_options(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--reader", help="PC/SC reader: index, exact name or regex")
    where.add_argument("--serial", metavar="PORT", help="modem serial port (ENVELOPE in AT+CSIM)")
    p.add_argument("--protocol", choices=("auto", "T0", "T1"), default="auto", help="PC/SC")
    p.add_argument("--baud", type=int, default=115200, help="serial speed (default 115200)")
    p.add_argument("--timeout", type=float, default=5.0, help="serial answer timeout, s")


# ---- transfer ki -----------------------------------------------------------------------------


def _open_operators(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from network.store import Store
    from network.transfer import KiTransfer, OtaKeyring

    config = defaults.load_network_config(args.config)
    store = Store(defaults.network_store(args.store), config.store_key)
    keyring = OtaKeyring(store)
    exporter = None
    if getattr(args, "holder", None):
        from cryptography.hazmat.primitives import serialization

        from network.transfer import http_exporter

        peer = config.peers.get(args.source)
        if peer is not None:  # SHO-A pinned as a peer: its own deployment's TLS CA
            ca = peer.tls_ca
        elif args.source in config.shos:  # one configuration serving both (the lab's shortcut)
            ca = config.tls_ca
        else:
            raise BadInput(
                f"--holder: {args.source} is neither an SHO of this configuration nor a pinned "
                "peer: pin SHO-A's deployment first (`trelab network add-peer --trust "
                "ITS-device-trust.json`)",
                field="holder",
            )
        pem = ca.public_bytes(serialization.Encoding.PEM) if ca is not None else None
        exporter = http_exporter(args.holder, tls_ca=pem)
    transfer = KiTransfer(config, store, keyring, now=lambda: int(time.time()), exporter=exporter)
    return transfer, store, keyring


def _subscription_from_profile(path: str) -> Any:
    """What the card vendor gave SHO-A (Alternative 2 personalisation data)."""
    from aka.sqn import SqnGenerator
    from firmware_stubs.usim.personalise import hss_record
    from firmware_stubs.usim.profile import load_profile
    from network.transfer import CardKeys, Subscription
    from uicc.ota import Keyset

    profile = load_profile(Path(path))
    record = hss_record(profile)
    params: dict[str, int] = {}
    if profile.algorithm == "tuak":
        params = {
            "iterations": profile.iterations,
            "res_bits": profile.res_bits,
            "mac_bits": profile.mac_bits,
            "ck_bits": profile.ck_bits,
            "ik_bits": profile.ik_bits,
        }
    elif profile.algorithm == "hmac-sha256":
        params = {"key_bits": len(profile.k) * 8, "res_bits": profile.res_bits}
    opc = profile.topc if profile.algorithm == "tuak" else profile.opc
    assert opc is not None
    keys = CardKeys(
        tuple(Keyset(k.kvn, k.kic, k.kid) for k in profile.ota_keysets),
        {k.kvn: int.from_bytes(k.counter, "big") for k in profile.ota_keysets},
    )
    sqn = SqnGenerator(record.seq_he, record.ind, record.ind_bits, record.delta).to_json()
    return Subscription(
        profile.imsi, profile.iccid, profile.algorithm, params, profile.k, opc, profile.amf,
        sqn, keys,
    )  # fmt: skip


def _transfer(args: argparse.Namespace) -> Outcome:
    from uicc.usim import UsimClient

    if args.imsi is None or not is_decimal(args.imsi) or not 6 <= len(args.imsi) <= 15:
        raise BadInput("--imsi: 6 to 15 digits")
    if args.source == args.target:
        raise BadInput("--from and --to name the same SHO")
    pin = args.pin if args.pin is not None else os.environ.get(PIN_ENV) or None
    say: Callable[[str], None] = (
        (lambda _line: None) if args.json else (lambda line: print(line, file=sys.stderr))
    )
    transfer, store, keyring = _open_operators(args)
    try:
        with _link(args) as link:
            client = UsimClient(link)
            iccid = client.read_iccid()
            if args.holder and args.card_profile:
                raise BadInput(
                    "--card-profile registers the card with SHO-A: with --holder, run "
                    "`trelab transfer register-card` at SHO-A's deployment instead"
                )
            if not args.holder and keyring.card(args.source, iccid) is None:
                if not args.card_profile:
                    raise BadInput(
                        f"{args.source} does not know card {iccid} yet: give --card-profile "
                        "(the personalisation profile with its K and OTA keys)"
                    )
                subscription = _subscription_from_profile(args.card_profile)
                if (subscription.iccid, subscription.imsi) != (iccid, args.imsi):
                    raise BadInput("--card-profile is for another card or IMSI")
                transfer.register_card(args.source, subscription)
                say(f"{args.source} registered card {iccid} (IMSI {args.imsi})")
            report = _run(transfer, args, iccid, link, client, pin, say)
    finally:
        store.close()
    return Outcome(data={"version": output.JSON_VERSION, **report}, text=_text(report))


def _register_card(args: argparse.Namespace) -> Outcome:
    from network.store import Store
    from network.transfer import KiTransfer

    config = defaults.load_network_config(args.config)
    subscription = _subscription_from_profile(args.card_profile)
    store = Store(defaults.network_store(args.store), config.store_key)
    try:
        created = KiTransfer(config, store, now=lambda: int(time.time())).register_card(
            args.sho, subscription
        )
    finally:
        store.close()
    data = {"version": output.JSON_VERSION, "sho": args.sho, "iccid": subscription.iccid,
            "imsi": subscription.imsi, "created": created}  # fmt: skip
    what = "registered" if created else "already knew"
    return Outcome(
        data=data, text=f"{args.sho} {what} card {subscription.iccid} (IMSI {subscription.imsi})"
    )


def _run(
    transfer: Any,
    args: argparse.Namespace,
    iccid: str,
    link: Any,
    client: Any,
    pin: str | None,
    say: Callable[[str], None],
) -> dict[str, Any]:
    from aka.usim import AkaResult
    from network.transfer import deliver
    from threats import ki_transfer as ki_attacks
    from uicc.errors import CardRefused
    from uicc.ota import OtaRejected

    def authenticate(rand: bytes, autn: bytes) -> AkaResult:
        client.forget_selection()  # the OTA scripts ran in the card's own context, not ours
        result: AkaResult = client.authenticate(rand, autn)
        return result

    def step(line: str) -> None:
        say(f"  {line}")

    out: dict[str, Any] = {"attach": {}, "threats": {}}
    first = transfer.run(
        holder=args.source, requester=args.target, imsi=args.imsi, iccid=iccid,
        send=link.transmit, rotate_k=False, progress=step,
    )  # fmt: skip
    out["transfer"] = first
    new_imsi = first["new_imsi"]
    out["card"] = {"iccid": iccid, "imsi": None}
    can_aka = pin is not None
    if pin is not None:
        client.verify_pin(pin)
    else:
        with contextlib.suppress(CardRefused):
            can_aka = client.pin_status().state == "disabled"
    if args.holder:  # SHO-A's K and OTA keys are in its own deployment, not here
        out["skipped"] = (
            "threat 2 and the old operator's OTA keys: SHO-A's records are in its deployment"
        )
    if can_aka:
        client.forget_selection()
        out["card"]["imsi"] = client.read_imsi()
        say(f"card {iccid} now reads IMSI {out['card']['imsi']} (SHO-B's {new_imsi})")
        if not first["k_rotated"]:
            out["attach"]["before_k_rotation"] = transfer.attach(new_imsi, authenticate)
        if not first["k_rotated"] and not args.holder:
            out["threats"]["before_k_rotation"] = ki_attacks.threat_check(
                transfer, args.imsi, new_imsi, authenticate
            )
    else:
        out["skipped"] = f"IMSI read-back, attach and threat checks need the PIN ({PIN_ENV})"

    if args.rotate_k:
        second = transfer.run(
            holder=args.source, requester=args.target, imsi=args.imsi, iccid=iccid,
            send=link.transmit, rotate_k=True, progress=step,
        )  # fmt: skip
        out["transfer"]["packets"] += second["packets"]
        out["transfer"]["k_rotated"] = second["k_rotated"]
        if can_aka:
            out["attach"]["after_k_rotation"] = transfer.attach(new_imsi, authenticate)
        if can_aka and not args.holder:
            out["threats"]["after_k_rotation"] = ki_attacks.threat_check(
                transfer, args.imsi, new_imsi, authenticate
            )
    if args.holder:
        return out
    # The old operator tries its OTA keys: a READ BINARY, harmless either way.
    card_keys = transfer.keyring.card(args.source, iccid)
    try:
        por = deliver(
            link.transmit,
            ki_attacks.old_operator_packet(transfer, args.source, iccid, [_READ_IMSI_BY_SFI]),
            max(card_keys[0].keysets, key=lambda k: k.kvn),
        )
        out["old_operator_ota"] = {"por": por.status.text, "accepted": por.status == 0}
    except (CheckFailed, OtaRejected) as exc:
        out["old_operator_ota"] = {"por": str(exc), "accepted": False}
    return out


def _text(report: dict[str, Any]) -> str:
    t = report["transfer"]
    lines = [
        f"transfer {t['transfer_id']}: {t['from']} → {t['to']}, IMSI {t['old_imsi']} → "
        f"{t['new_imsi']}, K {'rotated' if t['k_rotated'] else 'NOT rotated (SHO-A still knows it)'}"
    ]
    if t["steps_done_before"]:
        lines.append(f"  resumed; done before: {', '.join(t['steps_done_before'])}")
    for p in t["packets"]:
        lines.append(
            f"  {p['step']:12} TAR {p['tar']} KVN {p['kvn']} CNTR {p['counter']}: {p['por']}, "
            f"{p['executed']} command(s), last SW {p['last_sw']}"
        )
    if report["card"]["imsi"]:
        lines.append(f"card {report['card']['iccid']} reads IMSI {report['card']['imsi']}")
    for when, result in report["attach"].items():
        lines.append(f"attach with {t['to']} ({when.replace('_', ' ')}): {result['result']}, "
                     f"{'accepted' if result['accepted'] else 'REFUSED'}")  # fmt: skip
    for when, threat in report["threats"].items():
        lines.append(
            f"threat 2 ({when.replace('_', ' ')}): SHO-A impersonates the subscriber: "
            f"{'YES' if threat['impersonation'] else 'no'}; card accepts SHO-A's AUTN: "
            f"{'YES' if threat['false_network'] else 'no'} ({threat['card_answer_to_old_operator']})"
        )
    if "skipped" in report:
        lines.append(f"skipped: {report['skipped']}")
    ota = report.get("old_operator_ota")
    if ota is None:
        return "\n".join(lines)
    lines.append(f"old operator's OTA keys: {'ACCEPTED' if ota['accepted'] else 'refused'} "
                 f"({ota['por']})")  # fmt: skip
    return "\n".join(lines)


# ---- ota send ----------------------------------------------------------------------------------


def _keyset(args: argparse.Namespace) -> Any:
    from uicc.ota import Keyset

    kic_text = os.environ.get(KIC_ENV)
    kid_text = os.environ.get(KID_ENV)
    if args.keys_file:
        try:
            doc = json.loads(Path(args.keys_file).read_text())
            kic_text, kid_text = doc["kic"], doc["kid"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            raise BadInput(f"--keys-file {args.keys_file}: expected JSON with kic, kid") from None
    if kic_text is None or kid_text is None:
        raise BadInput(f"keys: give --keys-file, or {KIC_ENV} and {KID_ENV}")
    return Keyset(
        args.kvn,
        parse_hex("KIc", kic_text, length=(16, 24, 32)),
        parse_hex("KID", kid_text, length=(16, 24, 32)),
    )


def _send(args: argparse.Namespace) -> Outcome:
    from network.transfer import deliver
    from uicc.ota import (
        PorStatus,
        build_command_packet,
        build_envelope_sms_pp,
        build_sms_deliver,
        encode_compact,
        encode_expanded,
        encode_scts,
        parse_remote_response,
    )

    keyset = _keyset(args)
    if args.envelope:
        envelope = parse_hex("--envelope", args.envelope)
        counter = None
    else:
        if not args.apdu:
            raise BadInput("give --apdu (repeat for a script) or --envelope")
        if args.counter is None or not 0 <= args.counter < 1 << 40:
            raise BadInput("--counter: 0 … 2^40-1 (it must be higher than the card's)")
        apdus = [parse_hex("--apdu", a) for a in args.apdu]
        script = encode_expanded(apdus) if args.expanded else encode_compact(apdus)
        packet = build_command_packet(
            keyset, tar=parse_hex("--tar", args.tar, length=3), counter=args.counter, data=script
        )
        envelope = build_envelope_sms_pp(
            build_sms_deliver(packet, timestamp=encode_scts(int(time.time())))
        )
        counter = args.counter
    with _link(args) as link:
        por = deliver(link.transmit, envelope, keyset)
    data: dict[str, Any] = {
        "version": output.JSON_VERSION,
        "envelope": envelope.hex(),
        "counter": counter,
        "por": {
            "status": por.status.text,
            "code": f"{int(por.status):02X}",
            "tar": por.tar.hex(),
            "counter": por.counter,
            "authenticated": por.authenticated,
        },
    }
    text = f"PoR: {por.status.text} (TAR {por.tar.hex()}, counter {por.counter})"
    if por.status is PorStatus.OK:
        result = parse_remote_response(por.data, expanded=args.expanded)
        data["result"] = result.to_json()
        text += f"; {result.executed} command(s), last SW {data['result']['last_sw']}"
    return Outcome(data=data, text=text, exit_code=0 if por.status is PorStatus.OK else 1)


def register(nouns: Any) -> None:
    parser = nouns.add_parser("transfer", help="Alternative 3a: Ki transfer between SHOs + OTA")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    p = verbs.add_parser("ki", help="hand a subscription to another SHO and update the card OTA")
    p.add_argument("--imsi", required=True, help="the subscriber's IMSI at the old SHO")
    p.add_argument("--from", dest="source", required=True, help="SHO that holds it (SHO-A)")
    p.add_argument("--to", dest="target", required=True, help="SHO that takes it (SHO-B)")
    p.add_argument("--config", help="network.json or its folder (default: the user config dir)")
    p.add_argument("--network-config", dest="config", help=argparse.SUPPRESS)  # earlier spelling
    defaults.add_store_flag(p)
    p.add_argument("--card-profile", help="personalisation profile, first time SHO-A sees the card")
    p.add_argument("--rotate-k", action="store_true", help="write a new K/OPc to the card (OTA)")
    p.add_argument("--pin", help=f"PIN1 for read-back and AKA checks (or ${PIN_ENV})")
    p.add_argument(
        "--holder",
        metavar="URL",
        help="SHO-A as its own deployment: its `network serve` URL (the request and package "
        "travel over HTTPS under the TLS CA pinned for it by `network add-peer`; --config and "
        "--store are then SHO-B's)",
    )
    _link_options(p)
    output.add_json_flag(p)
    p.set_defaults(func=_transfer)

    p = verbs.add_parser(
        "register-card", help="make an SHO the operator of a card (HSS record and OTA keys)"
    )
    p.add_argument("--sho", required=True, help="the SHO that personalised the card (SHO-A)")
    p.add_argument("--card-profile", required=True, help="the card's personalisation profile")
    p.add_argument("--config", help="network.json or its folder (default: the user config dir)")
    defaults.add_store_flag(p)
    output.add_json_flag(p)
    p.set_defaults(func=_register_card)

    parser = nouns.add_parser("ota", help="OTA secured packets (TS 102 225) to a card")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    p = verbs.add_parser("send", help="send one secured packet (SMS-PP download) and show the PoR")
    p.add_argument("--tar", default="b00010", help="TAR (hex; default b00010, RFM USIM)")
    p.add_argument("--kvn", type=int, default=1, help="key version of KIc/KID (default 1)")
    p.add_argument("--keys-file", help=f"JSON {{kic, kid}} (else ${KIC_ENV}, ${KID_ENV})")
    p.add_argument("--counter", type=int, help="CNTR (must be higher than the card's)")
    p.add_argument("--apdu", action="append", help="a command of the script (hex; repeat)")
    p.add_argument("--expanded", action="store_true", help="expanded script format (TLV)")
    p.add_argument("--envelope", help="send this ENVELOPE APDU as is (hex; e.g. a replay)")
    _link_options(p)
    output.add_json_flag(p)
    p.set_defaults(func=_send)
